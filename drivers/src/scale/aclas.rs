//! Aclas (顶尖) OS2-protocol scales in their active mode: a 16-byte frame
//! ten times a second, `SOH STX flag sign W×6 unit×2 BCC ETX EOT flag2`
//! (Pinnacle/Aclas OS2CX manual §13; the same layout in CAS SW-II and Gram
//! ZFOC manuals; PROTOCOLS.md §8).

use super::{parse_decimal, to_grams, Reading, Unit};

const SOH: u8 = 0x01;
const STX: u8 = 0x02;
const ETX: u8 = 0x03;
const EOT: u8 = 0x04;
/// One frame's length.
pub const FRAME: usize = 16;

/// Cuts the byte stream into frames, resynchronising on `SOH STX`.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// Feeds bytes; each complete frame's reading (or why it is not one) is pushed.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Result<Reading, String>>) {
        self.buf.extend_from_slice(bytes);
        loop {
            let Some(start) = self.buf.windows(2).position(|w| w == [SOH, STX]) else {
                // Keep a trailing SOH: the STX may come in the next read.
                let keep = usize::from(self.buf.last() == Some(&SOH));
                self.buf.drain(..self.buf.len() - keep);
                return;
            };
            self.buf.drain(..start);
            if self.buf.len() < FRAME {
                return;
            }
            let frame: Vec<u8> = self.buf.drain(..FRAME).collect();
            out.push(decode(&frame));
        }
    }
}

/// One 16-byte frame.
pub fn decode(f: &[u8]) -> Result<Reading, String> {
    if f.len() != FRAME {
        return Err(format!("an OS2 frame has {FRAME} bytes, not {}", f.len()));
    }
    let [SOH, STX, flag, sign, w @ .., bcc, ETX, EOT, flag2] = f else {
        return Err("not an OS2 frame (SOH STX … ETX EOT flag)".into());
    };
    let (weight, unit) = w.split_at(6);
    // The manual sums the 12 bytes before the BCC; one shipped parser also
    // folds in the ETX. Both are taken until a real scale settles it.
    let xor = f[..12].iter().fold(0u8, |a, b| a ^ b);
    if *bcc != xor && *bcc != xor ^ ETX {
        return Err(format!("checksum {bcc:#04x}, expected {xor:#04x}"));
    }
    let unit_text = String::from_utf8_lossy(unit);
    let unit = Unit::parse(unit_text.trim())
        .ok_or_else(|| format!("unit {:?} is not kg, g or lb", unit_text.trim()))?;
    let over = *flag == b'F' || flag2 & 0x40 != 0;
    let grams = std::str::from_utf8(weight)
        .ok()
        .and_then(parse_decimal)
        .and_then(|(m, e)| to_grams(m, e, unit))
        .map(|g| if *sign == b'-' { -g } else { g });
    if grams.is_none() && !over {
        return Err(format!(
            "weight {:?} is not a number",
            String::from_utf8_lossy(weight)
        ));
    }
    let stable = match flag {
        b'S' => true,
        b'U' | b'F' => false,
        other => return Err(format!("status {:?} is not S, U or F", *other as char)),
    };
    Ok(Reading {
        grams,
        stable,
        net: flag2 & 0x20 != 0,
        tare_grams: None,
        overload: over,
        negative: *sign == b'-',
    })
}
