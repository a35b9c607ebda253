//! Any template and any scanned text: parsing and decoding never panic,
//! and a text is only ever `weighed` with all digits and a right check digit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::weighed::{gs1_check_digit, Template};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, code) = text.split_once('|').unwrap_or((&text, ""));
    let Ok(t) = Template::parse(pattern) else {
        return;
    };
    if let Some(w) = t.decode(code) {
        let b = code.as_bytes();
        assert!(b.iter().all(u8::is_ascii_digit));
        assert_eq!(gs1_check_digit(&b[..b.len() - 1]), b[b.len() - 1]);
        assert!(!w.plu.is_empty());
        assert!(w.grams.is_some() || w.price_fen.is_some());
    }
});
