//! The `rfid-wedge` family: 125 kHz readers that type the card number.

use super::{DriverSpec, HidReading, KeyError, Make, Runs, SimKind, UsbNode};
use crate::config::DeviceConfig;
use posbridge_drivers::rfid;
use posbridge_drivers::Protocol;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    name: "rfid-wedge",
    transports: &["serial", "evdev", "hid", "sim"],
    keys: &["format", "idle_flush_ms"],
    default_baud: 9600,
    runs: Runs::Supervisor,
    sim: SimKind::Stream,
    hid: HidReading::Keyboard,
    usb: UsbNode::None,
    make,
};

pub fn make(d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
    let format = match d.format.as_deref().unwrap_or("auto") {
        "auto" => rfid::RfidFormat::Auto,
        "decimal10" => rfid::RfidFormat::Decimal10,
        "hex8" => rfid::RfidFormat::Hex8,
        "hex10" => rfid::RfidFormat::Hex10,
        "wiegand26" => rfid::RfidFormat::Wiegand26,
        f => {
            return Err((
                "format",
                format!("{f:?} is not one of auto, decimal10, hex8, hex10, wiegand26"),
            ))
        }
    };
    Ok(Box::new(rfid::Rfid::new(rfid::Options {
        format,
        idle_flush_ms: Some(d.idle_flush_ms.unwrap_or(300)).filter(|&ms| ms > 0),
    })))
}
