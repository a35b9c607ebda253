//! USB HID POS scales (usage page 0x8D). The scale data report, as DYMO,
//! Stamps.com, Mettler-Toledo PS-series and Fairbanks scales send it:
//! `03 status unit exponent weight_lo weight_hi` (HID Point of Sale Usage
//! Tables, "Scale Data Report"; PROTOCOLS.md §8).

use super::{to_grams, Reading, Unit};

/// The report id of the scale data report.
const DATA_REPORT: u8 = 0x03;

/// What one report says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    Reading(Reading),
    /// The scale reports a fault (it needs calibration, re-zeroing …).
    Fault(String),
}

/// Decodes one input report; `Ok(None)` for reports that are not weight data.
pub fn decode_report(r: &[u8]) -> Result<Option<Report>, String> {
    if r.first() != Some(&DATA_REPORT) {
        return Ok(None);
    }
    let [_, status, unit, exp, lo, hi, ..] = *r else {
        return Err(format!("a {}-byte data report; it has 6", r.len()));
    };
    let reading = |stable: bool| -> Result<Reading, String> {
        let unit = unit_of(unit)?;
        let grams = to_grams(
            i64::from(u16::from_le_bytes([lo, hi])),
            i32::from(exp as i8),
            unit,
        )
        .ok_or_else(|| format!("exponent {} is out of range", exp as i8))?;
        Ok(Reading {
            grams: Some(grams),
            stable,
            ..Reading::default()
        })
    };
    Ok(Some(match status {
        1 => Report::Fault("the scale reports a fault".into()),
        2 => Report::Reading(Reading {
            grams: Some(0),
            stable: true,
            ..Reading::default()
        }),
        3 => Report::Reading(reading(false)?),
        4 => Report::Reading(reading(true)?),
        5 => {
            // Under zero: the report carries the magnitude.
            let r = reading(false)?;
            Report::Reading(Reading {
                grams: r.grams.map(|g| -g.abs()),
                negative: true,
                ..r
            })
        }
        6 => Report::Reading(Reading {
            overload: true,
            ..reading(false).unwrap_or_default()
        }),
        7 => Report::Fault("the scale needs calibrating".into()),
        8 => Report::Fault("the scale needs re-zeroing".into()),
        s => return Err(format!("unknown status {s}")),
    }))
}

/// The HID POS weight unit codes posbridge converts.
fn unit_of(code: u8) -> Result<Unit, String> {
    Ok(match code {
        1 => Unit::Milligram,
        2 => Unit::Gram,
        3 => Unit::Kilogram,
        11 => Unit::Ounce,
        12 => Unit::Pound,
        c => return Err(format!("weight unit {c} is not mg, g, kg, oz or lb")),
    })
}
