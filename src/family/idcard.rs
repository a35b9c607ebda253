//! The `idcard-sam` family: second-generation ID-card readers.

use super::{bad, DriverSpec, FamilyOptions, KeyError, Make, OptionsType};
use super::{Request, SimKind};
use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::idcard;
use posbridge_drivers::Protocol;
use serde::Deserialize;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    default_baud: 115_200,
    sim: SimKind::IdCardReader,
    requests: &[Request::Read],
    ..DriverSpec::new(
        "idcard-sam",
        &[Transport::Serial, Transport::Sim],
        OptionsType::of::<Options>(),
    )
};

/// An ID-card reader's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// How often the reader is asked for a card, 50-10000 ms.
    poll_ms: Option<u64>,
}

impl FamilyOptions for Options {
    fn make(self, _: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        let mut opts = idcard::Options::default();
        if let Some(ms) = self.poll_ms {
            if !(50..=10_000).contains(&ms) {
                return Err(bad("poll_ms", "must be between 50 and 10000"));
            }
            opts.poll_ms = ms;
        }
        Ok(Box::new(idcard::IdCardReader::new(opts)))
    }
}
