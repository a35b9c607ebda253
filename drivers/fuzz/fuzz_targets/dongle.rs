//! Any reply bytes to a dongle's challenge, in either check mode: never a
//! panic, exactly one dongle.attached per exchange, and `licensed` true only
//! when the reply carries the expected answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::dongle::{hmac_sha256, verify, Check, Dongle, Options};
use posbridge_drivers::{Action, Event, Instant, Protocol};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, reply)) = data.split_first() else {
        return;
    };
    let check = if mode % 2 == 0 {
        Check::Recorded {
            challenge: vec![0xa1, 0xb2, 0xc3, 0xd4],
            response: vec![0x5a, 0xc9, 0xe1, 0xf0],
        }
    } else {
        Check::Hmac {
            key: vec![7; 20],
            challenge_len: usize::from(mode % 32) + 1,
            response_len: usize::from(mode % 32) + 1,
        }
    };
    let mut d = Dongle::new(Options {
        vid: "1bc0".into(),
        pid: "8101".into(),
        check: Some(check.clone()),
        report_id: 2,
        report_len: 40,
        ..Options::default()
    });
    let mut out = Vec::new();
    d.handle_open(Instant(0), &mut out);
    let challenge = match out.first() {
        Some(Action::Write(frame)) => frame.get(1..).unwrap_or_default().to_vec(),
        other => panic!("no request: {other:?}"),
    };
    out.clear();
    d.handle_bytes(Instant(1), reply, &mut out);
    let licensed: Vec<Option<bool>> = out
        .iter()
        .filter_map(|a| match a {
            Action::Emit(Event::DongleAttached { licensed, .. }) => Some(*licensed),
            _ => None,
        })
        .collect();
    assert_eq!(licensed.len(), 1);
    let expected = match &check {
        Check::Recorded { response, .. } => response.clone(),
        Check::Hmac {
            key,
            challenge_len,
            response_len,
        } => hmac_sha256(key, &challenge[..*challenge_len])[..*response_len].to_vec(),
    };
    assert_eq!(licensed[0], Some(verify(2, reply, &expected)));
    out.clear();
    d.handle_close(Instant(2), &mut out);
    assert_eq!(out.len(), 1);
});
