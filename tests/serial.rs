//! A serial scanner through a real pty pair: the test plays the device on the
//! master; the daemon opens the slave by a symlink path, as it would a
//! /dev/serial/by-id name. Unplug = close the master; replug = a new pty
//! behind the same symlink.

use crate::common::*;
use std::io::Write;

#[tokio::test]
async fn a_serial_scanner_is_read_detached_and_reattached() {
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyScanner");
    let mut dev = plug(&link);
    let cfg = format!(
        "[store]\nid = \"s\"\n[[device]]\nid = \"pty-1\"\ndriver = \"barcode\"\ntransport = \"serial\"\npath = \"{}\"\nbaud = 9600\n",
        link.display()
    );
    let d = Daemon::start(&cfg).await;
    let mut ws = d.ws("/v1/events?since=0&devices=pty-1").await;
    let attached = next_of_type(&mut ws, "device.attached").await;
    assert_eq!(attached["data"]["transport"], "serial");
    assert_eq!(attached["data"]["path"], link.display().to_string());

    // A code split across writes, then a second one in the same write.
    dev.master.write_all(b"69012345").expect("write");
    dev.master.flush().expect("flush");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    dev.master
        .write_all(b"67892\r\n]Q1https://m.example.cn/c/42\r\n")
        .expect("write");
    let a = next_of_type(&mut ws, "code.scanned").await;
    assert_eq!(a["data"]["text"], "6901234567892");
    let b = next_of_type(&mut ws, "code.scanned").await;
    assert_eq!(b["data"]["text"], "https://m.example.cn/c/42");
    assert_eq!(b["data"]["symbology"], "qr");

    // Unplug: the pty goes away entirely.
    unplug(dev, &link);
    let detached = next_of_type(&mut ws, "device.detached").await;
    assert_eq!(detached["device"], "pty-1");
    let err = next_of_type(&mut ws, "device.error").await;
    assert!(
        err["data"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("no such device"),
        "{err}"
    );
    let devs = d.get_json("/v1/devices").await;
    assert_eq!(devs[0]["state"], "disconnected");
    assert!(devs[0]["last_error"]
        .as_str()
        .unwrap_or("")
        .contains("no such device"));

    // Replug at the same path: reattached within the backoff, and reading again.
    let mut dev = plug(&link);
    next_of_type(&mut ws, "device.attached").await;
    assert_eq!(d.get_json("/v1/devices").await[0]["state"], "connected");
    dev.master.write_all(b"AGAIN\r").expect("write");
    assert_eq!(
        next_of_type(&mut ws, "code.scanned").await["data"]["text"],
        "AGAIN"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_present_but_unusable_device_is_an_error_not_disconnected() {
    let dir = tempfile::tempdir().expect("tmp");
    let not_a_tty = dir.path().join("notatty");
    std::fs::write(&not_a_tty, b"").expect("file");
    let cfg = format!(
        "[store]\nid = \"s\"\n[[device]]\nid = \"bad\"\ndriver = \"barcode\"\npath = \"{}\"\n[[device]]\nid = \"gone\"\ndriver = \"barcode\"\npath = \"{}\"\n",
        not_a_tty.display(),
        dir.path().join("absent").display()
    );
    let d = Daemon::start(&cfg).await;
    let mut ws = d.ws("/v1/events?since=0&types=device.error").await;
    next_event(&mut ws).await;
    next_event(&mut ws).await;
    let devs = d.get_json("/v1/devices").await;
    let state = |id: &str| {
        devs.as_array()
            .and_then(|l| l.iter().find(|x| x["id"] == id))
            .map(|x| x["state"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(state("bad").as_deref(), Some("error"), "{devs}");
    assert_eq!(state("gone").as_deref(), Some("disconnected"), "{devs}");
    let h = d.get_json("/v1/health").await;
    assert_eq!(
        (
            h["devices"]["error"].as_u64(),
            h["devices"]["disconnected"].as_u64()
        ),
        (Some(1), Some(1))
    );
    d.stop().await;
}

#[tokio::test]
async fn a_read_request_for_a_disconnected_device_is_refused_at_once() {
    let d = Daemon::start("[store]\nid = \"s\"\n[[device]]\nid = \"gone\"\ndriver = \"barcode\"\npath = \"/nonexistent/tty\"\n").await;
    let t = std::time::Instant::now();
    let r = d
        .http
        .post(d.url("/v1/devices/gone/read"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 409);
    assert!(
        t.elapsed() < std::time::Duration::from_millis(500),
        "answered without waiting"
    );
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["error"]["code"],
        "not_connected"
    );
    d.stop().await;
}
