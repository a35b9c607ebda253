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
async fn a_backlog_drained_at_drain_rate_arrives_whole() {
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
    // Reported, not asserted (no timing in pass/fail tests): 40 beyond the
    // one-second burst at 20/s is about 2 s. The limiter itself is proven
    // with a played clock (`uplink::window::tests`).
    let took = first.map(|f| f.elapsed()).unwrap_or_default();
    eprintln!("drain_rate 20/s: 60 transactions at HQ over {took:?} (about 2 s expected)");
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

// ---- Commands from HQ, through the real binary and a real mosquitto ----

const STORE_PREFIX: &str = "posbridge/s";
const BANK: &str =
    "%B4111111111111111^DOE/JOHN^2512101000000000?;4111111111111111=25121010000000000000?\r\n";

fn signing_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn public_b64(seed: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(signing_key(seed).verifying_key().to_bytes())
}

fn in_minutes(m: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::minutes(m))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time")
}

/// A command signed by key `seed`, as HQ sends it.
fn signed(seed: u8, id: &str, cmd: &str, args: Value) -> Value {
    use base64::Engine;
    use ed25519_dalek::Signer;
    let mut c =
        json!({"id": id, "store": "s", "cmd": cmd, "args": args, "expires_at": in_minutes(5)});
    let canon = posbridge_drivers::command::canonical(&c);
    let sig = signing_key(seed).sign(canon.as_bytes());
    c["sig"] = base64::engine::general_purpose::STANDARD
        .encode(sig.to_bytes())
        .into();
    c
}

/// The store's base config for the command tests (besides store, api, storage).
fn store_config(broker: &Broker, extra_devices: &str) -> String {
    format!(
        "[log]\nlevel = \"debug\"\n[uplink]\nurl = \"{}\"\nclient_id = \"store-s-{}\"\nreconnect_spread_ms = 200\ncommand_keys = [\"{}\"]\n\
         [[device]]\nid = \"msr-1\"\ndriver = \"magstripe\"\ntransport = \"sim\"\n\
         [[device]]\nid = \"id-1\"\ndriver = \"idcard-sam\"\ntransport = \"sim\"\npoll_ms = 100\n{extra_devices}",
        broker.url(),
        ulid::Ulid::new(),
        public_b64(7)
    )
}

/// HQ's side: sends commands and reads their results.
struct Console {
    hq: Hq,
}

impl Console {
    async fn send(&self, cmd: &Value) {
        self.hq
            .publish(&format!("{STORE_PREFIX}/cmd"), cmd.clone())
            .await;
    }

    /// The next result for `id` (others are skipped).
    async fn result(&mut self, id: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let p = self.hq.next(left).await?;
            if p.topic != format!("{STORE_PREFIX}/cmd/result") {
                continue;
            }
            let v: Value = serde_json::from_slice(&p.payload).expect("result json");
            if v["id"] == id {
                return Some(v);
            }
        }
    }

    async fn run(&mut self, cmd: Value) -> Value {
        let id = cmd["id"].as_str().unwrap_or_default().to_owned();
        self.send(&cmd).await;
        self.result(&id, WAIT)
            .await
            .unwrap_or_else(|| panic!("no result for {id}"))
    }
}

async fn connected(b: &Binary) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.get_json("/v1/uplink").await["connected"] != true {
        assert!(tokio::time::Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn signed_commands_run_once_and_forged_replayed_or_expired_ones_do_not() {
    let broker = Broker::start();
    let hq = Hq::connect(
        broker.port,
        "hq-console",
        &[&format!("{STORE_PREFIX}/cmd/result")],
    )
    .await;
    let mut hq = Console { hq };
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let receipt = dir.path().join("receipt.bin");
    let printer = format!(
        "[[device]]\nid = \"printer-1\"\ndriver = \"escpos\"\ntransport = \"file\"\npath = \"{}\"\n",
        receipt.display()
    );
    let b = Binary::start(&state, &store_config(&broker, &printer), &[]).await;
    connected(&b).await;

    // A test receipt on a named printer.
    let r = hq
        .run(signed(
            7,
            "c-print",
            "print.test",
            json!({"printer": "printer-1"}),
        ))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !std::fs::read(&receipt)
        .unwrap_or_default()
        .windows(4)
        .any(|w| w == b"TEST")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the test receipt never printed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = hq
        .run(signed(
            7,
            "c-print-none",
            "print.test",
            json!({"printer": "nope"}),
        ))
        .await;
    assert!(
        r["error"].as_str().is_some_and(|e| e.contains("nope")),
        "{r}"
    );

    // A bank card swiped and an ID card read: the log tail HQ gets holds neither.
    assert_eq!(b.simulate("msr-1", BANK).await, 202);
    assert_eq!(b.simulate("id-1", "place").await, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tail = signed(7, "c-tail", "log.tail", json!({"lines": 2000}));
    let r = hq.run(tail.clone()).await;
    assert_eq!(r["ok"], true, "{r}");
    let lines = r["result"]["lines"].as_array().cloned().unwrap_or_default();
    assert!(lines.len() > 5, "{r}");
    let text = r.to_string();
    for secret in [
        "4111111111111111",
        "411111",
        "110101199001011237",
        "DOE/JOHN",
        "示例路",
    ] {
        assert!(!text.contains(secret), "{secret:?} in log.tail: {text}");
    }

    // The same message again: a replay.
    let r = hq.run(tail).await;
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("replayed")),
        "{r}"
    );
    // Signed by a key the store does not have.
    let r = hq.run(signed(9, "c-forged", "restart", json!({}))).await;
    assert!(
        r["error"].as_str().is_some_and(|e| e.starts_with("sig:")),
        "{r}"
    );
    // Signed for another store (read off its topic and sent here).
    let mut theirs = json!({"id": "c-theirs", "store": "s2", "cmd": "restart", "args": {}, "expires_at": in_minutes(5)});
    {
        use base64::Engine;
        use ed25519_dalek::Signer;
        let sig = signing_key(7).sign(posbridge_drivers::command::canonical(&theirs).as_bytes());
        theirs["sig"] = base64::engine::general_purpose::STANDARD
            .encode(sig.to_bytes())
            .into();
    }
    let r = hq.run(theirs).await;
    assert!(
        r["error"].as_str().is_some_and(|e| e.starts_with("store:")),
        "{r}"
    );
    // Changed after signing.
    let mut changed = signed(7, "c-changed", "log.tail", json!({"lines": 1}));
    changed["cmd"] = "restart".into();
    let r = hq.run(changed).await;
    assert!(
        r["error"].as_str().is_some_and(|e| e.starts_with("sig:")),
        "{r}"
    );
    // Expired.
    let mut old = json!({"id": "c-old", "store": "s", "cmd": "log.tail", "args": {}, "expires_at": in_minutes(-1)});
    {
        use base64::Engine;
        use ed25519_dalek::Signer;
        let sig = signing_key(7).sign(posbridge_drivers::command::canonical(&old).as_bytes());
        old["sig"] = base64::engine::general_purpose::STANDARD
            .encode(sig.to_bytes())
            .into();
    }
    let r = hq.run(old).await;
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("expired")),
        "{r}"
    );

    // Diagnostics: doctor's findings.
    let r = hq.run(signed(7, "c-diag", "diagnostics", json!({}))).await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(
        r["result"]["findings"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        "{r}"
    );
    let r = hq.run(signed(7, "c-what", "format.disk", json!({}))).await;
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown command")),
        "{r}"
    );

    // Restart: answered, then the process exits 75 for systemd to start it again.
    let r = hq.run(signed(7, "c-restart", "restart", json!({}))).await;
    assert_eq!(r["result"]["restarting"], true, "{r}");
    let status = b.wait_exit(WAIT);
    assert_eq!(status, Some(75), "exit status of a restart HQ asked for");
}

/// The whole config file Binary::start writes, with `devices` added.
fn full_config(state: &std::path::Path, port: u16, broker: &Broker, devices: &str) -> String {
    format!(
        "[store]\nid = \"s\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[storage]\ndir = \"{}\"\n{}\n",
        state.display(),
        store_config(broker, devices)
    )
}

#[tokio::test]
async fn config_apply_takes_effect_refuses_bad_configs_and_rolls_back_by_itself() {
    let broker = Broker::start();
    let topics = [
        format!("{STORE_PREFIX}/cmd/result"),
        format!("{STORE_PREFIX}/inventory"),
    ];
    let hq = Hq::connect(broker.port, "hq-apply", &[&topics[0], &topics[1]]).await;
    let mut hq = Console { hq };
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    // A caller-ID unit already in error (its port taken) before any apply:
    // a config that does not touch it is not blamed for it.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let off = format!(
        "[[device]]\nid = \"wc-off\"\ndriver = \"callerid\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{}\"\nfrom = \"127.0.0.1\"\n",
        taken.local_addr().expect("addr").port()
    );
    let b = Binary::start(&state, &store_config(&broker, &off), &[]).await;
    connected(&b).await;
    let port: u16 = b
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let file = state.with_extension("toml");
    let original = std::fs::read_to_string(&file).expect("config");

    // A config with problems: refused, every problem with its key, nothing written.
    let bad = format!(
        "{original}[[device]]\nid = \"x\"\ndriver = \"barcode\"\ntransport = \"sim\"\nbaud = \"fast\"\n\
         [[device]]\nid = \"y\"\ndriver = \"toaster\"\ntransport = \"sim\"\n"
    );
    let r = hq
        .run(signed(7, "c-bad", "config.apply", json!({"toml": bad})))
        .await;
    let e = r["error"].as_str().unwrap_or_default();
    assert!(e.contains("2 problem(s)"), "{r}");
    assert!(
        e.contains("device[3].baud") && e.contains("device[4].driver"),
        "every problem with its key: {r}"
    );
    assert_eq!(std::fs::read_to_string(&file).expect("config"), original);

    // A good one adding a scanner: applied, answered at once, kept.
    let scanner = "[[device]]\nid = \"scan-new\"\ndriver = \"barcode\"\ntransport = \"sim\"\n";
    let good = full_config(&state, port, &broker, &format!("{off}{scanner}"));
    let r = hq
        .run(signed(
            7,
            "c-good",
            "config.apply",
            json!({"toml": good, "confirm_s": 2}),
        ))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["reload"]["added"], json!(["scan-new"]), "{r}");
    assert!(b.device_ids().await.contains(&"scan-new".to_owned()));
    assert_eq!(std::fs::read_to_string(&file).expect("config"), good);
    assert_eq!(
        std::fs::read_to_string(file.with_extension("toml.prev")).expect("prev"),
        original
    );
    assert!(
        hq.result("c-good", Duration::from_secs(4)).await.is_none(),
        "kept: no second result"
    );

    // One that leaves a device in error (its UDP port is taken): rolled back by itself.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let busy = held.local_addr().expect("addr").port();
    let broken = full_config(
        &state,
        port,
        &broker,
        &format!("{off}{scanner}[[device]]\nid = \"wc-1\"\ndriver = \"callerid\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{busy}\"\nfrom = \"127.0.0.1\"\n"),
    );
    let r = hq
        .run(signed(
            7,
            "c-broken",
            "config.apply",
            json!({"toml": broken, "confirm_s": 2}),
        ))
        .await;
    assert_eq!(r["ok"], true, "applied first: {r}");
    let second = hq.result("c-broken", WAIT).await.expect("a second result");
    assert_eq!(second["rolled_back"], true, "{second}");
    assert!(
        second["error"]
            .as_str()
            .is_some_and(|e| e.contains("wc-1") && !e.contains("wc-off")),
        "{second}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("config"),
        good,
        "the previous config is back"
    );
    assert!(!b.device_ids().await.contains(&"wc-1".to_owned()));

    // require_confirm: without config.confirm it goes back; with it, it stays.
    let other = "[[device]]\nid = \"scan-2\"\ndriver = \"barcode\"\ntransport = \"sim\"\n";
    let with_two = full_config(&state, port, &broker, &format!("{off}{scanner}{other}"));
    let ask = json!({"toml": with_two, "confirm_s": 2, "require_confirm": true});
    let r = hq
        .run(signed(7, "c-unconfirmed", "config.apply", ask.clone()))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let second = hq.result("c-unconfirmed", WAIT).await.expect("rolled back");
    assert!(
        second["error"]
            .as_str()
            .is_some_and(|e| e.contains("confirm")),
        "{second}"
    );
    assert!(!b.device_ids().await.contains(&"scan-2".to_owned()));
    let r = hq.run(signed(7, "c-confirmed", "config.apply", ask)).await;
    assert_eq!(r["ok"], true, "{r}");
    let c = hq
        .run(signed(
            7,
            "c-confirm",
            "config.confirm",
            json!({"id": "c-confirmed"}),
        ))
        .await;
    assert_eq!(c["ok"], true, "{c}");
    assert!(
        hq.result("c-confirmed", Duration::from_secs(4))
            .await
            .is_none(),
        "kept"
    );
    assert!(b.device_ids().await.contains(&"scan-2".to_owned()));

    // A config that would cut the store off HQ needs allow_disconnect.
    let alone = format!(
        "[store]\nid = \"s\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[storage]\ndir = \"{}\"\n",
        state.display()
    );
    let r = hq
        .run(signed(7, "c-alone", "config.apply", json!({"toml": alone})))
        .await;
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("allow_disconnect")),
        "{r}"
    );
    drop((held, taken));
    let log = b.stop_and_log();
    assert!(log.contains("config.apply rolled back"), "{log}");
}

#[tokio::test]
async fn the_inventory_is_retained_holds_no_secret_and_follows_the_devices() {
    // Without a password file mosquitto takes any login: the password only
    // has to stay out of the inventory.
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyMSR");
    let msr = plug(&link);
    let cfg = sim_config(&format!(
        "[uplink]\nurl = \"{}\"\nclient_id = \"store-test-{}\"\nusername = \"u\"\npassword = \"hunter2-secret\"\n\
         [[api.tokens]]\nname = \"desk\"\ntoken = \"desk-token-0123456789abcdef\"\nscopes = [\"events\"]\n\
         [[device]]\nid = \"msr-1\"\ndriver = \"magstripe\"\ntransport = \"serial\"\npath = \"{}\"\n",
        broker.url(),
        ulid::Ulid::new(),
        link.display()
    ));
    let d = Daemon::start(&cfg).await;
    let mut hq = Hq::connect(
        broker.port,
        "hq-inventory",
        &[&format!("{PREFIX}/inventory")],
    )
    .await;
    let first = hq.next(WAIT).await.expect("the inventory at connect");
    assert!(first.retain || first.topic.ends_with("/inventory"));
    let v: Value = serde_json::from_slice(&first.payload).expect("json");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["boot"].as_str().is_some_and(|b| !b.is_empty()), "{v}");
    assert!(
        v["config_hash"].as_str().is_some_and(|h| h.len() == 64),
        "{v}"
    );
    assert!(v["disk_free_bytes"].as_u64().is_some_and(|f| f > 0), "{v}");
    assert!(v["uplink"]["backlog"].is_u64(), "{v}");
    assert!(v["time"].is_string() && v["uptime_s"].is_u64(), "{v}");
    let msr_state = |v: &Value| {
        v["devices"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["id"] == "msr-1"))
            .map(|d| d["state"].clone())
    };
    assert_eq!(msr_state(&v), Some(json!("connected")), "{v}");
    let text = v.to_string();
    for secret in ["hunter2-secret", "desk-token-0123456789abcdef"] {
        assert!(!text.contains(secret), "{secret} in the inventory: {text}");
    }
    // A later subscriber gets it at once: it is retained.
    let mut late = Hq::connect(broker.port, "hq-late", &[&format!("{PREFIX}/inventory")]).await;
    let again = late.next(WAIT).await.expect("retained");
    assert!(again.retain, "retained");
    // The reader unplugged: a new inventory says so (within the 10 s limit).
    unplug(msr, &link);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no inventory with the reader gone"
        );
        let Some(p) = hq.next(Duration::from_millis(500)).await else {
            continue;
        };
        let v: Value = serde_json::from_slice(&p.payload).expect("json");
        if msr_state(&v) != Some(json!("connected")) {
            break;
        }
    }
    d.stop().await;
}
