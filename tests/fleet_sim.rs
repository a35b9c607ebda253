//! A fleet on one machine (issue 24): N real posbridge processes, each with
//! a backlog built while HQ's broker was down, against a real mosquitto that
//! comes back and is restarted mid-drain. HQ (one MQTT client) counts every
//! transaction id and acks it (`ack = "hq"`). Reports the reconnect spread
//! and the drain time. CI runs it small; `make fleet-sim` runs 50 stores of
//! 200 transactions (`FLEET_STORES`, `FLEET_TX`).

use crate::common::mqtt::{Broker, Hq};
use crate::common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What HQ saw: ids per store, and when each store said "online".
#[derive(Default)]
struct Seen {
    ids: BTreeMap<String, usize>,
    online: Vec<(String, Instant)>,
}

impl Seen {
    /// Takes one message; acks transactions on the store's `tx/ack`.
    async fn take(&mut self, hq: &Hq, p: &rumqttc::Publish) {
        let v: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
        let store = p.topic.split('/').nth(1).unwrap_or_default().to_owned();
        if p.topic.ends_with("/status") {
            if v["state"] == "online" {
                self.online.push((store, Instant::now()));
            }
            return;
        }
        let Some(id) = v["id"].as_str() else { return };
        *self.ids.entry(id.to_owned()).or_default() += 1;
        hq.publish(&format!("posbridge/{store}/tx/ack"), json!({"ids": [id]}))
            .await;
    }

    /// The spread of the first "online" of each store after `since`.
    fn spread_after(&self, since: Instant) -> Option<Duration> {
        let mut first: BTreeMap<&str, Instant> = BTreeMap::new();
        for (s, t) in self.online.iter().filter(|(_, t)| *t >= since) {
            first.entry(s.as_str()).or_insert(*t);
        }
        let min = first.values().min()?;
        let max = first.values().max()?;
        Some(*max - *min)
    }
}

#[tokio::test]
async fn a_fleet_drains_its_backlog_through_a_broker_restart_and_loses_nothing() {
    let stores = env_or("FLEET_STORES", 6);
    let per_store = env_or("FLEET_TX", 40);
    let total = stores * per_store;
    let mut broker = Broker::start();
    let hq = Hq::connect(
        broker.port,
        "hq-fleet",
        &["posbridge/+/tx", "posbridge/+/status"],
    )
    .await;
    let mut hq = hq;
    // HQ's subscription saved (autosave_interval 1) before the outage.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    broker.kill();

    // Every store starts with HQ away and queues its transactions.
    let dir = tempfile::tempdir().expect("tmp");
    let mut fleet = Vec::new();
    for n in 0..stores {
        let extra = format!(
            "[uplink]\nurl = \"{}\"\nclient_id = \"store-{n:03}\"\nack = \"hq\"\nresend_after_ms = 2000\n",
            broker.url()
        );
        let state = dir.path().join(format!("store-{n:03}"));
        fleet.push(Binary::start_store(&format!("store-{n:03}"), &state, &extra, &[]).await);
    }
    let http = reqwest::Client::new();
    let posts = fleet.iter().enumerate().map(|(n, b)| {
        let (http, url) = (http.clone(), b.url.clone());
        async move {
            for i in 0..per_store {
                let r = http
                    .post(format!("{url}/v1/transactions"))
                    .json(&json!({"id": format!("s{n:03}-{i:05}"), "amount_fen": 100}))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status(), 202);
            }
        }
    });
    futures_util::future::join_all(posts).await;

    // HQ's broker is back: the backlog drains; mid-drain it is restarted.
    broker.resume();
    let back = Instant::now();
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(120 + total as u64 / 20);
    let mut restarted = None;
    while seen.ids.len() < total {
        assert!(
            Instant::now() < deadline,
            "HQ got {} of {total} transactions",
            seen.ids.len()
        );
        if let Some(p) = hq.next(Duration::from_millis(200)).await {
            seen.take(&hq, &p).await;
        }
        if restarted.is_none() && seen.ids.len() >= total / 3 {
            broker.kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            broker.resume();
            restarted = Some(Instant::now());
        }
    }
    let drained = back.elapsed();
    let want: BTreeSet<String> = (0..stores)
        .flat_map(|n| (0..per_store).map(move |i| format!("s{n:03}-{i:05}")))
        .collect();
    let have: BTreeSet<String> = seen.ids.keys().cloned().collect();
    assert_eq!(have, want, "every transaction of every store reached HQ");
    let dups: usize = seen.ids.values().map(|c| c - 1).sum();
    let first = seen.spread_after(back);
    let again = restarted.and_then(|r| seen.spread_after(r));
    let report = format!(
        "fleet-sim: {stores} stores × {per_store} transactions = {total}; all at HQ, {dups} duplicates; \
         drained in {:.1} s ({:.0} tx/s) through a broker restart; reconnect spread after the outage {:.2} s, after the restart {:.2} s",
        drained.as_secs_f64(),
        total as f64 / drained.as_secs_f64(),
        first.unwrap_or_default().as_secs_f64(),
        again.unwrap_or_default().as_secs_f64(),
    );
    eprintln!("{report}");
    append_report(&report);
    for b in fleet {
        b.kill();
    }
}

/// Adds a line to `FLEET_REPORT` (`make fleet-sim`), when set.
pub fn append_report(line: &str) {
    use std::io::Write;
    let Ok(path) = std::env::var("FLEET_REPORT") else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}
