//! The event stream end to end: real daemon, real WebSocket clients.

use crate::common::*;
use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn events_arrive_in_order_with_rising_seq_and_full_envelope() {
    let d = Daemon::start(&sim_config("")).await;
    let mut ws = d.ws("/v1/events?types=code.scanned").await;
    d.simulate("scan-1", "A1\r\nhttps://x.cn/p\r\n134567890123456789\r\n")
        .await;
    let a = next_event(&mut ws).await;
    let b = next_event(&mut ws).await;
    let c = next_event(&mut ws).await;
    assert_eq!(a["data"]["text"], "A1");
    assert_eq!(a["data"]["kind"], "member");
    assert_eq!(b["data"]["kind"], "url");
    assert_eq!(c["data"]["kind"], "payment_wechat");
    let seq = |v: &serde_json::Value| v["seq"].as_u64().expect("seq");
    assert_eq!(seq(&b), seq(&a) + 1);
    assert_eq!(seq(&c), seq(&b) + 1);
    for ev in [&a, &b, &c] {
        assert_eq!(ev["store"], "store-test");
        assert_eq!(ev["device"], "scan-1");
        assert_eq!(ev["type"], "code.scanned");
        assert_eq!(ev["boot"], a["boot"]);
        let id = ev["id"].as_str().expect("id");
        assert!(ulid::Ulid::from_string(id).is_ok(), "id {id} is a ULID");
        let time = ev["time"].as_str().expect("time");
        assert!(
            time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T",
            "time {time} is RFC 3339 UTC with ms"
        );
    }
    let health = d.get_json("/v1/health").await;
    assert_eq!(health["boot"], a["boot"]);
    close(ws).await;
    d.stop().await;
}

#[tokio::test]
async fn type_and_device_filters_select_events() {
    let d = Daemon::start(&sim_config("")).await;
    let mut only2 = d.ws("/v1/events?devices=scan-2").await;
    let mut codes = d.ws("/v1/events?types=code.*").await;
    let mut cards = d.ws("/v1/events?types=card.*,uplink.status").await;
    d.simulate("scan-1", "one\n").await;
    d.simulate("scan-2", "two\n").await;
    let ev = next_event(&mut only2).await;
    assert_eq!(
        (ev["device"].as_str(), ev["data"]["text"].as_str()),
        (Some("scan-2"), Some("two"))
    );
    assert_eq!(next_event(&mut codes).await["data"]["text"], "one");
    assert_eq!(next_event(&mut codes).await["data"]["text"], "two");
    assert_quiet(&mut cards, Duration::from_millis(300)).await;
    assert_quiet(&mut only2, Duration::from_millis(100)).await;
    d.stop().await;
}

#[tokio::test]
async fn resume_after_disconnect_delivers_exactly_the_missed_events() {
    let d = Daemon::start(&sim_config("")).await;
    let mut ws = d.ws("/v1/events?types=code.scanned").await;
    d.simulate("scan-1", "a\nb\n").await;
    next_event(&mut ws).await;
    let last = next_event(&mut ws).await;
    close(ws).await;
    d.simulate("scan-1", "c\nd\ne\n").await;
    // Let the device task publish before resuming; the resume must not depend on timing though.
    let boot = last["boot"].as_str().expect("boot");
    let since = last["seq"].as_u64().expect("seq");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ws = d
        .ws(&format!(
            "/v1/events?types=code.scanned&since={since}&boot={boot}"
        ))
        .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_event(&mut ws).await);
    }
    let texts: Vec<_> = got
        .iter()
        .map(|e| e["data"]["text"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(texts, ["c", "d", "e"]);
    assert_eq!(got[0]["seq"].as_u64(), Some(since + 1));
    assert_quiet(&mut ws, Duration::from_millis(300)).await;
    d.simulate("scan-1", "f\n").await;
    assert_eq!(next_event(&mut ws).await["data"]["text"], "f");
    d.stop().await;
}

#[tokio::test]
async fn evicted_events_are_reported_as_a_gap() {
    let d = Daemon::start(&sim_config("[events]\nbuffer = 16")).await;
    let mut live = d.ws("/v1/events?types=code.scanned").await;
    let lines: String = (0..40).map(|i| format!("c{i}\n")).collect();
    d.simulate("scan-1", &lines).await;
    let mut last = serde_json::Value::Null;
    for _ in 0..40 {
        last = next_event(&mut live).await;
    }
    let boot = last["boot"].as_str().expect("boot").to_owned();
    let newest = last["seq"].as_u64().expect("seq");
    let oldest_kept = newest - 15;
    let mut ws = d.ws(&format!("/v1/events?since=1&boot={boot}")).await;
    let gap = next_event(&mut ws).await;
    assert_eq!(gap["type"], "stream.gap");
    assert_eq!(gap["data"]["from"].as_u64(), Some(2));
    assert_eq!(gap["data"]["to"].as_u64(), Some(oldest_kept - 1));
    let first = next_event(&mut ws).await;
    assert_eq!(first["seq"].as_u64(), Some(oldest_kept));
    d.stop().await;
}

#[tokio::test]
async fn a_new_boot_is_reported_as_a_reset_then_the_buffer_follows() {
    let d = Daemon::start(&sim_config("")).await;
    d.simulate("scan-1", "x\n").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let old_boot = ulid::Ulid::new().to_string();
    let mut ws = d.ws(&format!("/v1/events?since=99&boot={old_boot}")).await;
    let reset = next_event(&mut ws).await;
    assert_eq!(reset["type"], "stream.reset");
    assert_eq!(reset["seq"].as_u64(), Some(0));
    assert_eq!(reset["data"]["previous_boot"], old_boot.as_str());
    assert_ne!(reset["boot"], old_boot.as_str());
    // Everything this run buffered follows, from seq 1.
    let first = next_event(&mut ws).await;
    assert_eq!(first["seq"].as_u64(), Some(1));
    let scanned = next_of_type(&mut ws, "code.scanned").await;
    assert_eq!(scanned["data"]["text"], "x");
    d.stop().await;
}

#[tokio::test]
async fn a_stalled_client_is_closed_with_4008_while_a_healthy_one_gets_everything() {
    let d = Daemon::start(&sim_config(
        "[events]\nclient_queue = 64\nstall_timeout_ms = 1000",
    ))
    .await;
    // The stalled client: a tiny receive buffer and it never reads.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = socket.connect(d.addr).await.expect("connect");
    let (mut stalled, _) = tokio_tungstenite::client_async(
        d.ws_url("/v1/events?types=code.scanned"),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .expect("handshake");
    let mut healthy = d.ws("/v1/events?types=code.scanned").await;

    let total = 3000;
    // Each burst fits the 64-event client queue, so only the stalled client can overflow.
    let batch = 20;
    let mut received = 0;
    for b in 0..total / batch {
        let lines: String = (0..batch)
            .map(|i| format!("code-{:05}-{}\n", b * batch + i, "x".repeat(200)))
            .collect();
        d.simulate("scan-1", &lines).await;
        for _ in 0..batch {
            let ev = next_event(&mut healthy).await;
            let want = format!("code-{:05}-", received);
            assert!(
                ev["data"]["text"].as_str().unwrap_or("").starts_with(&want),
                "healthy got every event in order"
            );
            received += 1;
        }
    }
    assert_eq!(received, total);

    // The stalled client now reads: it finds what fit in its buffers, then 4008.
    let mut seen = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(15), stalled.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => seen += 1,
            Ok(Some(Ok(Message::Close(Some(f))))) => break u16::from(f.code),
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a 4008 close after {seen} events, got {other:?}"),
        }
    };
    assert_eq!(code, 4008);
    assert!(
        seen < total,
        "the stalled client was cut off, not fed everything"
    );
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("posbridge_ws_clients_cut_off_total"),
        "{metrics}"
    );
    d.stop().await;
}

#[tokio::test]
async fn long_poll_returns_buffered_events_and_waits_for_new_ones() {
    let d = Daemon::start(&sim_config("")).await;
    d.simulate("scan-1", "p1\n").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = d
        .get_json("/v1/events/poll?since=0&types=code.scanned&timeout_ms=100")
        .await;
    let events = r["events"].as_array().expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["text"], "p1");
    let next = r["next"].as_u64().expect("next");

    // Nothing new: waits, then answers empty.
    let t = std::time::Instant::now();
    let r = d
        .get_json(&format!("/v1/events/poll?since={next}&timeout_ms=300"))
        .await;
    assert!(r["events"].as_array().expect("events").is_empty());
    assert!(t.elapsed() >= Duration::from_millis(250));

    // A new event ends the wait early.
    let url = d.url(&format!(
        "/v1/events/poll?since={next}&types=code.scanned&timeout_ms=10000"
    ));
    let client = d.http.clone();
    let waiter = tokio::spawn(async move {
        client
            .get(url)
            .send()
            .await
            .expect("poll")
            .json::<serde_json::Value>()
            .await
            .expect("json")
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = std::time::Instant::now();
    d.simulate("scan-2", "p2\n").await;
    let r = waiter.await.expect("join");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(r["events"][0]["data"]["text"], "p2");
    d.stop().await;
}

#[tokio::test]
async fn devices_health_and_metrics_describe_the_daemon() {
    let d = Daemon::start(&sim_config("")).await;
    let mut ws = d.ws("/v1/events?since=0&types=device.*").await;
    let a = next_of_type(&mut ws, "device.attached").await;
    assert_eq!(a["data"]["transport"], "sim");
    d.simulate("scan-1", "m1\n").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let devs = d.get_json("/v1/devices").await;
    let one = devs
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["id"] == "scan-1")
        .expect("scan-1")
        .clone();
    assert_eq!(one["state"], "connected");
    assert_eq!(one["driver"], "barcode");
    assert_eq!(one["events"].as_u64(), Some(1));
    assert!(one["last_event_at"].is_string());
    let h = d.get_json("/v1/health").await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["devices"]["connected"].as_u64(), Some(2));
    assert_eq!(h["uplink"]["connected"], false);
    let m = d.metrics().await;
    assert!(
        m.contains("posbridge_events_total{type=\"code.scanned\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("posbridge_device_up{device=\"scan-1\"} 1"),
        "{m}"
    );
    let page = d.http.get(d.url("/")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("new WebSocket"));
    let bad = d
        .http
        .post(d.url("/v1/devices/nope/simulate"))
        .json(&serde_json::json!({"data": "x"}))
        .send()
        .await
        .expect("r");
    assert_eq!(bad.status(), 404);
    let body: serde_json::Value = bad.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "unknown_device");
    let bad = d
        .http
        .post(d.url("/v1/devices/scan-1/simulate"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("r");
    assert_eq!(bad.status(), 400);
    assert!(bad.json::<serde_json::Value>().await.expect("json")["error"]["message"].is_string());
    let read = d
        .http
        .post(d.url("/v1/devices/scan-1/read"))
        .send()
        .await
        .expect("r");
    assert_eq!(read.status(), 409);
    assert_eq!(
        read.json::<serde_json::Value>().await.expect("json")["error"]["code"],
        "not_supported",
        "a scanner has nothing to read on demand"
    );
    let missing = d.http.get(d.url("/v1/nothing")).send().await.expect("r");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<serde_json::Value>().await.expect("json")["error"]["code"],
        "not_found"
    );
    d.stop().await;
}

#[tokio::test]
async fn shutdown_closes_streams_with_1001_and_is_quick() {
    let d = Daemon::start(&sim_config("")).await;
    let mut ws = d.ws("/v1/events").await;
    let took = d.stop().await;
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close arrives")
        {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1001);
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn idle_streams_are_pinged() {
    let d = Daemon::start(&sim_config("[events]\nping_interval_s = 1")).await;
    let mut ws = d.ws("/v1/events?types=none.such").await;
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_))) => return true,
                Some(Ok(_)) => continue,
                _ => return false,
            }
        }
    })
    .await;
    assert_eq!(got.ok(), Some(true), "a ping arrives within two intervals");
    d.stop().await;
}

#[tokio::test]
async fn long_poll_with_a_small_limit_never_skips_events_behind_a_notice() {
    let d = Daemon::start(&sim_config("[events]\nbuffer = 16")).await;
    let lines: String = (0..40).map(|i| format!("c{i}\n")).collect();
    d.simulate("scan-1", &lines).await;
    let mut boot = String::new();
    // Wait until all 40 scans are published.
    for _ in 0..100 {
        let r = d.get_json("/v1/events/poll?since=0&timeout_ms=10").await;
        boot = r["boot"].as_str().unwrap_or("").to_owned();
        if r["next"].as_u64() >= Some(42) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A client resuming from seq 1 with limit=1: a gap, then every buffered event, one per poll.
    let mut since = 1;
    let mut seen = Vec::new();
    let mut notices = Vec::new();
    for _ in 0..40 {
        let r = d
            .get_json(&format!(
                "/v1/events/poll?since={since}&boot={boot}&limit=1&timeout_ms=10"
            ))
            .await;
        let events = r["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            break;
        }
        for e in events {
            match e["type"].as_str() {
                Some("stream.gap") => notices.push(e),
                _ => seen.push(e["seq"].as_u64().unwrap_or(0)),
            }
        }
        since = r["next"].as_u64().expect("next");
    }
    assert_eq!(notices.len(), 1, "one gap notice");
    let oldest = notices[0]["data"]["to"].as_u64().expect("to") + 1;
    assert_eq!(
        seen,
        (oldest..=42).collect::<Vec<_>>(),
        "every buffered event, in order, once"
    );
    d.stop().await;
}

#[tokio::test]
async fn absurd_resume_points_are_harmless() {
    let d = Daemon::start(&sim_config("")).await;
    let r = d
        .http
        .get(d.url("/v1/events/poll?since=18446744073709551615&timeout_ms=10"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    let r = d
        .http
        .get(d.url("/v1/events/poll?since=-1"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<serde_json::Value>().await.expect("json")["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("since")
    );
    let mut ws = d
        .ws("/v1/events?since=18446744073709551615&types=code.scanned")
        .await;
    d.simulate("scan-1", "still-works\n").await;
    assert_eq!(next_event(&mut ws).await["data"]["text"], "still-works");
    d.stop().await;
}
