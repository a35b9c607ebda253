//! Members found by what they carry, through a real mosquitto: HQ pushes
//! members with cards; a magstripe swipe on a pty, a 125 kHz tag, a scanned
//! member code and a simulated ID card each give `member.identified`; the
//! cache answers with the broker down; an unknown card asks HQ; the cache
//! file never holds an ID number in clear.

use crate::common::mqtt::{Broker, Hq};
use crate::common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

const PREFIX: &str = "posbridge/store-test";
/// The simulated reader's card (transport/sim.rs).
const ID_NUMBER: &str = "110101199001011237";
const KEY: &str = "test-store-key-0123456789abcdef";

fn config(link: &std::path::Path, broker: &Broker) -> String {
    format!(
        r#"[store]
id = "store-test"
[api]
allowed_origins = ["https://pos.example.com"]
[members]
id_key = "{KEY}"
[uplink]
url = "{}"
client_id = "store-test-{}"
lookup_timeout_ms = 3000
[[device]]
id = "msr-1"
driver = "magstripe"
transport = "serial"
path = "{}"
[[device]]
id = "rfid-1"
driver = "rfid-wedge"
transport = "sim"
[[device]]
id = "scan-1"
driver = "barcode"
transport = "sim"
member_pattern = "^M\\d{{6}}$"
[[device]]
id = "scan-quiet"
driver = "barcode"
transport = "sim"
identify = false
[[device]]
id = "id-1"
driver = "idcard-sam"
transport = "sim"
poll_ms = 100
"#,
        broker.url(),
        ulid::Ulid::new(),
        link.display()
    )
}

/// The next `member.identified`, with the card event it answers.
async fn identified(ws: &mut Ws, card_event: &str) -> (Value, Value) {
    let card = next_of_type(ws, card_event).await;
    let m = next_of_type(ws, "member.identified").await;
    assert_eq!(m["data"]["event_id"], card["id"], "{m}");
    assert_eq!(m["device"], card["device"], "{m}");
    (card, m["data"].clone())
}

#[tokio::test]
async fn every_kind_of_card_finds_its_member_from_the_cache_or_hq() {
    let mut broker = Broker::start();
    let mut hq = Hq::connect(
        broker.port,
        "hq-identify",
        &[&format!("{PREFIX}/lookup/request")],
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyMSR");
    let mut msr = plug(&link);
    let d = Daemon::start(&config(&link, &broker)).await;
    d.uplink_connected().await;
    let members = json!({"op": "upsert", "members": [
        {"id": "m-ms", "name": "王芳", "tier": "gold", "cards": [{"type": "magstripe", "value": "88001234"}]},
        {"id": "m-rf", "name": "李雷", "cards": [{"type": "rfid", "value": "0012345678"}]},
        {"id": "m-qr", "name": "韩梅梅", "cards": [{"type": "code", "value": "M000777"}]},
        {"id": "m-id", "name": "张三", "cards": [{"type": "idcard", "value": ID_NUMBER}]}
    ]});
    hq.publish(&format!("{PREFIX}/members"), members).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while d
        .get_json("/v1/members/lookup?card_type=code&card=M000777")
        .await["member"]
        .is_null()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "members never cached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = d
        .ws("/v1/events?types=card.swiped,card.tapped,code.scanned,idcard.read,member.identified")
        .await;

    msr.master.write_all(b";88001234?\r\n").expect("swipe");
    let (_, m) = identified(&mut ws, "card.swiped").await;
    assert_eq!(
        (
            m["via"].as_str(),
            m["member"]["id"].as_str(),
            m["source"].as_str()
        ),
        (Some("magstripe"), Some("m-ms"), Some("cache")),
        "{m}"
    );
    assert!(m["took_ms"].as_u64().is_some(), "{m}");

    d.simulate("rfid-1", "0012345678").await;
    let (_, m) = identified(&mut ws, "card.tapped").await;
    assert_eq!(
        (m["via"].as_str(), m["member"]["id"].as_str()),
        (Some("rfid"), Some("m-rf")),
        "{m}"
    );

    d.simulate("scan-1", "M000777").await;
    let (_, m) = identified(&mut ws, "code.scanned").await;
    assert_eq!(
        (m["via"].as_str(), m["member"]["id"].as_str()),
        (Some("code"), Some("m-qr")),
        "{m}"
    );

    d.simulate("id-1", "place").await;
    let (_, m) = identified(&mut ws, "idcard.read").await;
    assert_eq!(
        (m["via"].as_str(), m["member"]["id"].as_str()),
        (Some("idcard"), Some("m-id")),
        "{m}"
    );
    assert!(
        !m.to_string().contains(ID_NUMBER),
        "no ID number in the event: {m}"
    );
    d.simulate("id-1", "lift").await;

    // A device with identify = false reads, and identifies nobody.
    d.simulate("scan-quiet", "M000777").await;
    next_of_type(&mut ws, "code.scanned").await;
    assert_quiet(&mut ws, Duration::from_millis(400)).await;

    // An unknown card: HQ is asked by card, and its answer used.
    msr.master.write_all(b";99990000?\r\n").expect("swipe");
    // (Requests from the polls above, made before the push was cached, come first.)
    let q = loop {
        let ask = hq.next(WAIT).await.expect("a lookup request");
        let q: Value = serde_json::from_slice(&ask.payload).expect("json");
        if q["card"]["type"] == "magstripe" {
            break q;
        }
    };
    assert_eq!(
        q["card"],
        json!({"type": "magstripe", "value": "99990000"}),
        "{q}"
    );
    let answer = json!({"corr": q["corr"], "member": {"id": "m-new", "name": "新会员",
        "cards": [{"type": "magstripe", "value": "99990000"}, {"type": "idcard", "value": "110101198001010010"}]}});
    hq.publish(&format!("{PREFIX}/lookup/response"), answer)
        .await;
    let (_, m) = identified(&mut ws, "card.swiped").await;
    assert_eq!(
        (m["member"]["id"].as_str(), m["source"].as_str()),
        (Some("m-new"), Some("hq")),
        "{m}"
    );
    assert!(
        !m.to_string().contains("110101198001010010"),
        "HQ's clear ID number is not passed on: {m}"
    );

    // Who holds an ID number is ID data: no token, no scope idcard, no answer.
    let lookup = d
        .get_json(&format!(
            "/v1/members/lookup?card_type=idcard&card={ID_NUMBER}"
        ))
        .await;
    assert_eq!(lookup["error"]["code"], "insufficient_scope", "{lookup}");

    // The broker down: the cache still answers.
    broker.kill();
    msr.master.write_all(b";88001234?\r\n").expect("swipe");
    let (_, m) = identified(&mut ws, "card.swiped").await;
    assert_eq!(
        (m["member"]["id"].as_str(), m["source"].as_str()),
        (Some("m-ms"), Some("cache")),
        "{m}"
    );
    close(ws).await;
    let state = d.state_dir.path().to_path_buf();
    d.stop().await;
    for file in ["members.db", "members.db-wal"] {
        let bytes = std::fs::read(state.join(file)).unwrap_or_default();
        for secret in [ID_NUMBER, "110101198001010010"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{file} holds an ID number in clear"
            );
        }
    }
}

const ADMIN: &str = "admin-token-0123456789abcdef";
const DESK: &str = "desk-token-0123456789abcdef";

/// A client that presents `token` on every request.
fn client_with(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    h.insert(reqwest::header::AUTHORIZATION, v);
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .expect("client")
}

fn id_reader_config(broker: Option<&Broker>, members: &str) -> String {
    let uplink = broker.map_or(String::new(), |b| {
        format!(
            "[uplink]\nurl = \"{}\"\nclient_id = \"store-test-{}\"\nlookup_timeout_ms = 3000\n",
            b.url(),
            ulid::Ulid::new()
        )
    });
    format!(
        r#"[store]
id = "store-test"
[[api.tokens]]
name = "admin"
token = "{ADMIN}"
scopes = ["events", "admin", "members", "idcard", "transactions"]
[[api.tokens]]
name = "desk"
token = "{DESK}"
scopes = ["events", "members"]
{members}
{uplink}
[[device]]
id = "id-1"
driver = "idcard-sam"
transport = "sim"
poll_ms = 100
[[device]]
id = "rfid-1"
driver = "rfid-wedge"
transport = "sim"
"#
    )
}

/// An ID card not in the cache is asked of HQ by the HMAC of its number —
/// the number itself never goes up — and HQ's answer is taken; asking the
/// API who holds an ID number needs scope `idcard`.
#[tokio::test]
async fn an_id_card_is_asked_of_hq_by_its_hmac_and_only_idcard_tokens_look_numbers_up() {
    let broker = Broker::start();
    let mut hq = Hq::connect(
        broker.port,
        "hq-idcard",
        &[&format!("{PREFIX}/lookup/request")],
    )
    .await;
    let members = format!("[members]\nid_key = \"{KEY}\"");
    let mut d = Daemon::start(&id_reader_config(Some(&broker), &members)).await;
    d.http = client_with(ADMIN);
    d.uplink_connected().await;
    let mut ws = d
        .ws(&format!(
            "/v1/events?types=idcard.read,member.identified&token={ADMIN}"
        ))
        .await;
    d.simulate("id-1", "place").await;
    let ask = hq.next(WAIT).await.expect("a lookup request");
    let text = String::from_utf8_lossy(&ask.payload).to_string();
    let q: Value = serde_json::from_str(&text).expect("json");
    let keyed = tempfile::tempdir().expect("tmp");
    let hmac = posbridge::uplink::members::Members::open(keyed.path(), Some(KEY))
        .expect("members")
        .id_hmac(ID_NUMBER)
        .expect("an hmac");
    assert_eq!(q["card"], json!({"type": "idcard", "value": hmac}), "{q}");
    assert!(!text.contains(ID_NUMBER), "the number went up: {text}");
    hq.publish(
        &format!("{PREFIX}/lookup/response"),
        json!({"corr": q["corr"], "member": {"id": "m-hq", "name": "赵六",
            "cards": [{"type": "idcard", "value": ID_NUMBER}]}}),
    )
    .await;
    let (_, m) = identified(&mut ws, "idcard.read").await;
    assert_eq!(
        (m["member"]["id"].as_str(), m["source"].as_str()),
        (Some("m-hq"), Some("hq")),
        "{m}"
    );
    assert!(!m.to_string().contains(ID_NUMBER), "{m}");
    // With scope idcard the API hashes the number and finds the member HQ gave.
    let path = format!("/v1/members/lookup?card_type=idcard&card={ID_NUMBER}");
    let found = d.get_json(&path).await;
    assert_eq!(found["member"]["id"], "m-hq", "{found}");
    // A desk token (events, members) may look up phones and cards, not ID numbers.
    let refused = d.get_json_as(&path, DESK).await;
    assert_eq!(refused["error"]["code"], "insufficient_scope", "{refused}");
    let card = d
        .get_json_as("/v1/members/lookup?card_type=rfid&card=0012345678", DESK)
        .await;
    assert!(card.get("error").is_none(), "{card}");
    close(ws).await;
    d.stop().await;
}

/// Without `members.id_key` an ID card has nothing to be looked up by: it
/// is answered `none` at once and HQ is not asked; the API says what is missing.
#[tokio::test]
async fn without_an_id_key_an_id_card_finds_nobody_and_hq_is_not_asked() {
    let broker = Broker::start();
    let mut hq = Hq::connect(
        broker.port,
        "hq-nokey",
        &[&format!("{PREFIX}/lookup/request")],
    )
    .await;
    let mut d = Daemon::start(&id_reader_config(Some(&broker), "")).await;
    d.http = client_with(ADMIN);
    d.uplink_connected().await;
    let mut ws = d
        .ws(&format!(
            "/v1/events?types=idcard.read,member.identified&token={ADMIN}"
        ))
        .await;
    d.simulate("id-1", "place").await;
    let (_, m) = identified(&mut ws, "idcard.read").await;
    assert_eq!(
        (m["member"].is_null(), m["source"].as_str()),
        (true, Some("none")),
        "{m}"
    );
    assert!(
        hq.next(Duration::from_millis(500)).await.is_none(),
        "HQ was asked about an ID card with nothing to ask by"
    );
    let r = d
        .http
        .get(d.url(&format!(
            "/v1/members/lookup?card_type=idcard&card={ID_NUMBER}"
        )))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|e| e.contains("members.id_key")),
        "{body}"
    );
    close(ws).await;
    d.stop().await;
}

/// `identify` unset: readers identify when there is someone to ask — HQ, or
/// a cache holding members — and stay silent otherwise.
#[tokio::test]
async fn readers_identify_by_default_only_when_there_is_someone_to_ask() {
    // No [uplink], an empty cache: a tap is only a tap.
    let mut d = Daemon::start(&id_reader_config(None, "")).await;
    d.http = client_with(ADMIN);
    let mut ws = d
        .ws(&format!(
            "/v1/events?types=card.tapped,member.identified&token={ADMIN}"
        ))
        .await;
    d.simulate("rfid-1", "0012345678").await;
    next_of_type(&mut ws, "card.tapped").await;
    assert_quiet(&mut ws, Duration::from_millis(400)).await;
    close(ws).await;
    d.stop().await;
    // No [uplink], but a cache an earlier run filled: the tap finds its member.
    let state = tempfile::tempdir().expect("state");
    posbridge::uplink::members::Members::open(state.path(), None)
        .and_then(|m| {
            m.upsert(&[json!({"id": "m-rf", "name": "李雷",
                "cards": [{"type": "rfid", "value": "0012345678"}]})])
        })
        .expect("a cache");
    let mut d = Daemon::start_in(&id_reader_config(None, ""), state).await;
    d.http = client_with(ADMIN);
    let mut ws = d
        .ws(&format!(
            "/v1/events?types=card.tapped,member.identified&token={ADMIN}"
        ))
        .await;
    d.simulate("rfid-1", "0012345678").await;
    let (_, m) = identified(&mut ws, "card.tapped").await;
    assert_eq!(
        (m["member"]["id"].as_str(), m["source"].as_str()),
        (Some("m-rf"), Some("cache")),
        "{m}"
    );
    close(ws).await;
    d.stop().await;
}

#[test]
fn identify_and_the_id_key_are_checked_with_their_keys() {
    let cases = [
        (
            "[members]\nid_key = \"short\"\n",
            "members.id_key: must be at least 16 characters",
        ),
        (
            "[[device]]\nid = \"p\"\ndriver = \"escpos\"\ntransport = \"file\"\npath = \"/tmp/p.bin\"\nidentify = true\n",
            "device[0].identify: only card readers and scanners identify members",
        ),
    ];
    for (extra, want) in cases {
        let text = format!("[store]\nid = \"s\"\n{extra}");
        let err = posbridge::Config::parse(&text, std::iter::empty(), "t")
            .expect_err(extra)
            .to_string();
        assert!(err.contains(want), "{extra}: {err}");
    }
    let ok = "[store]\nid = \"s\"\n[members]\nid_key = \"0123456789abcdef0123\"\n[[device]]\nid = \"c\"\ndriver = \"barcode\"\ntransport = \"sim\"\nidentify = false\n";
    let c = posbridge::Config::parse(ok, std::iter::empty(), "t").expect("loads");
    let shown = posbridge::cli::effective_toml(&c).expect("toml");
    assert!(
        !shown.contains("0123456789abcdef0123"),
        "the key is redacted: {shown}"
    );
}
