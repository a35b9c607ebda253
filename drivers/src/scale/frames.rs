//! Serial scale frames, one per call, without their terminator (PROTOCOLS.md §8).

use super::{parse_decimal, to_grams, Kind, Reading, Unit};

const STX: u8 = 0x02;

/// What one frame says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Reading(Reading),
    /// A frame that carries no reading but shows the scale is there (an
    /// acknowledgement, an empty line between CR and LF).
    Ignored,
}

/// Decodes one frame of `kind`; `unit` is what unit-less frames are in.
pub fn decode(kind: Kind, unit: Unit, raw: &[u8]) -> Result<Frame, String> {
    let body = raw.strip_prefix(&[STX]).unwrap_or(raw);
    let text =
        std::str::from_utf8(body).map_err(|_| format!("{} bytes that are not text", raw.len()))?;
    match kind {
        Kind::Toledo => toledo(text, unit),
        Kind::Continuous => continuous(text),
        Kind::Hid | Kind::Aclas => Err("this scale's frames are not lines".into()),
    }
}

/// Mettler-Toledo 8217: `  1.234` (kg by default), optionally followed by
/// `N` for net; or `?` and a status byte when there is no weight to give.
fn toledo(text: &str, unit: Unit) -> Result<Frame, String> {
    if let Some(rest) = text.strip_prefix('?') {
        let Some(&status) = rest.as_bytes().first() else {
            return Err("status frame `?` without its status byte".into());
        };
        let bit = |n: u8| status & (1 << n) != 0;
        // Neither moving, over nor under: the answer to a tare or zero, not a state.
        if status & 0b111 == 0 {
            return Ok(Frame::Ignored);
        }
        return Ok(Frame::Reading(Reading {
            grams: None,
            stable: false,
            net: bit(5),
            tare_grams: None,
            overload: bit(1),
            negative: bit(2),
        }));
    }
    let trimmed = text.trim_end();
    let (number, net) = match trimmed.strip_suffix(['N', 'n']) {
        Some(n) => (n, true),
        None => (trimmed, false),
    };
    let grams = weight(number, unit).ok_or_else(|| format!("{:?} is not a weight", clip(text)))?;
    Ok(Frame::Reading(Reading {
        grams: Some(grams),
        stable: true,
        net,
        ..Reading::default()
    }))
}

/// `ST,GS,+  1.234kg`: stability (`ST`, `US`, `OL`), mode (`GS` gross,
/// `NT` net, `TR` tare), sign, number and unit.
fn continuous(text: &str) -> Result<Frame, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Frame::Ignored);
    }
    let bad = || format!("{:?} is not `ST,GS,+  1.234kg`", clip(text));
    // Some indicators leave out the comma after the mode (`ST,GS    20.7g`).
    let (state, rest) = text.split_once(',').ok_or_else(bad)?;
    let rest = rest.trim_start();
    let (mode, value) = match rest.split_once(',') {
        Some((m, v)) if m.trim().len() <= 2 => (m, v),
        _ => rest.split_at(rest.char_indices().nth(2).map_or(rest.len(), |(i, _)| i)),
    };
    let (stable, overload) = match state.trim().to_ascii_uppercase().as_str() {
        "ST" => (true, false),
        "US" => (false, false),
        "OL" => (false, true),
        _ => return Err(bad()),
    };
    let net = match mode.trim().to_ascii_uppercase().as_str() {
        "GS" | "G" => false,
        "NT" | "N" => true,
        // A tare frame reports the tare, not what is on the scale.
        "TR" | "T" => return Ok(Frame::Ignored),
        _ => return Err(bad()),
    };
    let value = value.trim();
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let unit = Unit::parse(unit.trim()).ok_or_else(bad)?;
    let grams = weight(number, unit);
    if grams.is_none() && !overload {
        return Err(bad());
    }
    Ok(Frame::Reading(Reading {
        grams,
        stable,
        net,
        tare_grams: None,
        overload,
        negative: grams.is_some_and(|g| g < 0),
    }))
}

fn weight(number: &str, unit: Unit) -> Option<i64> {
    let (m, exp) = parse_decimal(number)?;
    to_grams(m, exp, unit)
}

/// The start of a frame, for an error message (frames are short anyway).
fn clip(text: &str) -> String {
    text.chars().take(32).collect()
}
