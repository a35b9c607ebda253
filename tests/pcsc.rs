//! PC/SC end to end: a real pcscd with the vsmartcard vpcd reader, and cards
//! written here that connect to vpcd like a card entering the field
//! (TESTING.md). One pcscd serves the machine, so the scenarios run in order
//! inside one test.

mod common;

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// vpcd's two readers and the ports their cards connect to.
const VPCD: &str = "127.0.0.1:35963";
const VPCD_2: &str = "127.0.0.1:35964";
const READER: &str = "Virtual PCD 00 00";
const READER_2: &str = "Virtual PCD 00 01";
const KEY: [u8; 6] = [0xFF; 6];

/// A contactless card as vpcd sees it: 2-byte big-endian length, then bytes.
#[derive(Clone)]
struct CardSpec {
    atr: Vec<u8>,
    uid: Vec<u8>,
    /// Key A of every sector; None for cards without sectors (Ultralight).
    key_a: Option<[u8; 6]>,
}

fn classic_1k(uid: &[u8], key_a: [u8; 6]) -> CardSpec {
    CardSpec {
        atr: hex::decode("3B8F8001804F0CA000000306030001000000006A").expect("atr"),
        uid: uid.to_vec(),
        key_a: Some(key_a),
    }
}

fn ultralight(uid: &[u8]) -> CardSpec {
    // NN NN = 0003 (Ultralight); TCK recomputed.
    let mut atr = hex::decode("3B8F8001804F0CA00000030603000300000000").expect("atr");
    let tck = atr[1..].iter().fold(0u8, |a, b| a ^ b);
    atr.push(tck);
    CardSpec {
        atr,
        uid: uid.to_vec(),
        key_a: None,
    }
}

/// Block contents: the block number repeated, so reads are checkable.
fn block_data(block: u8) -> Vec<u8> {
    vec![block; 16]
}

struct Tap {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tap {
    /// Puts the card in the field: connects to vpcd and answers until removed.
    fn new(card: CardSpec) -> Tap {
        Self::on(VPCD, card)
    }

    /// The same, on the reader whose cards connect to `addr`.
    fn on(addr: &str, card: CardSpec) -> Tap {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("vpcd not reachable at {addr}: {e}"),
            }
        };
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut authed: Option<u8> = None;
            let mut keys = [[0u8; 6]; 2];
            while !st.load(Ordering::Relaxed) {
                let mut len = [0u8; 2];
                match s.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue
                    }
                    Err(_) => return,
                }
                let n = u16::from_be_bytes(len) as usize;
                let mut msg = vec![0u8; n];
                s.set_read_timeout(None).expect("timeout");
                if s.read_exact(&mut msg).is_err() {
                    return;
                }
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("timeout");
                let answer: Option<Vec<u8>> = match msg.as_slice() {
                    [0x04] => Some(card.atr.clone()),
                    [_] => None, // power on/off, reset: no answer
                    [0xFF, 0xCA, 0x00, 0x00, ..] => {
                        Some([card.uid.clone(), vec![0x90, 0x00]].concat())
                    }
                    [0xFF, 0x82, 0x00, slot, 0x06, key @ ..] if key.len() == 6 => {
                        keys[(*slot as usize) % 2].copy_from_slice(key);
                        Some(vec![0x90, 0x00])
                    }
                    [0xFF, 0x86, 0x00, 0x00, 0x05, 0x01, 0x00, block, 0x60, slot] => {
                        match card.key_a {
                            Some(k) if keys[(*slot as usize) % 2] == k => {
                                authed = Some(block / 4);
                                Some(vec![0x90, 0x00])
                            }
                            Some(_) => Some(vec![0x63, 0x00]),
                            None => Some(vec![0x6A, 0x81]),
                        }
                    }
                    [0xFF, 0xB0, 0x00, block, 0x10] => {
                        if card.key_a.is_none() || authed == Some(block / 4) {
                            Some([block_data(*block), vec![0x90, 0x00]].concat())
                        } else {
                            Some(vec![0x69, 0x82])
                        }
                    }
                    _ => Some(vec![0x6A, 0x81]),
                };
                if let Some(a) = answer {
                    let mut out = (a.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&a);
                    if s.write_all(&out).is_err() {
                        return;
                    }
                }
            }
        });
        Tap {
            stop,
            thread: Some(thread),
        }
    }

    /// Takes the card out of the field.
    fn remove(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pcscd_bin() -> &'static str {
    if std::path::Path::new("/usr/sbin/pcscd").exists() {
        "/usr/sbin/pcscd"
    } else {
        "pcscd"
    }
}

/// Stops every pcscd on the machine and waits until they are gone. A pcscd
/// takes about two seconds to exit on SIGTERM (it waits for its reader
/// threads), and a new one started before then refuses to run ("Another
/// pcscd seems to be running"): the packaged one, started by its init script
/// when CI installed it, is still running when this test begins.
fn stop_every_pcscd() {
    let _ = Command::new("pkill").args(["-x", "pcscd"]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pcscd_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if pcscd_running() {
        let _ = Command::new("pkill")
            .args(["-KILL", "-x", "pcscd"])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pcscd_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // With none running, files a killed one left would make the next refuse
    // to start if its old pid now belongs to another process.
    if !pcscd_running() {
        for f in ["/run/pcscd/pcscd.comm", "/run/pcscd/pcscd.pid"] {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Whether a live pcscd runs. A zombie does not count: in a container whose
/// first process does not reap, the packaged pcscd stays one after it exits.
fn pcscd_running() -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // "<pid> (<comm>) <state> ..."
        stat.split_once(" (pcscd) ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// Starts a pcscd of our own (there is one per machine) and waits until vpcd
/// listens. pcscd's own output goes to a file, quoted if it does not come up.
fn start_pcscd() -> Child {
    let log_path = std::env::temp_dir().join(format!("posbridge-pcscd-{}.log", std::process::id()));
    let mut why = String::new();
    for _ in 0..3 {
        stop_every_pcscd();
        let log = std::fs::File::create(&log_path).expect("pcscd log file");
        let mut child = Command::new(pcscd_bin())
            .args(["--foreground"])
            .stdout(log.try_clone().expect("pcscd log file"))
            .stderr(log)
            .spawn()
            .expect("pcscd is installed (scripts/install-test-deps.sh)");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // The second reader's port: a probe there is no card the test waits for.
            if TcpStream::connect(VPCD_2).is_ok() {
                let _ = std::fs::remove_file(&log_path);
                return child;
            }
            if let Ok(Some(status)) = child.try_wait() {
                why = format!("pcscd exited ({status})");
                break;
            }
            if Instant::now() > deadline {
                why = "vpcd did not listen within 15 s".to_owned();
                stop_pcscd(child);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = std::fs::read_to_string(&log_path).unwrap_or_default();
        why = format!("{why}; pcscd said:\n{out}");
    }
    panic!("pcscd did not load vpcd: {why}");
}

fn stop_pcscd(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn taps_removals_block_reads_and_a_pcscd_restart() {
    let pcscd = start_pcscd();
    // HQ, to push the member whose card is tapped below.
    let broker = common::mqtt::Broker::start();
    let hq = common::mqtt::Hq::connect(broker.port, "hq-pcsc", &[]).await;
    let cfg = format!(
        "[store]\nid = \"s\"\n[uplink]\nurl = \"{}\"\nclient_id = \"pcsc-test\"\n[[device]]\nid = \"ic-1\"\ndriver = \"pcsc\"\nreader = \"Virtual PCD\"\nblocks = [4, 5, 8]\nkey = \"FFFFFFFFFFFF\"\n",
        broker.url()
    );
    let d = Daemon::start(&cfg).await;
    d.uplink_connected().await;
    let member = serde_json::json!({"op": "upsert", "members": [
        {"id": "m-ic", "name": "会员卡", "cards": [{"type": "rfid", "value": "04a1b2c3"}]}]});
    hq.publish("posbridge/s/members", member).await;
    let deadline = Instant::now() + WAIT;
    while d
        .get_json("/v1/members/lookup?card_type=rfid&card=04A1B2C3")
        .await["source"]
        != "cache"
    {
        assert!(
            Instant::now() < deadline,
            "the member never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = d
        .ws("/v1/events?since=0&types=card.*,device.*,member.identified")
        .await;
    next_of_type(&mut ws, "device.attached").await;

    // Tap a MIFARE Classic 1K: UID, ATR, type, reader and the configured blocks.
    let tap = Tap::new(classic_1k(&[0x04, 0xA1, 0xB2, 0xC3], KEY));
    let ev = next_of_type(&mut ws, "card.tapped").await;
    let data = &ev["data"];
    assert_eq!(data["uid"], "04A1B2C3");
    assert_eq!(data["atr"], "3B8F8001804F0CA000000306030001000000006A");
    assert_eq!(data["card_type"], "mifare_classic_1k");
    assert_eq!(data["reader"], READER);
    assert_eq!(data["blocks"]["4"], "04".repeat(16));
    assert_eq!(data["blocks"]["5"], "05".repeat(16));
    assert_eq!(data["blocks"]["8"], "08".repeat(16));
    // The tap identifies the member HQ pushed with this card.
    let who = next_of_type(&mut ws, "member.identified").await;
    assert_eq!(who["data"]["event_id"], ev["id"], "{who}");
    assert_eq!(
        (
            who["data"]["via"].as_str(),
            who["data"]["member"]["id"].as_str(),
            who["data"]["source"].as_str()
        ),
        (Some("rfid"), Some("m-ic"), Some("cache")),
        "{who}"
    );
    // One event per tap, even while the card stays.
    assert_quiet(&mut ws, Duration::from_millis(700)).await;
    // A forced re-read.
    let r = d
        .http
        .post(d.url("/v1/devices/ic-1/read"))
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), 202);
    assert_eq!(
        next_of_type(&mut ws, "card.tapped").await["data"]["uid"],
        "04A1B2C3"
    );
    // Removal, then a re-tap.
    tap.remove();
    let ev = next_of_type(&mut ws, "card.removed").await;
    assert_eq!(
        (ev["data"]["uid"].as_str(), ev["data"]["reader"].as_str()),
        (Some("04A1B2C3"), Some(READER))
    );
    let tap = Tap::new(classic_1k(&[0x04, 0xA1, 0xB2, 0xC3], KEY));
    assert_eq!(
        next_of_type(&mut ws, "card.tapped").await["data"]["uid"],
        "04A1B2C3"
    );
    tap.remove();
    next_of_type(&mut ws, "card.removed").await;

    // A second card type.
    let tap = Tap::new(ultralight(&[0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66]));
    let ev = next_of_type(&mut ws, "card.tapped").await;
    assert_eq!(ev["data"]["card_type"], "mifare_ultralight");
    assert_eq!(ev["data"]["uid"], "04112233445566");
    tap.remove();
    next_of_type(&mut ws, "card.removed").await;

    // Two readers at once: each tap names its reader.
    let a = Tap::on(VPCD, classic_1k(&[0x01, 0x01, 0x01, 0x01], KEY));
    let b = Tap::on(VPCD_2, classic_1k(&[0x02, 0x02, 0x02, 0x02], KEY));
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 2 {
        let ev = next_of_type(&mut ws, "card.tapped").await;
        seen.insert(
            ev["data"]["uid"].as_str().unwrap_or("").to_owned(),
            ev["data"]["reader"].as_str().unwrap_or("").to_owned(),
        );
    }
    assert_eq!(seen.get("01010101").map(String::as_str), Some(READER));
    assert_eq!(seen.get("02020202").map(String::as_str), Some(READER_2));
    a.remove();
    b.remove();
    for _ in 0..2 {
        next_of_type(&mut ws, "card.removed").await;
    }

    // The wrong key: the tap is reported with a clear read error, no blocks, no crash.
    let tap = Tap::new(classic_1k(&[0x0B, 0x0A, 0x0D, 0x01], [0x12; 6]));
    let ev = next_of_type(&mut ws, "card.tapped").await;
    assert_eq!(ev["data"]["uid"], "0B0A0D01");
    assert!(ev["data"].get("blocks").is_none(), "{ev}");
    let why = ev["data"]["read_error"].as_str().unwrap_or("");
    assert!(
        why.contains("block 4") && why.contains("authentication failed"),
        "{ev}"
    );
    tap.remove();
    next_of_type(&mut ws, "card.removed").await;

    // pcscd stops: the device says so; it comes back when pcscd does.
    stop_pcscd(pcscd);
    let ev = next_of_type(&mut ws, "device.detached").await;
    assert!(
        ev["data"]["error"].as_str().unwrap_or("").contains("pcscd"),
        "{ev}"
    );
    let ev = next_of_type(&mut ws, "device.error").await;
    assert!(
        ev["data"]["error"].as_str().unwrap_or("").contains("pcscd"),
        "{ev}"
    );
    let pcscd = start_pcscd();
    next_of_type(&mut ws, "device.attached").await;
    let tap = Tap::new(classic_1k(&[0x04, 0x99, 0x88, 0x77], KEY));
    assert_eq!(
        next_of_type(&mut ws, "card.tapped").await["data"]["uid"],
        "04998877"
    );
    tap.remove();
    d.stop().await;
    stop_pcscd(pcscd);
}
