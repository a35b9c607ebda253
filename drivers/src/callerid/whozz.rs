//! Whozz Calling Ethernet units (CallerID.com; UDP port 3520, PROTOCOLS.md §2).
//!
//! A unit sends one datagram per record, to the LAN's broadcast address:
//! `^^<U>` and 6 unit bytes, `<S>` and 6 serial-number bytes (binary), then
//! one ASCII record:
//! - a call record, `01 I S 0276 G A1 09/26 11:28 AM 800-240-4637  CallerID.com`:
//!   line, `I`n / `O`ut, `S`tart / `E`nd (`B` on some units, read as a start),
//!   duration in seconds, the caller-ID checksum `G`ood / `B`ad, ring type and
//!   count, date, 12-hour time, the number (14 columns) and the name (15);
//! - a detail record (Deluxe units), `01 R             09/26 11:28:03`: `R` the
//!   line rang, `F` off hook, `N` on hook.
//!
//! An outgoing call's start record (`O S`) gives the dialed number; its end
//! record is not reported. A record whose caller-ID checksum was bad still
//! means a call: it rings, with no number (a wrong number would pop the
//! wrong member's card).

use super::modem::withheld;
use super::{clean_name, clean_number, date_mmddhhmm, CallInfo, Signal};

/// The start of every datagram from a unit.
pub const MAGIC: &[u8] = b"^^<U>";
/// Longest datagram looked at; records are under 100 bytes.
const MAX_DATAGRAM: usize = 512;

/// What one datagram says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub signals: Vec<Signal>,
    /// Something worth counting as malformed (the call may still go on).
    pub problem: Option<String>,
    /// The phone line the record is about (`1` for `01`): records of one
    /// line must not end or ring another line's call.
    pub line: Option<String>,
    /// A detail record (`R`/`F`/`N`): only Deluxe units send them, and there
    /// an end without an off-hook before it means nobody answered.
    pub detail: bool,
}

/// Whether `datagram` looks like a unit's (for `auto`).
pub fn is_datagram(datagram: &[u8]) -> bool {
    datagram.starts_with(MAGIC)
}

/// The record after the unit and serial headers, when they are there.
fn record(datagram: &[u8]) -> &[u8] {
    let mut d = &datagram[..datagram.len().min(MAX_DATAGRAM)];
    if let Some(rest) = d.strip_prefix(MAGIC) {
        d = rest.get(6..).unwrap_or_default();
    }
    if let Some(rest) = d.strip_prefix(b"<S>") {
        d = rest.get(6..).unwrap_or_default();
    }
    // Some firmware puts `$` (and line ends) around the record.
    let d = d.strip_prefix(b"$").unwrap_or(d);
    let end = d
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n' | b' ' | 0))
        .map_or(0, |i| i + 1);
    &d[..end]
}

/// `11:28` `PM` → `2328`; `None` unless a possible 12-hour time.
fn hhmm_24(time: &str, ampm: &str) -> Option<String> {
    let (h, m) = time.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if !(1..=12).contains(&h) || m > 59 {
        return None;
    }
    let h = match (ampm, h) {
        ("AM", 12) => 0,
        ("AM", h) => h,
        ("PM", 12) => 12,
        ("PM", h) => h + 12,
        _ => return None,
    };
    Some(format!("{h:02}{m:02}"))
}

/// Decodes one datagram (or one record without its headers).
pub fn decode(datagram: &[u8]) -> Decoded {
    let text = String::from_utf8_lossy(record(datagram));
    let bad = |why: &str| Decoded {
        // Only sizes: a garbled record may still hold a caller's number.
        problem: Some(format!(
            "Whozz Calling record of {} bytes: {why}; dropped",
            datagram.len()
        )),
        ..Decoded::default()
    };
    let mut cols = text.split(' ').filter(|s| !s.is_empty());
    let (Some(line), Some(kind)) = (cols.next(), cols.next()) else {
        return bad("too short");
    };
    if line.len() != 2 || !line.bytes().all(|b| b.is_ascii_digit()) {
        return bad("no line number");
    }
    let line = line.trim_start_matches('0');
    let line = Some(if line.is_empty() { "0" } else { line }.to_string());
    let out = |signals: Vec<Signal>, detail: bool| Decoded {
        signals,
        line: line.clone(),
        detail,
        problem: None,
    };
    match kind {
        // Detail records: the hook and ring of the line.
        "R" => return out(vec![Signal::Ring], true),
        "F" => return out(vec![Signal::Answered], true),
        // On hook again: the call's end comes with its `E` record (or silence).
        "N" => return out(Vec::new(), true),
        "I" | "O" => {}
        _ => return bad("unknown record type"),
    }
    let outgoing = kind == "O";
    let fields: Vec<&str> = cols.by_ref().take(7).collect();
    let [se, duration, checksum, _rings, date, time, ampm] = fields[..] else {
        return bad("a call record cut short");
    };
    if duration.len() != 4 || !duration.bytes().all(|b| b.is_ascii_digit()) {
        return bad("no duration");
    }
    match se {
        "E" if outgoing => return out(Vec::new(), false),
        "E" => return out(vec![Signal::Ended { answered: None }], false),
        "S" | "B" => {}
        _ => return bad("neither start nor end"),
    }
    if checksum == "B" && outgoing {
        return bad("an outgoing call heard with a bad checksum");
    }
    if checksum == "B" {
        return Decoded {
            problem: Some("Whozz Calling unit heard the caller ID with a bad checksum; the call rings without a number".into()),
            ..out(vec![Signal::Ring], false)
        };
    }
    if checksum != "G" {
        return bad("no checksum flag");
    }
    let after = text
        .find(&format!(" {time} {ampm} "))
        .map(|i| i + time.len() + ampm.len() + 3)
        .and_then(|i| text.get(i..))
        .unwrap_or_default();
    let (number, name) = number_and_name(after);
    let number = match withheld(number) {
        Some(w) => w.to_string(),
        None => clean_number(number.as_bytes()),
    };
    let name = Some(name.trim())
        .filter(|n| withheld(n).is_none())
        .and_then(|n| clean_name(n.as_bytes()));
    let box_time = date
        .split_once('/')
        .zip(hhmm_24(time, ampm))
        .and_then(|((mm, dd), hhmm)| date_mmddhhmm(format!("{mm}{dd}{hhmm}").as_bytes()));
    let info = CallInfo {
        number,
        name,
        line: line.clone(),
        box_time,
    };
    let signal = if outgoing {
        Signal::Outgoing(info)
    } else {
        Signal::Info(info)
    };
    out(vec![signal], false)
}

/// Columns the number is padded to.
const NUMBER_COLUMNS: usize = 14;

/// The number and name after the time. Units pad the number to 14
/// columns; some examples (PROTOCOLS.md §2's) leave one space before the
/// name, so a name that starts inside the 14 columns is split off at the
/// first space, unless the columns hold a withheld word (`OUT OF AREA`).
fn number_and_name(after: &str) -> (&str, &str) {
    let split = after
        .char_indices()
        .nth(NUMBER_COLUMNS)
        .map_or(after.len(), |(i, _)| i);
    // Withheld words with spaces in them, whatever follows.
    for w in ["OUT OF AREA", "NO NUMBER"] {
        if after
            .get(..w.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(w))
        {
            return after.split_at(w.len());
        }
    }
    let (fixed, rest) = after.split_at(split);
    match fixed.trim_end().find(' ') {
        Some(i) if withheld(fixed).is_none() => after.split_at(i),
        _ => (fixed, rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram as a unit sends it: binary unit and serial numbers first.
    fn datagram(record: &str) -> Vec<u8> {
        let mut d = b"^^<U>".to_vec();
        d.extend_from_slice(&[0x00, 0x01, 0x0D, 0x0A, 0xFF, 0x24]);
        d.extend_from_slice(b"<S>");
        d.extend_from_slice(&[0x10, 0x20, 0x5E, 0x5E, 0x00, 0x7F]);
        d.extend_from_slice(record.as_bytes());
        d
    }

    fn info(d: &Decoded) -> &CallInfo {
        match d.signals.as_slice() {
            [Signal::Info(i)] => i,
            other => panic!("not one Info: {other:?}"),
        }
    }

    #[test]
    fn a_call_record_gives_number_name_line_and_time() {
        let d = decode(&datagram(
            "$01 I S 0276 G A1 09/26 11:28 PM 800-240-4637  CallerID.com   ",
        ));
        assert_eq!(d.problem, None);
        let i = info(&d);
        assert_eq!(i.number, "8002404637");
        assert_eq!(i.name.as_deref(), Some("CallerID.com"));
        assert_eq!(i.line.as_deref(), Some("1"));
        assert_eq!(i.box_time.as_deref(), Some("09-26 23:28"));
        // Without the `$`, and with the name's padding trimmed by the sender.
        let d = decode(&datagram(
            "04 I S 0000 G A2 01/02 12:05 AM 13812345678   王芳",
        ));
        let i = info(&d);
        assert_eq!(i.number, "13812345678");
        assert_eq!(i.name.as_deref(), Some("王芳"));
        assert_eq!(i.line.as_deref(), Some("4"));
        assert_eq!(i.box_time.as_deref(), Some("01-02 00:05"));
    }

    /// The sample in PROTOCOLS.md §2 has one space between number and name.
    #[test]
    fn the_documented_sample_splits_number_and_name() {
        let d = decode(&datagram(
            "01 I S 0276 G B3 09/26 11:28 AM 800-240-4637 CallerID.com",
        ));
        let i = info(&d);
        assert_eq!(i.number, "8002404637");
        assert_eq!(i.name.as_deref(), Some("CallerID.com"));
        assert_eq!(d.line.as_deref(), Some("1"));
        assert!(!d.detail);
        let d = decode(&datagram("02 R             09/26 11:28:03"));
        assert_eq!((d.line.as_deref(), d.detail), (Some("2"), true));
    }

    #[test]
    fn withheld_numbers_and_names_are_reported_as_such() {
        let d = decode(&datagram(
            "01 I S 0000 G A1 09/26 11:28 AM PRIVATE       PRIVATE        ",
        ));
        let i = info(&d);
        assert_eq!(i.number, super::super::PRIVATE);
        assert_eq!(i.name, None);
        let d = decode(&datagram(
            "01 I S 0000 G A1 09/26 11:28 AM O             O              ",
        ));
        assert_eq!(info(&d).number, super::super::UNAVAILABLE);
        for r in [
            "01 I S 0000 G A1 09/26 11:28 AM OUT OF AREA   OUT OF AREA    ",
            "01 I S 0000 G A1 09/26 11:28 AM OUT OF AREA OUT OF AREA",
        ] {
            let d = decode(&datagram(r));
            assert_eq!(info(&d).number, super::super::UNAVAILABLE, "{r}");
            assert_eq!(info(&d).name, None, "{r}");
        }
        // Nothing in the number columns at all.
        let d = decode(&datagram("01 I S 0000 G A1 09/26 11:28 AM"));
        assert_eq!(info(&d).number, super::super::UNAVAILABLE);
    }

    #[test]
    fn detail_end_and_outgoing_records() {
        let s = |r: &str| decode(&datagram(r)).signals;
        assert_eq!(s("01 R             09/26 11:28:03"), vec![Signal::Ring]);
        assert_eq!(s("01 F             09/26 11:28:09"), vec![Signal::Answered]);
        assert_eq!(s("01 N             09/26 11:29:40"), vec![]);
        assert_eq!(
            s("01 I E 0276 G A1 09/26 11:28 AM 800-240-4637  CallerID.com"),
            vec![Signal::Ended { answered: None }]
        );
        assert_eq!(
            s("03 O S 0000 G A0 09/26 11:28 AM 800-240-4637"),
            vec![Signal::Outgoing(CallInfo {
                number: "8002404637".into(),
                name: None,
                line: Some("3".into()),
                box_time: Some("09-26 11:28".into()),
            })]
        );
        assert_eq!(s("01 O E 0035 G A0 09/26 11:28 AM 800-240-4637"), vec![]);
    }

    #[test]
    fn a_bad_checksum_rings_without_a_number() {
        let d = decode(&datagram(
            "01 I S 0000 B A1 09/26 11:28 AM 800-240-4637  CallerID.com",
        ));
        assert_eq!(d.signals, vec![Signal::Ring]);
        assert!(d.problem.is_some());
    }

    #[test]
    fn garbage_is_reported_without_its_content() {
        for g in [
            &b""[..],
            b"^^<U>",
            b"^^<U>123456<S>12",
            b"hello world",
            b"1 I S 0000 G A1",
            b"01 X",
            b"01 I S 00x0 G A1 09/26 11:28 AM 1",
            b"01 I Q 0000 G A1 09/26 11:28 AM 1",
            b"01 I S 0000 Z A1 09/26 11:28 AM 1",
            b"01 I S 0000 G",
            &[0xFF; 600],
        ] {
            let d = decode(g);
            assert!(d.signals.is_empty(), "{g:?}: {d:?}");
            let p = d.problem.unwrap_or_default();
            assert!(p.contains("dropped"), "{g:?}: {p}");
            assert!(!p.contains("hello"), "{p}");
        }
        // A time that is not one still gives the number, without box time.
        let d = decode(b"01 I S 0000 G A1 13/40 99:99 XM 5551234");
        assert_eq!(info(&d).box_time, None);
    }
}
