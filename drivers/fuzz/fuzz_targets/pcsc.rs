//! Any ATR, any reader answers, any configured blocks: the PC/SC helpers must
//! never panic, and a successful block read must name only planned blocks,
//! each with 32 upper-case hex digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::pcsc::{
    check, classify_atr, collect, hex_upper, parse_key, split_response, KeyType, ReadPlan, StepKind,
};

fuzz_target!(|data: &[u8]| {
    let _ = classify_atr(data);
    if let Ok(ok) = check(data) {
        assert_eq!(ok.len() + 2, data.len());
    }
    if let Ok((body, _)) = split_response(data) {
        assert_eq!(body.len() + 2, data.len());
    }
    let hex = hex_upper(data);
    assert_eq!(hex.len(), data.len() * 2);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_key(s);
    }

    // Layout: n, n block numbers, key type byte, then answers, each one
    // length byte followed by that many bytes.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8);
    let Some((blocks, rest)) = rest.split_at_checked(n) else {
        return;
    };
    let (key_type, mut rest) = match rest.split_first() {
        Some((k, r)) if k % 2 == 1 => (KeyType::B, r),
        Some((_, r)) => (KeyType::A, r),
        None => (KeyType::A, rest),
    };
    let Ok(plan) = ReadPlan::new(blocks.to_vec(), [0xFF; 6], key_type) else {
        return;
    };
    let steps = plan.steps();
    let mut responses = Vec::new();
    while let Some((&len, r)) = rest.split_first() {
        let len = usize::from(len).min(r.len());
        let (resp, r) = r.split_at(len);
        responses.push(resp.to_vec());
        rest = r;
    }
    match collect(&steps, &responses) {
        Ok(map) => {
            for (block, value) in &map {
                assert!(plan.blocks.iter().any(|b| b.to_string() == *block));
                assert_eq!(value.len(), 32);
                assert!(value
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
            }
        }
        Err(e) => {
            assert!(steps.iter().any(|s| s.kind == e.step));
            if !matches!(e.step, StepKind::LoadKey) {
                assert!(e.to_string().starts_with("block "));
            }
        }
    }
});
