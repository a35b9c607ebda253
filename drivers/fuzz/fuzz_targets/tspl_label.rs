//! Any bytes as a label (`POST /v1/print` `{"label": …}`): parsing and TSPL
//! rendering at 203 and 300 dpi must never panic, every command line ends
//! CR LF, and the output stays within the input's size plus each picture's
//! bitmap. The first byte is also read as an `ESC ! ?` answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::escpos::image::MAX_IMAGE_ROWS;
use posbridge_drivers::tspl::{render, status, Item, Label, Settings, Stock};

fuzz_target!(|data: &[u8]| {
    if let Some(&b) = data.first() {
        let s = status(b);
        assert_eq!(s.online, b & 0x90 == 0);
    }
    let stock = Stock {
        width_mm: Some(40.0),
        height_mm: Some(30.0),
        gap_mm: None,
    };
    let Ok(label) = Label::from_json(data, &stock) else {
        return;
    };
    let pictures = label
        .items
        .iter()
        .filter(|i| matches!(i, Item::Image { .. }))
        .count();
    for dots_per_mm in [8, 12] {
        let s = Settings {
            dots_per_mm,
            max_image_pixels: 1_000_000,
        };
        if let Ok(out) = render(&label, &s) {
            assert!(out.starts_with(b"SIZE ") && out.ends_with(b"\r\n"));
            let bitmap = (1000 * 12 / 8 + 1) * MAX_IMAGE_ROWS as usize;
            assert!(out.len() <= 4 * data.len() + 256 + pictures * bitmap);
        }
    }
});
