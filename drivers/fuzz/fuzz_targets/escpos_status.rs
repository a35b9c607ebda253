//! Any bytes from a printer, split anywhere, with timers firing anywhere: the
//! status reader and poller must never panic, and a status is only ever made
//! of bytes with the DLE EOT fixed bits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::escpos::{PrinterStatus, StatusPoller, StatusReader};
use posbridge_drivers::{Instant, Protocol};

fuzz_target!(|data: &[u8]| {
    let mut reader = StatusReader::new();
    let mut accepted = Vec::new();
    for &b in data {
        match reader.push(b) {
            Ok(status) => {
                accepted.push(b);
                if let Some(s) = status {
                    let n = accepted.len();
                    let again = PrinterStatus::from_responses(
                        accepted[n - 3],
                        accepted[n - 2],
                        accepted[n - 1],
                    );
                    assert_eq!(again, Ok(s));
                }
            }
            Err(e) => assert_eq!(e.byte, b),
        }
    }

    // The first byte picks split points, so one input explores many reads.
    let (step, bytes) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s % 7) + 1, rest),
        None => return,
    };
    let mut p = StatusPoller::new(500);
    let mut out = Vec::new();
    let mut now = 0u64;
    p.handle_open(Instant(now), &mut out);
    for chunk in bytes.chunks(step) {
        now += 100;
        p.handle_bytes(Instant(now), chunk, &mut out);
        if chunk.first().is_some_and(|b| b % 5 == 0) {
            p.handle_timer(Instant(now), &mut out);
        }
        out.clear();
    }
});
