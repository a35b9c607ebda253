//! Issue 16: the holes a hostile page, a nosy local user and a forged
//! downlink found, one test each, against the real daemon (and a real
//! mosquitto where HQ is involved). Each failed before its fix.

use crate::common::mqtt::{Broker, Hq};
use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// The sim reader's demo card (src/transport/sim.rs).
const ID_NUMBER: &str = "110101199001011237";
const BIRTH_DIGITS: [&str; 3] = ["19900101", "1990-01-01", "900101"];
const ADDRESS_PART: &str = "示例路";
const BANK_PAN: &str = "4111111111111111";
const BANK_SWIPE: &str =
    "%B4111111111111111^DOE/JOHN^2512101000000000?;4111111111111111=25121010000000000000?\r\n";

fn id_reader(extra: &str) -> String {
    format!(
        "[store]\nid = \"s\"\n{extra}\n[[device]]\nid = \"id-1\"\ndriver = \"idcard-sam\"\ntransport = \"sim\"\npoll_ms = 100\n"
    )
}

/// Nothing in `text` from which the demo card's number can be rebuilt.
fn assert_unrebuildable(what: &str, text: &str) {
    assert!(!text.contains(ID_NUMBER), "{what}: the full number: {text}");
    for d in BIRTH_DIGITS {
        assert!(!text.contains(d), "{what}: the birth date {d:?}: {text}");
    }
    assert!(!text.contains(ADDRESS_PART), "{what}: the address: {text}");
}

/// Masked everywhere it leaves the daemon without scope `idcard`: the
/// stream, long-poll, the device list, metrics, the call and member paths,
/// and the copy forwarded to HQ. Before the fix `birth` went out in clear
/// beside `110101********1237`, which is the whole number; and the check
/// digit with the validity term narrowed the birth date to a few hundred.
#[tokio::test]
async fn a_masked_id_card_leaves_nothing_that_rebuilds_the_number() {
    let broker = Broker::start();
    let mut hq = Hq::connect(broker.port, "hq-idcard", &["posbridge/s/events/#"]).await;
    let uplink = format!(
        "[uplink]\nurl = \"{}\"\nclient_id = \"s-idcard\"\nforward_events = [\"idcard.*\"]\nlookup_timeout_ms = 200\n",
        broker.url()
    );
    let d = Daemon::start(&id_reader(&uplink)).await;
    let mut ws = d.ws("/v1/events?types=idcard.read").await;
    d.simulate("id-1", "place").await;
    let ev = next_event(&mut ws).await;
    assert_eq!(ev["data"]["id_number"], "110101********123*", "{ev}");
    assert_eq!(ev["data"]["birth"], "****-**-**", "{ev}");
    assert_eq!(ev["data"]["valid_from"], "****-**-**", "{ev}");
    assert_eq!(
        ev["data"]["valid_to"], "长期",
        "the expiry stays for the page: {ev}"
    );
    assert_eq!(ev["data"]["name"], "张三", "the rest is as read: {ev}");
    assert_unrebuildable("websocket", &ev.to_string());
    let forwarded = hq.next(WAIT).await.expect("forwarded to HQ");
    assert_eq!(forwarded.topic, "posbridge/s/events/idcard.read");
    let up = String::from_utf8_lossy(&forwarded.payload).into_owned();
    assert!(up.contains("110101********123*"), "{up}");
    assert_unrebuildable("uplink", &up);
    for path in [
        "/v1/events/poll?since=0&timeout_ms=0",
        "/v1/devices",
        "/metrics",
        "/v1/calls",
        "/v1/members/lookup?phone=13800000000",
        "/v1/health",
    ] {
        let body = d
            .http
            .get(d.url(path))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        assert_unrebuildable(path, &body);
        if path.starts_with("/v1/events/poll") {
            assert!(
                body.contains("110101********123*"),
                "the masked card is there: {body}"
            );
        }
    }
    d.stop().await;
}

/// One query string made every publish walk ~21,800 globs under the bus
/// lock. Now a filter has at most 64 entries of at most 64 characters
/// (400 naming the limit), compiled once when the client subscribes.
#[tokio::test]
async fn an_oversized_event_filter_is_refused_naming_the_limit() {
    let d = Daemon::start(&sim_config("")).await;
    // ~21,800 patterns fit in the 64 KiB a request line may take.
    let many = vec!["*"; 21_800].join(",");
    let refused =
        tokio_tungstenite::connect_async(d.ws_url(&format!("/v1/events?types={many}"))).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        Err(e) => panic!(
            "expected a 400 answer to the upgrade: {}",
            e.to_string().len()
        ),
        Ok(_) => panic!("a stream with 21,800 patterns was accepted"),
    }
    for path in [
        format!("/v1/events/poll?since=0&timeout_ms=0&types={many}"),
        format!("/v1/events/poll?timeout_ms=0&devices={}", "d".repeat(65)),
    ] {
        // (Not `expect`: the error would print the whole URL.)
        let Ok(r) = d.http.get(d.url(&path)).send().await else {
            panic!("request failed: {}", &path[..40]);
        };
        assert_eq!(r.status(), 400, "{}", &path[..40]);
        let v: Value = r.json().await.expect("json");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains("64"), "names the limit: {msg}");
        assert!(
            msg.starts_with("types:") || msg.starts_with("devices:"),
            "{msg}"
        );
    }
    // At the limit the filter works, and events still flow to it.
    let at_limit = vec!["nothing.*"; 63].join(",") + ",code.*";
    let mut ws = d.ws(&format!("/v1/events?types={at_limit}")).await;
    d.simulate("scan-1", "M1\r").await;
    assert_eq!(next_event(&mut ws).await["data"]["text"], "M1");
    d.stop().await;
}

/// A foreign page's `<img src>` and no-cors fetch carry no Origin, but the
/// browser says `Sec-Fetch-Site: cross-site`; every route refuses them unless
/// the Origin is allowed, and no member lookup reaches HQ. Top-level
/// navigations to the pages still open (a link to /popup).
#[tokio::test]
async fn requests_from_another_site_are_refused_on_every_route() {
    let broker = Broker::start();
    let mut hq = Hq::connect(broker.port, "hq-fetch", &["posbridge/store-test/lookup/#"]).await;
    let uplink = format!(
        "[uplink]\nurl = \"{}\"\nclient_id = \"s-fetch\"\nlookup_timeout_ms = 200\n",
        broker.url()
    );
    let d = Daemon::start(&sim_config(&uplink)).await;
    let routes = [
        ("GET", "/v1/members/lookup?phone=13900000001"),
        ("GET", "/v1/events/poll?timeout_ms=30000"),
        ("GET", "/v1/events"),
        ("GET", "/v1/devices"),
        ("GET", "/v1/calls"),
        ("GET", "/v1/uplink"),
        ("GET", "/v1/health"),
        ("GET", "/metrics"),
        ("GET", "/v1/printers"),
        ("POST", "/v1/devices/scan-1/simulate"),
        ("POST", "/v1/transactions"),
        ("POST", "/v1/print"),
        ("POST", "/v1/drawer/open"),
        ("POST", "/v1/display"),
        ("POST", "/v1/devices/scan-1/tare"),
        ("POST", "/v1/devices/scan-1/zero"),
        ("GET", "/v1/scales/scan-1"),
    ];
    for site in ["cross-site", "same-site"] {
        for (method, path) in routes {
            let r = d
                .http
                .request(method.parse().expect("method"), d.url(path))
                .header("sec-fetch-site", site)
                .header("sec-fetch-mode", "no-cors")
                .header("sec-fetch-dest", "image")
                .header("content-type", "text/plain")
                .body(r#"{"id":"t1","data":"x"}"#)
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 403, "{site} {method} {path}");
            let v: Value = r.json().await.expect("json");
            assert_eq!(v["error"]["code"], "forbidden_site", "{path}");
        }
    }
    // A lookup URL typed in, or opened from a chat message (Sec-Fetch-Site:
    // none), is answered from what the daemon has; it does not ask HQ.
    let r = d
        .http
        .get(d.url("/v1/members/lookup?phone=13900000004"))
        .header("sec-fetch-site", "none")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .expect("navigate");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["source"], "none");
    assert!(
        hq.next(Duration::from_millis(500)).await.is_none(),
        "a refused GET or a navigation asked HQ for a member"
    );
    // An allowed page's CORS request from another site passes.
    let r = d
        .http
        .get(d.url("/v1/members/lookup?phone=13900000002"))
        .header("origin", "https://pos.example.com")
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .expect("allowed");
    assert_eq!(r.status(), 200);
    let asked = hq.next(WAIT).await.expect("the allowed lookup reaches HQ");
    assert!(String::from_utf8_lossy(&asked.payload).contains("13900000002"));
    // A link to the popup from another site opens it; a frame does not.
    for (dest, want) in [("document", 200), ("iframe", 403)] {
        let r = d
            .http
            .get(d.url("/popup"))
            .header("sec-fetch-site", "cross-site")
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", dest)
            .send()
            .await
            .expect("navigate");
        assert_eq!(r.status(), want, "{dest}");
    }
    // Native clients send no Fetch Metadata and are judged as before.
    assert_eq!(d.get_json("/v1/health").await["status"], "ok");
    d.stop().await;
}

/// At trace level, whether set by `log.level` or by `RUST_LOG` naming the
/// WebSocket, HTTP and MQTT crates themselves, the log holds no ID number,
/// address or bank-card track while an `idcard` client receives the full
/// card and a bank card is swiped.
#[tokio::test]
async fn the_log_at_trace_holds_no_id_number_address_or_track() {
    let dir = tempfile::tempdir().expect("tmp");
    let devices = "[[api.tokens]]\nname = \"hotel\"\ntoken = \"hotel-token-0123456789\"\nscopes = [\"events\", \"idcard\", \"admin\"]\n\
        [[device]]\nid = \"id-1\"\ndriver = \"idcard-sam\"\ntransport = \"sim\"\npoll_ms = 100\n\
        [[device]]\nid = \"msr\"\ndriver = \"magstripe\"\ntransport = \"sim\"\n";
    let runs: [(&str, &[(&str, &str)]); 2] = [
        ("[log]\nlevel = \"trace\"\n", &[]),
        (
            "",
            &[(
                "RUST_LOG",
                "trace,tungstenite=trace,tokio_tungstenite=trace,hyper=trace,axum=trace,rumqttc=trace",
            )],
        ),
    ];
    for (i, (log, env)) in runs.into_iter().enumerate() {
        let state = dir.path().join(format!("state-{i}"));
        let daemon = Binary::start(&state, &format!("{log}{devices}"), env).await;
        let ws_url = daemon.url.replace("http://", "ws://")
            + "/v1/events?types=idcard.read,card.*&token=hotel-token-0123456789";
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("ws");
        let http = reqwest::Client::new();
        // A refused Host is logged at debug: proof the level took effect.
        let r = http
            .get(format!("{}/v1/health", daemon.url))
            .header("host", "evil.example")
            .send()
            .await
            .expect("refused host");
        assert_eq!(r.status(), 403);
        for (dev, data) in [("id-1", "place"), ("msr", BANK_SWIPE)] {
            let r = http
                .post(format!("{}/v1/devices/{dev}/simulate", daemon.url))
                .bearer_auth("hotel-token-0123456789")
                .json(&json!({ "data": data }))
                .send()
                .await
                .expect("simulate");
            assert_eq!(r.status(), 202);
        }
        let card = next_event(&mut ws).await;
        assert_eq!(
            card["data"]["id_number"], ID_NUMBER,
            "the idcard client got it all"
        );
        let swipe = next_event(&mut ws).await;
        assert_eq!(swipe["type"], "card.rejected", "{swipe}");
        close(ws).await;
        let log = daemon.stop_and_log();
        assert!(
            log.contains("refused: Host"),
            "run {i} logged at debug: {log}"
        );
        for secret in [ID_NUMBER, ADDRESS_PART, BANK_PAN, "DOE/JOHN", "2512101"] {
            assert!(!log.contains(secret), "run {i}: {secret:?} reached the log");
        }
    }
}

/// Outside the shipped unit nothing but the umask protected the stores:
/// `storage.dir` came out 0755 and the databases 0644. The daemon now makes
/// a new one 0700, tightens an existing wider one (saying so in the log), and
/// keeps every store file, WAL and -shm 0600.
#[tokio::test]
async fn the_state_directory_and_its_stores_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let dir = tempfile::tempdir().expect("tmp");
    // An existing state directory left wide open, with a store from before.
    let old = dir.path().join("old");
    std::fs::create_dir(&old).expect("mkdir");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(old.join("members.db"), b"").expect("old store");
    std::fs::set_permissions(
        old.join("members.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    // And one that does not exist yet.
    let new = dir.path().join("new");
    for (state, tightened) in [(&old, true), (&new, false)] {
        let daemon = Binary::start(state, "", &[]).await;
        let r = reqwest::Client::new()
            .post(format!("{}/v1/transactions", daemon.url))
            .json(&json!({"id": "t-1", "total_fen": 100}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202);
        let log = daemon.stop_and_log();
        assert_eq!(mode(state), 0o700, "{}", state.display());
        let mut stores = 0;
        for e in std::fs::read_dir(state).expect("ls") {
            let p = e.expect("entry").path();
            if p.is_file() {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                stores += p.extension().is_some_and(|x| x == "db") as usize;
            }
        }
        assert!(stores >= 3, "outbox, members, print queue, calls");
        assert_eq!(
            log.contains("was mode 0755, so other users could read the stores; it is now 0700"),
            tightened,
            "{log}"
        );
    }
}

/// `check-config` warns about every way another user could change the
/// config, which the old check (file and folder, mode only) missed: a 1666
/// file, a 0777 grandparent, a symlink whose target's folder is 0777, and
/// (as root) a 0644 file owned by another user.
#[test]
fn check_config_warns_about_every_way_others_could_change_the_config() {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    let check = |p: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_posbridge"))
            .args(["check-config", "--config"])
            .arg(p)
            .output()
            .expect("check-config");
        assert!(out.status.success(), "warnings, not errors");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let t = tempfile::tempdir().expect("tmp");
    chmod(t.path(), 0o700);
    let file = |dir: &std::path::Path, mode: u32| {
        std::fs::create_dir_all(dir).expect("mkdir");
        let f = dir.join("posbridge.toml");
        std::fs::write(&f, "[store]\nid = \"s\"\n").expect("write");
        chmod(&f, mode);
        f
    };
    let sticky_file = file(&t.path().join("a"), 0o1666);
    let err = check(&sticky_file);
    assert!(
        err.contains("is writable by other users (mode 1666)"),
        "{err}"
    );
    let deep = file(&t.path().join("b/etc/posbridge"), 0o600);
    chmod(&t.path().join("b"), 0o777);
    let err = check(&deep);
    let b = t.path().join("b");
    assert!(
        err.contains(&format!(
            "{} (on the way to the config) is writable",
            b.display()
        )),
        "{err}"
    );
    let target = file(&t.path().join("c"), 0o600);
    chmod(&t.path().join("c"), 0o777);
    let link = t.path().join("link.toml");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let err = check(&link);
    assert!(
        err.contains(&format!("{} (on the way", t.path().join("c").display())),
        "{err}"
    );
    if nix::unistd::geteuid().is_root() {
        let theirs = file(&t.path().join("d"), 0o644);
        std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown");
        let err = check(&theirs);
        assert!(
            err.contains("belongs to") && err.contains("uid 65534"),
            "{err}"
        );
    }
}

fn file_printer(path: &std::path::Path) -> String {
    format!(
        "[store]\nid = \"s\"\n[[device]]\nid = \"printer-1\"\ndriver = \"escpos\"\ntransport = \"file\"\npath = \"{}\"\n",
        path.display()
    )
}

/// The device's `last_error` once it contains `want`.
async fn device_error(d: &Daemon, want: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let devs = d.get_json("/v1/devices").await;
        let e = devs[0]["last_error"].as_str().unwrap_or("").to_owned();
        if e.contains(want) {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {want:?} error: {devs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn print_raw(d: &Daemon, bytes: &[u8]) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let r = d
        .http
        .post(d.url("/v1/print"))
        .json(&json!({"printer": "printer-1", "raw": b64}))
        .send()
        .await
        .expect("print");
    assert_eq!(r.status(), 202);
}

/// A symlink at a `file` printer's path made print clients append to any
/// file the daemon can write. Now the file is opened with O_NOFOLLOW, at start
/// and for every job, and a folder others can write is refused: each is a
/// device error saying why, and the victim file is untouched.
#[tokio::test]
async fn a_file_printer_never_follows_a_link_or_trusts_an_open_folder() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().expect("tmp");
    let victim = t.path().join("victim.conf");
    std::fs::write(&victim, b"precious\n").expect("victim");
    // A link there from the start.
    let out = t.path().join("receipts.bin");
    std::os::unix::fs::symlink(&victim, &out).expect("symlink");
    let d = Daemon::start(&file_printer(&out)).await;
    device_error(&d, "is a symbolic link").await;
    print_raw(&d, b"RECEIPT-1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.stop().await;
    // A link planted after the printer was opened: the next job sees it.
    std::fs::remove_file(&out).expect("unlink");
    let d = Daemon::start(&file_printer(&out)).await;
    print_raw(&d, b"RECEIPT-2").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::fs::read(&out).unwrap_or_default() != b"RECEIPT-2" {
        assert!(tokio::time::Instant::now() < deadline, "first job printed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_file(&out).expect("unlink");
    std::os::unix::fs::symlink(&victim, &out).expect("symlink");
    print_raw(&d, b"RECEIPT-3").await;
    device_error(&d, "is a symbolic link").await;
    d.stop().await;
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious\n");
    // A folder everyone can write (even with the sticky bit, like /tmp).
    let open = t.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let d = Daemon::start(&file_printer(&open.join("r.bin"))).await;
    let e = device_error(&d, "other users can write the folder").await;
    assert!(e.contains("mode 1777"), "{e}");
    d.stop().await;
    assert!(!open.join("r.bin").exists(), "nothing created there");
    // A folder on the way swapped for a link to somewhere else.
    let real = t.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    let via = t.path().join("via");
    std::os::unix::fs::symlink(&real, &via).expect("symlink");
    let d = Daemon::start(&file_printer(&via.join("r.bin"))).await;
    device_error(&d, "on the way is a symbolic link").await;
    d.stop().await;
    assert!(
        !real.join("r.bin").exists(),
        "nothing created through the link"
    );
    // A folder above that others can write (no sticky bit): the path could change.
    let shared = t.path().join("shared");
    std::fs::create_dir_all(shared.join("out")).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let d = Daemon::start(&file_printer(&shared.join("out").join("r.bin"))).await;
    device_error(&d, "mode 0777").await;
    d.stop().await;
}

/// The fenced block after `<!-- marker -->` in SECURITY.md, without its
/// comments and blank lines.
fn security_md_block(marker: &str) -> Vec<String> {
    let doc = include_str!("../SECURITY.md");
    let after = doc
        .split(&format!("<!-- {marker} -->"))
        .nth(1)
        .unwrap_or_else(|| panic!("SECURITY.md has no {marker} block"));
    after
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Whether `m` says `metric value`.
fn metric_is(m: &str, metric: &str, value: u64) -> bool {
    m.lines().any(|l| l == format!("{metric} {value}"))
}

/// A forged `tx/ack` waiting in the store's persistent session, for ids the
/// store queued while offline, used to mark them acked before they were ever
/// published: past the first window (64) HQ never got them. A
/// `lookup/response` nobody asked for used to fill the member cache. Now
/// every queued id reaches HQ, and the stray answer is dropped and counted.
#[tokio::test]
async fn forged_acks_and_answers_on_the_downlink_change_nothing() {
    let broker = Broker::start();
    // HQ keeps a persistent session through the broker restart below.
    let mut hq = Hq::connect(broker.port, "hq-forged", &["posbridge/s/tx"]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let cfg = format!(
        "[uplink]\nurl = \"{}\"\nclient_id = \"s-forged\"\nlookup_timeout_ms = 300\n",
        broker.url()
    );
    let up = |b: &Binary| {
        let url = format!("{}/v1/uplink", b.url);
        async move { reqwest::get(url).await.ok()?.json::<Value>().await.ok() }
    };
    // Connect once, so the broker keeps a session for the store.
    let first = Binary::start(&state, &cfg, &[]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while up(&first).await.is_none_or(|v| v["connected"] != true) {
        assert!(tokio::time::Instant::now() < deadline, "connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.stop_and_log();
    // The forger, while the store is away: acks for what it will queue next.
    let forger = Hq::connect(broker.port, "forger", &[]).await;
    let ids: Vec<String> = (1..=100).map(|i| format!("t-{i}")).collect();
    forger
        .publish("posbridge/s/tx/ack", json!({ "ids": ids }))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(forger);
    // The store queues them with HQ out of reach (a port nobody listens on)…
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let offline = Binary::start(
        &state,
        &cfg.replace(&broker.url(), &format!("mqtt://{nowhere}")),
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    for id in &ids {
        let r = http
            .post(format!("{}/v1/transactions", offline.url))
            .json(&json!({"id": id, "total_fen": 1}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202);
    }
    offline.stop_and_log();
    // …and comes back to its session, where the forged ack waits.
    let d = Binary::start(&state, &cfg, &[]).await;
    let mut got = std::collections::BTreeSet::new();
    while got.len() < ids.len() {
        let m = hq.next(WAIT).await.unwrap_or_else(|| {
            panic!(
                "HQ got {} of 100; the forged ack stopped the rest",
                got.len()
            )
        });
        let v: Value = serde_json::from_slice(&m.payload).expect("json");
        got.insert(v["id"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(got, ids.iter().cloned().collect());
    let m = http
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .expect("m")
        .text()
        .await
        .expect("t");
    // The forged ack did arrive: every id it named is accounted for.
    let count = |name: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        count("posbridge_uplink_acks_ignored_total") + count("posbridge_uplink_hq_acked_total"),
        100
    );
    // An answer to a lookup nobody asked for.
    hq.publish(
        "posbridge/s/lookup/response",
        json!({"corr": "forged", "member": {"id": "m-x", "name": "冒充", "phones": ["13911112222"]}}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = http
            .get(format!("{}/metrics", d.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metric_is(&m, "posbridge_uplink_bad_downlink_total", 1) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "counted: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v: Value = http
        .get(format!("{}/v1/members/lookup?phone=13911112222", d.url))
        .send()
        .await
        .expect("lookup")
        .json()
        .await
        .expect("json");
    let log = d.stop_and_log();
    assert_eq!(
        v["source"], "none",
        "the forged member is not cached: {v} {log}"
    );
}

/// SECURITY.md's mosquitto listener settings and ACL, loaded as written:
/// a store relays, reads its own and `_all` downlink; another store's login
/// can neither read its transactions nor forge its acks, member pushes or
/// transactions toward HQ.
#[tokio::test]
async fn the_documented_mosquitto_acl_keeps_stores_apart() {
    use std::os::unix::fs::PermissionsExt;
    // mosquitto drops root to its own user: the files must be readable to it.
    let files = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(files.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let acl = files.path().join("posbridge.acl");
    std::fs::write(&acl, security_md_block("mosquitto-acl").join("\n") + "\n").expect("acl");
    let passwd = files.path().join("posbridge.passwd");
    for (i, (user, pass)) in [("hq", "hq-pw"), ("store-1", "s1-pw"), ("store-2", "s2-pw")]
        .into_iter()
        .enumerate()
    {
        let mut cmd = std::process::Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let st = cmd
            .arg("-b")
            .arg(&passwd)
            .args([user, pass])
            .status()
            .expect("mosquitto_passwd (apt install mosquitto)");
        assert!(st.success());
    }
    for f in [&acl, &passwd] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let conf: Vec<String> = security_md_block("mosquitto-conf")
        .into_iter()
        .filter(|l| !l.starts_with("listener"))
        .map(|l| {
            l.replace(
                "/etc/mosquitto/posbridge.passwd",
                &passwd.display().to_string(),
            )
            .replace("/etc/mosquitto/posbridge.acl", &acl.display().to_string())
        })
        .collect();
    assert!(
        conf.iter().any(|l| l == "use_username_as_clientid true"),
        "{conf:?}"
    );
    let broker = Broker::start_with(&(conf.join("\n") + "\n"));
    let mut hq = Hq::connect_as(
        broker.port,
        "hq",
        Some(("hq", "hq-pw")),
        &["posbridge/+/tx", "posbridge/+/lookup/request"],
    )
    .await;
    let cfg = format!(
        "[store]\nid = \"store-1\"\n[uplink]\nurl = \"{}\"\nusername = \"store-1\"\npassword = \"s1-pw\"\nclient_id = \"store-1-relay\"\nack = \"hq\"\nresend_after_ms = 600000\nlookup_timeout_ms = 200\n",
        broker.url()
    );
    let d = Daemon::start(&cfg).await;
    let post = |id: &str| {
        let req = d
            .http
            .post(d.url("/v1/transactions"))
            .json(&json!({ "id": id, "total_fen": 1 }));
        async move { req.send().await.expect("post").status() }
    };
    assert_eq!(post("t-1").await, 202);
    let first = hq
        .next(WAIT)
        .await
        .expect("the store's transaction reaches HQ");
    assert_eq!(first.topic, "posbridge/store-1/tx");
    let state = |id: &'static str| {
        let req = d.http.get(d.url(&format!("/v1/transactions/{id}")));
        async move {
            req.send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json")["state"]
                .clone()
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while state("t-1").await != "sent" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "t-1 never became sent: {}",
            state("t-1").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another store's login tries everything against store-1.
    let mut intruder = Hq::connect_as(
        broker.port,
        "store-2",
        Some(("store-2", "s2-pw")),
        &["posbridge/store-1/#", "posbridge/+/tx"],
    )
    .await;
    let upsert = |phone: &str| json!({"op": "upsert", "members": [{"id": phone, "name": "x", "phones": [phone]}]});
    intruder
        .publish("posbridge/store-1/members", upsert("13900000009"))
        .await;
    intruder
        .publish("posbridge/_all/members", upsert("13900000008"))
        .await;
    intruder
        .publish("posbridge/store-1/tx", json!({"id": "fake"}))
        .await;
    intruder
        .publish("posbridge/store-1/tx/ack", json!({"ids": ["t-1"]}))
        .await;
    // Its own topics it may use: HQ seeing this proves the ones above were sent.
    intruder
        .publish("posbridge/store-2/tx", json!({"id": "own"}))
        .await;
    let own = hq.next(WAIT).await.expect("store-2's own transaction");
    assert_eq!(
        own.topic, "posbridge/store-2/tx",
        "HQ got a forged store-1 message first"
    );
    assert_eq!(
        state("t-1").await,
        "sent",
        "store-2 acked store-1's transaction"
    );
    // A login taking store-1's client id takes its own session, not store-1's.
    let _twin = Hq::connect_as(
        broker.port,
        "store-1-relay",
        Some(("store-2", "s2-pw")),
        &[],
    )
    .await;
    assert_eq!(post("t-2").await, 202);
    let second = hq.next(WAIT).await.expect("t-2 reaches HQ");
    assert_eq!(second.topic, "posbridge/store-1/tx");
    assert!(String::from_utf8_lossy(&second.payload).contains("\"t-2\""));
    let m = d.metrics().await;
    assert!(
        metric_is(&m, "posbridge_uplink_connects_total", 1),
        "store-1 was kicked off: {m}"
    );
    // HQ's own ack and push to every store arrive.
    hq.publish("posbridge/store-1/tx/ack", json!({"ids": ["t-1"]}))
        .await;
    hq.publish("posbridge/_all/members", upsert("13900000007"))
        .await;
    let lookup = |phone: &'static str| {
        let req = d
            .http
            .get(d.url(&format!("/v1/members/lookup?phone={phone}")));
        async move {
            req.send()
                .await
                .expect("lookup")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while lookup("13900000007").await["source"] != "cache" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "HQ's _all push was not cached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state("t-1").await, "acked", "HQ's ack counts");
    for forged in ["13900000009", "13900000008"] {
        assert_eq!(
            lookup(forged).await["member"],
            Value::Null,
            "{forged} was cached"
        );
    }
    assert!(
        intruder.next(Duration::from_millis(300)).await.is_none(),
        "store-2 read store-1's topics"
    );
    d.stop().await;
}

/// A state directory that belongs to another user (who could read, replace
/// or plant files there), or a store that is a symlink, stops the start with
/// an error naming it, rather than a warning.
#[tokio::test]
async fn a_state_directory_of_another_user_or_a_linked_store_stops_the_start() {
    let start = |dir: std::path::PathBuf| async move {
        let mut config = posbridge::Config::parse("[store]\nid = \"s\"\n", std::iter::empty(), "t")
            .expect("config");
        config.storage.dir = dir;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let r = tokio::time::timeout(
            WAIT,
            posbridge::run(config, listener, std::future::ready(())),
        )
        .await
        .expect("returns");
        r.err().map(|e| format!("{e:#}")).unwrap_or_default()
    };
    let t = tempfile::tempdir().expect("tmp");
    // A store planted as a link to a file elsewhere.
    let linked = t.path().join("linked");
    std::fs::create_dir(&linked).expect("mkdir");
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"").expect("victim");
    std::os::unix::fs::symlink(&victim, linked.join("outbox.db")).expect("symlink");
    let e = start(linked).await;
    assert!(e.contains("outbox.db"), "{e}");
    assert_eq!(std::fs::read(&victim).expect("victim"), b"", "untouched");
    if nix::unistd::geteuid().is_root() {
        let theirs = t.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown");
        let e = start(theirs).await;
        assert!(e.contains("belongs to uid 65534"), "{e}");
    }
}
