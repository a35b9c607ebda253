//! Pictures on receipts end to end: a fake network printer receives logos
//! and images as `GS v 0` raster, which is decoded back here and compared
//! with the source picture; bad pictures are refused before anything is queued.

use crate::common::printer::*;
use crate::common::*;
use crate::print::{config, printer, submit, wait_state};
use image::{GrayImage, ImageFormat, Luma};
use serde_json::json;
use std::io::Cursor;
use std::time::Duration;

fn png(img: &GrayImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .expect("encode png");
    out
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A picture as the printer received it: rows of `row_bytes` bytes.
struct Picture {
    row_bytes: usize,
    rows: Vec<Vec<u8>>,
}

impl Picture {
    fn black(&self, x: usize, y: usize) -> bool {
        self.rows[y][x / 8] & (0x80 >> (x % 8)) != 0
    }
}

/// Every `GS v 0 0 xL xH yL yH data` in `data`; bands that follow one
/// another directly, with the same row width, are one picture.
fn pictures(data: &[u8]) -> Vec<Picture> {
    let mut out: Vec<Picture> = Vec::new();
    let (mut i, mut last_end) = (0, usize::MAX);
    while i + 8 <= data.len() {
        if data[i..i + 4] != [0x1d, b'v', b'0', 0] {
            i += 1;
            continue;
        }
        let x = usize::from(u16::from_le_bytes([data[i + 4], data[i + 5]]));
        let y = usize::from(u16::from_le_bytes([data[i + 6], data[i + 7]]));
        let body = &data[i + 8..i + 8 + x * y];
        let rows = body.chunks(x).map(<[u8]>::to_vec);
        match out.last_mut() {
            Some(p) if last_end == i && p.row_bytes == x => p.rows.extend(rows),
            _ => out.push(Picture {
                row_bytes: x,
                rows: rows.collect(),
            }),
        }
        i += 8 + x * y;
        last_end = i;
    }
    out
}

/// A two-tone logo: a frame, a disc and stripes (what a shop's logo is like).
fn logo() -> GrayImage {
    GrayImage::from_fn(200, 60, |x, y| {
        let frame = x < 3 || y < 3 || x >= 197 || y >= 57;
        let (dx, dy) = (x as i32 - 40, y as i32 - 30);
        let disc = dx * dx + dy * dy < 400;
        let stripes = x > 80 && x < 190 && (x + y) % 9 < 3;
        Luma([if frame || disc || stripes { 0 } else { 255 }])
    })
}

#[tokio::test]
async fn a_png_logo_and_a_scaled_image_arrive_as_the_raster_of_their_pixels() {
    let p = FakePrinter::start(NORMAL).await;
    let dir = tempfile::tempdir().expect("tmp");
    let logo_file = dir.path().join("shop.png");
    std::fs::write(&logo_file, png(&logo())).expect("write logo");
    let d = Daemon::start(&config(&format!(
        "{}[[print.logo]]\nname = \"shop\"\nfile = \"{}\"\n",
        printer("printer-58", p.addr, "width_dots = 384"),
        logo_file.display()
    )))
    .await;
    // 40×20 squares of 10, printed 120 wide: three times their size.
    let checker = GrayImage::from_fn(40, 20, |x, y| {
        Luma([if (x / 10 + y / 10) % 2 == 0 { 0 } else { 255 }])
    });
    let job = submit(
        &d,
        json!({"printer": "printer-58", "document": {"lines": [
            {"text": "会员"}, {"logo": "shop"},
            {"image": b64(&png(&checker)), "width": 120, "align": "left"}, {"cut": true}
        ]}}),
    )
    .await;
    wait_state(&d, &job, "printed").await;
    let data = p.data();
    let gb = encoding_rs::GB18030.encode("会员\n").0.into_owned();
    assert!(data.windows(gb.len()).any(|w| w == gb), "the text prints");
    assert!(data.ends_with(&[0x1d, b'V', 66, 0]), "the cut comes last");
    let pics = pictures(&data);
    assert_eq!(pics.len(), 2, "two pictures");

    // The logo, centered on 384 dots: 92 white dots, then its 200, row for row.
    let (l, src) = (&pics[0], logo());
    assert_eq!(
        (l.row_bytes, l.rows.len()),
        ((92 + 200usize).div_ceil(8), 60)
    );
    for y in 0..60 {
        for x in 0..l.row_bytes * 8 {
            let want = (92..292).contains(&x) && src.get_pixel(x as u32 - 92, y as u32).0[0] < 128;
            assert_eq!(l.black(x, y as usize), want, "logo dot ({x}, {y})");
        }
    }

    // The checkerboard, 120×60 at the left: every dot away from a square's
    // edge (where scaling blends) matches its square.
    let c = &pics[1];
    assert_eq!((c.row_bytes, c.rows.len()), (15, 60));
    for y in (0..60).filter(|y| (3..27).contains(&(y % 30))) {
        for x in (0..120).filter(|x| (3..27).contains(&(x % 30))) {
            let want = (x / 30 + y / 30) % 2 == 0;
            assert_eq!(c.black(x, y), want, "checker dot ({x}, {y})");
        }
    }
    d.stop().await;
}

/// A PNG whose header claims 3000×3000 and whose pixels are all one white:
/// 9 million pixels in a few kilobytes.
fn bomb() -> Vec<u8> {
    png(&GrayImage::from_pixel(3000, 3000, Luma([255])))
}

#[tokio::test]
async fn corrupt_images_bombs_and_unknown_logos_are_refused_before_anything_is_queued() {
    let p = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config(&format!(
        "{}[print]\nmax_image_pixels = 20000\n",
        printer("printer-1", p.addr, "")
    )))
    .await;
    let small = png(&GrayImage::from_pixel(10, 10, Luma([0])));
    let mut corrupt = small.clone();
    corrupt.truncate(small.len() / 2);
    let bomb = bomb();
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let cases = [
        (json!({"image": b64(&corrupt)}), "the image cannot be"),
        (
            json!({"image": b64(&bomb)}),
            "the image is 3000×3000 pixels (9000000); at most 20000 (print.max_image_pixels)",
        ),
        (
            json!({"image": b64(&png(&GrayImage::from_pixel(150, 150, Luma([0]))))}),
            "the image is 150×150 pixels (22500); at most 20000",
        ),
        (
            json!({"image": b64(&small), "width": 600}),
            "width 600 is wider than the printer's 576 dots",
        ),
        (
            json!({"image": b64(b"GIF89a....")}),
            "image is not a PNG or JPEG",
        ),
        (json!({"image": "%%%"}), "image is not valid base64"),
        (
            json!({"logo": "shop"}),
            "no logo named \"shop\" is configured ([[print.logo]])",
        ),
    ];
    for (line, want) in cases {
        let shown = line.to_string().chars().take(60).collect::<String>();
        let body = json!({"printer": "printer-1", "document": {"lines": [{"text": "x"}, line]}});
        let (status, v) = d.post_json("/v1/print", &body).await;
        assert_eq!(status, 400, "{shown}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{shown}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with(&format!("document.lines[1]: {want}")),
            "{shown}: {msg}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(p.data().is_empty(), "nothing refused reached the printer");
    d.stop().await;
}

#[test]
fn logo_and_image_config_errors_name_their_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good.png");
    std::fs::write(&good, png(&logo())).expect("write");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a picture").expect("write");
    let big = dir.path().join("big.png");
    std::fs::write(&big, bomb()).expect("write");
    let logo = |name: &str, file: &std::path::Path| {
        format!(
            "[[print.logo]]\nname = \"{name}\"\nfile = \"{}\"\n",
            file.display()
        )
    };
    let addr = "127.0.0.1:9100".parse().expect("addr");
    let cases = [
        (
            logo("shop", &dir.path().join("missing.png")),
            "print.logo[0].file",
            "No such file",
        ),
        (
            logo("shop", &text),
            "print.logo[0].file",
            "not a PNG or JPEG",
        ),
        (logo("shop", &big), "print.logo[0].file", "3000×3000"),
        (
            format!("{}{}", logo("shop", &good), logo("shop", &good)),
            "print.logo[1].name",
            "already the name of another logo",
        ),
        (
            logo("a shop", &good),
            "print.logo[0].name",
            "1-64 characters",
        ),
        (
            "[print]\nmax_image_pixels = 10\n".into(),
            "print.max_image_pixels",
            "from 10000",
        ),
    ];
    for (extra, key, why) in cases {
        let text = config(&format!("{}{extra}", printer("p", addr, "")));
        let err = posbridge::Config::parse(&text, std::iter::empty(), "t")
            .expect_err(key)
            .to_string();
        let line = err.lines().find(|l| l.contains(&format!("{key}:")));
        assert!(line.is_some_and(|l| l.contains(why)), "{key}: {err}");
    }
    let err = posbridge::Config::parse(
        &config(&printer("p", addr, "width_dots = 100")),
        std::iter::empty(),
        "t",
    )
    .expect_err("narrow")
    .to_string();
    assert!(
        err.contains("device[0].width_dots: 100 is not from 128 to 2048"),
        "{err}"
    );
    let ok = config(&format!(
        "{}{}",
        printer("p", addr, "width_dots = 384"),
        logo("shop", &good)
    ));
    posbridge::Config::parse(&ok, std::iter::empty(), "t").expect("a logo and width_dots load");
}
