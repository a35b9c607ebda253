//! The shipped unit, sysusers and tmpfiles files: `systemd-analyze verify`
//! accepts the unit, and its security exposure stays low.

use std::process::Command;
use std::time::Duration;

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
        .find_map(|l| {
            l.split("Overall exposure level for posbridge.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    eprintln!("systemd-analyze security: exposure {score}");
    // 0 is fully locked down, 10 is unprotected; systemd calls < 2 "OK".
    assert!(score <= 2.0, "exposure {score}:\n{text}");
}

#[test]
fn doctor_judges_access_for_the_user_and_groups_the_unit_runs_with() {
    use posbridge::cli::doctor::{SERVICE_GROUPS, SERVICE_USER};
    let line = |key: &str| {
        UNIT.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in the unit"))
            .to_owned()
    };
    assert_eq!(line("User="), SERVICE_USER);
    assert_eq!(line("SupplementaryGroups="), SERVICE_GROUPS.join(" "));
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
        .any(|l| l == "d /var/lib/posbridge 0700 posbridge posbridge -"));
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

/// What the daemon tells systemd, read from a NOTIFY_SOCKET the test owns.
#[tokio::test]
async fn ready_after_start_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let state = dir.path().join("state");
    let p = crate::common::Binary::start(
        &state,
        "[[device]]\nid = \"scan-1\"\ndriver = \"barcode\"\ntransport = \"sim\"\n",
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().expect("utf-8 path")),
            ("WATCHDOG_USEC", "200000"),
        ],
    )
    .await;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let t0 = std::time::Instant::now();
    while got
        .iter()
        .filter(|m: &&String| m.contains("WATCHDOG=1"))
        .count()
        < 4
    {
        let n = sock.recv(&mut buf).expect("a notification");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        assert!(t0.elapsed() < Duration::from_secs(10), "{got:?}");
    }
    assert!(got[0].contains("READY=1"), "READY first: {got:?}");
    // 4 pings at half of 200 ms take about 300 ms, not seconds.
    assert!(t0.elapsed() < Duration::from_secs(3), "{got:?}");
    let log = p.stop_and_log();
    let mut rest = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        if rest.last().is_some_and(|m| m.contains("STOPPING=1")) {
            break;
        }
    }
    assert!(
        rest.iter().any(|m| m.contains("STOPPING=1")),
        "{rest:?}\n{log}"
    );
}
