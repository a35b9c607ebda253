//! Whozz Calling datagrams: any bytes decode without a panic, and a run of
//! datagrams (each `[len][bytes]`, time passing between them) gives each
//! call one `call.ringing` and one `call.ended`, in that order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::callerid::{check_call_life, whozz, CallerId, Format, Options};
use posbridge_drivers::{Instant, Protocol};

fuzz_target!(|data: &[u8]| {
    let d = whozz::decode(data);
    assert!(d.signals.len() <= 1);

    let mut p = CallerId::new(Options {
        format: Format::Whozz,
        call_id_prefix: "c".into(),
        ..Options::default()
    });
    let mut out = Vec::new();
    let mut now = 0u64;
    p.handle_open(Instant(now), &mut out);
    let mut rest = data;
    while let Some((&len, r)) = rest.split_first() {
        let (datagram, r) = r.split_at(usize::from(len).min(r.len()));
        rest = r;
        now += u64::from(len) * 50;
        p.handle_bytes(Instant(now), datagram, &mut out);
        if len % 3 == 0 {
            p.handle_timer(Instant(now + 600), &mut out);
        }
    }
    for i in 1..=4 {
        p.handle_timer(Instant(now + i * 100_000), &mut out);
    }

    let (rung, over) = check_call_life(&out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rung, over);
    assert!(p.calls_in_progress().is_empty());
});
