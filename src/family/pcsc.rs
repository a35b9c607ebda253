//! The `pcsc` family: contactless cards through pcscd. Its link does the
//! card work (src/transport/pcsc.rs); here is what its config asks for.

use super::{DriverSpec, HidReading, KeyError, Make, Runs, SimKind, UsbNode};
use crate::config::DeviceConfig;
use posbridge_drivers::pcsc::{self as apdu, ReadPlan};
use posbridge_drivers::Protocol;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    name: "pcsc",
    transports: &["pcsc"],
    keys: &["reader", "blocks", "key", "key_type"],
    default_baud: 9600,
    runs: Runs::Supervisor,
    sim: SimKind::Stream,
    hid: HidReading::Keyboard,
    usb: UsbNode::None,
    make,
};

/// The MIFARE Classic blocks to read on each tap, with their key, or the
/// key that is wrong.
pub fn read_plan(cfg: &DeviceConfig) -> Result<Option<ReadPlan>, KeyError> {
    let Some(blocks) = &cfg.blocks else {
        return Ok(None);
    };
    let key = apdu::parse_key(cfg.key.as_deref().unwrap_or("FFFFFFFFFFFF"))
        .map_err(|e| ("key", e.to_string()))?;
    let key_type = match cfg.key_type.as_deref().unwrap_or("A") {
        "A" | "a" => apdu::KeyType::A,
        "B" | "b" => apdu::KeyType::B,
        k => return Err(("key_type", format!("{k:?} is not A or B"))),
    };
    ReadPlan::new(blocks.clone(), key, key_type)
        .map(Some)
        .map_err(|e| ("blocks", e.to_string()))
}

/// Checks the pcsc-only keys of a device table (config validation).
pub fn check(cfg: &DeviceConfig) -> Result<(), KeyError> {
    read_plan(cfg).map(|_| ())
}

pub fn make(d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
    check(d)?;
    // The link reads the cards, and takes "read now" itself (Link::request_read).
    Ok(Box::new(super::LinkDoesTheWork))
}
