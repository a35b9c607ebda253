//! Any bytes from an ID-card reader, split anywhere, with timers and forced
//! reads anywhere: the frame parser and the engine must never panic, never
//! buffer without bound, and every emitted card must carry an id number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::idcard::frame::{FrameParser, MAX_BUFFERED};
use posbridge_drivers::idcard::{IdCardReader, Options};
use posbridge_drivers::{Action, Event, Instant, Protocol};

fuzz_target!(|data: &[u8]| {
    // The first byte picks split points and options, so one input explores
    // many read boundaries.
    let (first, bytes) = match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => return,
    };
    let step = usize::from(first % 61) + 1;

    let mut parser = FrameParser::new();
    for chunk in bytes.chunks(step) {
        parser.push(chunk);
        while let Some(r) = parser.pop() {
            if let Ok(resp) = r {
                assert!(resp.data.len() < 0x0A00);
            }
        }
        assert!(parser.buffered() <= MAX_BUFFERED);
    }

    let mut r = IdCardReader::new(Options {
        fingerprint: first & 0x80 != 0,
        silent_after: u32::from(first >> 5 & 3),
        ..Options::default()
    });
    let mut out = Vec::new();
    let mut now = 0u64;
    r.handle_open(Instant(now), &mut out);
    for chunk in bytes.chunks(step) {
        now += 7;
        r.handle_bytes(Instant(now), chunk, &mut out);
        match chunk.first().map(|b| b % 7) {
            Some(0) => {
                now += 1000;
                r.handle_timer(Instant(now), &mut out);
            }
            Some(1) => r.handle_timer(Instant(now), &mut out),
            Some(2) => {
                r.request_read(Instant(now), &mut out);
            }
            _ => {}
        }
    }
    r.handle_timer(Instant(now + 5000), &mut out);
    for a in out {
        if let Action::Emit(Event::IdcardRead(card)) = a {
            assert!(!card.id_number.is_empty());
        }
    }
});
