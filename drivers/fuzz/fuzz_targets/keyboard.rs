//! Any key events and any hidraw keyboard reports: the translators must never
//! panic and must only ever type printable ASCII, CR or Tab.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::keyboard::{HidKeyboard, KeyDecoder};

fn typable(b: u8) -> bool {
    b == b'\r' || b == b'\t' || (b' '..=b'~').contains(&b)
}

fuzz_target!(|data: &[u8]| {
    // Three bytes per evdev event: a keycode (mostly in the mapped range, but
    // the high bit of the second byte reaches all of u16) and a value.
    let mut keys = KeyDecoder::new();
    let mut text = Vec::new();
    for ev in data.chunks_exact(3) {
        let code = if ev[1] & 0x80 != 0 {
            u16::from_le_bytes([ev[0], ev[1]])
        } else {
            u16::from(ev[0])
        };
        let value = i32::from(ev[2] % 5) - 1; // -1..=3: press, release, repeat and junk
        keys.feed(code, value, &mut text);
    }
    assert!(text.iter().all(|&b| typable(b)));

    // The same bytes as boot-keyboard reports, with and without a report id.
    let mut plain = HidKeyboard::new();
    let mut with_id = HidKeyboard::with_report_id(1);
    let mut text = Vec::new();
    for report in data.chunks(8) {
        let _ = plain.report_to_text(report, &mut text);
    }
    for report in data.chunks(9) {
        let _ = with_id.report_to_text(report, &mut text);
    }
    assert!(text.iter().all(|&b| typable(b)));
});
