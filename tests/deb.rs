//! The Debian package (debhelper, debian/): what it installs, with which
//! modes, that lintian finds nothing, that installing creates the service
//! user and enables the unit, and that an upgrade keeps IT's config and the
//! outbox. Installed into a throwaway root (`dpkg --root`; the maintainer
//! scripts see DPKG_ROOT), so the test machine is not touched.

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
    // The debug binary (stripped by dh_strip like any other), no debug-symbol
    // package, gzip: the same package, built in seconds.
    let printed = run(Command::new("bash")
        .env("POSBRIDGE_DEB_OPTIONS", "-Zgzip")
        .env("DEB_BUILD_OPTIONS", "noautodbgsym")
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
        (
            "-rw-r--r-- root/root",
            "./usr/share/doc/posbridge/changelog.gz",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/doc/posbridge/DEVELOPERS.md",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/man/man8/posbridge.8.gz",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/man/man8/posbridge-doctor.8.gz",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/bash-completion/completions/posbridge",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/zsh/vendor-completions/_posbridge",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/fish/vendor_completions.d/posbridge.fish",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/metainfo/io.github.posbridge.posbridge.metainfo.xml",
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
    // What the maintainer scripts call (systemd-sysusers) and the binary links.
    for dep in [
        "systemd | systemd-standalone-sysusers",
        "libc6 (>=",
        "libpcsclite1",
    ] {
        assert!(fields.contains(dep), "Depends lacks {dep}:\n{fields}");
    }
    // Stripped: no symbol table, no debug sections.
    let unpacked = dir.path().join("unpacked");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    let sections = run(Command::new("readelf")
        .arg("-S")
        .arg(unpacked.join("usr/bin/posbridge")));
    assert!(
        !sections.contains(".symtab") && !sections.contains(".debug_info"),
        "{sections}"
    );
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
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    run(dpkg(&root).arg("-i").arg(&deb));
    let cfg = root.join("etc/posbridge/posbridge.toml");
    let shipped = std::fs::read_to_string(&cfg).expect("config installed");
    assert!(root.join("usr/bin/posbridge").exists());
    installed_the_debian_way(&root);

    // IT edits the config; the daemon has transactions waiting for HQ.
    std::fs::write(&cfg, format!("{shipped}\n# edited by IT\n")).expect("edit config");
    std::fs::create_dir_all(root.join("var/lib/posbridge")).expect("state dir");
    std::fs::write(
        root.join("var/lib/posbridge/outbox.db"),
        b"pending transactions",
    )
    .expect("outbox");

    // IT disabled the unit, on a box whose package predates debhelper (no
    // deb-systemd-helper state): the upgrade must not enable it again.
    let wants = root.join("etc/systemd/system/multi-user.target.wants/posbridge.service");
    std::fs::remove_file(&wants).expect("disable");
    std::fs::remove_dir_all(root.join("var/lib/systemd/deb-systemd-helper-enabled"))
        .expect("forget the helper's state");
    let newer = build(dir.path(), "0.1.1");
    run(dpkg(&root).arg("-i").arg(&newer));
    assert!(
        wants.symlink_metadata().is_err(),
        "the upgrade enabled a unit IT had disabled"
    );
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

/// What debhelper's maintainer-script snippets did in the root: the user
/// (systemd-sysusers), the state directory and the config's group
/// (systemd-tmpfiles), the unit enabled (deb-systemd-helper).
fn installed_the_debian_way(root: &Path) {
    use std::os::unix::fs::MetadataExt;
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let Some(user) = passwd.lines().find(|l| l.starts_with("posbridge:")) else {
        panic!("no posbridge user in the root:\n{passwd}");
    };
    let gid: u32 = user
        .split(':')
        .nth(3)
        .and_then(|g| g.parse().ok())
        .expect("gid");
    let cfg = std::fs::metadata(root.join("etc/posbridge/posbridge.toml")).expect("config");
    assert_eq!(
        (cfg.mode() & 0o7777, cfg.gid()),
        (0o640, gid),
        "root and the service's group"
    );
    let state = std::fs::metadata(root.join("var/lib/posbridge")).expect("state dir");
    assert_eq!(state.mode() & 0o7777, 0o700);
    let wants = root.join("etc/systemd/system/multi-user.target.wants/posbridge.service");
    assert!(wants.symlink_metadata().is_ok(), "the unit is enabled");
}

/// Lintian, Debian's package checker: no error and no warning, except the
/// overrides the package carries, each with its reason.
#[test]
fn lintian_finds_nothing_wrong_with_the_package() {
    let dir = tempfile::tempdir().expect("tmp");
    let deb = build(dir.path(), "0.1.0");
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--display-info"])
        .arg(&deb)
        .output()
        .expect("lintian (apt install lintian)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "lintian:\n{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "{text}"
    );
    // Every override says why, on the line above it.
    let overrides = include_str!("../debian/posbridge.lintian-overrides");
    let mut reason = false;
    for line in overrides.lines() {
        if line.starts_with('#') {
            reason = true;
        } else if !line.trim().is_empty() {
            assert!(reason, "an override without its reason: {line}");
            reason = false;
        }
    }
}

/// The changelog's version is the crate's: `posbridge --version` and
/// `dpkg -s posbridge` agree.
#[test]
fn the_changelog_version_is_the_crate_version() {
    let changelog = include_str!("../debian/changelog");
    let first = changelog.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("posbridge ({}) ", env!("CARGO_PKG_VERSION"))),
        "{first}"
    );
}

#[test]
fn the_shipped_default_config_is_valid() {
    let text = include_str!("../config/posbridge.toml");
    if let Err(e) = posbridge::Config::parse(text, std::iter::empty(), "config/posbridge.toml") {
        panic!("the packaged default config does not load:\n{e}");
    }
}
