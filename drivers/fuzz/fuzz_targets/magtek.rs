//! Any MagTek HID report: parsing must never panic, the rendered text must
//! be one line the magstripe decoder can take, and `Debug` must never depend
//! on track contents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::hid::{magtek_to_text, parse_magtek_report, MAGTEK_REPORT_LEN};

fuzz_target!(|data: &[u8]| {
    let _ = parse_magtek_report(data);
    // Padded to a full report, so the fuzzer explores the fields rather than
    // the length check. The first byte keeps lengths mostly in range.
    let mut report = data.to_vec();
    report.resize(MAGTEK_REPORT_LEN, 0);
    if let Some(first) = data.first() {
        if first & 1 == 0 {
            for t in 3..6 {
                report[t] %= 112;
            }
        }
    }
    let Ok(swipe) = parse_magtek_report(&report) else {
        return;
    };
    let text = magtek_to_text(&swipe);
    assert_eq!(text.last(), Some(&b'\r'));
    assert!(text[..text.len() - 1]
        .iter()
        .all(|&b| (0x20..=0x7E).contains(&b)));
    // Debug may depend on the tracks' lengths only: blanking every track's
    // contents must not change it.
    let mut blanked = swipe.clone();
    for track in blanked.tracks.iter_mut().flatten() {
        *track = "X".repeat(track.len());
    }
    assert_eq!(format!("{swipe:?}"), format!("{blanked:?}"));
});
