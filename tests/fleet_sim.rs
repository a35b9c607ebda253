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
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// HQ's cluster is RabbitMQ with its MQTT plugin, HQ's subscription a
/// quorum queue. The node the store is connected to is killed and the store
/// goes on at the next one (`uplink.urls`), nothing lost. Three nodes: with
/// two, a quorum queue has no majority once one is lost, and RabbitMQ
/// refuses the store's session on the other node until it is back (tried;
/// see BENCHMARKS.md), so a cluster that must ride a node's loss has three.
#[tokio::test]
async fn a_store_fails_over_between_the_nodes_of_a_rabbitmq_cluster_and_loses_nothing() {
    rabbit_failover(3).await;
}

async fn uplink_of(b: &Binary) -> Value {
    reqwest::get(format!("{}/v1/uplink", b.url))
        .await
        .expect("uplink")
        .json::<Value>()
        .await
        .expect("json")
}

async fn post_tx(b: &Binary, id: &str) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/transactions", b.url))
        .json(&json!({"id": id, "amount_fen": 100}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
}

fn take_id(p: &rumqttc::Publish, got: &mut BTreeMap<String, usize>) {
    let v: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
    if let Some(id) = v["id"].as_str() {
        *got.entry(id.to_owned()).or_default() += 1;
    }
}

async fn rabbit_failover(nodes: usize) {
    use crate::common::rabbit::Cluster;
    let per_half = env_or("FLEET_TX", 40);
    let started = Instant::now();
    let mut cluster = tokio::task::spawn_blocking(move || Cluster::start(nodes))
        .await
        .expect("cluster");
    let booted = started.elapsed();
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("\"{}\"", n.url()))
        .collect();
    let (a, b) = (cluster.nodes[0].url(), cluster.nodes[1].url());
    let mut hq = Hq::connect(cluster.nodes[1].mqtt_port, "hq-rabbit", &["posbridge/+/tx"]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let extra = format!(
        "[uplink]\nurls = [{}]\nclient_id = \"rstore\"\nreconnect_spread_ms = 300\n",
        urls.join(", ")
    );
    let store = Binary::start_store("rstore", &dir.path().join("state"), &extra, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while uplink_of(&store).await["connected"] != true {
        assert!(Instant::now() < deadline, "never connected to the cluster");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        uplink_of(&store).await["broker"],
        a,
        "the first node is preferred"
    );
    for i in 0..per_half {
        post_tx(&store, &format!("r-{i:05}")).await;
    }
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    while got.len() < per_half / 3 {
        let p = hq
            .next(Duration::from_secs(20))
            .await
            .expect("transactions through the first node");
        take_id(&p, &mut got);
    }
    // The store's node dies; transactions keep coming at the till.
    cluster.nodes[0].kill();
    let killed = Instant::now();
    for i in per_half..2 * per_half {
        post_tx(&store, &format!("r-{i:05}")).await;
    }
    let total = 2 * per_half;
    let mut failover = None;
    let deadline = Instant::now() + Duration::from_secs(180);
    while got.len() < total {
        assert!(
            Instant::now() < deadline,
            "HQ got {} of {total}: {}",
            got.len(),
            uplink_of(&store).await
        );
        if let Some(p) = hq.next(Duration::from_millis(200)).await {
            take_id(&p, &mut got);
        }
        let u = uplink_of(&store).await;
        if failover.is_none() && u["connected"] == true && u["broker"] != a {
            failover = Some(killed.elapsed());
        }
    }
    assert!(failover.is_some(), "the store moved to another node");
    assert_eq!(uplink_of(&store).await["broker"], b);
    let want: BTreeSet<String> = (0..total).map(|i| format!("r-{i:05}")).collect();
    let have: BTreeSet<String> = got.keys().cloned().collect();
    assert_eq!(have, want, "every transaction reached HQ");
    let dups: usize = got.values().map(|c| c - 1).sum();
    let report = format!(
        "fleet-sim rabbitmq: {nodes}-node cluster (started in {:.0} s), quorum-queue HQ subscription, {total} transactions, the store's node killed mid-stream: the store went on at the next node in {:.1} s; all at HQ {:.1} s after the kill, {dups} duplicates",
        booted.as_secs_f64(),
        failover.unwrap_or_default().as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    eprintln!("{report}");
    append_report(&report);
    store.kill();
}
