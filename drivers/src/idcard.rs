//! Chinese second-generation ID-card readers speaking the SAM serial protocol
//! (PROTOCOLS.md §1; `driver = "idcard-sam"`, serial 115200 8N1 or USB bulk).
//!
//! The host asks, the reader answers; nothing arrives unasked. So the engine
//! ([`IdCardReader`]) is timer-driven: it checks the security module (SAM)
//! once, then polls find → select → read every [`Options::poll_ms`] and
//! emits one `idcard.read` per card placement, with the 1024-byte WLT photo
//! passed through as base64 (it is vendor-compressed and never decoded here).
//!
//! - [`frame`]: request building, the streaming response parser, read-answer
//!   splitting.
//! - [`status`]: SW3 codes as [`SamStatus`].
//! - [`text`]: the 256-byte text block of the four card layouts, both ways.
//! - [`reader`]: the engine.
//! - [`sim`]: [`ReaderSim`], a sans-IO simulated reader for tests and demos.
//!
//! Card data (names, id numbers, addresses, photos) never appears in
//! [`Action::Malformed`] / [`Action::Fault`] messages or in any `Debug`
//! output of this module; [`IdCard`]'s own `Debug` is masked.
//!
//! [`Action::Malformed`]: crate::Action::Malformed
//! [`Action::Fault`]: crate::Action::Fault
//! [`IdCard`]: crate::IdCard

pub mod frame;
pub mod reader;
pub mod sim;
pub mod status;
pub mod text;

pub use frame::{build_frame, FrameError, FrameParser, Response};
pub use reader::{IdCardReader, Options};
pub use sim::ReaderSim;
pub use status::SamStatus;
pub use text::{decode_text, encode_text, TextError, TextLayout, PHOTO_LEN, TEXT_LEN};

/// Standard base64 (RFC 4648 alphabet, `=` padding) — all the photo needs,
/// so no dependency for it.
pub fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = byte(0) << 16 | byte(1) << 8 | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (n >> (18 - 6 * i)) & 0x3F;
                s.push(char::from(
                    ALPHABET.get(sextet as usize).copied().unwrap_or(b'='),
                ));
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests;
