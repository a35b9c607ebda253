//! Any bytes, split anywhere, with timers firing anywhere: the magstripe
//! protocol must never panic, must decode split reads exactly like one read
//! (so splitting cannot slip a bank card past the guard), must never emit a
//! swipe the payment-card guard flags, and must never echo input in its
//! `Malformed` messages or reveal more than 10 digits of a masked number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::magstripe::{is_payment_card, Magstripe, Options};
use posbridge_drivers::{Action, Event, Instant, Protocol};

/// Feeds `reads` at one instant, then fires the idle timer; timers left out.
fn decode(opts: &Options, reads: &mut dyn Iterator<Item = &[u8]>) -> Vec<Action> {
    let mut p = Magstripe::new(opts.clone());
    let mut out = Vec::new();
    p.handle_open(Instant(0), &mut out);
    for r in reads {
        p.handle_bytes(Instant(0), r, &mut out);
    }
    p.handle_timer(Instant(1_000_000), &mut out);
    out.retain(|a| !matches!(a, Action::SetTimer(_)));
    out
}

fn check(a: &Action) {
    match a {
        Action::Emit(Event::CardSwiped { card_no, tracks }) => {
            assert!(!card_no.is_empty());
            assert!(!is_payment_card(tracks));
        }
        Action::Emit(Event::CardRejected {
            masked: Some(m), ..
        }) => {
            assert!(m.bytes().filter(u8::is_ascii_digit).count() <= 10);
        }
        Action::Malformed(m) => {
            let rest = m.trim_start_matches(|c: char| c.is_ascii_digit());
            assert!(
                rest == " byte outside any track skipped"
                    || rest == " bytes outside any track skipped"
                    || rest
                        == " bytes outside any track skipped (a track longer than 120 characters)",
                "unexpected Malformed text"
            );
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks split points (low bits) and LRC mode (top bit), so
    // one input explores many read boundaries.
    let (sel, bytes) = match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => return,
    };
    let step = usize::from(sel % 31) + 1;
    let opts = Options {
        idle_ms: 50,
        lrc: sel & 0x80 != 0,
    };

    let whole = decode(&opts, &mut std::iter::once(bytes));
    let split = decode(&opts, &mut bytes.chunks(step));
    assert!(whole == split, "split reads decode differently");

    // Timers firing mid-swipe change where swipes end, never the guard.
    let mut p = Magstripe::new(opts.clone());
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
    for a in whole.iter().chain(out.iter()) {
        check(a);
    }
});
