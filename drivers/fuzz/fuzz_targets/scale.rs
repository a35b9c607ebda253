//! Any bytes from any kind of scale, split anywhere, with timers firing
//! anywhere: no panic, a stable reading is never an overload, and unstable
//! readings are published at most once per 100 ms of (simulated) time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::scale::{Kind, Options, Scale, UNSTABLE_EVERY_MS};
use posbridge_drivers::{Action, Event, Instant, Protocol};

fuzz_target!(|data: &[u8]| {
    // The public frame decoders take any slice, not only what their framers cut.
    let _ = posbridge_drivers::scale::aclas::decode(data);
    let _ = posbridge_drivers::scale::decode_report(data);
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let kind = [Kind::Toledo, Kind::Continuous, Kind::Aclas, Kind::Hid][usize::from(pick % 4)];
    let step = usize::from(pick >> 2) % 24 + 1;
    let mut p = Scale::new(Options::new(kind));
    let mut out = Vec::new();
    let mut now = 0u64;
    let mut last_unstable: Option<u64> = None;
    p.handle_open(Instant(now), &mut out);
    for chunk in bytes.chunks(step) {
        now += 7;
        p.handle_bytes(Instant(now), chunk, &mut out);
        if chunk.first().is_some_and(|b| b % 5 == 0) {
            p.handle_timer(Instant(now), &mut out);
        }
        for a in out.drain(..) {
            if let Action::Emit(Event::ScaleWeight(w)) = a {
                assert!(!(w.stable && w.overload));
                if !w.stable {
                    if let Some(t) = last_unstable {
                        assert!(now >= t + UNSTABLE_EVERY_MS);
                    }
                    last_unstable = Some(now);
                }
            }
        }
    }
});
