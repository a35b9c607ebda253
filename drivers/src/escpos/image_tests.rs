//! Images in receipts: decoding, limits, scaling, dithering and the
//! `GS v 0` bytes (checked by hand for small pictures).

use super::image::{dither, gs_v_0, printed_size, raster, Raster, MAX_IMAGE_ROWS};
use super::*;
use ::image::{GrayImage, ImageFormat, Luma, LumaA, Rgba, RgbaImage};
use std::io::Cursor;

fn png(img: impl Into<::image::DynamicImage>) -> Vec<u8> {
    let mut out = Vec::new();
    img.into()
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .expect("encode png");
    out
}

/// A `w`×`h` picture, black where `black(x, y)`.
fn two_tone(w: u32, h: u32, black: impl Fn(u32, u32) -> bool) -> GrayImage {
    GrayImage::from_fn(w, h, |x, y| Luma([if black(x, y) { 0 } else { 255 }]))
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn doc_with(line: serde_json::Value) -> Result<Document, DocumentError> {
    let json = serde_json::json!({"lines": [{"text": "x"}, line]});
    Document::from_json(json.to_string().as_bytes())
}

#[test]
fn a_small_picture_is_one_band_of_exact_bytes() {
    // 10 dots wide: two bytes a row, the last six bits of the second unused.
    let img = two_tone(10, 3, |x, y| x == y || x == 9);
    let mut out = Vec::new();
    let r = raster(&png(img), None, 576, 1000).expect("raster");
    assert_eq!((r.width, r.height), (10, 3));
    gs_v_0(&mut out, &r, 0);
    assert_eq!(
        out,
        [
            0x1d,
            b'v',
            b'0',
            0,
            2,
            0,
            3,
            0, // 2 bytes a row, 3 rows
            0b1000_0000,
            0b0100_0000, // x = 0 and x = 9
            0b0100_0000,
            0b0100_0000, // x = 1 and x = 9
            0b0010_0000,
            0b0100_0000, // x = 2 and x = 9
        ]
    );
}

#[test]
fn alignment_shifts_by_white_dots() {
    let img = two_tone(8, 1, |_, _| true);
    let r = raster(&png(img), None, 384, 1000).expect("raster");
    let mut out = Vec::new();
    gs_v_0(&mut out, &r, 188);
    // 196 dots: 25 bytes; dots 188..196 are the low nibble of byte 23 and the high of 24.
    assert_eq!(out[4..8], [25, 0, 1, 0]);
    let mut row = [0u8; 25];
    row[23] = 0x0f;
    row[24] = 0xf0;
    assert_eq!(out[8..], row[..]);
    // Through the renderer: centered by default, at (384 - 8) / 2 = 188.
    let d = doc_with(serde_json::json!({"image": b64(&png(two_tone(8, 1, |_, _| true)))}))
        .expect("doc");
    let bytes = render(&d, &Profile::new(32, Encoding::Gb18030)).expect("render");
    assert!(bytes.ends_with(&out), "{bytes:x?}");
}

#[test]
fn tall_pictures_go_in_bands_under_4_kib() {
    let img = two_tone(576, 300, |x, y| (x + y) % 3 == 0);
    let r = raster(&png(img), None, 576, 1_000_000).expect("raster");
    let mut out = Vec::new();
    gs_v_0(&mut out, &r, 0);
    let mut at = 0;
    let mut rows = Vec::new();
    while at < out.len() {
        assert_eq!(
            out[at..at + 4],
            [0x1d, b'v', b'0', 0],
            "band header at {at}"
        );
        let x = u16::from_le_bytes([out[at + 4], out[at + 5]]) as usize;
        let y = u16::from_le_bytes([out[at + 6], out[at + 7]]) as usize;
        assert_eq!(x, 72);
        assert!(x * y <= 4096, "band of {y} rows is {} bytes", x * y);
        rows.push(y);
        at += 8 + x * y;
    }
    assert_eq!(at, out.len());
    assert_eq!(rows.iter().sum::<usize>(), 300);
    assert_eq!(rows[0], 56, "4096 / 72 rows a band");
}

#[test]
fn scaling_keeps_the_aspect_ratio() {
    assert_eq!(printed_size((100, 50), Some(200), 576), Ok((200, 100)));
    assert_eq!(printed_size((1000, 500), None, 576), Ok((576, 288)));
    assert_eq!(printed_size((100, 50), None, 576), Ok((100, 50)));
    assert_eq!(printed_size((3, 1), Some(1), 576), Ok((1, 1)));
    let e = printed_size((100, 50), Some(600), 576).expect_err("too wide");
    assert!(e.contains("wider than the printer's 576 dots"), "{e}");
    let e = printed_size((1, 1000), Some(576), 576).expect_err("too tall");
    assert!(e.contains(&format!("at most {MAX_IMAGE_ROWS}")), "{e}");
    // Up and down, the picture stays what it was: a black left half.
    let img = png(two_tone(40, 20, |x, _| x < 20));
    for w in [20, 80] {
        let r = raster(&img, Some(w), 576, 1000).expect("raster");
        assert_eq!((r.width, r.height), (w, w / 2));
        assert!(r.black(1, 1) && !r.black(w - 2, 1));
    }
}

#[test]
fn gray_is_dithered_and_transparency_is_paper() {
    let gray = GrayImage::from_pixel(64, 64, Luma([128]));
    let r = dither(&gray);
    let black = (0..64)
        .flat_map(|y| (0..64).map(move |x| (x, y)))
        .filter(|&(x, y)| r.black(x, y))
        .count();
    assert!((1900..=2200).contains(&black), "half of 4096: {black}");
    // Transparent black pixels print as white paper; opaque ones black.
    let mut rgba = RgbaImage::from_pixel(8, 1, Rgba([0, 0, 0, 0]));
    rgba.put_pixel(0, 0, Rgba([0, 0, 0, 255]));
    let r = raster(&png(rgba), None, 576, 1000).expect("raster");
    assert_eq!(r.bits, [0x80]);
    let la = ::image::ImageBuffer::from_fn(8, 1, |x, _| LumaA([0u8, if x < 4 { 255 } else { 0 }]));
    let r = raster(
        &png(::image::DynamicImage::ImageLumaA8(la)),
        None,
        576,
        1000,
    )
    .expect("raster");
    assert_eq!(r.bits, [0xf0]);
}

#[test]
fn jpeg_is_read_too() {
    let mut jpg = Vec::new();
    ::image::DynamicImage::ImageLuma8(two_tone(16, 16, |x, _| x < 8))
        .write_to(&mut Cursor::new(&mut jpg), ImageFormat::Jpeg)
        .expect("encode jpeg");
    let r = raster(&jpg, None, 576, 1000).expect("raster");
    assert_eq!((r.width, r.height), (16, 16));
    assert!(r.black(2, 8) && !r.black(13, 8));
}

#[test]
fn bombs_and_corrupt_files_are_refused_before_decoding() {
    // A 3000×3000 white PNG is a few kilobytes: 9 M pixels from a tiny file.
    let bomb = png(GrayImage::from_pixel(3000, 3000, Luma([255])));
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let e = raster(&bomb, None, 576, DEFAULT_MAX_IMAGE_PIXELS).expect_err("bomb");
    assert!(
        e.contains("3000×3000") && e.contains("print.max_image_pixels"),
        "{e}"
    );
    // A header claiming 65535×65535 with no pixel data behind it.
    let e = raster(
        &crafted_png(65535, 65535),
        None,
        576,
        DEFAULT_MAX_IMAGE_PIXELS,
    )
    .expect_err("crafted");
    assert!(e.contains("65535×65535"), "{e}");
    let good = png(two_tone(20, 20, |x, _| x < 10));
    let cut = &good[..good.len() / 2];
    assert!(raster(cut, None, 576, 1000).is_err());
    let mut garbage = b"\x89PNG\r\n\x1a\n".to_vec();
    garbage.extend_from_slice(&[0x55; 100]);
    let e = raster(&garbage, None, 576, 1000).expect_err("garbage");
    assert!(e.starts_with("the image cannot be"), "{e}");
    let e = raster(b"GIF89a", None, 576, 1000).expect_err("gif");
    assert_eq!(e, "the image is not a PNG or JPEG");
    assert!(raster(&[0xff, 0xd8, 0xff, 0xe0, 0, 0], None, 576, 1000).is_err());
}

/// A PNG whose header says `w`×`h` and whose one data chunk is empty.
fn crafted_png(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit gray
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// CRC-32 (IEEE), bit by bit: enough for a test's few bytes.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn realtime_commands_never_appear_in_image_data() {
    // A row whose bytes would be DLE EOT 1 and DLE DC4 1 (a drawer pulse).
    let bits = vec![0x10, 0x04, 0x01, 0x10, 0x14, 0x01];
    let r = Raster {
        width: 48,
        height: 1,
        bits,
    };
    let mut out = Vec::new();
    gs_v_0(&mut out, &r, 0);
    assert_eq!(out[8..], [0x00, 0x04, 0x01, 0x00, 0x14, 0x01]);
}

#[test]
fn image_and_logo_lines_parse_and_name_their_line() {
    let pic = b64(&png(two_tone(8, 8, |x, _| x < 4)));
    let d = doc_with(serde_json::json!({"image": format!("data:image/png;base64,{pic}"), "align": "left", "width": 16}))
        .expect("data URL");
    match &d.lines[1] {
        Line::Image(i) => assert_eq!((i.align, i.width), (Align::Left, Some(16))),
        other => panic!("{other:?}"),
    }
    let cases = [
        (
            serde_json::json!({"image": "not base64!"}),
            "lines[1]: image is not valid base64",
        ),
        (
            serde_json::json!({"image": b64(b"GIF89a")}),
            "lines[1]: image is not a PNG or JPEG",
        ),
        (
            serde_json::json!({"image": pic, "width": 0}),
            "lines[1]: width must be from 1 to 2048",
        ),
        (
            serde_json::json!({"image": pic, "bold": true}),
            "lines[1]: unknown field `bold`",
        ),
        (
            serde_json::json!({"logo": ""}),
            "lines[1]: logo name is empty",
        ),
        (
            serde_json::json!({"logo": "a", "image": pic}),
            "lines[1]: a line is exactly one of",
        ),
    ];
    for (line, want) in cases {
        let e = doc_with(line.clone()).expect_err("refused").to_string();
        assert!(e.starts_with(want), "{line}: {e}");
    }
    // A logo is replaced by its picture; an unknown one names its line.
    let mut d = doc_with(serde_json::json!({"logo": "shop", "align": "right"})).expect("logo");
    let e = render(&d, &Profile::default()).expect_err("unresolved");
    assert!(e.to_string().starts_with("lines[1]: logo \"shop\""), "{e}");
    let data: std::sync::Arc<[u8]> = png(two_tone(8, 8, |x, _| x < 4)).into();
    let e = d.clone().resolve_logos(|_| None).expect_err("unknown");
    assert_eq!(
        e.to_string(),
        "lines[1]: no logo named \"shop\" is configured ([[print.logo]])"
    );
    d.resolve_logos(|n| (n == "shop").then(|| data.clone()))
        .expect("resolved");
    let bytes = render(&d, &Profile::default()).expect("render");
    // Right-aligned on 576 dots: 72 bytes a row, the picture in the last byte.
    assert!(
        bytes.ends_with(&[[0u8; 71].as_slice(), &[0xf0]].concat()),
        "{bytes:x?}"
    );
}

#[test]
fn an_image_over_the_limits_is_a_render_error_on_its_line() {
    let d = doc_with(serde_json::json!({"image": b64(&png(two_tone(100, 10, |_, _| true)))}))
        .expect("doc");
    let small = Profile {
        max_image_pixels: 999,
        ..Profile::default()
    };
    let e = render(&d, &small).expect_err("too many pixels").to_string();
    assert!(
        e.starts_with("lines[1]: the image is 100×10 pixels (1000); at most 999"),
        "{e}"
    );
    let wide = doc_with(
        serde_json::json!({"image": b64(&png(two_tone(10, 10, |_, _| true))), "width": 400}),
    )
    .expect("doc");
    let e = render(&wide, &Profile::new(32, Encoding::Gb18030))
        .expect_err("wide")
        .to_string();
    assert!(e.contains("wider than the printer's 384 dots"), "{e}");
    assert_eq!(Profile::new(32, Encoding::Ascii).dots(), 384);
    assert_eq!(Profile::new(42, Encoding::Ascii).dots(), 576);
}
