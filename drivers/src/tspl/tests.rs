//! TSPL bytes checked by hand against TSC's manual (PROTOCOLS.md §9).

use super::*;

const S203: Settings = Settings {
    dots_per_mm: 8,
    max_image_pixels: 1_000_000,
};

fn label(json: &str) -> Label {
    Label::from_json(json.as_bytes(), &Stock::default()).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn err(json: &str, stock: &Stock) -> String {
    match Label::from_json(json.as_bytes(), stock).and_then(|l| render(&l, &S203)) {
        Ok(b) => panic!("{json} rendered: {}", String::from_utf8_lossy(&b)),
        Err(e) => e.to_string(),
    }
}

fn gb(s: &str) -> Vec<u8> {
    encoding_rs::GB18030.encode(s).0.into_owned()
}

#[test]
fn a_price_label_is_the_documented_command_stream() {
    let l = label(
        r#"{"width_mm": 60, "height_mm": 40, "gap_mm": 2.5, "copies": 3, "items": [
            {"text": "苹果 \"红富士\"", "x": 20, "y": 16, "size": 2},
            {"barcode": {"type": "EAN13", "data": "6901234567892"}, "x": 20, "y": 80, "height": 64},
            {"qr": "https://shop.example/p/1", "x": 330, "y": 80, "cell": 5}
        ]}"#,
    );
    let out = render(&l, &S203).expect("render");
    let want = [
        b"SIZE 60 mm,40 mm\r\nGAP 2.5 mm,0 mm\r\nDIRECTION 1\r\nREFERENCE 0,0\r\nCLS\r\n".to_vec(),
        b"TEXT 20,16,\"TSS24.BF2\",0,2,2,\"".to_vec(),
        gb("苹果 "),
        b"\\[\"]".to_vec(),
        gb("红富士"),
        b"\\[\"]\"\r\n".to_vec(),
        b"BARCODE 20,80,\"EAN13\",64,1,0,2,2,\"690123456789\"\r\n".to_vec(),
        b"QRCODE 330,80,M,5,A,0,\"https://shop.example/p/1\"\r\n".to_vec(),
        b"PRINT 1,3\r\n".to_vec(),
    ]
    .concat();
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(out, want);
}

#[test]
fn pictures_are_inverted_bitmaps_in_overwrite_mode() {
    use ::image::{GrayImage, ImageFormat, Luma};
    // 10×2: the left dot of each row black.
    let img = GrayImage::from_fn(10, 2, |x, _| Luma([if x == 0 { 0 } else { 255 }]));
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .expect("png");
    let mut l =
        label(r#"{"width_mm": 40, "height_mm": 30, "items": [{"logo": "shop", "x": 8, "y": 4}]}"#);
    let data: Arc<[u8]> = png.into();
    l.resolve_logos(|n| (n == "shop").then(|| data.clone()))
        .expect("logo");
    let out = render(&l, &S203).expect("render");
    let head = b"BITMAP 8,4,2,2,0,";
    let at = out
        .windows(head.len())
        .position(|w| w == head)
        .expect("BITMAP");
    // 0 prints: 0x7F then 0xFF (the six unused bits stay paper), twice.
    assert_eq!(
        out[at + head.len()..at + head.len() + 6],
        [0x7f, 0xff, 0x7f, 0xff, b'\r', b'\n']
    );
    assert!(
        out.starts_with(b"SIZE 40 mm,30 mm\r\nGAP 2 mm,0 mm\r\n"),
        "gap defaults to 2 mm"
    );
    let e = label(r#"{"width_mm": 40, "height_mm": 30, "items": [{"logo": "x", "x": 0, "y": 0}]}"#)
        .resolve_logos(|_| None)
        .expect_err("unknown");
    assert_eq!(
        e.to_string(),
        "items[0].logo: no logo named \"x\" is configured ([[print.logo]])"
    );
}

#[test]
fn esc_bang_never_appears_in_picture_data() {
    let mut data = vec![0x1b, b'!', b'?', 0x1b, 0x1b, b'!'];
    defuse_immediate(&mut data);
    assert_eq!(data, [0x1f, b'!', b'?', 0x1b, 0x1f, b'!']);
}

#[test]
fn bad_labels_name_the_item_and_field() {
    let none = Stock::default();
    let cases = [
        (
            r#"{"height_mm": 30}"#,
            "width_mm: missing, and the printer has no default configured",
        ),
        (
            r#"{"width_mm": 2, "height_mm": 30}"#,
            "width_mm: 2 is not from 5 to 1000 mm",
        ),
        (
            r#"{"width_mm": 40, "height_mm": 30, "copies": 0}"#,
            "copies: 0 is not from 1 to 9999",
        ),
        (
            r#"{"width_mm": 40, "height_mm": 30, "items": [{"text": "a", "x": 400, "y": 0}]}"#,
            "items[0].x: 400 is outside the label (320 dots at 8 dots/mm)",
        ),
        (
            r#"{"width_mm": 40, "height_mm": 30, "items": [{"text": "a", "x": 0, "y": 0}, {"text": "😀", "x": 0, "y": 0}]}"#,
            "items[1]: '😀' is not in the printer's Chinese font (GBK)",
        ),
        (
            r#"{"width_mm": 40, "height_mm": 30, "items": [{"text": "a\nb", "x": 0, "y": 0}]}"#,
            "items[0]: text has the control character '\\n'",
        ),
        (
            r#"{"width_mm": 40, "height_mm": 30, "items": [{"text": "a", "x": 0, "y": 0, "size": 11}]}"#,
            "items[0]: size must be from 1 to 10, got 11",
        ),
        (
            r#"{"width_mm": 40, "height_mm": 30, "items": [{"barcode": {"type": "EAN13", "data": "6901234567890"}, "x": 0, "y": 0}]}"#,
            "items[0]: EAN13 check digit should be 2",
        ),
        (
            r#"{"width_mm": 40, "height_mm": 30, "items": [{"qr": "a\r\nb", "x": 0, "y": 0}]}"#,
            "items[0]: qr data cannot hold control characters",
        ),
        (
            r#"{"width_mm": 40, "height_mm": 30, "items": [{"text": "a", "qr": "b", "x": 0, "y": 0}]}"#,
            "items[0]: an item is exactly one of",
        ),
        (
            r#"{"width_mm": 40, "height_mm": 30, "items": [{"text": "a", "x": 0}]}"#,
            "items[0]: missing field `y`",
        ),
        (
            r#"{"width_mm": 40, "height_mm": 30, "items": [{"image": "!!", "x": 0, "y": 0}]}"#,
            "items[0]: image is not valid base64",
        ),
        (
            r#"{"width_mm": 40, "height_mm": 30, "colour": 1}"#,
            "unknown field `colour`",
        ),
    ];
    for (json, want) in cases {
        let e = err(json, &none);
        assert!(e.starts_with(want), "{json}: {e}");
    }
}

#[test]
fn the_stock_fills_in_a_labels_size() {
    let stock = Stock {
        width_mm: Some(50.0),
        height_mm: Some(30.0),
        gap_mm: Some(3.0),
    };
    let l = Label::from_json(br#"{"items": []}"#, &stock).expect("label");
    let out = render(&l, &S203).expect("render");
    assert!(
        out.starts_with(b"SIZE 50 mm,30 mm\r\nGAP 3 mm,0 mm\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(out.ends_with(b"CLS\r\nPRINT 1,1\r\n"));
}

#[test]
fn status_bits() {
    assert_eq!(
        status(0x00),
        PrinterStatus {
            online: true,
            ..PrinterStatus::default()
        }
    );
    assert_eq!(status(0x20), status(0x00), "printing is not a fault");
    assert!(status(0x01).cover_open && status(0x40).cover_open);
    assert!(status(0x02).jammed);
    assert_eq!(status(0x04).paper, Paper::Out);
    assert!(status(0x08).ribbon_out);
    assert!(!status(0x10).online && !status(0x80).online);
}
