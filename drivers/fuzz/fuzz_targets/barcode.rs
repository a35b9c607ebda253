//! Any bytes, split anywhere, with timers firing anywhere: the barcode
//! protocol must never panic and every emitted scan must be non-empty text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::barcode::{Barcode, Options};
use posbridge_drivers::{Action, Event, Instant, Protocol};

fuzz_target!(|data: &[u8]| {
    // The first byte picks split points, so one input explores many read boundaries.
    let (step, bytes) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s % 31) + 1, rest),
        None => return,
    };
    let mut p = Barcode::new(Options {
        idle_flush_ms: Some(50),
        ..Options::default()
    });
    let mut out = Vec::new();
    let mut now = 0u64;
    p.handle_open(Instant(now), &mut out);
    for chunk in bytes.chunks(step) {
        now += 10;
        p.handle_bytes(Instant(now), chunk, &mut out);
        if chunk.first().is_some_and(|b| b % 3 == 0) {
            p.handle_timer(Instant(now + 50), &mut out);
        }
    }
    p.handle_timer(Instant(now + 1000), &mut out);
    for a in out {
        if let Action::Emit(Event::CodeScanned { text, .. }) = a {
            assert!(!text.is_empty());
        }
    }
});
