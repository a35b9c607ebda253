//! Any sequence of HID-POS reports, of any size, with timers firing anywhere:
//! the scanner protocol must never panic, every emitted scan must be
//! non-empty text, and no malformed-report message may echo report data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::hid::{HidPosScanner, Options};
use posbridge_drivers::{Action, Event, Instant, Protocol};

fuzz_target!(|data: &[u8]| {
    let mut p = HidPosScanner::new(Options {
        continuation_timeout_ms: 50,
        ..Options::default()
    });
    let mut out = Vec::new();
    let mut now = 0u64;
    p.handle_open(Instant(now), &mut out);
    // Each report is a size byte (0..=70, so whole 64-byte reports are common)
    // then that many bytes.
    let mut rest = data;
    while let Some((&size, tail)) = rest.split_first() {
        let size = usize::from(size) % 71;
        let (report, tail) = tail.split_at(size.min(tail.len()));
        rest = tail;
        now += 10;
        p.handle_bytes(Instant(now), report, &mut out);
        if size % 5 == 0 {
            p.handle_timer(Instant(now + 50), &mut out);
        }
    }
    p.handle_timer(Instant(now + 1000), &mut out);
    for a in out {
        match a {
            Action::Emit(Event::CodeScanned { text, .. }) => assert!(!text.is_empty()),
            Action::Emit(other) => panic!("unexpected event {}", other.kind()),
            Action::Malformed(m) => assert!(m.is_ascii()),
            _ => {}
        }
    }
});
