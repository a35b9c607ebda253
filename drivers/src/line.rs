//! Line framing for devices that end each read with CR, LF, CRLF or Tab
//! (serial scanners, keyboard-wedge style output, modem text), and the
//! [`LineProtocol`] that turns any "one line = one reading" decoder into a
//! [`Protocol`].

use crate::{Action, Instant, Protocol};

/// A decoder whose input is lines (scanners, wedge readers). Framing, the
/// report of an overlong line and the idle flush for devices sent without a
/// suffix are shared; each decoder only says what one line means.
pub trait LineProtocol: Send {
    /// Names the input in messages ("code", "RFID line").
    const WHAT: &'static str;
    fn framer(&mut self) -> &mut LineFramer;
    /// Silence after which an unterminated line counts; `None` waits forever.
    fn idle_flush_ms(&self) -> Option<u64>;
    /// One complete line, without its terminator.
    fn line(&mut self, raw: &[u8], out: &mut Vec<Action>);
}

impl<T: LineProtocol> Protocol for T {
    fn handle_open(&mut self, _now: Instant, _out: &mut Vec<Action>) {
        self.framer().reset();
    }

    fn handle_bytes(&mut self, now: Instant, bytes: &[u8], out: &mut Vec<Action>) {
        let mut lines = Vec::new();
        self.framer().push(bytes, &mut lines);
        for line in lines {
            match line {
                Line::Complete(raw) => self.line(&raw, out),
                Line::TooLong(n) => out.push(Action::Malformed(format!(
                    "{} longer than {n} bytes without a line end; dropped",
                    T::WHAT
                ))),
            }
        }
        if let (true, Some(ms)) = (self.framer().has_partial(), self.idle_flush_ms()) {
            out.push(Action::SetTimer(now.plus_ms(ms)));
        }
    }

    fn handle_timer(&mut self, _now: Instant, out: &mut Vec<Action>) {
        if let Some(raw) = self.framer().take_partial() {
            self.line(&raw, out);
        }
    }
}

/// Accumulates bytes and yields complete lines.
///
/// A line longer than `max_len` is dropped whole (up to its terminator), so a
/// device stuck sending garbage cannot grow memory without bound.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max_len: usize,
    overflowed: bool,
    terminators: Vec<u8>,
}

/// One framing result.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete, non-empty line without its terminator.
    Complete(Vec<u8>),
    /// A line exceeded the limit and was dropped; carries how long it was
    /// when dropping started.
    TooLong(usize),
}

impl LineFramer {
    /// Lines end at CR or LF, and at Tab when `tab_ends_line`.
    pub fn new(max_len: usize, tab_ends_line: bool) -> Self {
        let t: &[u8] = if tab_ends_line { b"\r\n\t" } else { b"\r\n" };
        Self::with_terminators(max_len, t)
    }

    /// Lines end at any of `terminators`; none means only
    /// [`take_partial`](Self::take_partial) ends a line (an idle timeout).
    pub fn with_terminators(max_len: usize, terminators: &[u8]) -> Self {
        LineFramer {
            buf: Vec::new(),
            max_len: max_len.max(1),
            overflowed: false,
            terminators: terminators.to_vec(),
        }
    }

    /// Feeds bytes; complete lines are pushed to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Line>) {
        for &b in bytes {
            let ends = self.terminators.contains(&b);
            if ends {
                if self.overflowed {
                    self.overflowed = false;
                } else if !self.buf.is_empty() {
                    out.push(Line::Complete(std::mem::take(&mut self.buf)));
                }
                continue;
            }
            if self.overflowed {
                continue;
            }
            if self.buf.len() >= self.max_len {
                out.push(Line::TooLong(self.buf.len()));
                self.buf.clear();
                self.overflowed = true;
                continue;
            }
            self.buf.push(b);
        }
    }

    /// Whether an unterminated line is waiting.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() && !self.overflowed
    }

    /// Takes the unterminated line, if any (for devices configured without a suffix).
    pub fn take_partial(&mut self) -> Option<Vec<u8>> {
        if self.has_partial() {
            Some(std::mem::take(&mut self.buf))
        } else {
            self.buf.clear();
            self.overflowed = false;
            None
        }
    }

    /// Forgets any partial line (the transport reopened).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.overflowed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunks: &[&[u8]]) -> Vec<Line> {
        let mut f = LineFramer::new(8, true);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        out
    }

    #[test]
    fn every_terminator_ends_a_line_and_empty_lines_vanish() {
        let out = frame(&[b"ab\r\ncd\nef\rgh\t\r\n\n"]);
        let want: Vec<Line> = ["ab", "cd", "ef", "gh"]
            .iter()
            .map(|s| Line::Complete(s.as_bytes().to_vec()))
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn split_reads_join_up() {
        let out = frame(&[b"12", b"34", b"5\r", b"\n6", b"\n"]);
        assert_eq!(
            out,
            vec![
                Line::Complete(b"12345".to_vec()),
                Line::Complete(b"6".to_vec())
            ]
        );
    }

    #[test]
    fn overlong_line_is_dropped_to_its_end_and_framing_recovers() {
        let out = frame(&[b"0123456789abc", b"def\nok\n"]);
        assert_eq!(out, vec![Line::TooLong(8), Line::Complete(b"ok".to_vec())]);
    }

    #[test]
    fn partial_is_taken_once() {
        let mut f = LineFramer::new(8, false);
        let mut out = Vec::new();
        f.push(b"abc", &mut out);
        assert!(out.is_empty());
        assert_eq!(f.take_partial(), Some(b"abc".to_vec()));
        assert_eq!(f.take_partial(), None);
    }
}
