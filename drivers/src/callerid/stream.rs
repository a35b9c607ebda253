//! Cuts a caller-ID byte stream into units: binary FSK messages, text lines,
//! and DTMF strings, in whatever mix the configured format allows.
//!
//! Between units the splitter hunts: it skips line ends, NULs, channel
//! seizure (`0x55`) and marks (`0xFF`); an FSK message type byte starts a
//! binary message (its length byte says where it ends); anything else starts
//! a text unit, which ends at CR/LF — or, for DTMF, at its `C`/`#`
//! terminator, since DTMF boxes often send no line end.

use super::dtmf;
use super::fsk::MESSAGE_TYPES;

/// Longest text line kept; NCID's longest lines are ~200 bytes.
pub const MAX_LINE: usize = 512;

/// Which units the stream may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accept {
    pub binary: bool,
    pub text: bool,
    /// DTMF strings end at their terminator without a line end.
    pub dtmf: bool,
    /// Auto: a `C` ends DTMF only after an `A`/`B`/`D` start (see [`dtmf::is_complete`]).
    pub strict_dtmf: bool,
}

/// One unit cut from the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A whole FSK message, type through checksum (checksum not yet checked).
    Message(Vec<u8>),
    /// A text line without its line end.
    Line(Vec<u8>),
    /// A DTMF string, terminator included.
    Dtmf(Vec<u8>),
    /// Something was dropped: an FSK message cut short by silence (its
    /// length so far), or an overlong line.
    Dropped(String),
}

#[derive(Debug)]
enum State {
    Hunt,
    Message(Vec<u8>),
    Text(Vec<u8>),
    /// Dropping an overlong line up to its end.
    Skip,
}

/// The stream splitter. Idle time is the caller's business: it calls
/// [`Splitter::flush`] after a silence.
#[derive(Debug)]
pub struct Splitter {
    accept: Accept,
    state: State,
}

fn is_preamble(b: u8) -> bool {
    matches!(b, 0x55 | 0xAA | 0xFF | 0x00)
}

impl Splitter {
    pub fn new(accept: Accept) -> Self {
        Splitter {
            accept,
            state: State::Hunt,
        }
    }

    /// Forgets any partial unit.
    pub fn reset(&mut self) {
        self.state = State::Hunt;
    }

    /// Whether a unit is partly read (so a silence should flush it).
    pub fn has_partial(&self) -> bool {
        matches!(self.state, State::Message(_) | State::Text(_))
    }

    /// Feeds bytes; complete units are pushed to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Unit>) {
        for &b in bytes {
            self.byte(b, out);
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Unit>) {
        let a = self.accept;
        match &mut self.state {
            State::Hunt => {
                if matches!(b, b'\r' | b'\n') || (is_preamble(b) && (a.binary || b != 0x55)) {
                    return;
                }
                if a.binary && MESSAGE_TYPES.contains(&b) {
                    self.state = State::Message(vec![b]);
                } else if a.text && !b.is_ascii_control() {
                    self.state = State::Text(vec![b]);
                }
                // Otherwise noise between units: skipped.
            }
            State::Message(m) => {
                m.push(b);
                let done = m.get(1).is_some_and(|len| m.len() >= usize::from(*len) + 3);
                if done {
                    let m = std::mem::take(m);
                    self.state = State::Hunt;
                    out.push(Unit::Message(m));
                }
            }
            State::Text(t) => {
                if matches!(b, b'\r' | b'\n') {
                    let t = std::mem::take(t);
                    self.state = State::Hunt;
                    out.push(Unit::Line(t));
                    return;
                }
                // An SDMF/MWI type byte is never text: a message starts
                // right after an unterminated line.
                if a.binary && matches!(b, 0x04 | 0x06) {
                    let t = std::mem::take(t);
                    self.state = State::Message(vec![b]);
                    out.push(Unit::Line(t));
                    return;
                }
                if t.len() >= MAX_LINE {
                    out.push(Unit::Dropped(format!(
                        "caller-ID line longer than {MAX_LINE} bytes; dropped"
                    )));
                    self.state = State::Skip;
                    return;
                }
                t.push(b);
                if a.dtmf && t.len() <= dtmf::MAX_LEN && dtmf::is_complete(t, a.strict_dtmf) {
                    let t = std::mem::take(t);
                    self.state = State::Hunt;
                    out.push(Unit::Dtmf(t));
                }
            }
            State::Skip => {
                if matches!(b, b'\r' | b'\n') {
                    self.state = State::Hunt;
                }
            }
        }
    }

    /// After a silence: a partial text unit counts as a line (devices without
    /// line ends); a partial FSK message is dropped.
    pub fn flush(&mut self, out: &mut Vec<Unit>) {
        match std::mem::replace(&mut self.state, State::Hunt) {
            State::Text(t) => out.push(Unit::Line(t)),
            State::Message(m) => out.push(Unit::Dropped(format!(
                "FSK message cut short after {} bytes; dropped",
                m.len()
            ))),
            State::Hunt | State::Skip => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTO: Accept = Accept {
        binary: true,
        text: true,
        dtmf: true,
        strict_dtmf: true,
    };

    fn split(accept: Accept, chunks: &[&[u8]]) -> Vec<Unit> {
        let mut s = Splitter::new(accept);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        out
    }

    #[test]
    fn mixed_stream_splits() {
        let msg = super::super::fsk::build_message(0x04, b"051118524075550000");
        let mut bytes = b"RING\r\n".to_vec();
        bytes.extend_from_slice(&[0x55; 10]);
        bytes.extend_from_slice(&[0xFF; 4]);
        bytes.extend_from_slice(&msg);
        bytes.extend_from_slice(b"A13812345678CCID: *NMBR*1*\r\n");
        assert_eq!(
            split(AUTO, &[&bytes]),
            vec![
                Unit::Line(b"RING".to_vec()),
                Unit::Message(msg.clone()),
                Unit::Dtmf(b"A13812345678C".to_vec()),
                Unit::Line(b"CID: *NMBR*1*".to_vec()),
            ]
        );
    }

    #[test]
    fn overlong_and_cut_short() {
        let long = vec![b'x'; MAX_LINE + 10];
        let out = split(AUTO, &[&long, b"\r\nRING\r\n"]);
        assert!(matches!(out.first(), Some(Unit::Dropped(_))));
        assert_eq!(out.get(1), Some(&Unit::Line(b"RING".to_vec())));
        let mut s = Splitter::new(AUTO);
        let mut out = Vec::new();
        s.push(&[0x80, 0x20, 0x01], &mut out);
        assert!(s.has_partial());
        s.flush(&mut out);
        assert!(matches!(&out[..], [Unit::Dropped(m)] if m.contains("3 bytes")));
    }
}
