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
    let topic = match sel % 4 {
        0 => Topic::TxAck,
        1 => Topic::Members,
        2 => Topic::LookupResponse,
        _ => Topic::Print,
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
        Ok(Downlink::Print(job)) => {
            assert_eq!(topic, Topic::Print);
            match job {
                Ok(j) => assert!(!j.job_id.is_empty() && !j.printer.is_empty()),
                Err(bad) => assert!(!bad.why.is_empty(), "a refused job says why"),
            }
        }
        Err(e) => assert!(!e.0.is_empty(), "an error says why"),
    }
});
