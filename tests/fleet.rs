//! A chain's fleet (issue 24): a store rides its HQ cluster's failover
//! between brokers (`uplink.urls`), drains its backlog at `drain_rate`, and
//! every transaction id is counted at HQ.

use crate::common::mqtt::{Broker, Hq};
use crate::common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PREFIX: &str = "posbridge/store-test";

fn config(urls: &[String], extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    sim_config(&format!(
        "[uplink]\nurls = [{}]\nclient_id = \"store-test-{}\"\nack = \"hq\"\nreconnect_spread_ms = 300\n{extra}\n",
        urls.join(", "),
        ulid::Ulid::new()
    ))
}

async fn post(d: &Daemon, id: &str) -> u16 {
    let (status, _) = d
        .post_json(
            "/v1/transactions",
            &json!({"id": id, "type": "recharge", "amount_fen": 100}),
        )
        .await;
    status
}

/// What HQ got, by id, acking each on the broker it came through.
struct Counted(BTreeMap<String, usize>);

impl Counted {
    async fn take(&mut self, hq: &mut Hq, within: Duration) -> bool {
        let Some(p) = hq.next(within).await else {
            return false;
        };
        let v: Value = serde_json::from_slice(&p.payload).expect("tx json");
        let id = v["id"].as_str().unwrap_or_default().to_owned();
        *self.0.entry(id.clone()).or_default() += 1;
        hq.publish(&format!("{PREFIX}/tx/ack"), json!({"ids": [id]}))
            .await;
        true
    }
}

#[tokio::test]
async fn a_store_fails_over_between_two_brokers_and_every_id_reaches_hq() {
    let mut a = Broker::start();
    let mut b = Broker::start();
    let topic = format!("{PREFIX}/tx");
    let mut hq_a = Hq::connect(a.port, "hq-a", &[&topic]).await;
    let mut hq_b = Hq::connect(b.port, "hq-b", &[&topic]).await;
    let d = Daemon::start(&config(&[a.url(), b.url()], "")).await;
    d.uplink_connected().await;
    assert_eq!(
        d.get_json("/v1/uplink").await["broker"],
        a.url(),
        "the first is preferred"
    );

    let n = 200;
    let mut got = Counted(BTreeMap::new());
    for i in 0..n {
        assert_eq!(post(&d, &format!("f-{i:04}")).await, 202);
    }
    // Broker A dies mid-drain and stays dead: the store moves to B.
    while got.0.len() < 50 {
        assert!(
            got.take(&mut hq_a, WAIT).await,
            "HQ-A got {} of 50",
            got.0.len()
        );
    }
    a.kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.0.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "HQ got {} of {n}",
            got.0.len()
        );
        got.take(&mut hq_b, Duration::from_millis(200)).await;
        got.take(&mut hq_a, Duration::from_millis(1)).await;
    }
    assert_eq!(d.get_json("/v1/uplink").await["broker"], b.url());
    // B dies too and A is back: the store goes on at A.
    a.resume();
    let mut hq_a = Hq::connect(a.port, "hq-a2", &[&topic]).await;
    b.kill();
    for i in n..n + 50 {
        assert_eq!(post(&d, &format!("f-{i:04}")).await, 202);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.0.len() < n + 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "HQ got {} of {}",
            got.0.len(),
            n + 50
        );
        got.take(&mut hq_a, Duration::from_millis(200)).await;
    }
    let want: BTreeSet<String> = (0..n + 50).map(|i| format!("f-{i:04}")).collect();
    let have: BTreeSet<String> = got.0.keys().cloned().collect();
    assert_eq!(have, want, "every accepted id reached HQ");
    let dups: usize = got.0.values().map(|c| c - 1).sum();
    eprintln!(
        "failover: {} ids at HQ, {dups} duplicates (at least once)",
        have.len()
    );
    let up = d.get_json("/v1/uplink").await;
    assert_eq!(up["broker"], a.url(), "{up}");
    d.stop().await;
}

#[tokio::test]
async fn a_backlog_drains_no_faster_than_drain_rate() {
    let broker = Broker::start();
    let topic = format!("{PREFIX}/tx");
    let mut hq = Hq::connect(broker.port, "hq-rate", &[&topic]).await;
    // The first broker is unreachable (a closed port), so the backlog builds
    // while the store finds the second: 60 transactions at 20/s take about
    // 2 s (one second's burst, then the rate).
    let closed = format!("mqtt://127.0.0.1:{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    });
    let d = Daemon::start(&config(&[closed, broker.url()], "drain_rate = 20")).await;
    for i in 0..60 {
        assert_eq!(post(&d, &format!("r-{i:03}")).await, 202);
    }
    let mut got = Counted(BTreeMap::new());
    let mut first = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.0.len() < 60 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "HQ got {} of 60",
            got.0.len()
        );
        if got.take(&mut hq, Duration::from_millis(200)).await && first.is_none() {
            first = Some(std::time::Instant::now());
        }
    }
    let took = first.map(|f| f.elapsed()).unwrap_or_default();
    eprintln!("drain_rate 20/s: 60 transactions in {took:?}");
    // 40 beyond the burst at 20/s is 2 s after the session starts; HQ's
    // first arrival comes a little after that start. A lower bound only: a
    // slow machine can only make it longer.
    assert!(
        took >= Duration::from_millis(1500),
        "60 at 20/s with a 20 burst took only {took:?}"
    );
    d.stop().await;
}

#[test]
fn broker_lists_are_checked_by_key() {
    let problems = |uplink: &str| -> String {
        let text = format!("[store]\nid = \"s\"\n[uplink]\n{uplink}\n");
        match posbridge::Config::parse(&text, std::iter::empty(), "t") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let e = problems("urls = [\"mqtt://a:1883\", \"http://b\"]");
    assert!(
        e.contains("uplink.urls[1]: must start with mqtt:// or mqtts://"),
        "{e}"
    );
    let e = problems("url = \"mqtt://a\"\nurls = [\"mqtt://b\"]");
    assert!(e.contains("uplink.urls: give url or urls, not both"), "{e}");
    let e = problems("client_id = \"x\"");
    assert!(e.contains("uplink.url: missing"), "{e}");
    let e = problems("urls = [\"mqtt://a\"]\nreconnect_spread_ms = 5\ndrain_rate = 0");
    assert!(e.contains("uplink.reconnect_spread_ms"), "{e}");
    assert!(e.contains("uplink.drain_rate"), "{e}");
    assert_eq!(
        problems("urls = [\"mqtt://a\", \"mqtts://[::1]:8883\"]\ndrain_rate = 100"),
        ""
    );
}
