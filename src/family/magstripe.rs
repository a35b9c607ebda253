//! The `magstripe` family: card swipes; bank cards never leave its driver.

use super::{bad, DriverSpec, FamilyOptions, HidReading, KeyError, Make, OptionsType};
use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::magstripe;
use posbridge_drivers::Protocol;
use serde::Deserialize;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    hid: HidReading::Magtek,
    ..DriverSpec::new(
        "magstripe",
        super::READER_TRANSPORTS,
        OptionsType::of::<Options>(),
    )
};

/// A magstripe reader's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The reader sends an LRC byte after each track.
    lrc: Option<bool>,
    /// Silence that ends a swipe, 10-5000 ms.
    idle_flush_ms: Option<u64>,
}

impl FamilyOptions for Options {
    fn make(self, d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        let mut opts = magstripe::Options::default();
        if let Some(ms) = self.idle_flush_ms {
            if !(10..=5000).contains(&ms) {
                return Err(bad(
                    "idle_flush_ms",
                    "must be between 10 and 5000 for a magstripe reader",
                ));
            }
            opts.idle_ms = ms;
        }
        if let Some(lrc) = self.lrc {
            if lrc && matches!(d.transport(), Transport::Evdev | Transport::Hid) {
                return Err(bad(
                    "lrc",
                    "keyboard-wedge and HID readers never send an LRC",
                ));
            }
            opts.lrc = lrc;
        }
        Ok(Box::new(magstripe::Magstripe::new(opts)))
    }
}
