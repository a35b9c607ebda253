//! Any config text plus any POSBRIDGE__ overrides (issue #12): the config
//! parser must never panic, and a refusal always names at least one problem.
//! Input: TOML text, then optionally a NUL and `KEY=VALUE` lines.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, env) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = if k.starts_with("POSBRIDGE__") {
                k.to_owned()
            } else {
                format!("POSBRIDGE__{k}")
            };
            (k, v.to_owned())
        })
        .collect();
    match posbridge::Config::parse(&text, env, "fuzz") {
        Ok(c) => {
            // What validation accepted is usable as is.
            assert!(!c.store.id.is_empty());
            assert!(c.api.max_connections >= 4);
            // Every device validation accepted builds its family's protocol.
            for d in &c.devices {
                let family = posbridge::family::spec(d).expect("a known driver");
                if let Err(e) = family.make(d, &Default::default()) {
                    panic!("device {} passed validation but: {e}", d.id);
                }
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.contains("fuzz"),
                "the error names its source: {shown}"
            );
        }
    }
});
