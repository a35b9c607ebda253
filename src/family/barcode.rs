//! The `barcode` family: scanners (serial, keyboard wedge, HID-POS).

use super::{bad, DriverSpec, FamilyOptions, HidReading, KeyError, Make, OptionsType};
use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::Protocol;
use posbridge_drivers::{barcode, hid};
use serde::Deserialize;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    hid: HidReading::Whole,
    ..DriverSpec::new(
        "barcode",
        super::READER_TRANSPORTS,
        OptionsType::of::<Options>(),
    )
};

/// A scanner's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// A regex; codes it matches are `member_code` events.
    member_pattern: Option<String>,
    /// Milliseconds of silence after which an unterminated code is emitted
    /// (scanners without a suffix); 0 = never (default 300).
    idle_flush_ms: Option<u64>,
    /// What ends a scan (default auto: CR, LF or Tab).
    suffix: Option<barcode::Suffix>,
}

impl FamilyOptions for Options {
    fn make(self, d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        let member_pattern = self
            .member_pattern
            .as_deref()
            .map(|p| {
                regex::Regex::new(p)
                    .map_err(|e| bad("member_pattern", format!("not a valid regex: {e}")))
            })
            .transpose()?;
        if d.transport() == Transport::Hid {
            // HID-POS scanners deliver whole reports, not lines.
            if self.suffix.is_some() {
                return Err(bad("suffix", "HID-POS scanners send no suffix; remove it"));
            }
            return Ok(Box::new(hid::HidPosScanner::new(hid::Options {
                member_pattern,
                ..hid::Options::default()
            })));
        }
        let suffix = self.suffix.unwrap_or_default();
        let idle_flush_ms = Some(self.idle_flush_ms.unwrap_or(300)).filter(|&ms| ms > 0);
        if suffix == barcode::Suffix::None && idle_flush_ms.is_none() {
            return Err(bad(
                "idle_flush_ms",
                "with suffix = \"none\" only the idle timeout can end a code; it must be above 0",
            ));
        }
        Ok(Box::new(barcode::Barcode::new(barcode::Options {
            member_pattern,
            idle_flush_ms,
            suffix,
        })))
    }
}
