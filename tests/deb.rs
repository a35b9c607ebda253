//! The Debian package: what it installs, with which modes, and that an
//! upgrade keeps IT's config and the outbox. Installed into a throwaway root
//! (`dpkg --root`), so the test machine is not touched.

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn build(out: &Path, version: &str) -> std::path::PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/build-deb.sh");
    let printed = run(Command::new("bash")
        .env("COMPRESSION", "none")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_posbridge"))
        .arg(out)
        .arg(version));
    std::path::PathBuf::from(printed.trim())
}

fn dpkg(root: &Path) -> Command {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display()))
        // Maintainer scripts run outside the root and see DPKG_ROOT: they touch nothing live.
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ]);
    c
}

#[test]
fn the_package_installs_the_service_and_an_upgrade_keeps_config_and_outbox() {
    let dir = tempfile::tempdir().expect("tmp");
    let deb = build(dir.path(), "0.1.0");

    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for (mode, path) in [
        ("-rwxr-xr-x root/root", "./usr/bin/posbridge"),
        (
            "-rw-r--r-- root/root",
            "./lib/systemd/system/posbridge.service",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/lib/sysusers.d/posbridge.conf",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/lib/tmpfiles.d/posbridge.conf",
        ),
        // Tokens and the broker password live here: not world-readable.
        ("-rw-r----- root/root", "./etc/posbridge/posbridge.toml"),
        (
            "-rw-r--r-- root/root",
            "./usr/share/doc/posbridge/README.md",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/doc/posbridge/copyright",
        ),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{path} with {mode} missing:\n{listing}"
        );
    }
    if Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/udev/70-posbridge.rules"
    ))
    .exists()
    {
        assert!(listing.contains("./lib/udev/rules.d/70-posbridge.rules"));
    }
    assert!(
        !listing.contains("./var/lib/posbridge"),
        "state is never shipped"
    );
    let fields = run(Command::new("dpkg-deb").arg("-f").arg(&deb));
    assert!(fields.contains("Package: posbridge"));
    assert!(fields.contains("Version: 0.1.0"));
    assert!(fields.contains("Depends: libc6 (>= 2.34), libgcc-s1, libpcsclite1"));
    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/posbridge/posbridge.toml");

    // Install into an empty root, as IT would on a store PC.
    let root = dir.path().join("root");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("dpkg dirs");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
    run(dpkg(&root).arg("-i").arg(&deb));
    let cfg = root.join("etc/posbridge/posbridge.toml");
    let shipped = std::fs::read_to_string(&cfg).expect("config installed");
    assert!(root.join("usr/bin/posbridge").exists());

    // IT edits the config; the daemon has transactions waiting for HQ.
    std::fs::write(&cfg, format!("{shipped}\n# edited by IT\n")).expect("edit config");
    std::fs::create_dir_all(root.join("var/lib/posbridge")).expect("state dir");
    std::fs::write(
        root.join("var/lib/posbridge/outbox.db"),
        b"pending transactions",
    )
    .expect("outbox");

    let newer = build(dir.path(), "0.1.1");
    run(dpkg(&root).arg("-i").arg(&newer));
    let status = run(dpkg(&root).args(["-s", "posbridge"]));
    assert!(status.contains("Version: 0.1.1"), "{status}");
    assert!(
        std::fs::read_to_string(&cfg)
            .expect("config")
            .ends_with("# edited by IT\n"),
        "the upgrade kept IT's config"
    );
    assert_eq!(
        std::fs::read(root.join("var/lib/posbridge/outbox.db")).expect("outbox"),
        b"pending transactions"
    );

    // Purge removes the config, never the outbox.
    run(dpkg(&root).args(["--purge", "posbridge"]));
    assert!(!cfg.exists());
    assert!(!root.join("usr/bin/posbridge").exists());
    assert!(root.join("var/lib/posbridge/outbox.db").exists());
}

#[test]
fn the_shipped_default_config_is_valid() {
    let text = include_str!("../config/posbridge.toml");
    if let Err(e) = posbridge::Config::parse(text, std::iter::empty(), "config/posbridge.toml") {
        panic!("the packaged default config does not load:\n{e}");
    }
}
