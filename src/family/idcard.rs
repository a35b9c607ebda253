//! The `idcard-sam` family: second-generation ID-card readers.

use super::{DriverSpec, HidReading, KeyError, Make, Runs, SimKind, UsbNode};
use crate::config::DeviceConfig;
use posbridge_drivers::idcard;
use posbridge_drivers::Protocol;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    name: "idcard-sam",
    transports: &["serial", "sim"],
    keys: &["poll_ms"],
    default_baud: 115_200,
    runs: Runs::Supervisor,
    sim: SimKind::IdCardReader,
    hid: HidReading::Keyboard,
    usb: UsbNode::None,
    make,
};

pub fn make(d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
    let mut opts = idcard::Options::default();
    if let Some(ms) = d.poll_ms {
        if !(50..=10_000).contains(&ms) {
            return Err(("poll_ms", "must be between 50 and 10000".into()));
        }
        opts.poll_ms = ms;
    }
    Ok(Box::new(idcard::IdCardReader::new(opts)))
}
