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

    // An ID card is asked for by its HMAC, never its number.
    let lookup = d
        .get_json(&format!(
            "/v1/members/lookup?card_type=idcard&card={ID_NUMBER}"
        ))
        .await;
    assert_eq!(lookup["member"]["id"], "m-id", "{lookup}");
    assert_eq!(lookup["source"], "cache");

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
