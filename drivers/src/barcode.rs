//! Barcode / QR scanners that send one code per line (USB CDC-ACM or RS-232
//! serial mode, and the `sim` transport).
//!
//! Codes are classified so a POS page can tell a customer's payment code from
//! a member code without its own regexes (PROTOCOLS.md §5).

use crate::line::{LineFramer, LineProtocol};
use crate::{Action, CodeKind, Event};
use regex::Regex;

/// Longest code accepted. QR codes top out near 7 KB of digits; scanners
/// configured for them rarely exceed 4 KB of text.
pub const MAX_CODE_LEN: usize = 8192;

/// Settings a barcode device takes from its config.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Texts matching this are `member`; others `other`. Without it, any text
    /// that is not a payment code or URL is `member`.
    pub member_pattern: Option<Regex>,
    /// Emit an unterminated code after this much silence (scanners set up
    /// without a suffix). `None` waits for a terminator forever.
    pub idle_flush_ms: Option<u64>,
    /// What ends a code.
    pub suffix: Suffix,
    /// Weighed-goods label layouts; a text one of them decodes is `weighed`.
    pub weighed: Vec<crate::weighed::Template>,
}

/// The suffix a scanner is configured to send after each code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Suffix {
    /// Any of CR, LF or Tab (the factory defaults of most scanners).
    #[default]
    Auto,
    Cr,
    Lf,
    /// CR LF; either byte ends the code, the empty line between is dropped.
    CrLf,
    Tab,
    /// No suffix: only the idle timeout ends a code.
    None,
}

crate::config_names!(Suffix {
    "auto" => Suffix::Auto,
    "cr" => Suffix::Cr,
    "lf" => Suffix::Lf,
    "crlf" => Suffix::CrLf,
    "tab" => Suffix::Tab,
    "none" => Suffix::None,
});

impl Suffix {
    fn terminators(self) -> &'static [u8] {
        match self {
            Suffix::Auto => b"\r\n\t",
            Suffix::Cr => b"\r",
            Suffix::Lf => b"\n",
            Suffix::CrLf => b"\r\n",
            Suffix::Tab => b"\t",
            Suffix::None => b"",
        }
    }
}

/// The line-per-code scanner protocol.
#[derive(Debug)]
pub struct Barcode {
    framer: LineFramer,
    opts: Options,
}

impl Barcode {
    pub fn new(opts: Options) -> Self {
        Barcode {
            framer: LineFramer::with_terminators(MAX_CODE_LEN, opts.suffix.terminators()),
            opts,
        }
    }

    fn emit(&self, raw: &[u8], out: &mut Vec<Action>) {
        let Some((symbology, text)) = code_text(raw, "scanner", out) else {
            return;
        };
        out.push(Action::Emit(scanned(
            text,
            symbology,
            self.opts.member_pattern.as_ref(),
            &self.opts.weighed,
        )));
    }
}

impl LineProtocol for Barcode {
    const WHAT: &'static str = "code";

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

/// A scanner's bytes as the code they hold, for every kind of scanner:
/// invalid UTF-8 replaced (and reported as malformed, naming `who`); the
/// STX/ETX, padding and suffix controls around it trimmed, since they are not
/// part of the code; an AIM symbology identifier split off. `None` when
/// nothing is left.
pub(crate) fn code_text(
    raw: &[u8],
    who: &str,
    out: &mut Vec<Action>,
) -> Option<(Option<String>, String)> {
    let text = String::from_utf8_lossy(raw);
    if std::str::from_utf8(raw).is_err() {
        out.push(Action::Malformed(format!(
            "{who} sent {} bytes that are not UTF-8; replaced invalid bytes",
            raw.len()
        )));
    }
    let text = text.trim_matches(|c: char| c.is_control() || c == ' ');
    let (aim, text) = split_aim(text);
    (!text.is_empty()).then(|| (aim, text.to_owned()))
}

/// Splits an AIM symbology identifier (`]` letter modifier) off the front.
pub fn split_aim(text: &str) -> (Option<String>, &str) {
    let b = text.as_bytes();
    if b.len() >= 3 && b[0] == b']' && b[1].is_ascii_alphabetic() && b[2].is_ascii_alphanumeric() {
        let name = match b[1] {
            b'A' => "code39".to_owned(),
            b'C' => "code128".to_owned(),
            b'E' => "ean_upc".to_owned(),
            b'I' => "itf".to_owned(),
            b'L' => "pdf417".to_owned(),
            b'Q' => "qr".to_owned(),
            b'd' => "datamatrix".to_owned(),
            b'z' => "aztec".to_owned(),
            other => format!("aim_{}", other as char),
        };
        // The three bytes are ASCII, so slicing at 3 is on a char boundary.
        return (Some(name), &text[3..]);
    }
    (None, text)
}

/// The event for a scanned text: a label of one of the store's weighed-goods
/// layouts (with a right check digit) is `weighed`; any other text is
/// classified as [`classify`] says.
pub(crate) fn scanned(
    text: String,
    symbology: Option<String>,
    member_pattern: Option<&Regex>,
    weighed: &[crate::weighed::Template],
) -> Event {
    let weighed = crate::weighed::decode(weighed, &text);
    Event::CodeScanned {
        kind: match weighed {
            Some(_) => CodeKind::Weighed,
            None => classify(&text, member_pattern),
        },
        text,
        symbology,
        weighed,
    }
}

/// Classifies a scanned text (PROTOCOLS.md §5).
pub fn classify(text: &str, member_pattern: Option<&Regex>) -> CodeKind {
    let digits = !text.is_empty() && text.bytes().all(|c| c.is_ascii_digit());
    let b = text.as_bytes();
    if digits {
        let n = b.len();
        // WeChat Pay: ^1[0-5]\d{16}$
        if n == 18 && b[0] == b'1' && (b'0'..=b'5').contains(&b[1]) {
            return CodeKind::PaymentWechat;
        }
        // Alipay: ^(2[5-9]|30)\d{14,22}$
        let alipay_prefix = (b[0] == b'2'
            && (b'5'..=b'9').contains(&b.get(1).copied().unwrap_or(0)))
            || text.starts_with("30");
        if alipay_prefix && (16..=24).contains(&n) {
            return CodeKind::PaymentAlipay;
        }
        // UnionPay QuickPass: 19 digits starting 62
        if n == 19 && text.starts_with("62") {
            return CodeKind::PaymentUnionpay;
        }
    }
    let lower = text
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return CodeKind::Url;
    }
    match member_pattern {
        None => CodeKind::Member,
        Some(re) if re.is_match(text) => CodeKind::Member,
        Some(_) => CodeKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Instant, Protocol};

    fn run(p: &mut Barcode, chunks: &[&[u8]]) -> Vec<Action> {
        let mut out = Vec::new();
        for c in chunks {
            p.handle_bytes(Instant(0), c, &mut out);
        }
        out
    }

    fn scanned(text: &str, kind: CodeKind, symbology: Option<&str>) -> Action {
        Action::Emit(Event::CodeScanned {
            text: text.into(),
            kind,
            symbology: symbology.map(Into::into),
            weighed: None,
        })
    }

    #[test]
    fn templates_leave_payment_codes_and_misreads_alone() {
        let weighed = vec![crate::weighed::Template::parse("22PPPPPWWWWWC").expect("template")];
        let mut p = Barcode::new(Options {
            weighed,
            ..Options::default()
        });
        let out = run(
            &mut p,
            &[b"6212345678901234567
2201234012342
2201234012343
"],
        );
        let kinds: Vec<CodeKind> = out
            .iter()
            .filter_map(|a| match a {
                Action::Emit(Event::CodeScanned { kind, .. }) => Some(*kind),
                _ => None,
            })
            .collect();
        assert_eq!(
            kinds,
            [
                CodeKind::PaymentUnionpay,
                CodeKind::Weighed,
                CodeKind::Member
            ]
        );
    }

    #[test]
    fn payment_codes_are_told_apart_from_members() {
        assert_eq!(
            classify("134567890123456789", None),
            CodeKind::PaymentWechat
        );
        assert_eq!(classify("164567890123456789", None), CodeKind::Member);
        assert_eq!(
            classify("281234567890123456", None),
            CodeKind::PaymentAlipay
        );
        assert_eq!(
            classify("301234567890123456789012", None),
            CodeKind::PaymentAlipay
        );
        assert_eq!(
            classify("3012345678901234567890123", None),
            CodeKind::Member
        );
        assert_eq!(
            classify("6212345678901234567", None),
            CodeKind::PaymentUnionpay
        );
        assert_eq!(classify("HTTPS://pos.example.com/m/1", None), CodeKind::Url);
        assert_eq!(classify("M0001", None), CodeKind::Member);
        let re = Regex::new("^M\\d{4}$").ok();
        assert_eq!(classify("M0001", re.as_ref()), CodeKind::Member);
        assert_eq!(classify("X0001", re.as_ref()), CodeKind::Other);
    }

    #[test]
    fn lines_become_scans_with_aim_ids_stripped() {
        let mut p = Barcode::new(Options::default());
        let out = run(
            &mut p,
            &[b"]Q1https://a.b/c\r", b"\n6901234567892", b"\r\n"],
        );
        assert_eq!(
            out,
            vec![
                scanned("https://a.b/c", CodeKind::Url, Some("qr")),
                scanned("6901234567892", CodeKind::Member, None),
            ]
        );
    }

    #[test]
    fn suffixless_scanner_is_flushed_by_the_timer() {
        let mut p = Barcode::new(Options {
            idle_flush_ms: Some(100),
            ..Options::default()
        });
        let mut out = Vec::new();
        p.handle_bytes(Instant(1000), b"ABC", &mut out);
        assert_eq!(out, vec![Action::SetTimer(Instant(1100))]);
        out.clear();
        p.handle_timer(Instant(1100), &mut out);
        assert_eq!(out, vec![scanned("ABC", CodeKind::Member, None)]);
        out.clear();
        p.handle_timer(Instant(1200), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_configured_suffix_is_the_only_line_end() {
        let mut tab = Barcode::new(Options {
            suffix: Suffix::Tab,
            ..Options::default()
        });
        // A CR inside a Tab-terminated code is not an end (it is trimmed as a control char).
        let out = run(&mut tab, &[b"A\rB\tC\t"]);
        assert_eq!(
            out,
            vec![
                scanned("A\rB", CodeKind::Member, None),
                scanned("C", CodeKind::Member, None)
            ]
        );
        let mut none = Barcode::new(Options {
            suffix: Suffix::None,
            idle_flush_ms: Some(50),
            ..Options::default()
        });
        let mut out = Vec::new();
        none.handle_bytes(Instant(0), b"X1\r\n", &mut out);
        assert_eq!(out, vec![Action::SetTimer(Instant(50))]);
        out.clear();
        none.handle_timer(Instant(50), &mut out);
        assert_eq!(out, vec![scanned("X1", CodeKind::Member, None)]);
    }

    #[test]
    fn invalid_utf8_is_reported_not_fatal() {
        let mut p = Barcode::new(Options::default());
        let out = run(&mut p, &[b"\xff\xfeA1\n"]);
        assert!(matches!(out[0], Action::Malformed(_)));
        assert!(
            matches!(&out[1], Action::Emit(Event::CodeScanned { text, .. }) if text.ends_with("A1"))
        );
    }

    #[test]
    fn no_panic_on_arbitrary_bytes() {
        // A small deterministic generator stands in for the fuzzer in unit tests.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut p = Barcode::new(Options {
            idle_flush_ms: Some(5),
            ..Options::default()
        });
        let mut out = Vec::new();
        for i in 0..2000u64 {
            let len = (x % 97) as usize;
            let chunk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            p.handle_bytes(Instant(i), &chunk, &mut out);
            if i % 7 == 0 {
                p.handle_timer(Instant(i), &mut out);
            }
            out.clear();
        }
    }
}
