//! Any bytes on any downlink topic (issue #12): the HQ message parser must
//! never panic, and what it accepts must be internally consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::downlink::{parse, Downlink, Topic};

fuzz_target!(|data: &[u8]| {
    let (sel, payload) = match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => return,
    };
    let topic = match sel % 3 {
        0 => Topic::TxAck,
        1 => Topic::Members,
        _ => Topic::LookupResponse,
    };
    match parse(topic, payload) {
        Ok(Downlink::TxAck { .. }) => assert_eq!(topic, Topic::TxAck),
        Ok(Downlink::Upsert { .. } | Downlink::Delete { .. }) => {
            assert_eq!(topic, Topic::Members)
        }
        Ok(Downlink::Lookup { member, .. }) => {
            assert_eq!(topic, Topic::LookupResponse);
            assert!(member.is_none_or(|m| m.is_object()));
        }
        Err(e) => assert!(!e.0.is_empty(), "an error says why"),
    }
});
