//! Second-generation ID-card readers end to end: the test plays the reader on
//! the far side of a pty (the drivers crate's `ReaderSim` answering the SAM
//! frames like hardware), and real WebSocket and HTTP clients read the result.

use crate::common::*;
use posbridge_drivers::idcard::{decode_text, encode_text, ReaderSim, TextLayout, PHOTO_LEN};
use posbridge_drivers::{IdCard, IdCardType};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HOTEL: &str = "hotel-token-0123456789";
const DESK: &str = "desk-token-0123456789";

/// The reader: a thread answering whatever the daemon writes on the pty.
struct Reader {
    sim: Arc<Mutex<ReaderSim>>,
    _dev: FakeSerial,
}

impl Reader {
    fn plug(link: &std::path::Path) -> Reader {
        let dev = plug(link);
        let sim = Arc::new(Mutex::new(ReaderSim::new()));
        let mut rx = dev.master.try_clone().expect("clone master");
        let mut tx = dev.master.try_clone().expect("clone master");
        let s = sim.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = rx.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let answer = s
                    .lock()
                    .map(|mut r| r.handle_bytes(&buf[..n]))
                    .unwrap_or_default();
                if !answer.is_empty() && tx.write_all(&answer).is_err() {
                    break;
                }
            }
        });
        Reader { sim, _dev: dev }
    }

    fn with<T>(&self, f: impl FnOnce(&mut ReaderSim) -> T) -> T {
        f(&mut self.sim.lock().expect("sim lock"))
    }
}

fn config(link: &std::path::Path) -> String {
    format!(
        r#"[store]
id = "hotel-1"
[[api.tokens]]
name = "hotel"
token = "{HOTEL}"
scopes = ["events", "idcard", "admin"]
[[api.tokens]]
name = "desk"
token = "{DESK}"
scopes = ["events"]
[[device]]
id = "id-1"
driver = "idcard-sam"
transport = "serial"
path = "{}"
poll_ms = 100
"#,
        link.display()
    )
}

fn photo() -> Vec<u8> {
    (0..PHOTO_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

fn card(layout: TextLayout) -> IdCard {
    let (card_type, name, id_number, nation) = match layout {
        TextLayout::Resident => (IdCardType::Resident, "李四", "44030419851204201X", "汉"),
        TextLayout::GatResidence => (IdCardType::GatResidence, "陈大文", "810000199905050016", ""),
        TextLayout::ForeignOld => (
            IdCardType::ForeignPermanent,
            "史密斯",
            "USA110086040101",
            "USA",
        ),
        TextLayout::Foreign2023 => (
            IdCardType::ForeignPermanent,
            "玛丽",
            "911156199001010014",
            "GBR",
        ),
    };
    let mut c = IdCard {
        card_type,
        name: name.into(),
        gender: "女".into(),
        nation: nation.into(),
        birth: "1985-12-04".into(),
        address: "广东省深圳市福田区深南大道1号".into(),
        id_number: id_number.into(),
        authority: "深圳市公安局福田分局".into(),
        valid_from: "2015-06-01".into(),
        valid_to: "2035-06-01".into(),
        ..IdCard::default()
    };
    if !matches!(layout, TextLayout::Resident | TextLayout::GatResidence) {
        c.extra.insert("english_name".into(), "SMITH JOHN".into());
        c.extra.insert("nationality".into(), nation.into());
    }
    c
}

async fn ws_token(d: &Daemon, token: &str) -> Ws {
    d.ws(&format!("/v1/events?types=idcard.read&token={token}"))
        .await
}

#[tokio::test]
async fn every_card_type_reaches_clients_full_with_idcard_scope_and_masked_without() {
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyID");
    let reader = Reader::plug(&link);
    let d = Daemon::start(&config(&link)).await;
    let mut hotel = ws_token(&d, HOTEL).await;
    let mut desk = ws_token(&d, DESK).await;
    for layout in [
        TextLayout::Resident,
        TextLayout::GatResidence,
        TextLayout::ForeignOld,
        TextLayout::Foreign2023,
    ] {
        let c = card(layout);
        // What the card says, as the decoder reads it back from the text block.
        let want = decode_text(&encode_text(&c, layout)).expect("decodes");
        reader.with(|r| r.place_card(&c, layout, &photo()));
        let full = next_event(&mut hotel).await;
        let masked = next_event(&mut desk).await;
        assert_eq!(full["id"], masked["id"], "{layout:?}: the same event");
        let f = &full["data"];
        assert_eq!(f["id_number"], want.id_number.as_str(), "{layout:?}");
        assert_eq!(f["name"], want.name.as_str(), "{layout:?}");
        assert_eq!(
            f["card_type"],
            serde_json::to_value(want.card_type).expect("type"),
            "{layout:?}"
        );
        assert_eq!(f["address"], want.address.as_str(), "{layout:?}");
        assert_eq!(f["valid_to"], "2035-06-01");
        let b64 = f["photo_wlt"].as_str().expect("photo for the idcard scope");
        assert_eq!(
            b64.len(),
            PHOTO_LEN.div_ceil(3) * 4,
            "base64 of the raw 1024 bytes"
        );
        let m = &masked["data"];
        let id: Vec<char> = want.id_number.chars().collect();
        // No birth digit shows, nor the check digit computed from them: 18
        // characters keep the region (6) and the sequence (3); the old
        // 15-character foreigner number (birth at 8–13) keeps 3 + 2.
        let keep = |i: usize| match id.len() {
            15 => !(3..13).contains(&i),
            _ => i < 6 || (14..17).contains(&i),
        };
        let expect_masked: String = id
            .iter()
            .enumerate()
            .map(|(i, ch)| if keep(i) { *ch } else { '*' })
            .collect();
        assert_eq!(m["id_number"], expect_masked.as_str(), "{layout:?}");
        assert_eq!(m["birth"], "****-**-**", "{layout:?}");
        assert_eq!(m["valid_from"], "****-**-**", "{layout:?}");
        assert_eq!(m["valid_to"], "2035-06-01", "{layout:?}");
        assert_eq!(f["birth"], want.birth.as_str(), "{layout:?}");
        assert_eq!(
            m["address"],
            want.address.chars().take(6).collect::<String>().as_str()
        );
        assert!(
            m.get("photo_wlt").is_none(),
            "no photo without the idcard scope"
        );
        assert!(
            !masked.to_string().contains(&want.id_number),
            "{layout:?}: full number leaked"
        );
        reader.with(|r| r.lift());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Long-poll is masked the same way.
    let poll = d
        .http
        .get(d.url("/v1/events/poll?since=0&types=idcard.read&timeout_ms=10"))
        .bearer_auth(DESK)
        .send()
        .await
        .expect("poll")
        .text()
        .await
        .expect("body");
    assert_eq!(poll.matches("idcard.read").count(), 4, "{poll}");
    assert!(
        !poll.contains("44030419851204201X") && !poll.contains("photo_wlt"),
        "{poll}"
    );
    let poll = d
        .http
        .get(d.url("/v1/events/poll?since=0&types=idcard.read&timeout_ms=10"))
        .bearer_auth(HOTEL)
        .send()
        .await
        .expect("poll")
        .text()
        .await
        .expect("body");
    assert!(poll.contains("44030419851204201X") && poll.contains("photo_wlt"));
    d.stop().await;
}

#[tokio::test]
async fn one_event_per_placement_and_read_forces_a_fresh_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyID");
    let reader = Reader::plug(&link);
    let d = Daemon::start(&config(&link)).await;
    let mut ws = ws_token(&d, DESK).await;
    let c = card(TextLayout::Resident);
    reader.with(|r| r.place_card(&c, TextLayout::Resident, &photo()));
    next_event(&mut ws).await;
    // Resting on the reader through many polls: no repeats.
    assert_quiet(&mut ws, Duration::from_millis(800)).await;
    // Lifted and placed again: a new event.
    reader.with(|r| r.lift());
    tokio::time::sleep(Duration::from_millis(300)).await;
    reader.with(|r| r.place_card(&c, TextLayout::Resident, &photo()));
    next_event(&mut ws).await;
    assert_quiet(&mut ws, Duration::from_millis(500)).await;
    // POST read: a fresh read of the card still lying there.
    let r = d
        .http
        .post(d.url("/v1/devices/id-1/read"))
        .bearer_auth(HOTEL)
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), 202);
    assert_eq!(next_event(&mut ws).await["type"], "idcard.read");
    d.stop().await;
}

#[tokio::test]
async fn a_silent_reader_becomes_an_error_and_recovers() {
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyID");
    let reader = Reader::plug(&link);
    let d = Daemon::start(&config(&link)).await;
    let mut ws = d
        .ws(&format!("/v1/events?since=0&types=device.*&token={DESK}"))
        .await;
    next_of_type(&mut ws, "device.attached").await;
    reader.with(|r| r.set_silent(true));
    let err = next_of_type(&mut ws, "device.error").await;
    assert!(
        err["data"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("not answering"),
        "{err}"
    );
    let devs = d.get_json_as("/v1/devices", DESK).await;
    assert_eq!(devs[0]["state"], "error");
    reader.with(|r| r.set_silent(false));
    next_of_type(&mut ws, "device.attached").await;
    let devs = d.get_json_as("/v1/devices", DESK).await;
    assert_eq!(devs[0]["state"], "connected");
    // And it reads again.
    let mut cards = ws_token(&d, DESK).await;
    reader.with(|r| r.place_card(&card(TextLayout::Resident), TextLayout::Resident, &photo()));
    next_event(&mut cards).await;
    d.stop().await;
}

#[tokio::test]
async fn a_sam_fault_is_reported_with_its_meaning() {
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyID");
    let reader = Reader::plug(&link);
    reader.with(|r| r.set_sam_error(Some(0x60)));
    let d = Daemon::start(&config(&link)).await;
    let mut ws = d
        .ws(&format!(
            "/v1/events?since=0&types=device.error&token={DESK}"
        ))
        .await;
    let err = next_event(&mut ws).await;
    assert!(
        err["data"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("self-test"),
        "{err}"
    );
    d.stop().await;
}

#[tokio::test]
async fn no_full_id_number_or_address_in_the_logs_even_at_trace_level() {
    use std::process::Command;
    const BIN: &str = env!("CARGO_BIN_EXE_posbridge");
    let dir = tempfile::tempdir().expect("tmp");
    let daemon = Binary::start(
        &dir.path().join("state"),
        "[[device]]\nid = \"id-1\"\ndriver = \"idcard-sam\"\ntransport = \"sim\"\npoll_ms = 100\n",
        &[("RUST_LOG", "trace")],
    )
    .await;
    let url = daemon.url.clone();
    let http = reqwest::Client::new();
    let out = Command::new(BIN)
        .args(["simulate", "id-1", "place", "--url", &url])
        .output()
        .expect("simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let poll = http
        .get(format!(
            "{url}/v1/events/poll?types=idcard.read&since=0&timeout_ms=5000"
        ))
        .send()
        .await
        .expect("poll")
        .text()
        .await
        .expect("body");
    assert!(poll.contains("idcard.read"), "{poll}");
    let log = daemon.stop_and_log();
    assert!(log.contains("posbridge stopped"), "{log}");
    // The demo card's number and address (transport/sim.rs).
    for secret in ["110101199001011237", "示例路"] {
        assert!(!log.contains(secret), "{secret:?} reached the log");
    }
}
