//! SAM frames: building requests, and a streaming parser for responses.
//!
//! ```text
//! request   AA AA AA 96 69 | LEN_H LEN_L | CMD PARA [DATA] | CHK
//! response  AA AA AA 96 69 | LEN_H LEN_L | SW1 SW2 SW3 [DATA] | CHK
//! ```
//! LEN (big-endian) counts every byte after itself, CHK included; CHK is the
//! XOR of LEN_H … the byte before CHK.

use std::fmt;

/// The 5-byte preamble every frame starts with.
pub const HEADER: [u8; 5] = [0xAA, 0xAA, 0xAA, 0x96, 0x69];

/// Largest LEN accepted. The biggest real answer is a read with fingerprint:
/// 3 status + 6 length bytes + 256 text + 1024 photo + 1024 fingerprint + CHK
/// = 2314 (0x090A). 0x0A00 leaves slack for a vendor adding a few bytes while
/// still rejecting a corrupted LEN long before it could swallow many answers.
pub const MAX_LEN: u16 = 0x0A00;

/// Largest whole frame: header, LEN, and LEN bytes.
pub const MAX_FRAME: usize = HEADER.len() + 2 + MAX_LEN as usize;

/// Most bytes a [`FrameParser`] holds when its caller pushes without popping.
/// Beyond this the oldest bytes are dropped (reported as
/// [`FrameError::Overflow`]).
pub const MAX_BUFFERED: usize = 4 * MAX_FRAME;

/// Reset the SAM (`10 FF`).
pub const CMD_RESET_SAM: (u8, u8) = (0x10, 0xFF);
/// SAM status / self-test (`11 FF`).
pub const CMD_SAM_STATUS: (u8, u8) = (0x11, 0xFF);
/// Read the SAM's id (`12 FF`).
pub const CMD_SAM_ID: (u8, u8) = (0x12, 0xFF);
/// Find (detect) a card (`20 01`).
pub const CMD_FIND: (u8, u8) = (0x20, 0x01);
/// Select the found card (`20 02`).
pub const CMD_SELECT: (u8, u8) = (0x20, 0x02);
/// Read text and photo (`30 01`).
pub const CMD_READ: (u8, u8) = (0x30, 0x01);
/// Read text, photo and fingerprint (`30 10`).
pub const CMD_READ_FINGERPRINT: (u8, u8) = (0x30, 0x10);

/// XOR of all bytes.
pub fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |a, b| a ^ b)
}

/// Wraps `payload` (what sits between LEN and CHK) in a frame. A payload too
/// long for the 16-bit LEN is cut to fit (never happens with real commands).
fn frame(payload: &[u8]) -> Vec<u8> {
    let payload = payload.get(..payload.len().min(0xFFFE)).unwrap_or(payload);
    let len = (payload.len() + 1) as u16;
    let mut f = Vec::with_capacity(HEADER.len() + 2 + usize::from(len));
    f.extend_from_slice(&HEADER);
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(payload);
    let chk = xor(f.get(HEADER.len()..).unwrap_or(&[]));
    f.push(chk);
    f
}

/// A request frame: `cmd para data`.
pub fn build_frame(cmd: u8, para: u8, data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(2 + data.len());
    payload.extend_from_slice(&[cmd, para]);
    payload.extend_from_slice(data);
    frame(&payload)
}

/// A response frame as a reader sends it (SW1 = SW2 = 0). For the simulator
/// and tests.
pub fn build_response(sw3: u8, data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(3 + data.len());
    payload.extend_from_slice(&[0, 0, sw3]);
    payload.extend_from_slice(data);
    frame(&payload)
}

/// The payload of a successful read answer: each part's length as 2 bytes
/// big-endian (text, photo and, with `30 10`, fingerprint), then the parts.
pub fn build_read_data(text: &[u8], photo: &[u8], fingerprint: Option<&[u8]>) -> Vec<u8> {
    let parts: Vec<&[u8]> = match fingerprint {
        Some(fp) => vec![text, photo, fp],
        None => vec![text, photo],
    };
    let mut data = Vec::new();
    for p in &parts {
        data.extend_from_slice(&(p.len().min(0xFFFF) as u16).to_be_bytes());
    }
    for p in &parts {
        data.extend_from_slice(p.get(..p.len().min(0xFFFF)).unwrap_or(p));
    }
    data
}

/// The parts of a read answer's data.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReadData<'a> {
    pub text: &'a [u8],
    pub photo: &'a [u8],
    pub fingerprint: Option<&'a [u8]>,
}

// Card data: lengths only.
impl fmt::Debug for ReadData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadData")
            .field("text_len", &self.text.len())
            .field("photo_len", &self.photo.len())
            .field("fingerprint_len", &self.fingerprint.map(<[u8]>::len))
            .finish()
    }
}

/// Splits a read answer's data. The number of length fields (2 for `30 01`,
/// 3 for `30 10`) is decided by which one makes the lengths add up exactly,
/// so a reader that answers `30 10` without fingerprint support still parses.
/// `None` when neither does.
pub fn parse_read_data(data: &[u8]) -> Option<ReadData<'_>> {
    let be = |i: usize| -> Option<usize> {
        let b = data.get(i..i + 2)?;
        Some(usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?])))
    };
    let (t, p) = (be(0)?, be(2)?);
    if 4 + t + p == data.len() {
        let text = data.get(4..4 + t)?;
        let photo = data.get(4 + t..)?;
        return Some(ReadData {
            text,
            photo,
            fingerprint: None,
        });
    }
    let f = be(4)?;
    if 6 + t + p + f == data.len() {
        let text = data.get(6..6 + t)?;
        let photo = data.get(6 + t..6 + t + p)?;
        let fingerprint = data.get(6 + t + p..)?;
        return Some(ReadData {
            text,
            photo,
            fingerprint: Some(fingerprint),
        });
    }
    None
}

/// One checksum-verified response.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub sw1: u8,
    pub sw2: u8,
    pub sw3: u8,
    /// Everything between SW3 and CHK.
    pub data: Vec<u8>,
}

// A read answer holds a whole ID card: show the status and the length only.
impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Response {{ sw: {:02X} {:02X} {:02X}, data_len: {} }}",
            self.sw1,
            self.sw2,
            self.sw3,
            self.data.len()
        )
    }
}

/// Why bytes from the reader were not a usable frame. Messages never hold
/// the bytes themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Bytes before (or instead of) a frame header were dropped.
    Garbage { skipped: usize },
    /// LEN was below the minimum (an echoed request is LEN 3) or above
    /// [`MAX_LEN`].
    BadLength(u16),
    /// The frame's CHK did not match; the whole frame was dropped.
    BadChecksum,
    /// The caller pushed more than [`MAX_BUFFERED`] bytes without popping.
    Overflow { dropped: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Garbage { skipped } => {
                write!(f, "{skipped} byte(s) outside any frame dropped")
            }
            FrameError::BadLength(len) => write!(f, "frame length {len} out of range"),
            FrameError::BadChecksum => write!(f, "frame checksum mismatch"),
            FrameError::Overflow { dropped } => {
                write!(f, "receive buffer full, {dropped} byte(s) dropped")
            }
        }
    }
}

/// Splits a byte stream into frame payloads (the bytes between LEN and CHK).
/// Shared by the response parser and the simulator's request parser.
#[derive(Clone, Default)]
pub(crate) struct Framer {
    buf: Vec<u8>,
    /// Smallest LEN accepted.
    min_len: u16,
    overflow: usize,
}

impl Framer {
    pub(crate) fn new(min_len: u16) -> Framer {
        Framer {
            buf: Vec::new(),
            min_len,
            overflow: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > MAX_BUFFERED {
            let drop = self.buf.len() - MAX_BUFFERED;
            self.buf.drain(..drop);
            self.overflow = self.overflow.saturating_add(drop);
        }
    }

    /// Drops a partial frame (after a timeout: its rest is never coming).
    /// Returns how many bytes were dropped.
    pub(crate) fn reset(&mut self) -> usize {
        let n = self.buf.len();
        self.buf.clear();
        self.overflow = 0;
        n
    }

    pub(crate) fn pop(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        if self.overflow > 0 {
            let dropped = std::mem::take(&mut self.overflow);
            return Some(Err(FrameError::Overflow { dropped }));
        }
        let Some(start) = self.buf.windows(HEADER.len()).position(|w| w == HEADER) else {
            // No header: keep the longest tail that could be the start of one
            // (a header split across reads), drop the rest.
            let keep = (1..HEADER.len())
                .rev()
                .find(|&k| self.buf.len() >= k && self.buf.ends_with(&HEADER[..k]))
                .unwrap_or(0);
            let skipped = self.buf.len() - keep;
            if skipped == 0 {
                return None;
            }
            self.buf.drain(..skipped);
            return Some(Err(FrameError::Garbage { skipped }));
        };
        if start > 0 {
            self.buf.drain(..start);
            return Some(Err(FrameError::Garbage { skipped: start }));
        }
        let (Some(&hi), Some(&lo)) = (self.buf.get(5), self.buf.get(6)) else {
            return None;
        };
        let len = u16::from_be_bytes([hi, lo]);
        if len > MAX_LEN {
            // Only the header is dropped: a real frame may start inside what
            // LEN claimed (the header cannot overlap itself, so 5 is safe).
            self.buf.drain(..HEADER.len());
            return Some(Err(FrameError::BadLength(len)));
        }
        let total = HEADER.len() + 2 + usize::from(len);
        if self.buf.len() < total {
            return None;
        }
        // A short frame (typically our own request echoed back) is dropped
        // whole, so its body is not reported again as garbage.
        if len < self.min_len {
            self.buf.drain(..total);
            return Some(Err(FrameError::BadLength(len)));
        }
        // LEN was plausible and the frame is complete: on a bad checksum the
        // whole frame goes (the reader only answers requests, so no other
        // frame can be inside it).
        let ok = match self.buf.get(5..total) {
            Some(body) => match body.split_last() {
                Some((chk, rest)) => xor(rest) == *chk,
                None => false,
            },
            None => false,
        };
        let payload = self.buf.get(7..total - 1).map(<[u8]>::to_vec);
        self.buf.drain(..total);
        match (ok, payload) {
            (true, Some(p)) => Some(Ok(p)),
            _ => Some(Err(FrameError::BadChecksum)),
        }
    }
}

/// Streaming response parser: push bytes as reads deliver them (split or
/// merged anyhow), then pop until `None`.
///
/// Buffering is bounded: garbage is dropped as soon as it is seen (keeping a
/// possible partial header), a frame is at most [`MAX_FRAME`] bytes, and a
/// caller that never pops is capped at [`MAX_BUFFERED`].
#[derive(Clone)]
pub struct FrameParser {
    framer: Framer,
}

impl Default for FrameParser {
    fn default() -> Self {
        FrameParser::new()
    }
}

impl fmt::Debug for FrameParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameParser")
            .field("buffered", &self.framer.buf.len())
            .finish()
    }
}

impl FrameParser {
    pub fn new() -> FrameParser {
        // A response holds at least SW1 SW2 SW3 CHK.
        FrameParser {
            framer: Framer::new(4),
        }
    }

    /// Appends bytes read from the device.
    pub fn push(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
    }

    /// The next response or framing error; `None` when more bytes are needed.
    pub fn pop(&mut self) -> Option<Result<Response, FrameError>> {
        self.framer.pop().map(|r| {
            r.map(|p| Response {
                sw1: p.first().copied().unwrap_or(0),
                sw2: p.get(1).copied().unwrap_or(0),
                sw3: p.get(2).copied().unwrap_or(0),
                data: p.get(3..).map(<[u8]>::to_vec).unwrap_or_default(),
            })
        })
    }

    /// Drops any partial frame; returns how many bytes were held.
    pub fn reset(&mut self) -> usize {
        self.framer.reset()
    }

    /// Bytes currently held (a partial frame or header).
    pub fn buffered(&self) -> usize {
        self.framer.buf.len()
    }
}
