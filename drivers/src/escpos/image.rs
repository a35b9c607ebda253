//! Receipt images: PNG or JPEG in, 1-bit raster out (`GS v 0`, PROTOCOLS.md §6).
//!
//! Decoding is the `image` crate's (PNG and JPEG only). The size in the
//! file's header is checked against the caller's pixel limit before any
//! pixel is decoded, and the decoder gets an allocation limit too, so a
//! small file claiming a huge picture (a decompression bomb) costs nothing.
//!
//! Transparent pixels print as paper (composited on white). The picture is
//! scaled with a triangle filter, then dithered by Floyd–Steinberg error
//! diffusion: on a 203-dpi thermal head it keeps photos' gray levels and
//! thin lines better than an ordered (Bayer) matrix, whose cross-hatch
//! shows at that resolution; and a two-tone logo comes out exactly as its
//! threshold (pure black and white carry no error to spread).

use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// Most dots an image may be tall once scaled (about 51 cm of paper at 8 dots/mm).
pub const MAX_IMAGE_ROWS: u32 = 4096;
/// Most dots in one picture once scaled (2048 × 4096: 1 MiB of raster), so a
/// tiny file asked to print large cannot cost more than a large one.
pub const MAX_PRINTED_DOTS: u64 = 2048 * 4096;
/// Most pictures in one document or label.
pub const MAX_PICTURES: usize = 16;
/// Most rows one `GS v 0` band carries; cheap printers have small input
/// buffers, and a band is also kept under [`MAX_BAND_BYTES`].
pub const MAX_BAND_ROWS: u32 = 128;
/// Most data bytes in one `GS v 0` band.
pub const MAX_BAND_BYTES: u32 = 4096;

/// A 1-bit picture: rows of `width.div_ceil(8)` bytes, bit 7 the leftmost
/// dot, 1 black (the layout of `GS v 0` and of TSPL's `BITMAP`, inverted there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raster {
    pub width: u32,
    pub height: u32,
    pub bits: Vec<u8>,
}

impl Raster {
    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.width.div_ceil(8) as usize
    }

    /// Whether the dot at (x, y) is black; false outside the picture.
    pub fn black(&self, x: u32, y: u32) -> bool {
        if x >= self.width || y >= self.height {
            return false;
        }
        let i = y as usize * self.row_bytes() + (x / 8) as usize;
        self.bits.get(i).is_some_and(|b| b & (0x80 >> (x % 8)) != 0)
    }
}

/// The formats accepted, told by their first bytes.
fn format_of(data: &[u8]) -> Option<ImageFormat> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if data.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(ImageFormat::Jpeg)
    } else {
        None
    }
}

/// Whether `data` starts like a PNG or a JPEG (checked when a document is parsed).
pub fn looks_like_image(data: &[u8]) -> bool {
    format_of(data).is_some()
}

/// Decodes to 8-bit gray on white, refusing more than `max_pixels` pixels
/// before decoding any.
pub fn decode(data: &[u8], max_pixels: u64) -> Result<GrayImage, String> {
    let format = format_of(data).ok_or("the image is not a PNG or JPEG")?;
    let mut reader = ImageReader::new(Cursor::new(data));
    reader.set_format(format);
    let mut limits = Limits::default();
    // Room for the decoded picture at 16-bit RGBA, plus the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(16 << 20));
    reader.limits(limits);
    let decoder = reader
        .into_decoder()
        .map_err(|e| format!("the image cannot be read: {e}"))?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(format!(
            "the image is {w}×{h} pixels ({pixels}); at most {max_pixels} (print.max_image_pixels)"
        ));
    }
    if pixels == 0 {
        return Err("the image has no pixels".into());
    }
    let img = DynamicImage::from_decoder(decoder)
        .map_err(|e| format!("the image cannot be decoded: {e}"))?;
    Ok(on_white(&img))
}

/// Gray, with transparency composited on white paper.
fn on_white(img: &DynamicImage) -> GrayImage {
    let la = img.to_luma_alpha8();
    GrayImage::from_fn(la.width(), la.height(), |x, y| {
        let [l, a] = la.get_pixel(x, y).0;
        let (l, a) = (u32::from(l), u32::from(a));
        image::Luma([((l * a + 255 * (255 - a) + 127) / 255) as u8])
    })
}

/// The printed size of a `src_w`×`src_h` picture: `width` dots when asked,
/// else its own width when it fits the paper, else the paper's width; the
/// height keeps the aspect ratio.
pub fn printed_size(
    (src_w, src_h): (u32, u32),
    width: Option<u32>,
    paper: u32,
) -> Result<(u32, u32), String> {
    let w = match width {
        Some(w) if w > paper => {
            return Err(format!(
                "width {w} is wider than the printer's {paper} dots (width_dots)"
            ))
        }
        Some(w) => w,
        None => src_w.min(paper),
    };
    if w == 0 || src_w == 0 {
        return Err("the image would be 0 dots wide".into());
    }
    let h = (u64::from(src_h) * u64::from(w) + u64::from(src_w) / 2) / u64::from(src_w);
    let h = u32::try_from(h.max(1)).unwrap_or(u32::MAX);
    if h > MAX_IMAGE_ROWS {
        return Err(format!(
            "the image would print {h} dots tall at {w} dots wide; at most {MAX_IMAGE_ROWS}"
        ));
    }
    if u64::from(w) * u64::from(h) > MAX_PRINTED_DOTS {
        return Err(format!(
            "the image would print {w}×{h} dots; at most {MAX_PRINTED_DOTS} dots"
        ));
    }
    Ok((w, h))
}

/// Decodes, scales and dithers an image for a printer `paper` dots wide.
pub fn raster(
    data: &[u8],
    width: Option<u32>,
    paper: u32,
    max_pixels: u64,
) -> Result<Raster, String> {
    let gray = decode(data, max_pixels)?;
    let (w, h) = printed_size(gray.dimensions(), width, paper)?;
    let gray = if (w, h) == gray.dimensions() {
        gray
    } else {
        image::imageops::resize(&gray, w, h, image::imageops::FilterType::Triangle)
    };
    Ok(dither(&gray))
}

/// Floyd–Steinberg to 1 bit: each dot's rounding error goes 7/16 right,
/// 3/16 down-left, 5/16 down, 1/16 down-right.
pub fn dither(gray: &GrayImage) -> Raster {
    let (w, h) = gray.dimensions();
    let mut out = Raster {
        width: w,
        height: h,
        bits: vec![0; w.div_ceil(8) as usize * h as usize],
    };
    let row_bytes = out.row_bytes();
    let wu = w as usize;
    // Error carried into this row and the next, with a guard column each side.
    let mut here = vec![0i32; wu + 2];
    let mut next = vec![0i32; wu + 2];
    for y in 0..h {
        for x in 0..w {
            let xi = x as usize + 1;
            let v = i32::from(gray.get_pixel(x, y).0[0]) + here[xi] / 16;
            let (black, err) = if v < 128 { (true, v) } else { (false, v - 255) };
            if black {
                out.bits[y as usize * row_bytes + (x / 8) as usize] |= 0x80 >> (x % 8);
            }
            here[xi + 1] += err * 7;
            next[xi - 1] += err * 3;
            next[xi] += err * 5;
            next[xi + 1] += err;
        }
        std::mem::swap(&mut here, &mut next);
        next.iter_mut().for_each(|e| *e = 0);
    }
    out
}

/// Appends `raster` as `GS v 0` bands, shifted right by `offset` dots (how
/// it is centered or right-aligned: by white dots, which every printer
/// honours, rather than by `ESC a`, which some ignore for raster images).
pub fn gs_v_0(out: &mut Vec<u8>, raster: &Raster, offset: u32) {
    let width = offset + raster.width;
    let row_bytes = width.div_ceil(8);
    let band_rows = (MAX_BAND_BYTES / row_bytes.max(1)).clamp(1, MAX_BAND_ROWS);
    let mut y = 0;
    while y < raster.height {
        let rows = band_rows.min(raster.height - y);
        out.extend_from_slice(&[0x1d, b'v', b'0', 0]);
        out.extend_from_slice(&(row_bytes as u16).to_le_bytes());
        out.extend_from_slice(&(rows as u16).to_le_bytes());
        let start = out.len();
        for row in y..y + rows {
            let mut bytes = vec![0u8; row_bytes as usize];
            for x in 0..raster.width {
                if raster.black(x, row) {
                    let d = x + offset;
                    bytes[(d / 8) as usize] |= 0x80 >> (d % 8);
                }
            }
            out.extend_from_slice(&bytes);
        }
        defuse_realtime(&mut out[start..]);
        y += rows;
    }
}

/// Printers act on real-time commands (`DLE EOT`, `DLE ENQ`, `DLE DC4` —
/// the last can pulse the drawer or power the printer off) wherever their
/// bytes appear, even inside image data (Epson ESC/POS reference, notes on
/// real-time commands). Such a pair loses one dot: the DLE byte's (0x10 is
/// a single black dot) turns white.
fn defuse_realtime(data: &mut [u8]) {
    for i in 0..data.len().saturating_sub(1) {
        if data[i] == 0x10 && matches!(data[i + 1], 0x04 | 0x05 | 0x14) {
            data[i] = 0;
        }
    }
}
