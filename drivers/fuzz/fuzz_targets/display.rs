//! Any text a page sends, for every display model: rendering never panics,
//! and a two-line display always gets exactly its columns per line (every
//! character as wide as its bytes), so nothing a page sends can spill a
//! line or smuggle a command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::display::{render, Charset, Lamp, Model, Settings, Show};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let model = [Model::Cd5220, Model::EscposVfd, Model::Led8][usize::from(pick % 3)];
    let mut s = Settings::new(model);
    if model != Model::Led8 && pick & 4 != 0 {
        s.charset = Charset::Gb18030;
    }
    s.scroll = model == Model::Cd5220 && pick & 8 != 0;
    let text = String::from_utf8_lossy(rest);
    let lines: Vec<String> = text.split('\n').take(3).map(str::to_owned).collect();
    if let Ok(bytes) = render(&s, &Show::Lines(lines)) {
        assert_ne!(model, Model::Led8);
        // Per line: a 3- or 4-byte command, the line, and CR for CD5220.
        let per_line = if model == Model::Cd5220 { 3 + 20 + 1 } else { 4 + 20 };
        if s.scroll {
            // A clear, then at most 40 scrolling columns above a fixed line.
            assert!(bytes.len() <= 1 + (3 + 40 + 1) + per_line);
        } else {
            assert_eq!(bytes.len(), 2 * per_line);
        }
    }
    let lamp = [Lamp::Price, Lamp::Total, Lamp::Paid, Lamp::Change][usize::from(pick >> 6)];
    let amount = text.into_owned();
    if let Ok(bytes) = render(&s, &Show::Amount { amount, lamp }) {
        if model == Model::Led8 {
            let digits = &bytes[6..bytes.len() - 1];
            assert!(digits.iter().all(|b| b"0123456789.-".contains(b)));
        }
    }
});
