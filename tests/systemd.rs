//! The shipped unit, sysusers and tmpfiles files: `systemd-analyze verify`
//! accepts the unit, and its security exposure stays low.

use std::process::Command;

const UNIT: &str = include_str!("../systemd/posbridge.service");

/// The unit as installed, but pointing at the binary this build made
/// (verify checks that ExecStart exists).
fn unit_for_this_build(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("posbridge.service");
    let unit = UNIT.replace("/usr/bin/posbridge", env!("CARGO_BIN_EXE_posbridge"));
    std::fs::write(&path, unit).expect("write unit");
    path
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("tmp");
    let unit = unit_for_this_build(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (apt install systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed:\n{stderr}");
    // Warnings (unknown keys, bad values) come on stderr even with exit 0.
    assert!(
        !stderr.contains("posbridge.service"),
        "verify complained:\n{stderr}"
    );
}

#[test]
fn the_unit_is_hardened() {
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=posbridge",
        "User=posbridge",
        "SupplementaryGroups=dialout plugdev",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "DevicePolicy=closed",
        "DeviceAllow=char-ttyUSB rw",
        "DeviceAllow=char-hidraw rw",
        "DeviceAllow=char-input r",
        "Wants=pcscd.socket",
        "After=pcscd.socket",
    ] {
        assert!(
            UNIT.lines().any(|l| l.starts_with(line)),
            "the unit lacks {line}"
        );
    }
    let dir = tempfile::tempdir().expect("tmp");
    let unit = unit_for_this_build(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for posbridge.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    eprintln!("systemd-analyze security: exposure {score}");
    // 0 is fully locked down, 10 is unprotected; systemd calls < 2 "OK".
    assert!(score <= 2.0, "exposure {score}:\n{text}");
}

#[test]
fn sysusers_and_tmpfiles_declare_the_user_and_private_state() {
    let users = include_str!("../systemd/posbridge.sysusers");
    assert!(users.lines().any(|l| l.starts_with("u posbridge ")));
    assert!(users.lines().any(|l| l == "m posbridge dialout"));
    assert!(users.lines().any(|l| l == "m posbridge plugdev"));
    let tmp = include_str!("../systemd/posbridge.tmpfiles");
    assert!(tmp
        .lines()
        .any(|l| l == "d /var/lib/posbridge 0750 posbridge posbridge -"));
    // systemd-tmpfiles parses it (dry run: --create on a temp root).
    let root = tempfile::tempdir().expect("tmp");
    let file = root.path().join("posbridge.conf");
    std::fs::write(&file, tmp).expect("write");
    let out = Command::new("systemd-tmpfiles")
        .arg("--root")
        .arg(root.path())
        .arg("--create")
        .arg(&file)
        .output()
        .expect("systemd-tmpfiles");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("Failed to parse"), "{err}");
}
