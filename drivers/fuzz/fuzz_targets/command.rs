//! Any bytes as a command from HQ (issue 24): the checker never panics, a
//! command is only accepted when the one key signed it, and canonical JSON
//! is stable (it parses back to the same value and writes the same bytes)
//! for the values commands carry (no floats).
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use posbridge_drivers::command::{canonical, verify};

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    if let Ok(c) = verify(data, &[key]) {
        assert!(!c.id.is_empty() && !c.cmd.is_empty() && !c.expires_at.is_empty());
    }
    // Floats may not survive a parse exactly: commands carry integers.
    if let Some(v) = serde_json::from_slice::<serde_json::Value>(data).ok().filter(|v| !has_float(v)) {
        let once = canonical(&v);
        let back: serde_json::Value = serde_json::from_str(&once).expect("canonical JSON parses");
        assert_eq!(canonical(&back), once);
    }
});

fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(a) => a.iter().any(has_float),
        serde_json::Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}
