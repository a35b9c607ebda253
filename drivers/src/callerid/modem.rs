//! Voice/data modems with caller ID switched on (`AT+VCID=1`, `AT#CID=1`).
//!
//! They print CRLF lines: `RING`, then (between the first and second ring in
//! Bellcore countries, before the first where the exchange sends it early) a
//! block of `KEY = value` lines — `DATE = 0511`, `TIME = 1852`,
//! `NMBR = 4075550000` (or `DDN_NMBR`), `NAME = JOHN DOE`, `MESG = …` — in
//! any order, with or without spaces around `=`; then `RING` for each
//! further ring. With `AT+VCID=2` some print the raw SDMF/MDMF message as one
//! line of hex digits instead, read here through [`super::fsk`].

use super::fsk;
use super::{clean_name, clean_number, CallInfo, PRIVATE, UNAVAILABLE};

/// Commands that switch caller ID on; each modem accepts one of them and
/// answers `ERROR` to the others, which is harmless. `AT+GCI=B5` selects
/// China's country settings (FSK/DTMF caller-ID timing) on modems that need it.
pub const INIT_COMMANDS: [&[u8]; 3] = [b"AT+VCID=1\r", b"AT#CID=1\r", b"AT+GCI=B5\r"];

/// What one modem line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModemLine {
    /// `RING` (some modems add a count or a cadence letter).
    Ring,
    /// One `KEY = value` caller-ID field.
    Field(Field, String),
    /// A raw FSK message printed as hex (`AT+VCID=2`), as bytes.
    Hex(Vec<u8>),
    /// Command echo, result codes and other chatter with no caller data.
    Noise,
    /// Not modem output.
    Unknown,
}

/// The caller-ID fields modems print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `DATE`: `MMDD`.
    Date,
    /// `TIME`: `HHMM`.
    Time,
    /// `NMBR` or `DDN_NMBR`.
    Number,
    /// `NAME`.
    Name,
    /// `MESG`: undecoded parameters as hex; not used.
    Mesg,
}

/// Result codes and echoes a modem prints around caller ID.
const NOISE: [&str; 8] = [
    "OK",
    "ERROR",
    "NO CARRIER",
    "CONNECT",
    "BUSY",
    "NO DIALTONE",
    "NO ANSWER",
    "NO DIAL TONE",
];

/// Classifies one line (without its line end).
pub fn parse_line(line: &str) -> ModemLine {
    let s = line.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    if s.is_empty() {
        return ModemLine::Noise;
    }
    let upper = s.to_ascii_uppercase();
    if upper == "RING"
        || upper.starts_with("RING ")
        || (upper.starts_with("RING") && upper.len() <= 6)
    {
        return ModemLine::Ring;
    }
    if upper.starts_with("AT") || NOISE.contains(&upper.as_str()) || upper.starts_with("+VCID") {
        return ModemLine::Noise;
    }
    if let Some((key, value)) = s.split_once('=') {
        let field = match key.trim().to_ascii_uppercase().as_str() {
            "DATE" => Field::Date,
            "TIME" => Field::Time,
            "NMBR" | "DDN_NMBR" | "NUMBER" => Field::Number,
            "NAME" => Field::Name,
            "MESG" => Field::Mesg,
            _ => return ModemLine::Unknown,
        };
        return ModemLine::Field(field, value.trim().to_string());
    }
    if let Some(bytes) = hex_message(s) {
        return ModemLine::Hex(bytes);
    }
    ModemLine::Unknown
}

/// A line of hex digits that starts with an FSK message type.
fn hex_message(s: &str) -> Option<Vec<u8>> {
    if s.len() < 6 || s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = s
        .as_bytes()
        .chunks(2)
        .filter_map(|p| std::str::from_utf8(p).ok())
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    // The length byte must match, so a number that happens to be even-length
    // hex digits (`0412345678`) is not taken for a message.
    let fits = bytes.len() == usize::from(*bytes.get(1)?) + 3;
    (fits && fsk::MESSAGE_TYPES.contains(bytes.first()?)).then_some(bytes)
}

/// Collects one caller-ID block's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Block {
    date: Option<String>,
    time: Option<String>,
    number: Option<String>,
    name: Option<String>,
    /// Any field arrived.
    started: bool,
}

impl Block {
    /// Adds one field.
    pub fn add(&mut self, field: Field, value: &str) {
        self.started = true;
        match field {
            Field::Date => self.date = Some(value.to_string()),
            Field::Time => self.time = Some(value.to_string()),
            Field::Number => self.number = Some(value.to_string()),
            Field::Name => self.name = Some(value.to_string()),
            Field::Mesg => {}
        }
    }

    /// Whether any field arrived.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the block holds both number and name: nothing more will come.
    pub fn complete(&self) -> bool {
        self.number.is_some() && self.name.is_some()
    }

    /// The call the block describes; `None` when it holds neither number nor
    /// name (only a date, or `MESG`).
    pub fn take(&mut self) -> Option<CallInfo> {
        let b = std::mem::take(self);
        if b.number.is_none() && b.name.is_none() {
            return None;
        }
        let number = match b.number.as_deref().map(str::trim) {
            Some(n) => withheld(n).map_or_else(|| clean_number(n.as_bytes()), str::to_string),
            None => UNAVAILABLE.to_string(),
        };
        let name = b
            .name
            .filter(|n| withheld(n).is_none())
            .and_then(|n| clean_name(n.as_bytes()));
        let box_time = match (b.date.as_deref(), b.time.as_deref()) {
            (Some(d), Some(t)) => super::date_mmddhhmm(format!("{d}{t}").as_bytes()),
            _ => None,
        };
        Some(CallInfo {
            number,
            name,
            line: None,
            box_time,
        })
    }
}

/// `private` / `unavailable` for the markers modems print instead of a
/// number or name (`P`, `O`, `PRIVATE`, `OUT OF AREA` …).
pub fn withheld(value: &str) -> Option<&'static str> {
    match value.trim().to_ascii_uppercase().as_str() {
        "P" | "PRIVATE" | "ANONYMOUS" | "BLOCKED" | "RESTRICTED" | "WITHHELD" => Some(PRIVATE),
        "O" | "OUT OF AREA" | "OUT-OF-AREA" | "UNAVAILABLE" | "UNKNOWN" | "NO NUMBER" | "" => {
            Some(UNAVAILABLE)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_classify() {
        assert_eq!(parse_line("RING"), ModemLine::Ring);
        assert_eq!(parse_line(" ring "), ModemLine::Ring);
        assert_eq!(parse_line("RING A"), ModemLine::Ring);
        assert_eq!(
            parse_line("DATE = 0511"),
            ModemLine::Field(Field::Date, "0511".into())
        );
        assert_eq!(
            parse_line("DDN_NMBR= 4075550000"),
            ModemLine::Field(Field::Number, "4075550000".into())
        );
        assert_eq!(
            parse_line("NAME=JOHN DOE"),
            ModemLine::Field(Field::Name, "JOHN DOE".into())
        );
        for noise in ["OK", "ERROR", "AT+VCID=1", "at#cid=1", "NO CARRIER", ""] {
            assert_eq!(parse_line(noise), ModemLine::Noise, "{noise}");
        }
        assert_eq!(parse_line("FOO = 1"), ModemLine::Unknown);
        assert_eq!(parse_line("hello"), ModemLine::Unknown);
        assert_eq!(
            parse_line("041230353131313835323430373535353030303059"),
            ModemLine::Hex([&[0x04, 0x12][..], b"051118524075550000".as_slice(), &[0x59]].concat())
        );
    }

    #[test]
    fn block_takes_number_name_and_time() {
        let mut b = Block::default();
        for line in [
            "DATE = 0511",
            "TIME = 1852",
            "NMBR = 4075550000",
            "NAME = CALL",
        ] {
            if let ModemLine::Field(f, v) = parse_line(line) {
                b.add(f, &v);
            }
        }
        assert!(b.complete());
        assert_eq!(
            b.take(),
            Some(CallInfo {
                number: "4075550000".into(),
                name: Some("CALL".into()),
                line: None,
                box_time: Some("05-11 18:52".into()),
            })
        );
        assert!(!b.started());
        b.add(Field::Number, "P");
        b.add(Field::Name, "O");
        assert_eq!(
            b.take().map(|c| (c.number, c.name)),
            Some(("private".into(), None))
        );
        b.add(Field::Mesg, "110101");
        assert_eq!(b.take(), None);
    }
}
