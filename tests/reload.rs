//! SIGHUP: devices added, removed and changed live, without dropping stream
//! clients or the outbox; a broken config is refused and the old one kept.

use crate::common::*;
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::time::Duration;

fn device(id: &str, extra: &str) -> String {
    format!("[[device]]\nid = \"{id}\"\ndriver = \"barcode\"\ntransport = \"sim\"\n{extra}\n")
}

/// Rewrites the config Binary::start wrote (same store, port and storage).
fn rewrite(state: &std::path::Path, port: u16, devices: &str) {
    std::fs::write(
        state.with_extension("toml"),
        format!(
            "[store]\nid = \"s\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[storage]\ndir = \"{}\"\n{devices}",
            state.display()
        ),
    )
    .expect("rewrite config");
}

/// A scan as the scanner sends it (with its line end).
async fn simulate(p: &Binary, dev: &str, text: &str) -> u16 {
    p.simulate(dev, &format!("{text}\r\n")).await
}

async fn next_event_of(ws: &mut Ws, kind: &str, device: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} from {device}"))
            .expect("stream still open")
            .expect("frame");
        let v: Value = serde_json::from_str(msg.to_text().unwrap_or("{}")).unwrap_or(Value::Null);
        if v["type"] == kind && v["device"] == device {
            return v;
        }
    }
}

#[tokio::test]
async fn sighup_applies_device_changes_live_and_refuses_a_broken_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let p = Binary::start(
        &state,
        &format!("{}{}", device("scan-1", ""), device("scan-2", "")),
        &[],
    )
    .await;
    let port: u16 = p
        .url
        .rsplit(':')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("port");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/v1/events"))
        .await
        .expect("ws");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/transactions", p.url))
        .json(&json!({"id": "before-reload", "amount_fen": 1}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(simulate(&p, "scan-1", "M000001").await, 202);
    let e = next_event_of(&mut ws, "code.scanned", "scan-1").await;
    assert_eq!(e["data"]["kind"], "member");

    // scan-2 goes, scan-3 comes, scan-1 gets a member pattern.
    rewrite(
        &state,
        port,
        &format!(
            "{}{}",
            device("scan-1", "member_pattern = \"^VIP\\\\d+$\""),
            device("scan-3", "")
        ),
    );
    p.signal(Signal::SIGHUP);
    next_event_of(&mut ws, "device.detached", "scan-2").await;
    next_event_of(&mut ws, "device.attached", "scan-3").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.device_ids().await != ["scan-1", "scan-3"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            p.device_ids().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(simulate(&p, "scan-2", "X").await, 404, "removed");
    assert_eq!(simulate(&p, "scan-3", "M000003").await, 202);
    next_event_of(&mut ws, "code.scanned", "scan-3").await;
    // The changed device runs with its new settings.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert_eq!(simulate(&p, "scan-1", "M000001").await, 202);
        let e = next_event_of(&mut ws, "code.scanned", "scan-1").await;
        if e["data"]["kind"] == "other" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pattern never applied: {e}"
        );
    }
    // The same stream saw all of it; the outbox is untouched.
    let t = p.get_json("/v1/transactions/before-reload").await;
    assert_eq!(t["id"], "before-reload");

    // A broken config: refused with its key named, nothing changes.
    rewrite(
        &state,
        port,
        &format!(
            "{}{}",
            device("scan-1", "baud = \"fast\""),
            device("scan-9", "")
        ),
    );
    p.signal(Signal::SIGHUP);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !p.log_so_far().contains("config reload refused") {
        assert!(tokio::time::Instant::now() < deadline, "{}", p.log_so_far());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = p.log_so_far();
    assert!(log.contains("device[0].baud"), "{log}");
    assert_eq!(p.device_ids().await, ["scan-1", "scan-3"]);
    assert_eq!(simulate(&p, "scan-3", "M000004").await, 202);
    next_event_of(&mut ws, "code.scanned", "scan-3").await;
    let log = p.stop_and_log();
    assert!(log.contains("config reloaded"), "{log}");
}
