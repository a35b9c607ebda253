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
/// beside `110101********1237`, which is the whole number.
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
    assert_eq!(ev["data"]["id_number"], "110101********1237", "{ev}");
    assert_eq!(ev["data"]["birth"], "****-**-**", "{ev}");
    assert_eq!(ev["data"]["name"], "张三", "the rest is as read: {ev}");
    assert_unrebuildable("websocket", &ev.to_string());
    let forwarded = hq.next(WAIT).await.expect("forwarded to HQ");
    assert_eq!(forwarded.topic, "posbridge/s/events/idcard.read");
    let up = String::from_utf8_lossy(&forwarded.payload).into_owned();
    assert!(up.contains("110101********1237"), "{up}");
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
    assert!(
        hq.next(Duration::from_millis(500)).await.is_none(),
        "a refused GET asked HQ for a member"
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
}
