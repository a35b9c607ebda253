//! USB hotplug without USB: a recorded session of kernel uevents (plug,
//! unplug, replug on another port, two identical bridges told apart by
//! serial number, a HID reader, a dongle, an unconfigured catalog device) fed
//! through the daemon's own prerequisites step (serial numbers from a fake
//! sysfs) into the sans-IO matcher; the netlink socket itself against the real
//! kernel; `[devices] auto`, serial `match` and dongle config; and a dongle's
//! recorded challenge-response through a running daemon.

use posbridge::device::hotplug::{auto_devices, feed_prerequisites, resync, targets};
use posbridge_drivers::hotplug::{parse_uevent, Decision, Matcher};
use std::path::Path;

const SCENARIO: &str = include_str!("fixtures/uevents.txt");
const P: &str = "/devices/pci0000:00/0000:00:14.0/usb1";

const CONFIG: &str = r#"
[store]
id = "s1"
[[device]]
id = "scanner-1"
driver = "barcode"
transport = "serial"
match = { vid = "0403", pid = "6001", serial = "A10K3ZX1" }
[[device]]
id = "phone-1"
driver = "callerid"
transport = "serial"
match = { vid = "0403", pid = "6001", serial = "B20Q9YT7" }
[[device]]
id = "msr-1"
driver = "magstripe"
transport = "hid"
match = { vid = "0801", pid = "0002" }
[[device]]
id = "dongle-1"
driver = "dongle"
transport = "usb"
match = { vid = "1bc0", pid = "8101", serial = "SS0001" }
"#;

/// The recorded session, step by step: (title, raw events).
fn steps() -> Vec<(String, Vec<Vec<u8>>)> {
    let mut out: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    let mut cur = String::new();
    for line in SCENARIO.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            out.push((title.to_owned(), Vec::new()));
        } else if line.starts_with('#') {
            continue;
        } else if line.is_empty() {
            if !cur.is_empty() {
                let step = out.last_mut().expect("a step title first");
                step.1.push(std::mem::take(&mut cur).into_bytes());
            }
        } else {
            cur.push_str(line);
            // The kernel separates fields with NUL; the parser takes both.
            cur.push('\0');
        }
    }
    out
}

/// The sysfs the shell reads serial numbers from.
fn fake_sys() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tmp");
    for (port, serial) in [
        ("1-2", "A10K3ZX1"),
        ("1-3", "A10K3ZX1"),
        ("1-4", "B20Q9YT7"),
        ("1-6", "SS0001"),
    ] {
        let d = t
            .path()
            .join(format!("{}/{port}", P.trim_start_matches('/')));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("serial"), format!("{serial}\n")).expect("serial");
    }
    t
}

#[test]
fn recorded_session_attaches_detaches_and_keeps_ids_across_ports() {
    let config = posbridge::Config::parse(CONFIG, std::iter::empty(), "test").expect("config");
    let known = posbridge_drivers::catalog::Catalog::builtin()
        .expect("catalog")
        .entries
        .iter()
        .filter_map(|e| e.ids())
        .collect();
    let mut m = Matcher::new(targets(&config.devices), known);
    let sys = fake_sys();
    let mut run = |events: &[Vec<u8>]| -> Vec<Decision> {
        let mut out = Vec::new();
        for raw in events {
            let ev = parse_uevent(raw).unwrap_or_else(|e| panic!("recorded event: {e}"));
            let serial = feed_prerequisites(&mut m, &ev, sys.path());
            out.extend(m.handle(&ev, serial.as_deref()));
        }
        out
    };
    let steps = steps();
    assert_eq!(steps.len(), 7, "scenario steps");
    let attach = |device: &str, node: &str| Decision::Attach {
        device: device.into(),
        node: node.into(),
    };
    let detach = |device: &str, node: &str| Decision::Detach {
        device: device.into(),
        node: node.into(),
    };
    let expected = [
        vec![attach("scanner-1", "ttyUSB0")],
        vec![detach("scanner-1", "ttyUSB0")],
        // Same serial number on another port and node: the same device id.
        vec![attach("scanner-1", "ttyUSB1")],
        // The identical bridge with another serial number is the caller-ID box,
        // even though it got the node the scanner had before.
        vec![attach("phone-1", "ttyUSB0")],
        vec![attach("msr-1", "hidraw0")],
        // Presence-only dongle: the USB device itself.
        vec![attach("dongle-1", "bus/usb/001/010")],
        // In the catalog, claimed by nobody: reported (the shell logs it once).
        vec![
            Decision::Unclaimed {
                vid: 0x1a86,
                pid: 0x7523,
                node: "bus/usb/001/011".into(),
            },
            Decision::Unclaimed {
                vid: 0x1a86,
                pid: 0x7523,
                node: "ttyUSB2".into(),
            },
        ],
    ];
    for ((title, events), want) in steps.iter().zip(expected) {
        assert_eq!(run(events), want, "step {title:?}");
    }
}

#[test]
fn an_unplug_lost_in_an_overflow_is_found_by_the_resync() {
    let config = posbridge::Config::parse(CONFIG, std::iter::empty(), "test").expect("config");
    let sys = fake_sys();
    let feed = |m: &mut Matcher, events: &[Vec<u8>]| -> Vec<Decision> {
        let mut out = Vec::new();
        for raw in events {
            let ev = parse_uevent(raw).unwrap_or_else(|e| panic!("recorded event: {e}"));
            let serial = feed_prerequisites(m, &ev, sys.path());
            out.extend(m.handle(&ev, serial.as_deref()));
        }
        out
    };
    let steps = steps();
    let (plug, replug) = (&steps[0].1, &steps[2].1);
    // While plugged in, sysfs has every node the plug-in announced.
    for raw in plug {
        let ev = parse_uevent(raw).expect("parses");
        std::fs::create_dir_all(sys.path().join(ev.devpath.trim_start_matches('/')))
            .expect("mkdir");
    }
    let mut resynced = Matcher::new(targets(&config.devices), Vec::new());
    let mut stale = Matcher::new(targets(&config.devices), Vec::new());
    let attached = vec![Decision::Attach {
        device: "scanner-1".into(),
        node: "ttyUSB0".into(),
    }];
    assert_eq!(feed(&mut resynced, plug), attached);
    assert_eq!(feed(&mut stale, plug), attached);
    assert!(
        resync(&mut resynced, sys.path()).is_empty(),
        "nothing went away yet"
    );
    // Unplugged while the socket overflowed: no remove event ever arrives.
    std::fs::remove_dir_all(
        sys.path()
            .join(format!("{}/1-2", P.trim_start_matches('/'))),
    )
    .expect("unplug");
    assert_eq!(
        resync(&mut resynced, sys.path()),
        vec![Decision::Detach {
            device: "scanner-1".into(),
            node: "ttyUSB0".into()
        }]
    );
    let reattached = vec![Decision::Attach {
        device: "scanner-1".into(),
        node: "ttyUSB1".into(),
    }];
    assert_eq!(feed(&mut resynced, replug), reattached);
    // Without the resync the scanner still looks busy and its replug is missed.
    assert!(feed(&mut stale, replug).is_empty());
}

#[test]
fn a_usb_printer_found_by_id_is_claimed_at_its_usblp_node() {
    let config = posbridge::Config::parse(
        "[store]\nid = \"s1\"\n[[device]]\nid = \"printer-1\"\ndriver = \"escpos\"\ntransport = \"usb\"\nmatch = { vid = \"0416\", pid = \"5011\" }\n",
        std::iter::empty(),
        "test",
    )
    .expect("config");
    let mut m = Matcher::new(targets(&config.devices), Vec::new());
    let events = [
        format!("add@{P}/1-8\0ACTION=add\0DEVPATH={P}/1-8\0SUBSYSTEM=usb\0DEVNAME=bus/usb/001/012\0DEVTYPE=usb_device\0PRODUCT=416/5011/100\0SEQNUM=20\0"),
        format!("add@{P}/1-8/1-8:1.0/usbmisc/lp0\0ACTION=add\0DEVPATH={P}/1-8/1-8:1.0/usbmisc/lp0\0SUBSYSTEM=usbmisc\0DEVNAME=usb/lp0\0SEQNUM=21\0"),
    ];
    let mut out = Vec::new();
    for raw in &events {
        let ev = parse_uevent(raw.as_bytes()).expect("parses");
        out.extend(m.handle(&ev, None));
    }
    assert_eq!(
        out,
        vec![Decision::Attach {
            device: "printer-1".into(),
            node: "usb/lp0".into()
        }],
        "the usb_device itself is not the printer's node"
    );
}

#[test]
fn a_node_whose_parent_event_was_missed_is_found_through_sysfs() {
    // The daemon started after the reader was plugged in: only the hidraw
    // rebind arrives. The shell reads the parent's ids from sysfs.
    let sys = tempfile::tempdir().expect("tmp");
    let usb = sys
        .path()
        .join(format!("{}/1-5", P.trim_start_matches('/')));
    let hidraw = usb.join("1-5:1.0/0003:0801:0002.0004/hidraw/hidraw0");
    std::fs::create_dir_all(&hidraw).expect("mkdir");
    std::fs::write(usb.join("idVendor"), "0801\n").expect("w");
    std::fs::write(usb.join("idProduct"), "0002\n").expect("w");
    let config = posbridge::Config::parse(CONFIG, std::iter::empty(), "test").expect("config");
    let mut m = Matcher::new(targets(&config.devices), Vec::new());
    let raw = format!(
        "add@{P}/1-5/1-5:1.0/0003:0801:0002.0004/hidraw/hidraw0\0ACTION=add\0DEVPATH={P}/1-5/1-5:1.0/0003:0801:0002.0004/hidraw/hidraw0\0SUBSYSTEM=hidraw\0MAJOR=243\0MINOR=0\0DEVNAME=hidraw0\0SEQNUM=9\0"
    );
    let ev = parse_uevent(raw.as_bytes()).expect("parses");
    assert!(m.handle(&ev, None).is_empty(), "no parent known yet");
    let ev2 = parse_uevent(raw.replace("SEQNUM=9", "SEQNUM=10").as_bytes()).expect("parses");
    feed_prerequisites(&mut m, &ev2, sys.path());
    assert_eq!(
        m.handle(&ev2, None),
        vec![Decision::Attach {
            device: "msr-1".into(),
            node: "hidraw0".into()
        }]
    );
}

#[tokio::test]
async fn the_netlink_socket_receives_real_kernel_uevents() {
    // Writing "change" to a sysfs uevent file makes the kernel broadcast one:
    // the very path a USB plug-in takes, minus the USB.
    let target = Path::new("/sys/devices/virtual/tty/tty1/uevent");
    let writable = std::fs::OpenOptions::new().write(true).open(target).is_ok();
    if !writable {
        eprintln!(
            "skipped: {} is not writable here (not root?)",
            target.display()
        );
        return;
    }
    let got =
        posbridge::device::hotplug::receive_one_for_test(std::time::Duration::from_secs(5), || {
            let _ = std::fs::write(target, "change");
        })
        .await
        .expect("netlink socket");
    let ev = got.expect("a uevent within 5 s");
    assert_eq!(ev.action, "change");
    assert_eq!(ev.subsystem, "tty");
    assert!(
        ev.devpath.starts_with("/devices/virtual/tty/"),
        "{}",
        ev.devpath
    );
}

#[test]
fn auto_claims_catalog_devices_nobody_configured() {
    let cfg = posbridge::Config::parse(
        "[store]\nid = \"s\"\n[devices]\nauto = true\n[[device]]\nid = \"msr\"\ndriver = \"magstripe\"\ntransport = \"hid\"\nmatch = { vid = \"0801\", pid = \"0002\" }\n",
        std::iter::empty(),
        "test",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = cfg.devices.iter().map(|d| d.id.as_str()).collect();
    assert!(ids.contains(&"msr"));
    // 0801:0002 is configured already, so auto leaves it alone.
    assert!(!ids.contains(&"auto-magtek-swipe-hid"), "{ids:?}");
    for want in [
        "auto-magtek-swipe-keyboard",
        "auto-senseshield-elite",
        "auto-usr-5637",
    ] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    // Bare bridges, printers and PC/SC readers are never auto-claimed.
    for never in [
        "auto-ftdi-ft232r",
        "auto-qinheng-ch340",
        "auto-epson-tm-ub",
        "auto-acs-acr122u",
    ] {
        assert!(!ids.contains(&never), "{never} in {ids:?}");
    }
    let modem = cfg
        .devices
        .iter()
        .find(|d| d.id == "auto-usr-5637")
        .expect("modem");
    assert_eq!(modem.baud, Some(115_200), "catalog defaults apply");
    assert_eq!(
        auto_devices(&cfg.devices).expect("auto").len(),
        0,
        "all claimed once"
    );
    let off =
        posbridge::Config::parse("[store]\nid = \"s\"\n", std::iter::empty(), "t").expect("cfg");
    assert!(off.devices.is_empty(), "auto is off by default");
    // A configured device holding the id auto would give another: refused,
    // not two devices under one id.
    let clash = posbridge::Config::parse(
        "[store]\nid = \"s\"\n[devices]\nauto = true\n[[device]]\nid = \"auto-usr-5637\"\ndriver = \"barcode\"\ntransport = \"sim\"\n",
        std::iter::empty(),
        "t",
    )
    .expect_err("duplicate id")
    .to_string();
    assert!(
        clash.contains("devices.auto (auto-usr-5637).id: duplicate device id"),
        "{clash}"
    );
}

#[test]
fn serial_match_and_dongle_keys_are_validated() {
    let bad = r#"
[store]
id = "s"
[[device]]
id = "a"
driver = "barcode"
transport = "serial"
match = { vid = "04x3", pid = "6001" }
[[device]]
id = "b"
driver = "dongle"
transport = "usb"
match = { vid = "0529", pid = "0001" }
check = { hmac_key = "00112233" }
[[device]]
id = "c"
driver = "dongle"
transport = "hid"
check = { challenge = "a1b2" }
[[device]]
id = "d"
driver = "barcode"
transport = "serial"
"#;
    let e = posbridge::Config::parse(bad, std::iter::empty(), "t")
        .expect_err("invalid")
        .to_string();
    for want in [
        "device[0].match: vid \"04x3\"",
        "device[1].check: a challenge-response needs transport \"hid\"",
        "device[2].match: required for driver dongle",
        "device[3].path: required for transport \"serial\"",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let good = r#"
[store]
id = "s"
[[device]]
id = "scanner-1"
driver = "barcode"
transport = "serial"
match = { vid = "0403", pid = "6001", serial = "A10K3ZX1" }
[[device]]
id = "lic"
driver = "dongle"
transport = "hid"
match = { vid = "1bc0", pid = "8101" }
check = { report_id = 2, report_len = 16, challenge = "a1b2c3d4", response = "5ac9e1f00b7744aa" }
[[device]]
id = "lic2"
driver = "dongle"
transport = "hid"
match = { vid = "1bc0", pid = "8101", serial = "X" }
check = { hmac_key = "000102030405060708090a0b0c0d0e0f", response_len = 8 }
"#;
    posbridge::Config::parse(good, std::iter::empty(), "t").unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_dongle_answers_its_recorded_challenge_through_the_daemon() {
    let d = crate::common::Daemon::start(
        r#"
[store]
id = "s1"
[[device]]
id = "lic"
driver = "dongle"
transport = "sim"
match = { vid = "1bc0", pid = "8101", serial = "SS0001" }
check = { report_id = 2, report_len = 16, challenge = "a1b2c3d4", response = "5ac9e1f00b7744aa" }
"#,
    )
    .await;
    let mut ws = d.ws("/v1/events?types=dongle.*&since=0").await;
    // The genuine dongle's reply to the recorded challenge (report id 2 first).
    let r = d
        .http
        .post(d.url("/v1/devices/lic/simulate"))
        .json(&serde_json::json!({ "hex": "02 5a c9 e1 f0 0b 77 44 aa 00 00" }))
        .send()
        .await
        .expect("simulate");
    assert_eq!(r.status(), 202);
    let ev = crate::common::next_of_type(&mut ws, "dongle.attached").await;
    assert_eq!(
        ev["data"],
        serde_json::json!({"vid": "1bc0", "pid": "8101", "serial": "SS0001", "licensed": true})
    );
    assert_eq!(ev["device"], "lic");
    crate::common::close(ws).await;
    d.stop().await;
}

/// `udevadm trigger` re-announces devices with `change`: the serial number is
/// read again, as on `add`, so a device found by serial is still told apart.
#[test]
fn a_change_event_reads_the_serial_number_like_an_add() {
    let sys = fake_sys();
    let mut m = Matcher::new(Vec::new(), Vec::new());
    let ev = |action: &str| {
        parse_uevent(format!("{action}@{P}/1-2\0ACTION={action}\0DEVPATH={P}/1-2\0SUBSYSTEM=usb\0DEVNAME=bus/usb/001/005\0DEVTYPE=usb_device\0PRODUCT=403/6001/600\0SEQNUM=1\0").as_bytes())
            .expect("parses")
    };
    for action in ["add", "bind", "change"] {
        assert_eq!(
            feed_prerequisites(&mut m, &ev(action), sys.path()).as_deref(),
            Some("A10K3ZX1"),
            "{action}"
        );
    }
    assert_eq!(feed_prerequisites(&mut m, &ev("remove"), sys.path()), None);
}
