//! Print jobs from HQ through a real mosquitto: `P/S/print` in, the same
//! durable queue, `P/S/print/status` out — once per `job_id`, expired jobs
//! not printed, malformed ones answered, outcomes kept while the broker is
//! away, and a job taken before a SIGKILL printed after the restart.

use crate::common::mqtt::{Broker, Hq};
use crate::common::printer::*;
use crate::common::*;
use crate::print::{config, printer};
use serde_json::{json, Value};
use std::time::Duration;

const PREFIX: &str = "posbridge/store-test";

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn with_uplink(devices: &str, broker: &Broker) -> String {
    format!(
        "{}[uplink]\nurl = \"{}\"\nclient_id = \"store-test-{}\"\nkeep_alive_s = 5\n",
        config(devices),
        broker.url(),
        ulid::Ulid::new()
    )
}

/// The next outcome HQ reads for `job` (`None`: a job_id-less answer) in
/// `state`; other messages are skipped (at least once: repeats may come).
async fn outcome(hq: &mut Hq, job: Option<&str>, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = hq
            .next(left)
            .await
            .unwrap_or_else(|| panic!("no {state:?} outcome for {job:?}"));
        let v: Value = serde_json::from_slice(&m.payload).expect("status is JSON");
        if v["job_id"].as_str() == job && v["state"] == state {
            assert!(v["at"].is_string(), "{v}");
            return v;
        }
    }
}

#[tokio::test]
async fn a_job_from_hq_prints_once_and_every_message_gets_an_outcome() {
    let broker = Broker::start();
    let status = format!("{PREFIX}/print/status");
    let mut hq = Hq::connect(broker.port, "hq-print", &[&status]).await;
    let kitchen = FakePrinter::start(NORMAL).await;
    let front = FakePrinter::start(NORMAL).await;
    let devices = format!(
        "{}{}[[device]]\nid = \"label-1\"\ndriver = \"label\"\ntransport = \"sim\"\naccept_remote = true\nwidth_mm = 40\nheight_mm = 30\n",
        printer("kitchen-1", kitchen.addr, "accept_remote = true"),
        printer("front-1", front.addr, "")
    );
    let d = Daemon::start(&with_uplink(&devices, &broker)).await;
    d.uplink_connected().await;
    let topic = format!("{PREFIX}/print");
    let ticket = "外卖 #1024\n".as_bytes();
    let job = json!({"job_id": "j-1", "printer": "kitchen-1", "raw": b64(ticket)});
    hq.publish(&topic, job.clone()).await;
    outcome(&mut hq, Some("j-1"), "queued").await;
    outcome(&mut hq, Some("j-1"), "printed").await;
    assert_eq!(kitchen.data(), ticket);

    // The same job again: nothing more prints, its outcome is told again.
    hq.publish(&topic, job).await;
    outcome(&mut hq, Some("j-1"), "printed").await;
    let expired = json!({"job_id": "j-old", "printer": "kitchen-1", "raw": b64(b"late\n"),
        "expire_at": "2020-01-01T00:00:00Z"});
    hq.publish(&topic, expired).await;
    outcome(&mut hq, Some("j-old"), "expired").await;

    // Malformed or refused messages are answered and block nothing after them.
    hq.client
        .publish(&topic, rumqttc::QoS::AtLeastOnce, false, "{not json")
        .await
        .expect("publish");
    let v = outcome(&mut hq, None, "failed").await;
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not JSON")),
        "{v}"
    );
    let refused = [
        (
            json!({"job_id": "j-2", "printer": "kitchen-1"}),
            "give exactly one of document, label or raw",
        ),
        (
            json!({"job_id": "j-3", "printer": "front-1", "raw": b64(b"x")}),
            "not accepted",
        ),
        (
            json!({"job_id": "j-4", "printer": "nope", "raw": b64(b"x")}),
            "unknown printer \"nope\"",
        ),
        (
            json!({"job_id": "j-5", "printer": "kitchen-1", "document": {"lines": [{"qr": 5}]}}),
            "document.lines[0]: qr must be a string",
        ),
        (
            json!({"job_id": "j-6", "printer": "kitchen-1", "raw": b64(b"x"), "expire_at": "soon"}),
            "expire_at \"soon\" is not an RFC 3339 time",
        ),
        (
            json!({"job_id": "j-8", "printer": "kitchen-1",
                "document": {"lines": [{"text": "x"}], "open_drawer": true}}),
            "document.open_drawer: the cash drawer is not opened from HQ",
        ),
        (
            json!({"job_id": "j-9", "printer": "label-1", "label": {"items": [{"text": "a", "x": 999, "y": 0}]}}),
            "label.items[0].x: 999 is outside the label",
        ),
    ];
    for (msg, why) in refused {
        let id = msg["job_id"].as_str().map(str::to_owned);
        hq.publish(&topic, msg).await;
        let v = outcome(&mut hq, id.as_deref(), "failed").await;
        let e = v["error"].as_str().unwrap_or_default();
        assert!(e.starts_with(why), "{id:?}: {e}");
    }
    let doc = json!({"job_id": "j-7", "printer": "kitchen-1", "expire_at": "2099-01-01T00:00:00Z",
        "document": {"lines": [{"text": "后厨单"}, {"cut": true}]}});
    hq.publish(&topic, doc).await;
    outcome(&mut hq, Some("j-7"), "printed").await;
    let label = json!({"job_id": "j-10", "printer": "label-1",
        "label": {"items": [{"text": "取餐号 88", "x": 8, "y": 8}]}});
    hq.publish(&topic, label).await;
    outcome(&mut hq, Some("j-10"), "printed").await;
    let gb = encoding_rs::GB18030.encode("后厨单\n").0.into_owned();
    let data = kitchen.data();
    assert!(data.starts_with(ticket), "j-1 once, first");
    assert!(
        data[ticket.len()..].windows(gb.len()).any(|w| w == gb),
        "j-7 printed"
    );
    assert_eq!(
        data.windows(ticket.len()).filter(|w| *w == ticket).count(),
        1,
        "j-1 printed once"
    );
    assert!(
        front.data().is_empty(),
        "a printer without accept_remote prints nothing from HQ"
    );
    d.stop().await;
}

/// A broker, HQ reading outcomes as `hq_id`, a kitchen printer that takes
/// HQ's jobs answering status with `answers`, and the daemon, connected.
async fn kitchen(hq_id: &str, answers: [u8; 3]) -> (Broker, Hq, FakePrinter, Daemon) {
    let broker = Broker::start();
    let status = format!("{PREFIX}/print/status");
    let hq = Hq::connect(broker.port, hq_id, &[&status]).await;
    let kitchen = FakePrinter::start(answers).await;
    let d = Daemon::start(&with_uplink(
        &printer("kitchen-1", kitchen.addr, "accept_remote = true"),
        &broker,
    ))
    .await;
    d.uplink_connected().await;
    (broker, hq, kitchen, d)
}

#[tokio::test]
async fn an_outcome_reached_while_the_broker_is_away_arrives_when_it_is_back() {
    let (mut broker, mut hq, kitchen, d) = kitchen("hq-print-away", PAPER_OUT).await;
    let job = json!({"job_id": "j-away", "printer": "kitchen-1", "raw": b64(b"ticket\n")});
    hq.publish(&format!("{PREFIX}/print"), job).await;
    outcome(&mut hq, Some("j-away"), "queued").await;
    // HQ's subscription saved (autosave_interval 1) before the outage: the
    // store may be back before HQ is.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    broker.kill();
    // Paper is back while the broker is down: the job prints now.
    kitchen.set(NORMAL);
    let deadline = tokio::time::Instant::now() + WAIT;
    while kitchen.data() != b"ticket\n" {
        assert!(tokio::time::Instant::now() < deadline, "never printed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.resume();
    outcome(&mut hq, Some("j-away"), "printed").await;
    d.stop().await;
}

#[tokio::test]
async fn a_job_that_expires_while_it_waits_for_paper_is_never_printed() {
    let (_broker, mut hq, kitchen, d) = kitchen("hq-print-expire", PAPER_OUT).await;
    let topic = format!("{PREFIX}/print");
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    hq.publish(
        &topic,
        json!({"job_id": "j-first", "printer": "kitchen-1", "raw": b64(b"first\n")}),
    )
    .await;
    hq.publish(
        &topic,
        json!({"job_id": "j-lunch", "printer": "kitchen-1", "raw": b64(b"lunch\n"),
        "expire_at": soon}),
    )
    .await;
    outcome(&mut hq, Some("j-lunch"), "queued").await;
    // Behind a job held for paper, it expires on time all the same.
    outcome(&mut hq, Some("j-lunch"), "expired").await;
    kitchen.set(NORMAL);
    outcome(&mut hq, Some("j-first"), "printed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kitchen.data(), b"first\n", "the expired job never printed");
    d.stop().await;
}

#[tokio::test]
async fn a_job_taken_before_a_sigkill_prints_once_after_the_restart() {
    let broker = Broker::start();
    let mut hq = Hq::connect(broker.port, "hq-print-kill", &["posbridge/s/print/status"]).await;
    let kitchen = FakePrinter::start(PAPER_OUT).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let cfg = format!(
        "{}[uplink]\nurl = \"{}\"\nclient_id = \"store-s-print\"\nkeep_alive_s = 5\n",
        printer("kitchen-1", kitchen.addr, "accept_remote = true"),
        broker.url()
    );
    let p = Binary::start(&state, &cfg, &[]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.get_json("/v1/uplink").await["connected"] != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "uplink never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = json!({"job_id": "j-kill", "printer": "kitchen-1", "raw": b64(b"kill -9\n")});
    hq.publish("posbridge/s/print", job.clone()).await;
    outcome(&mut hq, Some("j-kill"), "queued").await;
    p.kill();
    kitchen.set(NORMAL);
    let p = Binary::start(&state, &cfg, &[]).await;
    outcome(&mut hq, Some("j-kill"), "printed").await;
    // HQ, unsure, sends it again: it is not printed twice.
    hq.publish("posbridge/s/print", job).await;
    outcome(&mut hq, Some("j-kill"), "printed").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kitchen.data(), b"kill -9\n", "printed exactly once");
    drop(p);
}
