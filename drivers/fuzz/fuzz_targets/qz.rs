//! Any text frame a page could send on the QZ listener, and any print or
//! serial params it could carry: parsing never panics, errors say why, and
//! what is accepted is consistent (the signed text is JSON, jobs have bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::qz::{self, serial::Framer, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match qz::parse(text) {
        Ok(Message::Call(c)) => {
            assert!(serde_json::from_str::<serde_json::Value>(&c.signed).is_ok());
            if let Ok(job) = qz::print_job(&c.params, 4096) {
                assert!(!job.bytes.is_empty() && job.bytes.len() <= 4096);
            }
            if let Ok(bytes) = qz::serial_bytes(&c.params) {
                assert!(!bytes.is_empty());
            }
            if let Ok(mut f) = Framer::new(c.params.get("options").unwrap_or(&c.params)) {
                let _ = f.push(text.as_bytes());
                let _ = f.push(data);
            }
        }
        Ok(_) => {}
        Err(e) => assert!(!e.why.is_empty(), "an error says why"),
    }
    // The certificate a page sends is parsed for its key.
    let _ = qz::der::rsa_public_key(data);
});
