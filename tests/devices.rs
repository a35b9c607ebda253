//! `posbridge devices` and `doctor` against fake sysfs and /dev trees laid
//! out as the kernel does (class symlinks into /sys/devices, USB ids on the
//! usb_device directory above each node): what is listed, which catalog entry
//! claims it, `permission denied` where access fails, and serial ports found
//! by USB id and serial number.

use posbridge::cli::doctor::{self, Level, Who};
use posbridge::sysfs::{self, Access};
use posbridge_drivers::hotplug::NodeKind;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_posbridge");
const USB: &str = "devices/pci0000:00/0000:00:14.0/usb1";

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

fn usb_device(sys: &Path, port: &str, vid: &str, pid: &str, serial: Option<&str>, product: &str) {
    let d = sys.join(USB).join(port);
    write(&d.join("idVendor"), &format!("{vid}\n"));
    write(&d.join("idProduct"), &format!("{pid}\n"));
    write(&d.join("product"), &format!("{product}\n"));
    if let Some(s) = serial {
        write(&d.join("serial"), &format!("{s}\n"));
    }
}

/// A node at `rel` below the USB device, linked from /sys/class/<class>/<name>,
/// with its /dev node (a plain file stands in for the character device).
fn node(sys: &Path, dev: &Path, class: &str, port: &str, rel: &str, dev_name: &str) {
    let name = rel.rsplit('/').next().expect("name");
    let real = sys.join(USB).join(port).join(rel);
    std::fs::create_dir_all(&real).expect("mkdir");
    let class_dir = sys.join("class").join(class);
    std::fs::create_dir_all(&class_dir).expect("mkdir");
    symlink(&real, class_dir.join(name)).expect("symlink");
    write(&dev.join(dev_name), "");
}

/// A machine with two FTDI bridges (serials A and B), a CH340, a MagTek HID
/// reader, a Symbol keyboard scanner (event node, plus a mouse node that is
/// not listed), a device not in the catalog, a virtual console (not listed)
/// and a placeholder ttyS (not listed).
fn machine() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tmp");
    let (sys, dev) = (t.path().join("sys"), t.path().join("dev"));
    usb_device(
        &sys,
        "1-2",
        "0403",
        "6001",
        Some("A10K3ZX1"),
        "FT232R USB UART",
    );
    node(
        &sys,
        &dev,
        "tty",
        "1-2",
        "1-2:1.0/ttyUSB0/tty/ttyUSB0",
        "ttyUSB0",
    );
    usb_device(
        &sys,
        "1-3",
        "0403",
        "6001",
        Some("B20Q9YT7"),
        "FT232R USB UART",
    );
    node(
        &sys,
        &dev,
        "tty",
        "1-3",
        "1-3:1.0/ttyUSB1/tty/ttyUSB1",
        "ttyUSB1",
    );
    usb_device(&sys, "1-4", "1a86", "7523", None, "USB Serial");
    node(
        &sys,
        &dev,
        "tty",
        "1-4",
        "1-4:1.0/ttyUSB2/tty/ttyUSB2",
        "ttyUSB2",
    );
    usb_device(&sys, "1-5", "0801", "0002", None, "USB Swipe Reader");
    node(
        &sys,
        &dev,
        "hidraw",
        "1-5",
        "1-5:1.0/0003:0801:0002.0004/hidraw/hidraw0",
        "hidraw0",
    );
    usb_device(
        &sys,
        "1-6",
        "05e0",
        "1200",
        Some("S123"),
        "Symbol Bar Code Scanner",
    );
    node(
        &sys,
        &dev,
        "input",
        "1-6",
        "1-6:1.0/0003:05E0:1200.0005/input/input7/event5",
        "input/event5",
    );
    node(
        &sys,
        &dev,
        "input",
        "1-6",
        "1-6:1.0/0003:05E0:1200.0005/input/input7/mouse2",
        "input/mouse2",
    );
    usb_device(&sys, "1-7", "dead", "beef", None, "Mystery Gadget");
    node(
        &sys,
        &dev,
        "hidraw",
        "1-7",
        "1-7:1.0/0003:DEAD:BEEF.0006/hidraw/hidraw1",
        "hidraw1",
    );
    // Not USB: a virtual console and a placeholder serial port.
    std::fs::create_dir_all(sys.join("devices/virtual/tty/tty1")).expect("mkdir");
    symlink(
        sys.join("devices/virtual/tty/tty1"),
        sys.join("class/tty/tty1"),
    )
    .expect("ln");
    let ph = sys.join("devices/platform/serial8250/tty/ttyS3");
    std::fs::create_dir_all(&ph).expect("mkdir");
    std::fs::create_dir_all(sys.join("bus/platform/drivers/serial8250")).expect("mkdir");
    symlink(sys.join("devices/platform/serial8250"), ph.join("device")).expect("ln");
    symlink(
        sys.join("bus/platform/drivers/serial8250"),
        sys.join("devices/platform/serial8250/driver"),
    )
    .expect("ln");
    symlink(&ph, sys.join("class/tty/ttyS3")).expect("ln");
    // /sys/bus/usb/devices links to every USB device and interface.
    let bus = sys.join("bus/usb/devices");
    std::fs::create_dir_all(&bus).expect("mkdir");
    for port in ["1-2", "1-3", "1-4", "1-5", "1-6", "1-7"] {
        symlink(sys.join(USB).join(port), bus.join(port)).expect("ln");
        let iface = sys.join(USB).join(port).join(format!("{port}:1.0"));
        symlink(&iface, bus.join(format!("{port}:1.0"))).expect("ln");
    }
    t
}

#[test]
fn scan_lists_usb_nodes_with_their_ids_and_skips_the_rest() {
    let t = machine();
    let (sys, dev) = (t.path().join("sys"), t.path().join("dev"));
    let nodes = sysfs::scan(&sys, &dev);
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ttyUSB0",
            "ttyUSB1",
            "ttyUSB2",
            "hidraw0",
            "hidraw1",
            "input/event5"
        ]
    );
    let tty0 = &nodes[0];
    assert_eq!(tty0.kind, NodeKind::Tty);
    let id = tty0.usb.as_ref().expect("usb");
    assert_eq!(
        (id.vid, id.pid, id.serial.as_deref()),
        (0x0403, 0x6001, Some("A10K3ZX1"))
    );
    assert_eq!(
        tty0.usb_devpath.as_deref(),
        Some(format!("/{USB}/1-2").as_str())
    );
    assert_eq!(tty0.dev_path, dev.join("ttyUSB0"));
}

#[test]
fn usb_printers_are_found_by_usb_id() {
    let t = machine();
    let (sys, dev) = (t.path().join("sys"), t.path().join("dev"));
    usb_device(&sys, "1-8", "0416", "5011", None, "POS58 Printer");
    node(
        &sys,
        &dev,
        "usbmisc",
        "1-8",
        "1-8:1.0/usbmisc/lp0",
        "usb/lp0",
    );
    let n = sysfs::find_node(&sys, &dev, NodeKind::Usblp, 0x0416, 0x5011, None).expect("found");
    assert_eq!(n.dev_path, dev.join("usb/lp0"));
    assert!(sysfs::find_node(&sys, &dev, NodeKind::Tty, 0x0416, 0x5011, None).is_none());
}

#[test]
fn serial_ports_are_found_by_usb_id_and_serial_number() {
    let t = machine();
    let (sys, dev) = (t.path().join("sys"), t.path().join("dev"));
    let find = |serial| {
        sysfs::find_node(&sys, &dev, NodeKind::Tty, 0x0403, 0x6001, serial).map(|n| n.name)
    };
    assert_eq!(find(Some("B20Q9YT7")).as_deref(), Some("ttyUSB1"));
    assert_eq!(find(Some("A10K3ZX1")).as_deref(), Some("ttyUSB0"));
    assert_eq!(find(None).as_deref(), Some("ttyUSB0"), "first by name");
    assert_eq!(find(Some("nope")), None);
    // The MagTek has a hidraw node, not a tty.
    assert!(sysfs::find_node(&sys, &dev, NodeKind::Tty, 0x0801, 0x0002, None).is_none());
    assert!(sysfs::find_node(&sys, &dev, NodeKind::Hidraw, 0x0801, 0x0002, None).is_some());
    // Presence-only devices: the usb_device directory.
    let d = sysfs::find_usb_device(&sys, 0x05e0, 0x1200, Some("S123")).expect("found");
    assert!(d.ends_with("1-6"));
    assert!(sysfs::find_usb_device(&sys, 0x05e0, 0x1200, Some("other")).is_none());
    assert_eq!(
        sysfs::usb_devices(&sys).len(),
        6,
        "interfaces are not devices"
    );
}

/// Runs the binary as an unprivileged user when we are root (root passes
/// every access check), so `permission denied` can be seen.
fn run_as_nobody(args: &[&str]) -> Option<std::process::Output> {
    let root = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    let mut cmd = if root.unwrap_or(false) {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    cmd.args(args).env_remove("RUST_LOG");
    cmd.output().ok()
}

#[test]
fn devices_names_catalog_entries_and_permission_denied() {
    let t = machine();
    let (sys, dev) = (t.path().join("sys"), t.path().join("dev"));
    // Readable for the unprivileged run; the nodes are rw for their owner
    // only, except ttyUSB1, which anyone may use.
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let walk = |p: &Path| {
        let out = Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(p)
            .status()
            .expect("chmod");
        assert!(out.success());
    };
    walk(t.path());
    for n in ["ttyUSB0", "ttyUSB2", "hidraw0", "hidraw1", "input/event5"] {
        std::fs::set_permissions(dev.join(n), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    std::fs::set_permissions(dev.join("ttyUSB1"), std::fs::Permissions::from_mode(0o666))
        .expect("chmod");
    let (s, d) = (sys.to_string_lossy(), dev.to_string_lossy());
    let Some(out) = run_as_nobody(&["devices", "--sysfs", &s, "--dev", &d]) else {
        eprintln!("skipped: cannot run as another user (no setpriv)");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_owned()
    };
    let l = line("ttyUSB0");
    assert!(
        l.contains("0403:6001 serial A10K3ZX1") && l.contains("permission denied"),
        "{l}"
    );
    assert!(
        l.contains("[catalog ftdi-ft232r]") && l.contains("a bridge"),
        "{l}"
    );
    let l = line("ttyUSB1");
    assert!(l.contains(" ok ") && !l.contains("denied"), "{l}");
    let l = line("hidraw0");
    assert!(
        l.contains("driver magstripe (transport hid)") && l.contains("permission denied"),
        "{l}"
    );
    let l = line("event5");
    assert!(l.contains("driver barcode (transport evdev)"), "{l}");
    let l = line("hidraw1");
    assert!(l.contains("Mystery Gadget (not in the catalog)"), "{l}");
    assert!(
        !text.contains("tty1 ") && !text.contains("ttyS3") && !text.contains("mouse2"),
        "{text}"
    );
    assert!(
        text.contains("pcsc"),
        "PC/SC readers are always reported on: {text}"
    );
    // Issue 19: a header names the columns; --json gives the same rows.
    let header = text.lines().next().unwrap_or_default();
    for col in ["KIND", "PATH", "USB ID", "ACCESS", "CLAIMED BY"] {
        assert!(header.contains(col), "header lacks {col}: {header}");
    }
    let out = run_as_nobody(&["devices", "--json", "--sysfs", &s, "--dev", &d]).expect("run");
    assert!(out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON array");
    let row = |name: &str| {
        rows.as_array()
            .expect("array")
            .iter()
            .find(|r| r["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .unwrap_or_else(|| panic!("no row for {name}: {rows:#}"))
            .clone()
    };
    let r = row("ttyUSB0");
    assert_eq!(r["kind"], "serial");
    assert_eq!(r["usb"]["vid"], "0403");
    assert_eq!(r["usb"]["serial"], "A10K3ZX1");
    assert_eq!(r["access"], "permission denied");
    assert_eq!(r["catalog"]["id"], "ftdi-ft232r");
    assert_eq!(r["driver"], serde_json::Value::Null, "a bridge: {r}");
    let r = row("hidraw0");
    assert_eq!(
        (r["driver"].as_str(), r["transport"].as_str()),
        (Some("magstripe"), Some("hid"))
    );
    assert_eq!(row("hidraw1")["product"], "Mystery Gadget");
}

#[test]
fn doctor_says_what_is_wrong_and_how_to_fix_it() {
    let t = machine();
    let (sys, dev) = (t.path().join("sys"), t.path().join("dev"));
    let rules = t.path().join("rules.d");
    std::fs::create_dir_all(&rules).expect("mkdir");
    let cfg = t.path().join("posbridge.toml");
    std::fs::write(
        &cfg,
        r#"
[store]
id = "s1"
[uplink]
url = "mqtt://127.0.0.1:1"
[[device]]
id = "scanner-1"
driver = "barcode"
transport = "serial"
match = { vid = "0403", pid = "6001", serial = "B20Q9YT7" }
[[device]]
id = "idcard-1"
driver = "idcard-sam"
path = "/nonexistent/ttyUSB9"
"#,
    )
    .expect("config");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let findings = doctor::doctor(&cfg, &sys, &dev, &[rules.as_path()], &Who::Me);
    let text: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{} {} | {}",
                match f.level {
                    Level::Ok => "ok",
                    Level::Info => "info",
                    Level::Problem => "FAIL",
                },
                f.what,
                f.fix
            )
        })
        .collect();
    let text = text.join("\n");
    let has = |s: &str| assert!(text.contains(s), "missing {s:?} in:\n{text}");
    has("ok config");
    has("FAIL udev rules are not installed | posbridge udev-rules | sudo tee /etc/udev/rules.d/70-posbridge.rules");
    has("ok device scanner-1 (barcode over serial): found at");
    has("ttyUSB1");
    has("FAIL device idcard-1 (idcard-sam over serial): /nonexistent/ttyUSB9 does not exist | plug it in, or correct device[1].path");
    has("FAIL MQTT broker 127.0.0.1:1 cannot be reached");
    for f in findings.iter().filter(|f| f.is_problem()) {
        assert!(
            !f.fix.is_empty() && !f.fix.contains('\n'),
            "one-line fix: {f:?}"
        );
    }

    // Installed rules that match this build: no complaint; stale ones: reinstall.
    let catalog = posbridge_drivers::catalog::Catalog::builtin().expect("catalog");
    std::fs::write(rules.join("70-posbridge.rules"), catalog.udev_rules()).expect("w");
    let used = doctor::Used::default();
    let f = doctor::check_files(&sys, &dev, &[rules.as_path()], catalog, &Who::Me, &used);
    assert!(
        f.iter()
            .any(|f| f.level == Level::Ok && f.what.starts_with("udev rules installed")),
        "{f:?}"
    );
    std::fs::write(rules.join("70-posbridge.rules"), "# old\n").expect("w");
    let f = doctor::check_files(&sys, &dev, &[rules.as_path()], catalog, &Who::Me, &used);
    assert!(
        f.iter()
            .any(|f| f.is_problem() && f.what.contains("differs from this build's catalog")),
        "{f:?}"
    );

    // The binary: exit 1 and "fix:" lines.
    let out = Command::new(BIN)
        .args(["doctor", "--config"])
        .arg(&cfg)
        .args(["--sysfs"])
        .arg(&sys)
        .args(["--dev"])
        .arg(&dev)
        .args(["--rules-dir"])
        .arg(&rules)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  MQTT broker") && stdout.contains("      fix: "),
        "{stdout}"
    );
}

#[test]
fn doctor_as_root_judges_the_service_user_not_root() {
    let t = machine();
    let (sys, dev) = (t.path().join("sys"), t.path().join("dev"));
    let rules = t.path().join("rules.d");
    std::fs::create_dir_all(&rules).expect("mkdir");
    // As udev leaves them without our rules: root only. One node the way our
    // rules leave it (group dialout, 0660), and one in a group the service is
    // not in (lp, 0660, as usblp nodes are).
    let chmod = |name: &str, mode| {
        std::fs::set_permissions(dev.join(name), std::fs::Permissions::from_mode(mode))
            .expect("chmod")
    };
    chmod("ttyUSB0", 0o600);
    chmod("ttyUSB1", 0o660);
    let dialout = nix::unistd::Group::from_name("dialout")
        .ok()
        .flatten()
        .map(|g| g.gid);
    chmod("hidraw0", 0o660);
    let lp = nix::unistd::Group::from_name("lp")
        .ok()
        .flatten()
        .map(|g| g.gid);
    let chowned = lp.is_some()
        && nix::unistd::chown(&dev.join("ttyUSB1"), None, dialout).is_ok()
        && nix::unistd::chown(&dev.join("hidraw0"), None, lp).is_ok();
    let am_root = nix::unistd::geteuid().is_root();
    if !am_root || dialout.is_none() || !chowned {
        eprintln!("skipped: needs root and groups dialout and lp");
        return;
    }
    let cfg = t.path().join("posbridge.toml");
    // A device configured by path that the service user cannot open.
    std::fs::write(
        &cfg,
        format!(
            "[store]\nid = \"s1\"\n[[device]]\nid = \"msr-1\"\ndriver = \"magstripe\"\ntransport = \"hid\"\npath = \"{}\"\n",
            dev.join("hidraw0").display()
        ),
    )
    .expect("config");
    let doctor = |user: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["doctor", "--config"]).arg(&cfg);
        c.arg("--sysfs").arg(&sys).arg("--dev").arg(&dev);
        c.arg("--rules-dir").arg(&rules);
        if let Some(u) = user {
            c.args(["--user", u]);
        }
        let out = c.output().expect("run");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = doctor(Some("nobody"));
    let has = |t: &str, s: &str| assert!(t.contains(s), "missing {s:?} in:\n{t}");
    has(&text, "judged for user nobody");
    let d = dev.display();
    has(&text, &format!("FAIL  {d}/ttyUSB0: permission denied for user nobody\n      fix: install the udev rules (above): they give it group dialout, mode 0660"));
    // A group that may use it but that the service is not in: join it.
    has(&text, &format!("FAIL  {d}/hidraw0: permission denied for user nobody\n      fix: sudo usermod -aG lp nobody"));
    has(&text, &format!("FAIL  device msr-1 (magstripe over hid): {d}/hidraw0: permission denied for user nobody\n      fix: sudo usermod -aG lp nobody"));
    // dialout comes from the unit's SupplementaryGroups, not nobody's own groups.
    has(
        &text,
        &format!("ok    {d}/ttyUSB1: readable and writable for user nobody"),
    );
    assert!(!text.contains("ttyUSB1: permission denied"), "{text}");
    // Issue 19: a node nothing uses and the catalog does not know is information.
    has(&text, &format!("info  {d}/hidraw1: permission denied for user nobody; no device in the config uses it and the catalog does not know it"));
    assert!(!text.contains(&format!("FAIL  {d}/hidraw1")), "{text}");

    // No --user as root: the service user, or, before it exists, a problem
    // saying so and the check made with the unit's groups.
    let text = doctor(None);
    if nix::unistd::User::from_name("posbridge")
        .ok()
        .flatten()
        .is_none()
    {
        // Issue 19: said once, not as a verdict on every node.
        has(
            &text,
            "FAIL  the service user: user posbridge does not exist; device and storage access are not judged until it exists",
        );
        assert!(!text.contains("permission denied"), "{text}");
    } else {
        has(&text, "judged for user posbridge");
        has(
            &text,
            &format!("{d}/ttyUSB0: permission denied for user posbridge"),
        );
    }
    let bad = Command::new(BIN)
        .args(["doctor", "--user", "no-such-user-here"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    has(
        &String::from_utf8_lossy(&bad.stderr),
        "user no-such-user-here does not exist",
    );
}

#[test]
fn access_reports_missing_nodes() {
    assert_eq!(
        sysfs::access(Path::new("/nonexistent/ttyUSB0")),
        Access::NoNode
    );
}
