//! The `barcode` family: scanners (serial, keyboard wedge, HID-POS).

use super::{bad, DriverSpec, FamilyOptions, HidReading, KeyError, Make, OptionsType};
use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::weighed::Template;
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
    /// Weighed-goods label layouts (`{ pattern = "22PPPPPWWWWWC" }`).
    weighed_barcodes: Option<Vec<WeighedBarcode>>,
}

/// One weighed-goods label layout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeighedBarcode {
    pattern: String,
}

/// The layouts, or the first one that is wrong (named by its place).
fn templates(list: Option<Vec<WeighedBarcode>>) -> Result<Vec<Template>, KeyError> {
    let mut out = Vec::new();
    for (i, w) in list.unwrap_or_default().into_iter().enumerate() {
        let t = Template::parse(&w.pattern).map_err(|why| KeyError {
            key: format!("weighed_barcodes[{i}].pattern").into(),
            why,
        })?;
        out.push(t);
    }
    Ok(out)
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
        let weighed = templates(self.weighed_barcodes)?;
        if d.transport() == Transport::Hid {
            // HID-POS scanners deliver whole reports, not lines.
            if self.suffix.is_some() {
                return Err(bad("suffix", "HID-POS scanners send no suffix; remove it"));
            }
            return Ok(Box::new(hid::HidPosScanner::new(hid::Options {
                member_pattern,
                weighed,
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
            weighed,
        })))
    }
}
