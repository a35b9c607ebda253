//! The arm64 build, run under qemu-user: `--version`, `check-config`, a
//! short `run` in which a scan fed to a sim device reaches the event poll
//! and SIGTERM stops it cleanly; and the arm64 Debian package built from it,
//! with lintian finding nothing wrong. `make test-arm64` cross-builds the
//! binary and runs this with POSBRIDGE_ARM64_BIN naming it; run any other
//! way it fails rather than skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn arm64_binary() -> PathBuf {
    let bin = std::env::var_os("POSBRIDGE_ARM64_BIN")
        .expect("POSBRIDGE_ARM64_BIN is not set: run make test-arm64");
    let bin = PathBuf::from(bin);
    let head = std::fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    // ELF, 64-bit, e_machine 0xB7: AArch64.
    assert!(
        head.starts_with(b"\x7fELF\x02") && head.get(18..20) == Some(&[0xB7, 0][..]),
        "{} is not an arm64 executable",
        bin.display()
    );
    bin
}

fn qemu(bin: &Path) -> Command {
    let mut c = Command::new("qemu-aarch64");
    c.arg(bin).env_remove("RUST_LOG");
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

#[tokio::test]
async fn the_arm64_binary_runs_under_qemu() {
    let bin = arm64_binary();
    let out = qemu(&bin).arg("--version").output().expect("qemu-aarch64");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("posbridge {}", env!("CARGO_PKG_VERSION"))
    );

    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let cfg = dir.path().join("arm64.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\nid = \"arm64\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[storage]\ndir = \"{}\"\n[[device]]\nid = \"scan-1\"\ndriver = \"barcode\"\ntransport = \"sim\"\n",
            dir.path().join("state").display()
        ),
    )
    .expect("config");
    let out = qemu(&bin)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .expect("check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (store arm64, 1 device)"));

    let mut daemon = Killed(
        qemu(&bin)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the arm64 daemon did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v1/devices/scan-1/simulate"))
        .json(&serde_json::json!({"data": "6901234567892\r\n"}))
        .send()
        .await
        .expect("simulate");
    assert_eq!(r.status().as_u16(), 202);
    // The poll answers with what it has (device.connected first): read on
    // until the scan comes.
    let (mut since, mut seen) = (0u64, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    let scanned = loop {
        assert!(Instant::now() < deadline, "no code.scanned in {seen:#?}");
        let polled: serde_json::Value = http
            .get(format!(
                "{base}/v1/events/poll?since={since}&timeout_ms=2000"
            ))
            .send()
            .await
            .expect("poll")
            .json()
            .await
            .expect("json");
        let events = polled["events"].as_array().cloned().unwrap_or_default();
        if let Some(e) = events.iter().find(|e| e["type"] == "code.scanned") {
            break e.clone();
        }
        since = events
            .iter()
            .filter_map(|e| e["seq"].as_u64())
            .max()
            .unwrap_or(since);
        seen.extend(events);
    };
    assert_eq!(scanned["data"]["text"], "6901234567892", "{scanned:#}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = daemon.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit {status}");
}

/// The daemon under qemu, killed if the test fails before it stops it.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `make deb ARCH=arm64`'s second half, on the test's binary: the package
/// is for arm64, carries that binary (stripped by the cross strip) and
/// lintian finds no error or warning.
#[test]
fn the_arm64_package_builds_and_passes_lintian() {
    let bin = arm64_binary();
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/build-deb.sh"
        ))
        .arg(&bin)
        .arg(dir.path())
        .arg("")
        .arg("arm64")
        // The pages come from a binary this machine runs: the CLI is the same.
        .env("GENERATOR", env!("CARGO_BIN_EXE_posbridge"))
        .env("POSBRIDGE_DEB_OPTIONS", "-Zgzip")
        .env("DEB_BUILD_OPTIONS", "noautodbgsym")
        .output()
        .expect("build-deb.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(deb.ends_with("_arm64.deb"), "{deb}");
    let arch = Command::new("dpkg-deb")
        .args(["-f", &deb, "Architecture"])
        .output()
        .expect("dpkg-deb");
    assert_eq!(String::from_utf8_lossy(&arch.stdout).trim(), "arm64");
    let unpacked = dir.path().join("unpacked");
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status();
    assert!(x.is_ok_and(|s| s.success()));
    let packed = std::fs::read(unpacked.join("usr/bin/posbridge")).expect("binary");
    assert_eq!(packed.get(18..20), Some(&[0xB7, 0][..]), "an arm64 binary");
    let lint = Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .arg(&deb)
        .output()
        .expect("lintian");
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
}
