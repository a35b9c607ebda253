//! A sans-IO stand-in for a SAM reader, for tests and demos: feed it the
//! engine's request bytes, get back what a reader would answer.

use super::frame::{
    build_read_data, build_response, FrameError, Framer, CMD_FIND, CMD_READ, CMD_READ_FINGERPRINT,
    CMD_RESET_SAM, CMD_SAM_ID, CMD_SAM_STATUS, CMD_SELECT,
};
use super::text::{encode_text, TextLayout, TEXT_LEN};
use crate::IdCard;
use std::fmt;

struct Placed {
    text: [u8; TEXT_LEN],
    photo: Vec<u8>,
    /// Selected since it was placed: real readers then answer find with 80.
    selected: bool,
}

/// A simulated reader.
///
/// Behaviour (what the engine was written against):
/// - SAM status (`11 FF`) → `90`, or the SW3 set by [`ReaderSim::set_sam_error`];
///   reset SAM (`10 FF`) → `90`; SAM id (`12 FF`) → `90` + 16 bytes.
/// - find (`20 01`) → `9F` + 4 bytes while a card is placed and not yet
///   selected in this placement, else `80` (with
///   [`ReaderSim::set_repeat_find`], `9F` as long as a card is placed).
/// - select (`20 02`) → `90` + 8 bytes when a card is placed (even one
///   already read, so a forced re-read works), else `81`.
/// - read (`30 01`, `30 10`) → the full answer (text + photo, plus the
///   fingerprint set by [`ReaderSim::set_fingerprint`] for `30 10`) when the
///   card was selected, else `41`.
/// - any other command → `21`; a request with a bad checksum → `10`, a bad
///   length → `11`; bytes outside frames are ignored.
pub struct ReaderSim {
    framer: Framer,
    card: Option<Placed>,
    fingerprint: Vec<u8>,
    silent: bool,
    sam_error: Option<u8>,
    corrupt_next: bool,
    repeat_find: bool,
    requests: usize,
}

impl Default for ReaderSim {
    fn default() -> Self {
        ReaderSim::new()
    }
}

// Holds a card's text: show state only.
impl fmt::Debug for ReaderSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReaderSim")
            .field("card_placed", &self.card.is_some())
            .field("silent", &self.silent)
            .field("sam_error", &self.sam_error)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl ReaderSim {
    pub fn new() -> ReaderSim {
        ReaderSim {
            // A request holds at least CMD PARA CHK.
            framer: Framer::new(3),
            card: None,
            fingerprint: Vec::new(),
            silent: false,
            sam_error: None,
            corrupt_next: false,
            repeat_find: false,
            requests: 0,
        }
    }

    /// Puts a card on the reader (replacing any): its text block and photo
    /// (1024 bytes on real cards; any length is sent as given).
    pub fn place(&mut self, text: [u8; TEXT_LEN], photo: &[u8]) {
        self.card = Some(Placed {
            text,
            photo: photo.to_vec(),
            selected: false,
        });
    }

    /// [`ReaderSim::place`] with the text block built by [`encode_text`].
    pub fn place_card(&mut self, card: &IdCard, layout: TextLayout, photo: &[u8]) {
        self.place(encode_text(card, layout), photo);
    }

    /// Takes the card off the reader.
    pub fn lift(&mut self) {
        self.card = None;
    }

    /// A silent reader reads requests but answers nothing.
    pub fn set_silent(&mut self, silent: bool) {
        self.silent = silent;
    }

    /// SAM status answers this SW3 instead of `90` (`None`: healthy).
    pub fn set_sam_error(&mut self, sw3: Option<u8>) {
        self.sam_error = sw3;
    }

    /// The next answer goes out with a wrong checksum.
    pub fn corrupt_next_checksum(&mut self) {
        self.corrupt_next = true;
    }

    /// Model readers that keep answering find with `9F` while a card rests.
    pub fn set_repeat_find(&mut self, on: bool) {
        self.repeat_find = on;
    }

    /// Fingerprint data sent in answers to `30 10` (empty by default).
    pub fn set_fingerprint(&mut self, data: &[u8]) {
        self.fingerprint = data.to_vec();
    }

    /// Request frames received so far (answered or not).
    pub fn requests_seen(&self) -> usize {
        self.requests
    }

    /// Bytes from the host in; the reader's answer bytes out (possibly none).
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.framer.push(bytes);
        let mut out = Vec::new();
        while let Some(r) = self.framer.pop() {
            let answer = match r {
                Ok(payload) => {
                    self.requests += 1;
                    let cmd = (
                        payload.first().copied().unwrap_or(0),
                        payload.get(1).copied().unwrap_or(0),
                    );
                    self.answer(cmd)
                }
                Err(FrameError::BadChecksum) => build_response(0x10, &[]),
                Err(FrameError::BadLength(_)) => build_response(0x11, &[]),
                Err(FrameError::Garbage { .. } | FrameError::Overflow { .. }) => continue,
            };
            if self.silent {
                continue;
            }
            let mut answer = answer;
            if std::mem::take(&mut self.corrupt_next) {
                if let Some(chk) = answer.last_mut() {
                    *chk ^= 0xFF;
                }
            }
            out.extend_from_slice(&answer);
        }
        out
    }

    fn answer(&mut self, cmd: (u8, u8)) -> Vec<u8> {
        let repeat_find = self.repeat_find;
        match cmd {
            CMD_SAM_STATUS => build_response(self.sam_error.unwrap_or(0x90), &[]),
            CMD_RESET_SAM => build_response(0x90, &[]),
            CMD_SAM_ID => build_response(
                0x90,
                &[
                    0x05, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B,
                    0x0C, 0x0D, 0x0E,
                ],
            ),
            CMD_FIND => match &self.card {
                Some(c) if !c.selected || repeat_find => build_response(0x9F, &[0; 4]),
                _ => build_response(0x80, &[]),
            },
            CMD_SELECT => match &mut self.card {
                Some(c) => {
                    c.selected = true;
                    build_response(0x90, &[0; 8])
                }
                None => build_response(0x81, &[]),
            },
            CMD_READ | CMD_READ_FINGERPRINT => match &self.card {
                Some(c) if c.selected => {
                    let fp = (cmd == CMD_READ_FINGERPRINT).then_some(self.fingerprint.as_slice());
                    build_response(0x90, &build_read_data(&c.text, &c.photo, fp))
                }
                _ => build_response(0x41, &[]),
            },
            _ => build_response(0x21, &[]),
        }
    }
}
