//! Document → ESC/POS bytes.
//!
//! Every styled line sets its alignment, bold and size before its text and
//! puts them back to the defaults after it, so no line inherits another's
//! style and a job cut short leaves the printer in its plain state. Barcodes
//! and QR codes are centered. The drawer kick, when asked for, is the very
//! last command, after any cut: the printer runs commands in order, so the
//! drawer opens once the receipt is out, and a printer that stops mid-job
//! (paper out, cover open) does not open the till for a receipt it has not
//! printed.

use super::document::{barcode_payload, Align, Barcode, BarcodeType, Document, DocumentError};
use super::document::{ImageLine, Line, TextLine};
use super::image::{gs_v_0, raster};
use super::text::{encode, wrap};
use super::{drawer_kick, CutMode, Encoding, Profile};
use std::fmt;

const ESC: u8 = 0x1b;
const GS: u8 = 0x1d;
const FS: u8 = 0x1c;
const LF: u8 = 0x0a;

/// Barcode bar height in dots (12.5 mm at 203 dpi).
const BARCODE_HEIGHT: u8 = 100;
/// Largest QR module, in dots: big enough for a phone across the counter,
/// small enough to keep receipts short.
const QR_MAX_MODULE: u32 = 6;

/// Why a document could not be rendered for a printer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderError {
    /// The document breaks a rule parsing enforces (only possible for
    /// documents built in code).
    Document(DocumentError),
    /// A barcode does not fit the paper even with the narrowest bars.
    BarcodeTooWide {
        /// Index into `lines`.
        line: usize,
        /// Dots the barcode needs at the narrowest module width (2).
        needed: u32,
        /// Dots the paper has.
        available: u32,
    },
    /// An image line cannot be printed: not an image, too large, or wider than the paper.
    Image {
        /// Index into `lines`.
        line: usize,
        message: String,
    },
    /// The profile cannot be printed with (zero columns).
    Profile(&'static str),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Document(e) => e.fmt(f),
            RenderError::BarcodeTooWide {
                line,
                needed,
                available,
            } => write!(
                f,
                "lines[{line}]: the barcode needs {needed} dots but the paper has {available}; shorten the data"
            ),
            RenderError::Image { line, message } => write!(f, "lines[{line}]: {message}"),
            RenderError::Profile(m) => write!(f, "printer profile: {m}"),
        }
    }
}

impl std::error::Error for RenderError {}

impl From<DocumentError> for RenderError {
    fn from(e: DocumentError) -> RenderError {
        RenderError::Document(e)
    }
}

/// Renders a document to the bytes to send to the printer.
///
/// Starts with `ESC @` (and `FS &` for GB18030 in Chinese mode); ends with the
/// drawer kick when `open_drawer` is set. No cut is added that the document
/// does not ask for.
pub fn render(doc: &Document, profile: &Profile) -> Result<Vec<u8>, RenderError> {
    if profile.columns == 0 {
        return Err(RenderError::Profile("columns must be at least 1"));
    }
    doc.validate()?;
    let mut out = vec![ESC, b'@'];
    if profile.encoding == Encoding::Gb18030 && profile.chinese_mode {
        out.extend_from_slice(&[FS, b'&']);
    }
    for (i, line) in doc.lines.iter().enumerate() {
        match line {
            Line::Text(t) => text(&mut out, t, profile),
            Line::Qr(data) => qr(&mut out, data.as_bytes(), profile),
            Line::Barcode(b) => barcode(&mut out, i, b, profile)?,
            Line::Image(img) => image(&mut out, img, profile)
                .map_err(|message| RenderError::Image { line: i, message })?,
            Line::Logo(l) => {
                return Err(RenderError::Image {
                    line: i,
                    message: format!("logo {:?} was not resolved to its picture", l.name),
                })
            }
            Line::Feed(n) => out.extend_from_slice(&[ESC, b'd', *n]),
            Line::Cut => out.extend_from_slice(match profile.cut {
                CutMode::Partial => &[GS, b'V', 66, 0],
                CutMode::Full => &[GS, b'V', 65, 0],
                CutMode::None => &[ESC, b'd', 4],
            }),
        }
    }
    if doc.open_drawer {
        out.extend_from_slice(&drawer_kick(profile));
    }
    Ok(out)
}

fn align_byte(a: Align) -> u8 {
    match a {
        Align::Left => 0,
        Align::Center => 1,
        Align::Right => 2,
    }
}

fn text(out: &mut Vec<u8>, t: &TextLine, profile: &Profile) {
    let [w, h] = t.size;
    // Validated to 1..=8; clamped again so a bad value can never misencode.
    let (w, h) = (w.clamp(1, 8), h.clamp(1, 8));
    let sized = (w, h) != (1, 1);
    if t.align != Align::Left {
        out.extend_from_slice(&[ESC, b'a', align_byte(t.align)]);
    }
    if t.bold {
        out.extend_from_slice(&[ESC, b'E', 1]);
    }
    if sized {
        out.extend_from_slice(&[GS, b'!', ((w - 1) << 4) | (h - 1)]);
    }
    let cap = usize::from(profile.columns) / usize::from(w);
    for line in wrap(&t.text, cap, profile.encoding) {
        out.extend_from_slice(&encode(&line, profile.encoding));
        out.push(LF);
    }
    if sized {
        out.extend_from_slice(&[GS, b'!', 0]);
    }
    if t.bold {
        out.extend_from_slice(&[ESC, b'E', 0]);
    }
    if t.align != Align::Left {
        out.extend_from_slice(&[ESC, b'a', 0]);
    }
}

/// A picture as `GS v 0` raster bands, on a line of its own.
fn image(out: &mut Vec<u8>, img: &ImageLine, profile: &Profile) -> Result<(), String> {
    let paper = profile.dots();
    let r = raster(&img.data, img.width, paper, profile.max_image_pixels)?;
    let offset = match img.align {
        Align::Left => 0,
        Align::Center => paper.saturating_sub(r.width) / 2,
        Align::Right => paper.saturating_sub(r.width),
    };
    gs_v_0(out, &r, offset);
    Ok(())
}

/// QR model 2, level M, via `GS ( k`: select model, module size, error
/// correction, store data, print.
fn qr(out: &mut Vec<u8>, data: &[u8], profile: &Profile) {
    let module = qr_module_size(data.len(), profile.dots());
    // Store: pL pH count the data plus the three bytes `cn fn m` (31 50 30).
    let stored = data.len() + 3;
    let (pl, ph) = ((stored % 256) as u8, ((stored / 256) % 256) as u8);
    out.extend_from_slice(&[ESC, b'a', 1]);
    out.extend_from_slice(&[GS, b'(', b'k', 4, 0, 0x31, 0x41, 0x32, 0x00]);
    out.extend_from_slice(&[GS, b'(', b'k', 3, 0, 0x31, 0x43, module]);
    out.extend_from_slice(&[GS, b'(', b'k', 3, 0, 0x31, 0x45, 0x31]);
    out.extend_from_slice(&[GS, b'(', b'k', pl, ph, 0x31, 0x50, 0x30]);
    out.extend_from_slice(data);
    out.extend_from_slice(&[GS, b'(', b'k', 3, 0, 0x31, 0x51, 0x30]);
    out.extend_from_slice(&[ESC, b'a', 0]);
}

/// Byte-mode capacity of QR versions 1–22 at level M (ISO/IEC 18004, table 7).
const QR_BYTES_M: [usize; 22] = [
    14, 26, 42, 62, 84, 106, 122, 152, 180, 213, 251, 287, 331, 362, 412, 450, 504, 560, 624, 666,
    711, 779,
];

/// The largest module (up to [`QR_MAX_MODULE`]) at which the symbol, with
/// its 4-module quiet zones, fits the paper. The printer picks the version;
/// this assumes byte mode, the largest it could pick.
fn qr_module_size(len: usize, dots: u32) -> u8 {
    let version = QR_BYTES_M
        .iter()
        .position(|&cap| len <= cap)
        .map_or(QR_BYTES_M.len(), |v| v + 1) as u32;
    let modules = 17 + 4 * version + 8;
    (dots / modules).clamp(1, QR_MAX_MODULE) as u8
}

/// `GS k` function B with the digits printed below (`GS H 2`).
fn barcode(
    out: &mut Vec<u8>,
    line: usize,
    b: &Barcode,
    profile: &Profile,
) -> Result<(), RenderError> {
    let payload = barcode_payload(b).map_err(|m| DocumentError::at(line, m))?;
    let (m, modules) = match b.kind {
        BarcodeType::Upca => (65, 95),
        BarcodeType::Ean13 => (67, 95),
        BarcodeType::Ean8 => (68, 67),
        // Nine elements per character, three wide (about 3:1), a gap, and
        // the `*` start and stop the printer adds.
        BarcodeType::Code39 => (69, 16 * (payload.len() as u32 + 2)),
        // Per digit two wide and three narrow elements; start 4, stop 5.
        BarcodeType::Itf => (70, 9 * payload.len() as u32 + 9),
        // 11 modules per symbol after the two-byte code set prefix (an
        // escaped `{{` is one symbol), plus check (11) and stop (13).
        BarcodeType::Code128 => {
            let symbols = payload
                .len()
                .saturating_sub(2)
                .saturating_sub(count_escapes(&payload));
            (73, 11 * symbols as u32 + 11 + 11 + 13)
        }
    };
    let available = profile.dots();
    let width = match [3u32, 2].into_iter().find(|w| modules * w <= available) {
        Some(w) => w as u8,
        None => {
            return Err(RenderError::BarcodeTooWide {
                line,
                needed: modules * 2,
                available,
            })
        }
    };
    let n = u8::try_from(payload.len()).map_err(|_| {
        DocumentError::at(
            line,
            "barcode data is too long once encoded (at most 255 bytes)",
        )
    })?;
    out.extend_from_slice(&[ESC, b'a', 1]);
    out.extend_from_slice(&[GS, b'H', 2]);
    out.extend_from_slice(&[GS, b'h', BARCODE_HEIGHT]);
    out.extend_from_slice(&[GS, b'w', width]);
    out.extend_from_slice(&[GS, b'k', m, n]);
    out.extend_from_slice(&payload);
    out.extend_from_slice(&[ESC, b'a', 0]);
    Ok(())
}

/// `{{` pairs after the `{B` prefix: each encodes one `{`.
fn count_escapes(payload: &[u8]) -> usize {
    if !payload.starts_with(b"{B") {
        return 0;
    }
    payload[2..].iter().filter(|&&c| c == b'{').count() / 2
}
