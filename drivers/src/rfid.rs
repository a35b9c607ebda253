//! 125 kHz EM4100 readers that type (keyboard wedge) or send (serial) one
//! card number per line.
//!
//! An EM4100 tag holds a 40-bit id: a version/customer byte and 32 bits.
//! Cards are printed with the low 32 bits as 10 decimal digits, often with
//! the low 24 bits as `WWW,NNNNN` (facility byte, 16-bit number — the
//! Wiegand-26 view) beside them. Readers output one of:
//! - `0012345678`: the low 32 bits, 10 decimal digits;
//! - `00BC614E`: the low 32 bits, 8 hex digits;
//! - `0A00BC614E`: all 40 bits, 10 hex digits;
//! - `188,24910`: the low 24 bits as facility,number.

use crate::line::{LineFramer, LineProtocol};
use crate::{Action, CardType, Event};

/// Longest line accepted; card numbers are at most 10 characters, the rest
/// is slack for readers that add a prefix or spaces.
pub const MAX_LINE_LEN: usize = 64;

/// Which output format the reader is set to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RfidFormat {
    /// Decide per line (see [`parse_card`] for the rule).
    #[default]
    Auto,
    /// Up to 10 decimal digits: the low 32 bits.
    Decimal10,
    /// 8 hex digits: the low 32 bits.
    Hex8,
    /// 10 hex digits: the whole 40-bit id.
    Hex10,
    /// `WWW,NNNNN`: facility byte and 16-bit number (the low 24 bits).
    Wiegand26,
}

crate::config_names!(RfidFormat {
    "auto" => RfidFormat::Auto,
    "decimal10" => RfidFormat::Decimal10,
    "hex8" => RfidFormat::Hex8,
    "hex10" => RfidFormat::Hex10,
    "wiegand26" => RfidFormat::Wiegand26,
});

/// Settings an RFID wedge reader takes from its config.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub format: RfidFormat,
    /// Emit an unterminated number after this much silence (readers set up
    /// without Enter). `None` waits for a terminator forever.
    pub idle_flush_ms: Option<u64>,
}

/// How much of the tag's id a line gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardId {
    /// The whole 40-bit id.
    Full40(u64),
    /// The low 32 bits.
    Low32(u32),
    /// The low 24 bits (facility,number).
    Low24(u32),
}

impl CardId {
    /// Upper-case hex of the bits known: 10 digits for 40 bits, 8 for 32, 6 for 24.
    pub fn uid(&self) -> String {
        match *self {
            CardId::Full40(id) => format!("{id:010X}"),
            CardId::Low32(id) => format!("{id:08X}"),
            CardId::Low24(id) => format!("{id:06X}"),
        }
    }

    /// The number printed on the card: the low 32 bits as 10 decimal digits.
    /// `None` for a facility,number read, whose top 8 of those bits are unknown
    /// (guessing them as 0 would name another card).
    pub fn decimal(&self) -> Option<String> {
        match *self {
            CardId::Full40(id) => Some(format!("{:010}", id & 0xFFFF_FFFF)),
            CardId::Low32(id) => Some(format!("{id:010}")),
            CardId::Low24(_) => None,
        }
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn all_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Up to 10 decimal digits that fit 32 bits.
fn parse_decimal32(s: &str) -> Option<u32> {
    if !all_digits(s) || s.len() > 10 {
        return None;
    }
    s.parse::<u32>().ok()
}

/// Exactly `len` hex digits.
fn parse_hex(s: &str, len: usize) -> Option<u64> {
    if s.len() != len || !all_hex(s) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// `WWW,NNNNN`: facility 0–255, number 0–65535, without padding required.
fn parse_wiegand26(s: &str) -> Option<u32> {
    let (facility, number) = s.split_once(',')?;
    let (facility, number) = (facility.trim(), number.trim());
    if !all_digits(facility) || facility.len() > 3 || !all_digits(number) || number.len() > 5 {
        return None;
    }
    let facility: u8 = facility.parse().ok()?;
    let number: u16 = number.parse().ok()?;
    Some(u32::from(facility) << 16 | u32::from(number))
}

/// Reads a card number from one line (surrounding spaces and control
/// characters ignored).
///
/// `Auto` decides by shape: a comma → facility,number; 10 digits → decimal,
/// unless the value exceeds 4294967295, when it can only be 10 hex digits;
/// 8 hex digits → hex8; 10 hex digits with a letter → hex10. A hex10 id
/// whose digits are all 0–9 and small enough reads as decimal: readers that
/// send hex10 should be configured `Hex10`.
pub fn parse_card(line: &str, format: RfidFormat) -> Option<CardId> {
    let s = line.trim_matches(|c: char| c.is_control() || c == ' ');
    match format {
        RfidFormat::Auto => {
            if s.contains(',') {
                parse_wiegand26(s).map(CardId::Low24)
            } else if s.len() == 10 && all_digits(s) {
                parse_decimal32(s)
                    .map(CardId::Low32)
                    .or_else(|| parse_hex(s, 10).map(CardId::Full40))
            } else if s.len() == 8 {
                parse_hex(s, 8).map(|id| CardId::Low32(id as u32))
            } else {
                parse_hex(s, 10).map(CardId::Full40)
            }
        }
        RfidFormat::Decimal10 => parse_decimal32(s).map(CardId::Low32),
        // 8 hex digits always fit 32 bits.
        RfidFormat::Hex8 => parse_hex(s, 8).map(|id| CardId::Low32(id as u32)),
        RfidFormat::Hex10 => parse_hex(s, 10).map(CardId::Full40),
        RfidFormat::Wiegand26 => parse_wiegand26(s).map(CardId::Low24),
    }
}

/// The 8-hex-digit form of a card's printed decimal number
/// (`"0012345678"` → `"00BC614E"`). `None` unless 1–10 digits below 2³².
pub fn decimal_to_hex(decimal: &str) -> Option<String> {
    parse_decimal32(decimal.trim()).map(|id| CardId::Low32(id).uid())
}

/// The printed 10-digit decimal of an 8- or 10-hex-digit id (`"00BC614E"` or
/// `"0A00BC614E"` → `"0012345678"`; a 40-bit id's top byte is not printed).
pub fn hex_to_decimal(hex: &str) -> Option<String> {
    let hex = hex.trim();
    let id = parse_hex(hex, 8).or_else(|| parse_hex(hex, 10))?;
    CardId::Full40(id).decimal()
}

/// An EM4100 reader that outputs one card number per line.
#[derive(Debug)]
pub struct Rfid {
    framer: LineFramer,
    opts: Options,
}

impl Rfid {
    pub fn new(opts: Options) -> Self {
        Rfid {
            framer: LineFramer::new(MAX_LINE_LEN, true),
            opts,
        }
    }

    fn emit(&self, raw: &[u8], out: &mut Vec<Action>) {
        let id = std::str::from_utf8(raw)
            .ok()
            .and_then(|line| parse_card(line, self.opts.format));
        match id {
            Some(id) => out.push(Action::Emit(Event::CardTapped {
                uid: id.uid(),
                atr: String::new(),
                card_type: CardType::Em4100,
                // The daemon fills in the device id.
                reader: String::new(),
                decimal: id.decimal(),
                blocks: None,
                read_error: None,
            })),
            None => out.push(Action::Malformed(format!(
                "RFID reader sent a {}-byte line that is not a card number in {:?} format; dropped",
                raw.len(),
                self.opts.format
            ))),
        }
    }
}

impl LineProtocol for Rfid {
    const WHAT: &'static str = "RFID line";

    fn framer(&mut self) -> &mut LineFramer {
        &mut self.framer
    }

    fn idle_flush_ms(&self) -> Option<u64> {
        self.opts.idle_flush_ms
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<Action>) {
        self.emit(raw, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Instant, Protocol};

    fn tapped(uid: &str, decimal: Option<&str>) -> Action {
        Action::Emit(Event::CardTapped {
            uid: uid.into(),
            atr: String::new(),
            card_type: CardType::Em4100,
            reader: String::new(),
            decimal: decimal.map(Into::into),
            blocks: None,
            read_error: None,
        })
    }

    fn run(format: RfidFormat, input: &[u8]) -> Vec<Action> {
        let mut p = Rfid::new(Options {
            format,
            ..Options::default()
        });
        let mut out = Vec::new();
        p.handle_bytes(Instant(0), input, &mut out);
        out
    }

    #[test]
    fn printed_forms_convert_both_ways() {
        let pairs = [
            ("0012345678", "00BC614E"),
            ("0000000000", "00000000"),
            ("4294967295", "FFFFFFFF"),
            ("0305441741", "1234ABCD"),
            ("0003735928", "00390178"),
        ];
        for (dec, hex) in pairs {
            assert_eq!(decimal_to_hex(dec).as_deref(), Some(hex), "{dec}");
            assert_eq!(hex_to_decimal(hex).as_deref(), Some(dec), "{hex}");
        }
        assert_eq!(hex_to_decimal("0a00bc614e").as_deref(), Some("0012345678"));
        assert_eq!(decimal_to_hex("12345678").as_deref(), Some("00BC614E"));
        assert_eq!(decimal_to_hex("4294967296"), None);
        assert_eq!(decimal_to_hex("12345678901"), None);
        assert_eq!(decimal_to_hex("+12345"), None);
        assert_eq!(hex_to_decimal("BC614E"), None);
        assert_eq!(hex_to_decimal("00BC614G"), None);
    }

    #[test]
    fn auto_reads_every_format() {
        let out = run(
            RfidFormat::Auto,
            b"0012345678\r00bc614e\n0A00BC614E\r\n188,24910\t 0012345678 \r",
        );
        assert_eq!(
            out,
            vec![
                tapped("00BC614E", Some("0012345678")),
                tapped("00BC614E", Some("0012345678")),
                tapped("0A00BC614E", Some("0012345678")),
                tapped("BC614E", None),
                tapped("00BC614E", Some("0012345678")),
            ]
        );
    }

    #[test]
    fn auto_takes_ten_digits_over_32_bits_as_hex() {
        let out = run(RfidFormat::Auto, b"5000000000\r");
        assert_eq!(out, vec![tapped("5000000000", Some("0000000000"))]);
        let out = run(RfidFormat::Auto, b"9912345678\r");
        assert_eq!(out, vec![tapped("9912345678", Some("0305419896"))]);
    }

    #[test]
    fn fixed_formats_accept_only_their_shape() {
        assert_eq!(
            run(RfidFormat::Decimal10, b"12345678\r"),
            vec![tapped("00BC614E", Some("0012345678"))]
        );
        assert_eq!(
            run(RfidFormat::Hex8, b"00BC614E\r"),
            vec![tapped("00BC614E", Some("0012345678"))]
        );
        // All digits, but the reader says hex10: no guessing.
        assert_eq!(
            run(RfidFormat::Hex10, b"0012345678\r"),
            vec![tapped("0012345678", Some("0305419896"))]
        );
        assert_eq!(
            run(RfidFormat::Wiegand26, b"001,00001\r"),
            vec![tapped("010001", None)]
        );
        for (format, line) in [
            (RfidFormat::Decimal10, &b"00BC614E\r"[..]),
            (RfidFormat::Hex8, b"0A00BC614E\r"),
            (RfidFormat::Hex10, b"00BC614E\r"),
            (RfidFormat::Wiegand26, b"0012345678\r"),
        ] {
            assert!(
                matches!(&run(format, line)[..], [Action::Malformed(_)]),
                "{format:?}"
            );
        }
    }

    #[test]
    fn bad_lines_are_malformed_without_their_text() {
        let bad: [&[u8]; 7] = [
            b"123456789\r",
            b"00BC614E0\r",
            b"256,00001\r",
            b"1,65536\r",
            b"12,34,56\r",
            b"SECRETXX9\r",
            b"\xff\xfe00BC614E\r",
        ];
        for line in bad {
            let out = run(RfidFormat::Auto, line);
            assert!(
                matches!(&out[..], [Action::Malformed(m)] if !m.contains("SECRET") && !m.contains("123")),
                "{out:?}"
            );
        }
        let long = [b'1'; 100];
        assert!(matches!(
            &run(RfidFormat::Auto, &long)[..],
            [Action::Malformed(_)]
        ));
    }

    #[test]
    fn enterless_reader_is_flushed_by_the_timer() {
        let mut p = Rfid::new(Options {
            idle_flush_ms: Some(80),
            ..Options::default()
        });
        let mut out = Vec::new();
        p.handle_bytes(Instant(10), b"00123", &mut out);
        p.handle_bytes(Instant(20), b"45678", &mut out);
        assert_eq!(
            out,
            vec![
                Action::SetTimer(Instant(90)),
                Action::SetTimer(Instant(100))
            ]
        );
        out.clear();
        p.handle_timer(Instant(100), &mut out);
        assert_eq!(out, vec![tapped("00BC614E", Some("0012345678"))]);
    }

    #[test]
    fn no_panic_on_arbitrary_bytes() {
        // A small deterministic generator stands in for the fuzzer in unit tests.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        const ALPHABET: &[u8] = b"0123456789abcdefABCDEF, \r\n\t\xff";
        let formats = [
            RfidFormat::Auto,
            RfidFormat::Decimal10,
            RfidFormat::Hex8,
            RfidFormat::Hex10,
            RfidFormat::Wiegand26,
        ];
        for format in formats {
            let mut p = Rfid::new(Options {
                format,
                idle_flush_ms: Some(5),
            });
            let mut out = Vec::new();
            for i in 0..2000u64 {
                let len = (x % 23) as usize;
                let chunk: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Mostly card-number characters, so every parser path is reached.
                        let i = (x >> 8) as usize % (ALPHABET.len() + 4);
                        ALPHABET.get(i).copied().unwrap_or(x as u8)
                    })
                    .collect();
                p.handle_bytes(Instant(i), &chunk, &mut out);
                if i % 7 == 0 {
                    p.handle_timer(Instant(i), &mut out);
                }
                for a in out.drain(..) {
                    if let Action::Emit(Event::CardTapped { uid, decimal, .. }) = a {
                        assert!(matches!(uid.len(), 6 | 8 | 10));
                        assert!(uid
                            .bytes()
                            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
                        assert!(decimal.is_none_or(|d| d.len() == 10 && all_digits(&d)));
                    }
                }
            }
        }
    }
}
