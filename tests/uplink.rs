//! The HQ relay against a real mosquitto started by each test: order, broker
//! outages, SIGKILL of the daemon, HQ acks, TLS, passwords, a full backlog,
//! member sync and lookups, forwarded events. Every test counts ids:
//! accepted by the daemon = received by HQ.

use crate::common::mqtt::{make_pki, Broker, Hq};
use crate::common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PREFIX: &str = "posbridge/store-test";

/// Reconnects here wait at most 300 ms (the default spread is 2 s): these
/// tests time outages and pauses against the relay's reconnects, and the
/// jitter itself is tested in `uplink::mqtt::tests` and tests/fleet_sim.rs.
fn uplink(url: &str, extra: &str) -> String {
    sim_config(&format!(
        "[uplink]\nurl = \"{url}\"\nclient_id = \"store-test-{}\"\nreconnect_spread_ms = 300\n{extra}\n",
        ulid::Ulid::new()
    ))
}

fn tx(id: &str) -> Value {
    json!({"id": id, "type": "recharge", "member": "M000123", "amount_fen": 10000})
}

async fn post(http: &reqwest::Client, base: &str, id: &str) -> u16 {
    match http
        .post(format!("{base}/v1/transactions"))
        .json(&tx(id))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Waits until `f` is true, polling.
async fn until<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Collects `P/S/tx` messages: every (id, seq) in arrival order.
fn tx_of(p: &rumqttc::Publish) -> (String, u64, Value) {
    let v: Value = serde_json::from_slice(&p.payload).expect("tx payload is JSON");
    (
        v["id"].as_str().expect("id").to_owned(),
        v["seq"].as_u64().expect("seq"),
        v,
    )
}

#[tokio::test]
async fn relays_in_seq_order_marks_sent_and_says_online_then_offline() {
    let broker = Broker::start();
    let mut hq = Hq::connect(
        broker.port,
        "hq-order",
        &[&format!("{PREFIX}/tx"), &format!("{PREFIX}/status")],
    )
    .await;
    let d = Daemon::start(&uplink(&broker.url(), "")).await;
    let mut ws = d.ws("/v1/events?types=uplink.status").await;
    let st = next_event(&mut ws).await;
    assert_eq!(st["data"]["connected"], true, "{st}");

    let n = 200;
    let mut posts = Vec::new();
    for i in 0..n {
        let (http, base) = (d.http.clone(), d.url(""));
        posts.push(tokio::spawn(async move {
            post(&http, &base, &format!("o-{i:04}")).await
        }));
    }
    for p in posts {
        assert_eq!(p.await.expect("join"), 202);
    }
    let mut seen = Vec::new();
    let mut online = false;
    while seen.len() < n {
        let p = hq.next(WAIT).await.expect("HQ got every transaction");
        if p.topic.ends_with("/status") {
            let v: Value = serde_json::from_slice(&p.payload).expect("status json");
            online |= v["state"] == "online";
            continue;
        }
        let (id, seq, v) = tx_of(&p);
        assert_eq!(v["store"], "store-test");
        assert_eq!(v["body"]["amount_fen"], 10000);
        assert_eq!(v["body"]["id"], id);
        assert!(v["queued_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        seen.push((seq, id));
    }
    assert!(online, "retained online status");
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "published in seq order"
    );
    let ids: BTreeSet<_> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids.len(), n, "each exactly once on a steady connection");

    until("backlog drained", WAIT, || async {
        d.get_json("/v1/uplink").await["backlog"] == 0
    })
    .await;
    let t = d.get_json("/v1/transactions/o-0000").await;
    assert_eq!(t["state"], "sent", "{t}");
    assert_eq!(t["attempts"], 1, "{t}");
    assert!(t["sent_at"].is_string());
    let up = d.get_json("/v1/uplink").await;
    assert_eq!(up["connected"], true);
    assert_eq!(up["broker_acked_total"], n as u64);
    let health = d.get_json("/v1/health").await;
    assert_eq!(health["uplink"]["connected"], true);
    let text = d.metrics().await;
    assert!(text.contains("posbridge_uplink_connected 1"), "{text}");
    assert!(text.contains(&format!("posbridge_uplink_broker_acked_total {n}")));

    // A clean stop says "offline" itself (the will is for crashes).
    d.stop().await;
    let mut offline = false;
    while let Some(p) = hq.next(Duration::from_secs(5)).await {
        if p.topic.ends_with("/status") {
            let v: Value = serde_json::from_slice(&p.payload).expect("status json");
            if v["state"] == "offline" {
                offline = true;
                break;
            }
        }
    }
    assert!(offline, "offline status on shutdown");
}

#[tokio::test]
async fn broker_killed_and_restarted_mid_stream_loses_nothing() {
    let mut broker = Broker::start();
    // HQ acks what it receives, so ack = "hq" ends exactly what HQ has.
    let mut hq = Hq::connect(broker.port, "hq-outage", &[&format!("{PREFIX}/tx")]).await;
    let d = Daemon::start(&uplink(&broker.url(), "ack = \"hq\"")).await;
    until("connected", WAIT, || async {
        d.get_json("/v1/uplink").await["connected"] == true
    })
    .await;

    let n = 300;
    let (http, base) = (d.http.clone(), d.url(""));
    let poster = tokio::spawn(async move {
        let mut accepted = Vec::new();
        for i in 0..n {
            let id = format!("k-{i:04}");
            if post(&http, &base, &id).await == 202 {
                accepted.push(id);
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        accepted
    });
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    let mut killed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "HQ did not get them all: {} of {n}",
            received.len()
        );
        if let Some(p) = hq.next(Duration::from_millis(200)).await {
            let (id, _, _) = tx_of(&p);
            *received.entry(id.clone()).or_default() += 1;
            hq.publish(&format!("{PREFIX}/tx/ack"), json!({"ids": [id]}))
                .await;
        }
        if !killed && received.len() >= 60 {
            broker.kill();
            tokio::time::sleep(Duration::from_millis(800)).await;
            broker.resume();
            killed = true;
        }
        if killed && poster.is_finished() && received.len() >= n {
            break;
        }
    }
    let accepted = poster.await.expect("poster");
    assert_eq!(
        accepted.len(),
        n,
        "the outbox accepts while the broker is down"
    );
    let got: BTreeSet<_> = received.keys().cloned().collect();
    let want: BTreeSet<_> = accepted.iter().cloned().collect();
    assert_eq!(got, want, "accepted = received at HQ");
    let dups: usize = received.values().map(|c| c - 1).sum();
    eprintln!(
        "broker outage: {n} accepted, {} distinct at HQ, {dups} duplicates (at least once)",
        got.len()
    );
    until("all acked by HQ", Duration::from_secs(30), || async {
        d.get_json("/v1/uplink").await["backlog"] == 0
    })
    .await;
    for id in ["k-0000", "k-0150", "k-0299"] {
        assert_eq!(
            d.get_json(&format!("/v1/transactions/{id}")).await["state"],
            "acked"
        );
    }
    let up = d.get_json("/v1/uplink").await;
    assert!(
        up["connects_total"].as_u64() >= Some(2),
        "reconnected: {up}"
    );
}

#[tokio::test]
async fn the_daemon_killed_mid_relay_delivers_every_accepted_transaction_after_restart() {
    let broker = Broker::start();
    let mut hq = Hq::connect(
        broker.port,
        "hq-sigkill",
        &[
            &format!("{PREFIX}/tx"),
            "posbridge/s/tx",
            "posbridge/s/status",
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let cfg = format!(
        "[uplink]\nurl = \"{}\"\nclient_id = \"store-s-kill\"\nkeep_alive_s = 5\n",
        broker.url()
    );
    let p = Binary::start(&state, &cfg, &[]).await;
    let http = reqwest::Client::new();
    let n = 400;
    let mut posts = Vec::new();
    for i in 0..n {
        let (http, base) = (http.clone(), p.url.clone());
        posts.push(tokio::spawn(async move {
            let id = format!("x-{i:04}");
            (post(&http, &base, &id).await, id)
        }));
    }
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    // Kill it while transactions are still flowing to HQ.
    while received.len() < 40 {
        let m = hq.next(WAIT).await.expect("relay started");
        if m.topic.ends_with("/tx") {
            *received.entry(tx_of(&m).0).or_default() += 1;
        }
    }
    p.kill();
    let mut accepted = BTreeSet::new();
    for t in posts {
        let (code, id) = t.await.expect("join");
        if code == 202 {
            accepted.insert(id);
        }
    }
    let mut will = false;
    let p = Binary::start(&state, &cfg, &[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !accepted.iter().all(|id| received.contains_key(id)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing after restart: {} of {}",
            accepted
                .iter()
                .filter(|i| !received.contains_key(*i))
                .count(),
            accepted.len()
        );
        let Some(m) = hq.next(Duration::from_millis(500)).await else {
            continue;
        };
        if m.topic.ends_with("/status") {
            will |=
                serde_json::from_slice::<Value>(&m.payload).expect("json")["state"] == "offline";
        } else {
            *received.entry(tx_of(&m).0).or_default() += 1;
        }
    }
    // The will may come after the last transaction (the broker notices the
    // dead socket on its own time).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !will && tokio::time::Instant::now() < deadline {
        if let Some(m) = hq.next(Duration::from_millis(200)).await {
            if m.topic.ends_with("/status") {
                will |= serde_json::from_slice::<Value>(&m.payload).expect("json")["state"]
                    == "offline";
            } else {
                *received.entry(tx_of(&m).0).or_default() += 1;
            }
        }
    }
    assert!(will, "the last will said offline when the daemon died");
    let dups: usize = received.values().map(|c| c - 1).sum();
    eprintln!(
        "SIGKILL mid-relay: {} accepted, all at HQ, {dups} duplicates",
        accepted.len()
    );
    // Some posts lose their 202 to the kill even though they were stored and
    // relayed; only the ones the client saw accepted are promised.
    assert!(!accepted.is_empty());
    until("backlog drained after restart", WAIT, || async {
        p.get_json("/v1/uplink").await["backlog"] == 0
    })
    .await;
}

#[tokio::test]
async fn with_hq_acks_only_hq_ends_a_transaction_and_reconnects_resend_the_rest() {
    let mut broker = Broker::start();
    let mut hq = Hq::connect(broker.port, "hq-acks", &[&format!("{PREFIX}/tx")]).await;
    let d = Daemon::start(&uplink(&broker.url(), "ack = \"hq\"")).await;
    for id in ["h-1", "h-2", "h-3"] {
        assert_eq!(post(&d.http, &d.url(""), id).await, 202);
    }
    for _ in 0..3 {
        hq.next(WAIT).await.expect("relayed");
    }
    until("PUBACKs recorded", WAIT, || async {
        d.get_json("/v1/transactions/h-3").await["state"] == "sent"
    })
    .await;
    assert_eq!(
        d.get_json("/v1/uplink").await["backlog"],
        3,
        "sent is not done in hq mode"
    );

    // A reconnect re-sends what HQ has not acked. First the broker saves
    // HQ's session (autosave_interval 1): reconnects are jittered from 0 ms,
    // and a store back before HQ must find HQ's subscription kept.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    broker.kill();
    broker.resume();
    let mut again = BTreeSet::new();
    while again.len() < 3 {
        let m = hq
            .next(Duration::from_secs(20))
            .await
            .expect("re-sent after reconnect");
        again.insert(tx_of(&m).0);
    }
    hq.publish(
        &format!("{PREFIX}/tx/ack"),
        json!({"ids": ["h-1", "h-2", "h-3", "unknown"]}),
    )
    .await;
    until("acked by HQ", WAIT, || async {
        d.get_json("/v1/uplink").await["backlog"] == 0
    })
    .await;
    let t = d.get_json("/v1/transactions/h-2").await;
    assert_eq!(t["state"], "acked");
    assert!(t["attempts"].as_u64() >= Some(2), "{t}");
    assert_eq!(d.get_json("/v1/uplink").await["hq_acked_total"], 3);
}

#[tokio::test]
async fn with_hq_acks_what_hq_lost_goes_again_without_a_reconnect() {
    let broker = Broker::start();
    let mut hq = Hq::connect(broker.port, "hq-lossy", &[&format!("{PREFIX}/tx")]).await;
    let d = Daemon::start(&uplink(
        &broker.url(),
        "ack = \"hq\"\nresend_after_ms = 300",
    ))
    .await;
    for id in ["r-1", "r-2", "r-3"] {
        assert_eq!(post(&d.http, &d.url(""), id).await, 202);
    }
    // HQ acks what it gets, except that it loses r-2 the first time.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    while seen.get("r-2").copied().unwrap_or(0) < 2 {
        let m = hq
            .next(Duration::from_secs(10))
            .await
            .expect("relayed, or sent again after resend_after_ms");
        let id = tx_of(&m).0;
        let n = seen.entry(id.clone()).or_default();
        *n += 1;
        if id != "r-2" || *n >= 2 {
            hq.publish(&format!("{PREFIX}/tx/ack"), json!({"ids": [id]}))
                .await;
        }
    }
    until("acked by HQ", WAIT, || async {
        d.get_json("/v1/uplink").await["backlog"] == 0
    })
    .await;
    let u = d.get_json("/v1/uplink").await;
    assert_eq!(
        u["connects_total"], 1,
        "sent again on the same connection: {u}"
    );
    let resent = u["resent_total"].as_u64().expect("resent_total");
    assert!(resent >= 1, "{u}");
    let t = d.get_json("/v1/transactions/r-2").await;
    assert_eq!(t["state"], "acked");
    assert!(t["attempts"].as_u64() >= Some(2), "{t}");
    // Once HQ has everything, nothing goes again.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(d.get_json("/v1/uplink").await["resent_total"], resent);
    assert!(
        d.metrics()
            .await
            .contains(&format!("posbridge_uplink_resent_total {resent}")),
        "metric"
    );
}

#[tokio::test]
async fn tls_with_a_test_ca_and_client_certificate() {
    let pki_dir = tempfile::tempdir().expect("tmp");
    let pki = make_pki(pki_dir.path());
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    // HQ on the plain listener; the store on TLS with a required client cert.
    let broker = Broker::start_with(&format!(
        "allow_anonymous true\nlistener {tls_port} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display()
    ));
    let mut hq = Hq::connect(broker.port, "hq-tls", &[&format!("{PREFIX}/tx")]).await;
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let d = Daemon::start(&uplink(
        &url,
        &format!(
            "ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"",
            pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        ),
    ))
    .await;
    assert_eq!(post(&d.http, &d.url(""), "tls-1").await, 202);
    let m = hq.next(WAIT).await.expect("relayed over TLS");
    assert_eq!(tx_of(&m).0, "tls-1");

    // Without the client certificate the broker refuses, and /v1/uplink says why.
    let bad = Daemon::start(&uplink(&url, &format!("ca = \"{}\"", pki.ca.display()))).await;
    until("a TLS error is reported", WAIT, || async {
        let up = bad.get_json("/v1/uplink").await;
        up["connected"] == false && up["last_error"].as_str().is_some_and(|e| e.contains(&url))
    })
    .await;
    // A CA that did not sign the broker's certificate: we refuse the broker.
    let other_dir = tempfile::tempdir().expect("tmp");
    let other = make_pki(other_dir.path());
    let wrong_ca = Daemon::start(&uplink(
        &url,
        &format!(
            "ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"",
            other.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        ),
    ))
    .await;
    until("an untrusted broker is reported", WAIT, || async {
        let up = wrong_ca.get_json("/v1/uplink").await;
        up["connected"] == false
            && up["last_error"]
                .as_str()
                .is_some_and(|e| e.to_lowercase().contains("certificate"))
    })
    .await;
    assert_eq!(
        hq.next(Duration::from_millis(300))
            .await
            .map(|m| tx_of(&m).0),
        None
    );
}

#[tokio::test]
async fn username_and_password() {
    let dir = tempfile::tempdir().expect("tmp");
    let pw = dir.path().join("passwd");
    let ok = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&pw)
        .args(["store", "s3cret"])
        .status()
        .expect("mosquitto_passwd");
    assert!(ok.success());
    let broker = Broker::start_with(&format!(
        "allow_anonymous false\npassword_file {}\n",
        pw.display()
    ));
    let wrong = Daemon::start(&uplink(
        &broker.url(),
        "username = \"store\"\npassword = \"nope\"",
    ))
    .await;
    until("refusal reported", WAIT, || async {
        let up = wrong.get_json("/v1/uplink").await;
        up["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused") && e.contains("username"))
    })
    .await;
    let right = Daemon::start(&uplink(
        &broker.url(),
        "username = \"store\"\npassword = \"s3cret\"",
    ))
    .await;
    until("connected with the password", WAIT, || async {
        right.get_json("/v1/uplink").await["connected"] == true
    })
    .await;
    assert_eq!(wrong.get_json("/v1/uplink").await["connected"], false);
}

#[tokio::test]
async fn a_full_backlog_refuses_new_transactions_then_drains() {
    let mut broker = Broker::start();
    let mut hq = Hq::connect(broker.port, "hq-full", &[&format!("{PREFIX}/tx")]).await;
    // HQ's subscription saved (autosave_interval 1) before the outage: the
    // store may be back before HQ is.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    broker.kill();
    let d = Daemon::start(&uplink(&broker.url(), "[storage]\nmax_backlog = 3")).await;
    let mut ws = d.ws("/v1/events?types=uplink.status").await;
    for id in ["f-1", "f-2", "f-3"] {
        assert_eq!(post(&d.http, &d.url(""), id).await, 202);
    }
    assert_eq!(post(&d.http, &d.url(""), "f-4").await, 507);
    let st = next_event(&mut ws).await;
    assert_eq!(st["data"]["connected"], false);
    assert_eq!(st["data"]["backlog"], 3);
    broker.resume();
    let mut got = BTreeSet::new();
    while got.len() < 3 {
        got.insert(tx_of(&hq.next(Duration::from_secs(20)).await.expect("drained")).0);
    }
    assert_eq!(got, ["f-1", "f-2", "f-3"].map(String::from).into());
    until("backlog drained", WAIT, || async {
        d.get_json("/v1/uplink").await["backlog"] == 0
    })
    .await;
    assert_eq!(post(&d.http, &d.url(""), "f-4").await, 202);
}

#[tokio::test]
async fn members_pushed_by_hq_are_cached_and_lookups_go_to_hq_with_a_timeout() {
    let broker = Broker::start();
    let mut hq = Hq::connect(
        broker.port,
        "hq-members",
        &[&format!("{PREFIX}/lookup/request")],
    )
    .await;
    let d = Daemon::start(&uplink(&broker.url(), "lookup_timeout_ms = 400")).await;
    until("connected", WAIT, || async {
        d.get_json("/v1/uplink").await["connected"] == true
    })
    .await;
    let lookup = |phone: &'static str| {
        let d = &d;
        async move {
            d.get_json(&format!("/v1/members/lookup?phone={phone}"))
                .await
        }
    };

    // Pushed to this store and to all stores.
    hq.publish(
        &format!("{PREFIX}/members"),
        json!({"op": "upsert", "members": [{"id": "m-1", "name": "王芳", "tier": "gold", "points": 1200, "balance_fen": 35000, "phones": ["138 1234 5678"]}]}),
    )
    .await;
    hq.publish(
        "posbridge/_all/members",
        json!({"op": "upsert", "members": [{"id": "m-2", "name": "李雷", "phones": ["+86 139 0000 0000"]}]}),
    )
    .await;
    until("member cached", WAIT, || async {
        lookup("%2B8613812345678").await["source"] == "cache"
    })
    .await;
    let r = lookup("13812345678").await;
    assert_eq!(r["member"]["name"], "王芳");
    assert_eq!(r["member"]["points"], 1200);
    until("all-stores push cached", WAIT, || async {
        lookup("13900000000").await["member"]["name"] == "李雷"
    })
    .await;

    // Not cached: asked of HQ, which answers (and the answer is cached).
    let asking = tokio::spawn({
        let (http, url) = (
            d.http.clone(),
            d.url("/v1/members/lookup?phone=13700001111"),
        );
        async move {
            http.get(url)
                .send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json")
        }
    });
    // (Lookups made while the pushes were on their way are at HQ too.)
    let q = loop {
        let req = hq.next(WAIT).await.expect("lookup request at HQ");
        let q: Value = serde_json::from_slice(&req.payload).expect("json");
        if q["phone"] == "13700001111" {
            break q;
        }
    };
    hq.publish(
        &format!("{PREFIX}/lookup/response"),
        json!({"corr": q["corr"], "member": {"id": "m-3", "name": "韩梅梅", "phones": ["13700001111"]}}),
    )
    .await;
    let r = asking.await.expect("join");
    assert_eq!(r["source"], "hq", "{r}");
    assert_eq!(r["member"]["name"], "韩梅梅");
    assert_eq!(lookup("13700001111").await["source"], "cache");

    // HQ that never answers: none, after the timeout.
    let t0 = std::time::Instant::now();
    let r = lookup("13600002222").await;
    assert_eq!(r["source"], "none");
    assert!(r["member"].is_null());
    assert!(t0.elapsed() >= Duration::from_millis(400));
    let mut asked = false;
    while let Some(req) = hq.next(Duration::from_millis(500)).await {
        asked |=
            serde_json::from_slice::<Value>(&req.payload).expect("json")["phone"] == "13600002222";
    }
    assert!(asked, "the request did reach HQ");

    // Deletes.
    hq.publish(
        &format!("{PREFIX}/members"),
        json!({"op": "delete", "ids": ["m-1"]}),
    )
    .await;
    until("member deleted", WAIT, || async {
        lookup("13812345678").await["source"] != "cache"
    })
    .await;
    // Garbage from HQ is counted, not fatal.
    hq.publish(&format!("{PREFIX}/members"), json!({"op": "explode"}))
        .await;
    until("bad downlink counted", WAIT, || async {
        let m = d.metrics().await;
        m.contains("posbridge_uplink_bad_downlink_total 1")
    })
    .await;
    assert_eq!(d.get_json("/v1/uplink").await["connected"], true);
}

#[tokio::test]
async fn chosen_event_types_are_forwarded_to_hq() {
    let broker = Broker::start();
    let mut hq = Hq::connect(broker.port, "hq-events", &[&format!("{PREFIX}/events/#")]).await;
    let d = Daemon::start(&uplink(&broker.url(), "forward_events = [\"code.*\"]")).await;
    until("connected", WAIT, || async {
        d.get_json("/v1/uplink").await["connected"] == true
    })
    .await;
    d.simulate("scan-1", "M0001234\r").await;
    let m = hq.next(WAIT).await.expect("forwarded");
    assert_eq!(m.topic, format!("{PREFIX}/events/code.scanned"));
    let v: Value = serde_json::from_slice(&m.payload).expect("json");
    assert_eq!(v["data"]["text"], "M0001234");
    assert_eq!(v["device"], "scan-1");
    assert!(
        hq.next(Duration::from_millis(300)).await.is_none(),
        "only the chosen types"
    );
}

/// A clean stop records every PUBACK it has received before it exits, so
/// the next start sends nothing HQ's broker already has.
#[tokio::test]
async fn a_clean_stop_right_after_the_pubacks_sends_nothing_twice() {
    let broker = Broker::start();
    let mut hq = Hq::connect(broker.port, "hq-clean-stop", &["posbridge/s/tx"]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let cfg = format!(
        "[uplink]\nurl = \"{}\"\nclient_id = \"store-s-stop\"\n",
        broker.url()
    );
    let p = Binary::start(&state, &cfg, &[]).await;
    let http = reqwest::Client::new();
    let n = 200;
    let posts = (0..n).map(|i| {
        let (http, base) = (http.clone(), p.url.clone());
        tokio::spawn(async move { post(&http, &base, &format!("s-{i:03}")).await })
    });
    for code in futures_util::future::join_all(posts).await {
        assert_eq!(code.expect("join"), 202);
    }
    // Stop the moment the broker has acknowledged them all: some of those
    // PUBACKs may not be committed yet, and shutdown must commit them.
    until("every PUBACK received", WAIT, || async {
        p.get_json("/v1/uplink").await["broker_acked_total"] == n
    })
    .await;
    let log = p.stop_and_log();
    let mut first = BTreeSet::new();
    while let Some(m) = hq.next(Duration::from_millis(300)).await {
        first.insert(tx_of(&m).0);
    }
    assert_eq!(
        first.len(),
        n as usize,
        "HQ had every one before the restart"
    );

    let p = Binary::start(&state, &cfg, &[]).await;
    until("connected again", WAIT, || async {
        p.get_json("/v1/uplink").await["connected"] == true
    })
    .await;
    let again = hq.next(Duration::from_millis(1500)).await;
    assert!(
        again.is_none(),
        "sent again after a clean stop: {:?}\n{log}",
        again.map(|m| tx_of(&m).0)
    );
    let up = p.get_json("/v1/uplink").await;
    assert_eq!(up["backlog"], 0, "{up}");
    assert_eq!(up["published_total"], 0, "{up}");
}

#[tokio::test]
async fn a_store_damaged_mid_file_is_salvaged_and_what_is_intact_still_reaches_hq() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    // Stored while HQ is unreachable (no [uplink] yet), then a clean stop
    // folds the WAL into the main file.
    let p = Binary::start(&state, "", &[]).await;
    let http = reqwest::Client::new();
    let pad = "x".repeat(600);
    for i in 0..300 {
        let body = json!({"id": format!("d-{i:04}"), "pad": pad});
        let r = http
            .post(format!("{}/v1/transactions", p.url))
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 202);
    }
    let log = p.stop_and_log();
    let wal = std::fs::metadata(state.join("outbox.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "a clean stop folds the WAL in\n{log}");
    // Garbage over one page near the end: a torn write or a bad sector.
    let db = state.join("outbox.db");
    let mut bytes = std::fs::read(&db).expect("read store");
    let page = 4096;
    let at = (bytes.len() / page - 2) * page;
    for b in &mut bytes[at + 100..at + page] {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).expect("damage store");

    let broker = Broker::start();
    let mut hq = Hq::connect(broker.port, "hq-salvage", &["posbridge/s/tx"]).await;
    let cfg = format!(
        "[uplink]\nurl = \"{}\"\nclient_id = \"store-s-salvage\"\n",
        broker.url()
    );
    let p = Binary::start(&state, &cfg, &[]).await;
    let up = p.get_json("/v1/uplink").await;
    let why = up["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("damaged"), "{up}");
    let recovered: usize = why
        .split_whitespace()
        .zip(why.split_whitespace().skip(1))
        .find(|(_, w)| w.starts_with("transaction"))
        .and_then(|(n, _)| n.parse().ok())
        .expect("the report says how many were recovered");
    assert!(recovered > 0 && recovered < 300, "{why}");
    eprintln!("damaged store: {recovered} of 300 recovered");
    let mut got = BTreeSet::new();
    while got.len() < recovered {
        let m = hq
            .next(WAIT)
            .await
            .expect("every recovered transaction relayed");
        let (id, _, v) = tx_of(&m);
        assert_eq!(v["body"]["pad"], pad.as_str(), "intact body");
        got.insert(id);
    }
    // What was kept is the oldest run, in order, with nothing invented.
    let want: BTreeSet<String> = (0..recovered).map(|i| format!("d-{i:04}")).collect();
    assert_eq!(got, want);
    assert!(hq.next(Duration::from_millis(500)).await.is_none());
}

#[tokio::test]
async fn malformed_and_oversized_downlink_is_counted_and_harms_nothing() {
    let broker = Broker::start();
    let mut hq = Hq::connect(broker.port, "hq-hostile", &[&format!("{PREFIX}/tx")]).await;
    let d = Daemon::start(&uplink(&broker.url(), "")).await;
    until("connected", WAIT, || async {
        d.get_json("/v1/uplink").await["connected"] == true
    })
    .await;
    hq.publish(
        &format!("{PREFIX}/members"),
        json!({"op": "upsert", "members": [{"id": "keep", "name": "留下", "phones": ["13800000001"]}]}),
    )
    .await;
    let members = format!("{PREFIX}/members");
    let raw = |payload: Vec<u8>| {
        let (client, topic) = (hq.client.clone(), members.clone());
        async move {
            client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                .await
                .expect("publish")
        }
    };
    raw(b"{not json".to_vec()).await;
    raw(br#"{"op": "upsert", "members": "everyone"}"#.to_vec()).await;
    raw(br#"{"op": "delete", "ids": 42}"#.to_vec()).await;
    raw(br#"[1, 2, 3]"#.to_vec()).await;
    raw(
        br#"{"op": "upsert", "members": [{"id": 7}, {"id": "", "phones": [1, 2]}, null]}"#.to_vec(),
    )
    .await;
    // Nested far past serde_json's recursion limit (issue #12): refused, no stack overflow.
    let mut deep = br#"{"op": "upsert", "members": [{"id": "deep", "x": "#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', 500_000));
    deep.extend(std::iter::repeat_n(b']', 500_000));
    deep.extend(b"}]}");
    raw(deep).await;
    // A big but legal push: 20,000 members in one message.
    let many: Vec<Value> = (0..20_000)
        .map(|i| json!({"id": format!("bulk-{i}"), "name": "批量", "phones": [format!("139{i:08}")]}))
        .collect();
    hq.publish(&members, json!({"op": "upsert", "members": many}))
        .await;
    until(
        "the bulk push is cached",
        Duration::from_secs(30),
        || async { d.get_json("/v1/members/lookup?phone=13900019999").await["source"] == "cache" },
    )
    .await;
    let up = d.get_json("/v1/uplink").await;
    assert_eq!(up["members_cached"], 20_001, "{up}");
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("posbridge_uplink_bad_downlink_total 6"),
        "every bad message counted once:\n{metrics}"
    );

    // Over the 4 MiB limit: the broker would redeliver it for ever on a
    // persistent session; the relay gets past it with a clean session.
    raw(vec![b'x'; 5 * 1024 * 1024]).await;
    until("the oversized message is reported", WAIT, || async {
        d.get_json("/v1/uplink").await["errors_total"].as_u64() >= Some(1)
    })
    .await;
    until("connected again", WAIT, || async {
        d.get_json("/v1/uplink").await["connected"] == true
    })
    .await;
    assert_eq!(post(&d.http, &d.url(""), "after-poison").await, 202);
    let m = hq.next(WAIT).await.expect("the relay still works");
    assert_eq!(tx_of(&m).0, "after-poison");
    assert_eq!(
        d.get_json("/v1/members/lookup?phone=13800000001").await["member"]["name"],
        "留下",
        "the cache is unharmed"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let up = d.get_json("/v1/uplink").await;
    assert_eq!(up["connected"], true, "no reconnect loop: {up}");
    assert!(up["connects_total"].as_u64() <= Some(3), "{up}");
    assert_eq!(up["members_paused_until"], Value::Null, "{up}");
}

#[tokio::test]
async fn an_oversized_retained_member_message_pauses_member_pushes_not_transactions() {
    let broker = Broker::start();
    let mut hq = Hq::connect(broker.port, "hq-retained", &[&format!("{PREFIX}/tx")]).await;
    // Retained: every subscribe to the members topic brings it back, clean
    // session or not.
    hq.client
        .publish(
            format!("{PREFIX}/members"),
            rumqttc::QoS::AtLeastOnce,
            true,
            vec![b'x'; 5 * 1024 * 1024],
        )
        .await
        .expect("publish");
    let d = Daemon::start(&uplink(&broker.url(), "members_pause_ms = 6000")).await;
    until("member pushes paused", Duration::from_secs(20), || async {
        d.get_json("/v1/uplink").await["members_paused_until"].is_string()
    })
    .await;
    until("connected without the members topics", WAIT, || async {
        d.get_json("/v1/uplink").await["connected"] == true
    })
    .await;
    for id in ["r-1", "r-2"] {
        assert_eq!(post(&d.http, &d.url(""), id).await, 202);
    }
    let mut got = BTreeSet::new();
    while got.len() < 2 {
        let m = hq.next(WAIT).await.expect("transactions still reach HQ");
        got.insert(tx_of(&m).0);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let up = d.get_json("/v1/uplink").await;
    assert_eq!(up["connected"], true, "no reconnect loop: {up}");
    assert!(up["connects_total"].as_u64() <= Some(3), "{up}");
    assert!(up["errors_total"].as_u64() <= Some(2), "{up}");
    let connects = up["connects_total"].clone();

    // HQ replaces the retained message with a real push: when the pause
    // ends the member topics are subscribed again on the same connection,
    // and the push arrives.
    hq.client
        .publish(
            format!("{PREFIX}/members"),
            rumqttc::QoS::AtLeastOnce,
            true,
            json!({"op": "upsert", "members": [{"id": "m-9", "name": "赵敏", "phones": ["13700000009"]}]})
                .to_string(),
        )
        .await
        .expect("publish");
    until("member pushes resumed", Duration::from_secs(20), || async {
        d.get_json("/v1/members/lookup?phone=13700000009").await["source"] == "cache"
    })
    .await;
    let up = d.get_json("/v1/uplink").await;
    assert!(up["members_paused_until"].is_null(), "{up}");
    assert_eq!(
        up["connects_total"], connects,
        "resumed without reconnecting: {up}"
    );
}
