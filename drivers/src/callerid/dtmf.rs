//! DTMF caller ID, as boxes forward the detected digits (`0-9 A-D * #`).
//!
//! Exchanges use one of several variants (which one Chinese exchanges use is
//! unconfirmed, so all are accepted):
//! - `A<number>D<redirect>B<special>C`, where `B00` means unavailable and
//!   `B10` restricted (private) — each part optional;
//! - `A<number>#`, with `D1#` private, `D2#` international (no number
//!   delivered), `D3#` unavailable in place of the number;
//! - `D<number>C`;
//! - `<number>#`.

use super::{CallInfo, PRIVATE, UNAVAILABLE};

/// Longest DTMF string accepted; numbers are at most ~20 digits.
pub const MAX_LEN: usize = 48;

/// Whether `b` is a DTMF symbol.
pub fn is_dtmf(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'A'..=b'D' | b'*' | b'#')
}

/// Whether `buf` (all DTMF symbols so far) is a whole caller-ID string.
///
/// `strict` (format auto, where the same stream may carry modem or NCID
/// text) ends a string at `C` only when it began with `A`, `B` or `D`, so
/// text like `CID:` or hex digits never looks like DTMF; with `strict` off
/// (format `dtmf`) `C` and `#` end any string.
pub fn is_complete(buf: &[u8], strict: bool) -> bool {
    let (first, last) = match (buf.first(), buf.last()) {
        (Some(f), Some(l)) if buf.len() >= 2 => (*f, *l),
        _ => return false,
    };
    // A digit is required, so `##` (NetCallerID's `###` start) is no string.
    if !buf.iter().all(|b| is_dtmf(*b)) || !buf.iter().any(u8::is_ascii_digit) {
        return false;
    }
    match last {
        b'#' => true,
        b'C' => !strict || matches!(first, b'A' | b'B' | b'D'),
        _ => false,
    }
}

/// Why a DTMF string was not caller ID. Carries its length only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DtmfError(pub usize);

impl std::fmt::Display for DtmfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-symbol DTMF string is no caller-ID variant", self.0)
    }
}

/// Splits `s` into (marker, run) parts: `A123D45B00` → `[(A,"123"),(D,"45"),(B,"00")]`;
/// a leading run without a marker gets marker `0`.
fn parts(s: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut marker = b'0';
    for (i, b) in s.iter().enumerate() {
        if matches!(b, b'A' | b'B' | b'C' | b'D' | b'#') {
            if i > start || marker != b'0' {
                out.push((marker, s.get(start..i).unwrap_or_default()));
            }
            marker = *b;
            start = i + 1;
        }
    }
    if start < s.len() || marker != b'0' {
        out.push((marker, s.get(start..).unwrap_or_default()));
    }
    out
}

fn digits(run: &[u8]) -> bool {
    !run.is_empty() && run.iter().all(|b| b.is_ascii_digit() || *b == b'*')
}

/// Reads one DTMF caller-ID string (terminator included or not).
pub fn parse(s: &[u8]) -> Result<CallInfo, DtmfError> {
    let err = DtmfError(s.len());
    if s.len() > MAX_LEN || !s.iter().all(|b| is_dtmf(*b)) {
        return Err(err);
    }
    let body = match s.last() {
        Some(b'C' | b'#') => s.get(..s.len() - 1).unwrap_or_default(),
        _ => s,
    };
    let number = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
    let p = parts(body);
    let found = match p.as_slice() {
        // <number>#
        [(b'0', n)] if digits(n) => number(n),
        // D1# / D2# / D3#, alone or after an empty A.
        [(b'D', code)] | [(b'A', []), (b'D', code)] if code.len() == 1 => match code {
            [b'1'] => PRIVATE.to_string(),
            [b'2' | b'3'] => UNAVAILABLE.to_string(),
            _ => return Err(err),
        },
        // D<number>C
        [(b'D', n)] if digits(n) => number(n),
        // A<number>[D<redirect>][B<special>]
        [(b'A', n), rest @ ..] => {
            let special = rest.iter().find(|(m, _)| *m == b'B').map(|(_, v)| *v);
            if rest
                .iter()
                .any(|(m, v)| !matches!(m, b'B' | b'D') || !v.iter().all(u8::is_ascii_digit))
            {
                return Err(err);
            }
            if digits(n) {
                number(n)
            } else {
                match special {
                    Some(b"10") => PRIVATE.to_string(),
                    Some(b"00") | None if n.is_empty() => UNAVAILABLE.to_string(),
                    Some(_) => UNAVAILABLE.to_string(),
                    _ => return Err(err),
                }
            }
        }
        // B<special>C without a number.
        [(b'B', code)] => match *code {
            b"10" => PRIVATE.to_string(),
            b"00" => UNAVAILABLE.to_string(),
            _ => return Err(err),
        },
        _ => return Err(err),
    };
    Ok(CallInfo {
        number: found,
        ..CallInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Result<String, DtmfError> {
        parse(s.as_bytes()).map(|c| c.number)
    }

    #[test]
    fn every_variant() {
        let ok: &[(&str, &str)] = &[
            ("A13812345678C", "13812345678"),
            ("A075512345678D13912345678C", "075512345678"),
            ("A4075550000D4075551111B10C", "4075550000"),
            ("AB00C", "unavailable"),
            ("AB10C", "private"),
            ("B10C", "private"),
            ("B00C", "unavailable"),
            ("A13812345678#", "13812345678"),
            ("D1#", "private"),
            ("D2#", "unavailable"),
            ("D3#", "unavailable"),
            ("AD1#", "private"),
            ("D13812345678C", "13812345678"),
            ("13812345678#", "13812345678"),
            ("A13812345678", "13812345678"),
        ];
        for (s, want) in ok {
            assert_eq!(num(s).as_deref(), Ok(*want), "{s}");
        }
        for bad in ["", "#", "C", "D9#", "A12X4C", "B77C", "A12CC3", "AC#"] {
            assert!(num(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn completeness() {
        assert!(is_complete(b"A123C", true));
        assert!(is_complete(b"123#", true));
        assert!(is_complete(b"D1#", true));
        assert!(!is_complete(b"A123", true));
        assert!(!is_complete(b"123C", true));
        assert!(is_complete(b"123C", false));
        assert!(!is_complete(b"C", false));
        assert!(!is_complete(b"CID", true));
        assert!(!is_complete(b"##", true));
    }
}
