//! Any bytes as a receipt picture (the first two bytes, little-endian, are
//! the width asked; 0 for none): decoding, scaling, dithering and `GS v 0`
//! must never panic, stay within the printer's width and the height limit,
//! and never carry a real-time command in the image data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::escpos::image::{gs_v_0, raster, MAX_IMAGE_ROWS};

fuzz_target!(|data: &[u8]| {
    let [lo, hi, picture @ ..] = data else {
        return;
    };
    let width = match u16::from_le_bytes([*lo, *hi]) {
        0 => None,
        w => Some(u32::from(w)),
    };
    for paper in [384, 576] {
        let Ok(r) = raster(picture, width, paper, 1_000_000) else {
            continue;
        };
        assert!(r.width >= 1 && r.width <= paper && r.height <= MAX_IMAGE_ROWS);
        assert_eq!(r.bits.len(), r.row_bytes() * r.height as usize);
        let mut out = Vec::new();
        gs_v_0(&mut out, &r, paper - r.width);
        let mut at = 0;
        while at < out.len() {
            assert_eq!(out[at..at + 4], [0x1d, b'v', b'0', 0]);
            let x = usize::from(u16::from_le_bytes([out[at + 4], out[at + 5]]));
            let y = usize::from(u16::from_le_bytes([out[at + 6], out[at + 7]]));
            let band = &out[at + 8..at + 8 + x * y];
            assert!(!band
                .windows(2)
                .any(|w| w[0] == 0x10 && matches!(w[1], 0x04 | 0x05 | 0x14)));
            at += 8 + x * y;
        }
    }
});
