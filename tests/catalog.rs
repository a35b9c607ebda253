//! The device catalog and the udev rules made from it: the committed
//! udev/70-posbridge.rules is exactly what `posbridge udev-rules` prints for
//! this catalog (so an edit to drivers/catalog.toml without regenerating the
//! rules fails here), and the catalog itself validates.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_posbridge");

#[test]
fn committed_rules_match_the_catalog() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/udev/70-posbridge.rules"
    ))
    .expect("udev/70-posbridge.rules is committed");
    let out = Command::new(BIN).arg("udev-rules").output().expect("run");
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        committed == generated,
        "udev/70-posbridge.rules is stale; regenerate it:\n  cargo run -- udev-rules > udev/70-posbridge.rules"
    );
}

#[test]
fn catalog_validates_and_covers_each_family() {
    let c = posbridge_drivers::catalog::Catalog::builtin().expect("parses");
    let problems = c.problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for family in posbridge_drivers::catalog::FAMILIES {
        assert!(c.entries.iter().any(|e| e.family == *family), "no {family}");
    }
    // Every driver the catalog names is one this build has.
    for e in &c.entries {
        if let Some(d) = &e.driver {
            assert!(
                posbridge::family::find(d).is_some(),
                "{}: driver {d} is not in the registry",
                e.id
            );
        }
    }
    // Unverified entries say so in their source.
    for e in c.entries.iter().filter(|e| !e.verified) {
        assert!(!e.source.trim().is_empty(), "{}", e.id);
    }
}

#[test]
fn rules_never_grant_world_access() {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/udev/70-posbridge.rules"
    ))
    .expect("rules");
    for line in rules
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("MODE"))
    {
        let mode = line
            .split("MODE=\"")
            .nth(1)
            .and_then(|m| m.get(..4))
            .expect("mode");
        let other = u32::from_str_radix(&mode[3..4], 8).expect("octal");
        assert_eq!(other, 0, "world access in {line}");
        assert!(
            line.contains("GROUP=\"dialout\"") || line.contains("GROUP=\"plugdev\""),
            "{line}"
        );
    }
}
