//! The `rfid-wedge` family: 125 kHz readers that type the card number.

use super::{DriverSpec, FamilyOptions, KeyError, Make, OptionsType};
use crate::config::DeviceConfig;
use posbridge_drivers::rfid;
use posbridge_drivers::Protocol;
use serde::Deserialize;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    ..DriverSpec::new(
        "rfid-wedge",
        super::READER_TRANSPORTS,
        OptionsType::of::<Options>(),
    )
};

/// An RFID wedge reader's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// How the reader writes the card number (default auto).
    format: Option<rfid::RfidFormat>,
    /// Silence after which an unterminated number is taken; 0 = never (default 300).
    idle_flush_ms: Option<u64>,
}

impl FamilyOptions for Options {
    fn make(self, _: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        Ok(Box::new(rfid::Rfid::new(rfid::Options {
            format: self.format.unwrap_or_default(),
            idle_flush_ms: Some(self.idle_flush_ms.unwrap_or(300)).filter(|&ms| ms > 0),
        })))
    }
}
