//! The `magstripe` family: card swipes; bank cards never leave its driver.

use super::{DriverSpec, HidReading, KeyError, Make, Runs, SimKind, UsbNode};
use crate::config::DeviceConfig;
use posbridge_drivers::magstripe;
use posbridge_drivers::Protocol;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    name: "magstripe",
    transports: &["serial", "evdev", "hid", "sim"],
    keys: &["lrc", "idle_flush_ms"],
    default_baud: 9600,
    runs: Runs::Supervisor,
    sim: SimKind::Stream,
    hid: HidReading::Magtek,
    usb: UsbNode::None,
    make,
};

pub fn make(d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
    let mut opts = magstripe::Options::default();
    if let Some(ms) = d.idle_flush_ms {
        if !(10..=5000).contains(&ms) {
            return Err((
                "idle_flush_ms",
                "must be between 10 and 5000 for a magstripe reader".into(),
            ));
        }
        opts.idle_ms = ms;
    }
    if let Some(lrc) = d.lrc {
        if lrc && matches!(d.transport_name(), "evdev" | "hid") {
            return Err((
                "lrc",
                "keyboard-wedge and HID readers never send an LRC".into(),
            ));
        }
        opts.lrc = lrc;
    }
    Ok(Box::new(magstripe::Magstripe::new(opts)))
}
