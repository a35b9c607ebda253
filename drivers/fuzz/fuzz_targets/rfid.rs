//! Any bytes, split anywhere, with timers firing anywhere, in every format:
//! the RFID protocol must never panic and every card it emits must have an
//! upper-case hex uid and, when present, a 10-digit decimal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::rfid::{decimal_to_hex, hex_to_decimal, Options, Rfid, RfidFormat};
use posbridge_drivers::{Action, Event, Instant, Protocol};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the format and split points.
    let (sel, bytes) = match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => return,
    };
    let format = match sel % 5 {
        0 => RfidFormat::Auto,
        1 => RfidFormat::Decimal10,
        2 => RfidFormat::Hex8,
        3 => RfidFormat::Hex10,
        _ => RfidFormat::Wiegand26,
    };
    let step = usize::from(sel / 5 % 13) + 1;
    let mut p = Rfid::new(Options {
        format,
        idle_flush_ms: Some(50),
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
        if let Action::Emit(Event::CardTapped { uid, decimal, .. }) = a {
            assert!(matches!(uid.len(), 6 | 8 | 10));
            assert!(uid
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
            if let Some(d) = decimal {
                assert!(d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit()));
                // The two printed forms agree.
                let hex = decimal_to_hex(&d).unwrap_or_default();
                assert_eq!(hex_to_decimal(&hex).as_deref(), Some(d.as_str()));
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        if let Some(hex) = decimal_to_hex(s) {
            assert_eq!(hex.len(), 8);
        }
        if let Some(dec) = hex_to_decimal(s) {
            assert_eq!(dec.len(), 10);
        }
    }
});
