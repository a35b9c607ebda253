//! The daemon's integration tests, one module per area, in one test binary:
//! each test binary links the whole daemon and its dependencies, and twenty of
//! them took more disk than a CI machine had. `cargo test --test it hostile::`
//! runs one area. The PC/SC test is its own binary (`tests/pcsc.rs`): it stops
//! and starts the machine's one pcscd, so it runs alone.

mod common;

mod callerid;
mod cards;
mod catalog;
mod cli;
mod config;
mod counter;
mod deb;
mod devices;
mod fleet;
mod fleet_sim;
mod guards;
mod hostile;
mod hotplug;
mod idcard;
mod identify;
mod images;
mod labels;
mod layers;
mod print;
mod qz;
mod reload;
mod remote_print;
mod security;
mod serial;
mod stream;
mod systemd;
mod transactions;
mod uplink;
mod wss;

/// A test file that is neither a module here nor its own `[[test]]` would
/// never be built (`autotests = false`).
#[test]
fn every_test_file_is_built() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let here = include_str!("it.rs");
    let manifest = include_str!("../Cargo.toml");
    for e in std::fs::read_dir(dir).expect("tests/") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        assert!(
            stem == "it"
                || here.contains(&format!("\nmod {stem};\n"))
                || manifest.contains(&format!("path = \"tests/{name}\"")),
            "tests/{name} is not built: add `mod {stem};` to tests/it.rs"
        );
    }
}
