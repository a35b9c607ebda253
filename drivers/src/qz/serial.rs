//! How a `serial.openPort` page wants a passthrough device's bytes cut into
//! `SERIAL` stream events, as QZ Tray cuts them: as they come; by line; from
//! a start sequence to an end sequence or for a width; or in widths.

use super::Encoding;
use serde_json::Value;

/// Bytes kept while waiting for a frame to complete; older ones are dropped.
pub const MAX_PENDING: usize = 64 * 1024;

/// One port's framing, from `openPort`'s options.
#[derive(Debug)]
pub struct Framer {
    cut: Cut,
    encoding: Encoding,
    pending: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum Cut {
    /// Each read as it came.
    Raw,
    /// Lines: CRLF, CR or LF ends one; empty lines are dropped.
    Lines,
    /// From `start` to `end` (or `width` bytes after it, or the read's end).
    Bounded {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        width: Option<usize>,
    },
    /// Every `width` bytes.
    Width(usize),
}

impl Framer {
    /// The framing `openPort`'s `options` ask for: none → raw; options
    /// without `rx` → QZ's legacy framing (STX … CR); `rx: {}` → raw.
    pub fn new(options: &Value) -> Result<Framer, String> {
        let (rx, legacy) = match options {
            Value::Null => (&Value::Null, false),
            Value::Object(o) => match o.get("rx") {
                None | Some(Value::Null) => (options, true),
                Some(rx @ Value::Object(_)) => (rx, false),
                Some(other) => return Err(format!("options.rx: {other} is not an object")),
            },
            other => return Err(format!("options: {other} is not an object")),
        };
        for key in ["lengthBytes", "crcBytes"] {
            if rx.get(key).is_some_and(|v| !v.is_null()) {
                return Err(format!("options.rx.{key} is not supported by posbridge; use start/end, width or untilNewline"));
            }
        }
        // QZ Tray reads ports as UTF-8 unless told otherwise.
        let encoding = match rx.get("encoding").or_else(|| options.get("encoding")) {
            Some(Value::String(name)) => Encoding::named(name)
                .ok_or_else(|| format!("options.rx.encoding: {name:?} is not supported"))?,
            _ => Encoding::Utf8,
        };
        let bytes = |k: &str| -> Result<Option<Vec<u8>>, String> {
            match rx.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(sequence(s))),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| {
                        p.as_str()
                            .map(sequence)
                            .ok_or(format!("options.rx.{k}: {p} is not text"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|v| Some(v.concat())),
                Some(other) => Err(format!("options.rx.{k}: {other} is not text")),
            }
        };
        let width = match rx.get("width") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|w| (1..=MAX_PENDING as u64).contains(w))
                    .ok_or(format!(
                        "options.rx.width: {v} is not a width from 1 to {MAX_PENDING}"
                    ))? as usize,
            ),
        };
        let mut start = bytes("start")?;
        let mut end = bytes("end")?;
        if legacy {
            start = start.or(Some(vec![0x02]));
            if width.is_none() {
                end = end.or(Some(vec![0x0d]));
            }
        }
        let lines = rx.get("untilNewline").and_then(Value::as_bool) == Some(true);
        let cut = match (lines, start.filter(|s| !s.is_empty()), width) {
            (true, _, _) => Cut::Lines,
            (false, Some(start), width) => Cut::Bounded {
                start,
                end: end.filter(|e| !e.is_empty()),
                width,
            },
            (false, None, Some(w)) => Cut::Width(w),
            (false, None, None) => Cut::Raw,
        };
        Ok(Framer {
            cut,
            encoding,
            pending: Vec::new(),
        })
    }

    /// Takes bytes the port sent; returns the outputs they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        if self.cut == Cut::Raw {
            return vec![self.decode(bytes)];
        }
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(frame) = self.next_frame() {
            out.push(frame);
        }
        if self.pending.len() > MAX_PENDING {
            let drop = self.pending.len() - MAX_PENDING;
            self.pending.drain(..drop);
        }
        out
    }

    /// Cuts the next complete frame from `pending`, if there is one.
    fn next_frame(&mut self) -> Option<String> {
        let p = &self.pending;
        let (take, skip_after) = match &self.cut {
            Cut::Raw => return None,
            Cut::Lines => {
                // Empty lines are skipped in one pass (a loop, not recursion:
                // a device may send thousands of bare newlines).
                let mut start = 0;
                let line = loop {
                    let i = start + p[start..].iter().position(|b| *b == b'\r' || *b == b'\n')?;
                    let crlf = p[i] == b'\r' && p.get(i + 1) == Some(&b'\n');
                    // A CR ends the line at once; an LF after it in a later read
                    // is an empty line, and dropped.
                    let next = i + if crlf { 2 } else { 1 };
                    if i > start {
                        break (start..i, next);
                    }
                    start = next;
                };
                let frame = p[line.0].to_vec();
                self.pending.drain(..line.1);
                return Some(self.decode(&frame));
            }
            Cut::Width(w) => (p.len() >= *w).then_some((0..*w, *w))?,
            Cut::Bounded { start, end, width } => {
                let s = find(p, start)?;
                let body = s + start.len();
                match (end, width) {
                    (Some(e), _) => {
                        let at = body + find(&p[body..], e)?;
                        (body..at, at + e.len())
                    }
                    (None, Some(w)) => {
                        (p.len() >= body + w).then_some((body..body + w, body + w))?
                    }
                    (None, None) => (body..p.len(), p.len()),
                }
            }
        };
        let frame = self.pending[take].to_vec();
        self.pending.drain(..skip_after);
        Some(self.decode(&frame))
    }

    fn decode(&self, bytes: &[u8]) -> String {
        match self.encoding {
            Encoding::Gb18030 => encoding_rs::GB18030
                .decode_without_bom_handling(bytes)
                .0
                .into_owned(),
            Encoding::Gbk => encoding_rs::GBK
                .decode_without_bom_handling(bytes)
                .0
                .into_owned(),
            Encoding::Utf8 | Encoding::Ascii => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A start or end sequence as pages write it: `"\x02"` as text, or QZ's
/// `"0x02"` spelling of one character.
fn sequence(s: &str) -> Vec<u8> {
    one_char(s).unwrap_or_else(|| s.as_bytes().to_vec())
}

/// QZ Tray reads `"0x1B"` as the one character it names.
pub fn one_char(s: &str) -> Option<Vec<u8>> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if hex.is_empty() || hex.len() > 4 {
        return None;
    }
    let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
    Some(c.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cut(options: Value, reads: &[&[u8]]) -> Vec<String> {
        let mut f = Framer::new(&options).expect("framer");
        reads.iter().flat_map(|r| f.push(r)).collect()
    }

    #[test]
    fn no_options_and_empty_rx_pass_reads_through() {
        assert_eq!(cut(Value::Null, &[b"ab", b"c\r\n"]), ["ab", "c\r\n"]);
        assert_eq!(cut(json!({"rx": {}}), &[b"ab"]), ["ab"]);
    }

    #[test]
    fn lines_end_at_crlf_cr_or_lf_and_empty_ones_are_dropped() {
        let got = cut(
            json!({"rx": {"untilNewline": true}}),
            &[b"ST,GS,+1.2", b"34kg\r", b"\nUS,2\n\n3\r"],
        );
        assert_eq!(got, ["ST,GS,+1.234kg", "US,2", "3"]);
    }

    #[test]
    fn start_to_end_width_and_legacy_framing() {
        let o = json!({"rx": {"start": "0x02", "end": "0x0D"}});
        assert_eq!(cut(o, &[b"junk\x02 12.5\r\x02", b"7\r"]), [" 12.5", "7"]);
        let o = json!({"rx": {"start": ["0x02", "W"], "width": 3}});
        assert_eq!(cut(o, &[b"\x02W12", b"3\x02W4"]), ["123"]);
        assert_eq!(
            cut(json!({"rx": {"width": 2}}), &[b"abc", b"d"]),
            ["ab", "cd"]
        );
        // Options without rx: QZ's legacy STX … CR.
        assert_eq!(cut(json!({"baudRate": 9600}), &[b"x\x02ok\r"]), ["ok"]);
    }

    #[test]
    fn what_posbridge_does_not_do_is_an_error_naming_it() {
        let e = Framer::new(&json!({"rx": {"lengthBytes": 1}})).unwrap_err();
        assert!(e.contains("rx.lengthBytes"), "{e}");
        assert!(Framer::new(&json!({"rx": {"width": 0}})).is_err());
        assert!(Framer::new(&json!("fast")).is_err());
    }

    #[test]
    fn thousands_of_empty_lines_cost_one_pass() {
        let mut f = Framer::new(&json!({"rx": {"untilNewline": true}})).expect("framer");
        let mut input = vec![b'\n'; 60_000];
        input.extend_from_slice(b"ok\r\n");
        assert_eq!(f.push(&input), ["ok"]);
    }

    #[test]
    fn pending_bytes_are_bounded() {
        let mut f = Framer::new(&json!({"rx": {"untilNewline": true}})).expect("framer");
        for _ in 0..100 {
            assert!(f.push(&[b'a'; 4096]).is_empty());
        }
        assert!(f.pending.len() <= MAX_PENDING);
        assert_eq!(f.push(b"\n").first().map(String::len), Some(MAX_PENDING));
    }
}
