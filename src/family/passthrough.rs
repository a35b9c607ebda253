//! The `passthrough` family: raw bytes both ways, for devices posbridge has
//! no protocol for. QZ Tray pages reach them with `serial.*` calls.

use super::{DriverSpec, FamilyOptions, KeyError, Make, OptionsType, Request};
use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::passthrough::Passthrough;
use posbridge_drivers::Protocol;
use serde::Deserialize;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    requests: &[Request::Send],
    ..DriverSpec::new(
        "passthrough",
        &[Transport::Serial, Transport::Tcp, Transport::Sim],
        OptionsType::of::<Options>(),
    )
};

/// A passthrough device's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The port name QZ Tray pages use for it (`qz.serial.openPort("COM3")`).
    qz_name: Option<String>,
}

impl FamilyOptions for Options {
    fn make(self, _: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        self.qz_name.map(super::qz_name).transpose()?;
        Ok(Box::new(Passthrough))
    }
}
