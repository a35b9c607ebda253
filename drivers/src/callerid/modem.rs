//! Voice/data modems with caller ID switched on (`AT+VCID=1`, `AT#CID=1`).
//!
//! They print CRLF lines: `RING`, then (between the first and second ring in
//! Bellcore countries, before the first where the exchange sends it early) a
//! block of `KEY = value` lines — `DATE = 0511`, `TIME = 1852`,
//! `NMBR = 4075550000`, `NAME = JOHN DOE`, `MESG = …` — in any order, with
//! or without spaces around `=`; then `RING` for each further ring. With
//! `AT+VCID=2` some print the raw SDMF/MDMF message as one line of hex
//! digits instead, read here through [`super::fsk`].
//!
//! Every label NCID's modem handling accepts (`ncidd.c`, `formatCID`) is
//! read the same way here, so no caller's number is lost to a label:
//! - the number as `NMBR`, `DDN_NMBR`, `DDN` or `NBR` (any label starting
//!   so); the first number of a block wins (some exchanges send the number,
//!   then `NMBR = O` to mask it);
//! - the name under any label ending in `NAME` (a Motorola Jump modem prints
//!   `^P.^PXNAME`); the first name wins;
//! - `RING`, `RING A` (distinctive ring), `CID RING` (Kortex);
//! - Kortex's `DATE TIME=11/24 22:10`, and its `CALLING MSG` / `END MSG`
//!   around the block;
//! - ZyXEL's `TIME: 11-24 22:10`, `CALLER NUMBER: …`, `CALLER NAME: …` and
//!   `REASON FOR NO CALLER NUMBER: P` (mgetty's list has them too);
//! - the 70-column line of TCI multi-line units (and serial Whozz Calling
//!   units set to TCI output): line, date, time, number and name at fixed
//!   columns, one line per incoming call.

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
    /// A whole call on one line (TCI units), with its line label.
    Call(CallInfo),
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
    /// Kortex's `DATE TIME`: `MM/DD HH:MM`.
    DateTime,
}

/// The field a `KEY = value` label names, as NCID reads labels.
fn field_of(key: &str) -> Option<Field> {
    let key = key.trim().to_ascii_uppercase();
    let field = match key.as_str() {
        "DATE TIME" => Field::DateTime,
        "CALLER NUMBER" | "CALLER'S NUMBER" | "REASON FOR NO CALLER NUMBER" => Field::Number,
        "CALLER NAME" | "REASON FOR NO CALLER NAME" => Field::Name,
        k if k.starts_with("DATE") => Field::Date,
        k if k.starts_with("TIME") => Field::Time,
        k if ["NMBR", "DDN", "NBR", "NUMBER"]
            .iter()
            .any(|p| k.starts_with(p)) =>
        {
            Field::Number
        }
        k if k.ends_with("NAME") => Field::Name,
        k if k.starts_with("MESG") => Field::Mesg,
        _ => return None,
    };
    Some(field)
}

/// Result codes and echoes a modem prints around caller ID.
const NOISE: [&str; 10] = [
    "OK",
    "ERROR",
    "NO CARRIER",
    "CONNECT",
    "BUSY",
    "NO DIALTONE",
    "NO ANSWER",
    "NO DIAL TONE",
    "CALLING MSG",
    "END MSG",
];

/// Classifies one line (without its line end).
pub fn parse_line(line: &str) -> ModemLine {
    let s = line.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    if s.is_empty() {
        return ModemLine::Noise;
    }
    let upper = s.to_ascii_uppercase();
    let ring = upper.strip_prefix("CID ").unwrap_or(&upper);
    if ring == "RING" || ring.starts_with("RING ") || (ring.starts_with("RING") && ring.len() <= 6)
    {
        return ModemLine::Ring;
    }
    if upper.starts_with("AT") || NOISE.contains(&upper.as_str()) || upper.starts_with("+VCID") {
        return ModemLine::Noise;
    }
    if let Some(call) = tci_line(line) {
        return ModemLine::Call(call);
    }
    // `KEY = value`; ZyXEL's `KEY: value` only for its own labels, so an
    // NCID or other `LABEL:` line is not read as a field.
    let pair = s.split_once('=').or_else(|| {
        s.split_once(':')
            .filter(|(k, _)| k.trim().contains(' ') || k.trim().eq_ignore_ascii_case("TIME"))
    });
    if let Some((key, value)) = pair {
        return match field_of(key) {
            Some(field) => ModemLine::Field(field, value.trim().to_string()),
            None => ModemLine::Unknown,
        };
    }
    if let Some(bytes) = hex_message(s) {
        return ModemLine::Hex(bytes);
    }
    ModemLine::Unknown
}

/// A TCI unit's 70-column call line (NCID reads it by these columns):
/// line 0-1, month 7-8, `/` at 9, day 10-11, hour 17-18, minute 20-21,
/// `AM`/`PM` 23-24, the number right-aligned in 29-43, the name in 55-69.
/// Senders may trim the blank columns at the end.
fn tci_line(line: &str) -> Option<CallInfo> {
    let b = line.trim_end_matches(['\r', '\n']).as_bytes();
    let col = |from: usize, to: usize| b.get(from..=to.min(b.len().saturating_sub(1)));
    let text = |from: usize, to: usize| {
        col(from, to).map_or(String::new(), |c| {
            String::from_utf8_lossy(c).trim().to_string()
        })
    };
    let fits = (30..=70).contains(&b.len())
        && b.get(..2)?.iter().all(u8::is_ascii_digit)
        && b.get(9) == Some(&b'/')
        && b.get(24) == Some(&b'M')
        && matches!(b.get(23), Some(b'A' | b'P'));
    if !fits {
        return None;
    }
    let num = |t: String| t.parse::<u32>().ok();
    let hour = num(text(17, 18)).filter(|h| (1..=12).contains(h))?;
    let hour = match (b.get(23), hour) {
        (Some(b'A'), 12) => 0,
        (Some(b'P'), h) if h < 12 => h + 12,
        (_, h) => h,
    };
    let box_time = format!(
        "{:02}{:02}{hour:02}{:02}",
        num(text(7, 8))?,
        num(text(10, 11))?,
        num(text(20, 21))?
    );
    let number = text(29, 43);
    let name = text(55, 69);
    let line_label = text(0, 1);
    Some(CallInfo {
        number: withheld(&number).map_or_else(|| clean_number(number.as_bytes()), str::to_string),
        name: Some(name)
            .filter(|n| withheld(n).is_none())
            .and_then(|n| clean_name(n.as_bytes())),
        line: Some(line_label.trim_start_matches('0').to_string()).filter(|l| !l.is_empty()),
        box_time: super::date_mmddhhmm(box_time.as_bytes()),
    })
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
    /// Adds one field. The first number and the first name of a block win,
    /// as in NCID: an exchange may mask a number it just sent (`NMBR = O`).
    pub fn add(&mut self, field: Field, value: &str) {
        self.started = true;
        let value = value.to_string();
        match field {
            // NetTalk prints `DATE=` and `TIME=` with nothing after them.
            Field::Date if !value.is_empty() => self.date = Some(value),
            Field::Time | Field::DateTime => {
                // `1852`, or a date with it: Kortex `11/24 22:10`, ZyXEL `11-24 22:10`.
                let digits: String = value.chars().filter(char::is_ascii_digit).collect();
                match digits.len() {
                    4 => self.time = Some(digits),
                    8 => {
                        self.date = digits.get(..4).map(str::to_string);
                        self.time = digits.get(4..).map(str::to_string);
                    }
                    _ => {}
                }
            }
            Field::Number => {
                self.number.get_or_insert(value);
            }
            Field::Name => {
                self.name.get_or_insert(value);
            }
            Field::Date | Field::Mesg => {}
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

    /// Every label NCID's `formatCID` takes, and ZyXEL's.
    #[test]
    fn every_ncid_label_reads() {
        let f = |l: &str| match parse_line(l) {
            ModemLine::Field(f, v) => Some((f, v)),
            _ => None,
        };
        for (line, field, value) in [
            ("NMBR = 4075550000", Field::Number, "4075550000"),
            ("NMBR=4075550000", Field::Number, "4075550000"),
            ("DDN_NMBR= 9932562", Field::Number, "9932562"),
            ("DDN = 9932562", Field::Number, "9932562"),
            ("NBR=0632727751", Field::Number, "0632727751"),
            ("NUMBER = 13812345678", Field::Number, "13812345678"),
            ("CALLER NUMBER: 13812345678", Field::Number, "13812345678"),
            ("CALLER'S NUMBER: 13812345678", Field::Number, "13812345678"),
            ("REASON FOR NO CALLER NUMBER: P", Field::Number, "P"),
            ("NAME = JOHN DOE", Field::Name, "JOHN DOE"),
            ("\x10.\x10XNAME = JOHN", Field::Name, "JOHN"),
            ("CALLER NAME: JOHN", Field::Name, "JOHN"),
            ("REASON FOR NO CALLER NAME: O", Field::Name, "O"),
            ("DATE = 0511", Field::Date, "0511"),
            ("DATE=", Field::Date, ""),
            ("TIME=1852", Field::Time, "1852"),
            ("TIME: 11-24 22:10", Field::Time, "11-24 22:10"),
            ("DATE TIME=11/24 22:10", Field::DateTime, "11/24 22:10"),
            ("MESG = 110101", Field::Mesg, "110101"),
        ] {
            assert_eq!(f(line), Some((field, value.to_string())), "{line}");
        }
        for ring in ["RING", "RING A", "CID RING", "ring 2"] {
            assert_eq!(parse_line(ring), ModemLine::Ring, "{ring}");
        }
        for noise in ["CALLING MSG", "END MSG"] {
            assert_eq!(parse_line(noise), ModemLine::Noise, "{noise}");
        }
        // NCID server lines are not modem fields.
        assert_eq!(parse_line("CID: *NMBR*1*"), ModemLine::Unknown);
    }

    fn block_of(lines: &[&str]) -> Option<CallInfo> {
        let mut b = Block::default();
        for line in lines {
            if let ModemLine::Field(f, v) = parse_line(line) {
                b.add(f, &v);
            }
        }
        b.take()
    }

    #[test]
    fn blocks_as_ncid_reads_them() {
        // Kortex (France Telecom).
        let k = block_of(&["DATE TIME=11/24 22:10", "NBR=0632727751"]);
        assert_eq!(k.as_ref().map(|c| c.number.as_str()), Some("0632727751"));
        assert_eq!(k.and_then(|c| c.box_time).as_deref(), Some("11-24 22:10"));
        // ZyXEL.
        let z = block_of(&[
            "TIME: 11-24 22:10",
            "CALLER NUMBER: 13812345678",
            "CALLER NAME: 王芳",
        ]);
        assert_eq!(
            z.map(|c| (c.number, c.name, c.box_time)),
            Some((
                "13812345678".into(),
                Some("王芳".into()),
                Some("11-24 22:10".into())
            ))
        );
        // The number, then the exchange masking it: the first wins.
        let m = block_of(&["NMBR = 13812345678", "NMBR = O", "NAME = A", "NAME = B"]);
        assert_eq!(
            m.map(|c| (c.number, c.name)),
            Some(("13812345678".into(), Some("A".into())))
        );
        let w = block_of(&["REASON FOR NO CALLER NUMBER: P"]);
        assert_eq!(w.map(|c| c.number), Some(PRIVATE.to_string()));
    }

    #[test]
    fn tci_lines_carry_line_number_and_name() {
        let lines = [
            "01      9/03      2:00 PM            PRIVATE                          ",
            "02      9/03      2:15 PM            PRIVATE           PRIVATE        ",
            "03      9/03      2:23 PM       407-555-1212           WIRELESS CALLER",
            // Trailing blanks trimmed by the sender.
            "12     12/31     12:05 AM       13812345678",
        ];
        let calls: Vec<CallInfo> = lines
            .iter()
            .map(|l| match parse_line(l) {
                ModemLine::Call(c) => c,
                other => panic!("{l}: {other:?}"),
            })
            .collect();
        let want = [
            ("private", None, "1", "09-03 14:00"),
            ("private", None, "2", "09-03 14:15"),
            ("4075551212", Some("WIRELESS CALLER"), "3", "09-03 14:23"),
            ("13812345678", None, "12", "12-31 00:05"),
        ];
        for (c, (number, name, line, t)) in calls.iter().zip(want) {
            assert_eq!(c.number, number);
            assert_eq!(c.name.as_deref(), name);
            assert_eq!(c.line.as_deref(), Some(line));
            assert_eq!(c.box_time.as_deref(), Some(t));
        }
        // Near misses are not TCI lines.
        for l in [
            "01      9-03      2:00 PM            PRIVATE",
            "xx      9/03      2:00 PM            PRIVATE",
            "01      9/03     14:00 PM            PRIVATE",
            "01      9/03      2:00 PM",
        ] {
            assert!(!matches!(parse_line(l), ModemLine::Call(_)), "{l}");
        }
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
