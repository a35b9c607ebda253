//! The `barcode` family: scanners (serial, keyboard wedge, HID-POS).

use super::{DriverSpec, HidReading, KeyError, Make, Runs, SimKind, UsbNode};
use crate::config::DeviceConfig;
use posbridge_drivers::Protocol;
use posbridge_drivers::{barcode, hid};

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    name: "barcode",
    transports: &["serial", "evdev", "hid", "sim"],
    keys: &["member_pattern", "idle_flush_ms", "suffix"],
    default_baud: 9600,
    runs: Runs::Supervisor,
    sim: SimKind::Stream,
    hid: HidReading::Whole,
    usb: UsbNode::None,
    make,
};

fn member_pattern(d: &DeviceConfig) -> Result<Option<regex::Regex>, KeyError> {
    d.member_pattern
        .as_deref()
        .map(|p| {
            regex::Regex::new(p).map_err(|e| ("member_pattern", format!("not a valid regex: {e}")))
        })
        .transpose()
}

pub fn make(d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
    let member_pattern = member_pattern(d)?;
    if d.transport_name() == "hid" {
        // HID-POS scanners deliver whole reports, not lines.
        if d.suffix.is_some() {
            return Err((
                "suffix",
                "HID-POS scanners send no suffix; remove it".into(),
            ));
        }
        return Ok(Box::new(hid::HidPosScanner::new(hid::Options {
            member_pattern,
            ..hid::Options::default()
        })));
    }
    let suffix = match d.suffix.as_deref() {
        None => barcode::Suffix::Auto,
        Some(s) => barcode::Suffix::parse(s).ok_or((
            "suffix",
            format!("{s:?} is not one of auto, cr, lf, crlf, tab, none"),
        ))?,
    };
    let idle_flush_ms = Some(d.idle_flush_ms.unwrap_or(300)).filter(|&ms| ms > 0);
    if suffix == barcode::Suffix::None && idle_flush_ms.is_none() {
        return Err((
            "idle_flush_ms",
            "with suffix = \"none\" only the idle timeout can end a code; it must be above 0"
                .into(),
        ));
    }
    Ok(Box::new(barcode::Barcode::new(barcode::Options {
        member_pattern,
        idle_flush_ms,
        suffix,
    })))
}
