//! Any bytes as a print document: parsing and rendering for a few printer
//! profiles must never panic, and the output stays within a small multiple
//! of the input plus each picture's raster (no blow-up a client could trigger).
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::escpos::image::MAX_IMAGE_ROWS;
use posbridge_drivers::escpos::{
    render, CutMode, Document, DrawerKick, DrawerPin, Encoding, Line, Profile,
};

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = Document::from_json(data) else {
        return;
    };
    let profiles = [
        Profile::default(),
        Profile {
            cut: CutMode::Full,
            ..Profile::new(32, Encoding::Ascii)
        },
        Profile {
            chinese_mode: false,
            cut: CutMode::None,
            drawer: DrawerKick {
                pin: DrawerPin::Pin5,
                on: 0,
                off: 0,
            },
            ..Profile::new(1, Encoding::Gb18030)
        },
    ];
    // A picture prints as raster at most the paper wide and MAX_IMAGE_ROWS
    // tall, whatever its file's size.
    let pictures = doc
        .lines
        .iter()
        .filter(|l| matches!(l, Line::Image(_)))
        .count();
    for profile in &profiles {
        if let Ok(out) = render(&doc, profile) {
            let raster = (profile.dots() as usize / 8 + 1) * MAX_IMAGE_ROWS as usize * 2;
            assert!(out.starts_with(b"\x1b@"));
            assert!(
                out.len() <= 8 * data.len() + 64 + pictures * raster,
                "{} bytes of output from {} of input",
                out.len(),
                data.len()
            );
        }
    }
});
