//! Any bytes, split anywhere, with timers firing anywhere, in every format:
//! the caller-ID protocol must never panic, must announce each call once and
//! end it once, and only after announcing it; the number helpers must agree
//! with each other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::callerid::hid::example_layout;
use posbridge_drivers::callerid::number::{lookup_keys, normalize};
use posbridge_drivers::callerid::{check_call_life, detect_format, CallerId, Format, Options};
use posbridge_drivers::{Instant, Protocol};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the format and split points.
    let (sel, bytes) = match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => return,
    };
    let format = match sel % 8 {
        0 => Format::Auto,
        1 => Format::Modem,
        2 => Format::Mdmf,
        3 => Format::Sdmf,
        4 => Format::Etsi,
        5 => Format::Dtmf,
        6 => Format::Ncid,
        _ => Format::Hid,
    };
    let step = usize::from(sel / 8 % 31) + 1;
    let mut p = CallerId::new(Options {
        format,
        call_id_prefix: "c".into(),
        hid_layout: Some(example_layout()),
        ..Options::default()
    });
    let mut out = Vec::new();
    let mut now = 0u64;
    p.handle_open(Instant(now), &mut out);
    for chunk in bytes.chunks(step) {
        // Chunk bytes also pick how much time passes, so timeouts happen mid-call.
        now += chunk.first().map_or(10, |b| u64::from(*b) * 40);
        p.handle_bytes(Instant(now), chunk, &mut out);
        if chunk.first().is_some_and(|b| b % 3 == 0) {
            p.handle_timer(Instant(now + 600), &mut out);
        }
    }
    // Quiet from here on: a flushed partial line may complete a modem block,
    // which may start a call, which its ring timeout then ends.
    for i in 1..=4 {
        p.handle_timer(Instant(now + i * 100_000), &mut out);
    }

    let (rung, over) = check_call_life(&out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rung, over);
    assert!(p.calls_in_progress().is_empty());

    let _ = detect_format(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        let n = normalize(s, "86");
        let keys = lookup_keys(s, "86");
        if let Some(n) = n {
            // A normalized number is its own first key and normalizes to itself.
            assert_eq!(keys.first(), Some(&n));
            assert_eq!(normalize(&n, "86").as_ref(), Some(&n));
        }
    }
});
