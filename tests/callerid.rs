//! Caller ID end to end: a box played on a real pty (modem text and Bellcore
//! FSK frames), members pushed by HQ over a real mosquitto, lookups HQ
//! answers or ignores, the call log, and the popup event.

use crate::common::mqtt::{Broker, Hq};
use crate::common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

const PREFIX: &str = "posbridge/store-test";

fn config(link: &std::path::Path, uplink: Option<&str>, extra: &str) -> String {
    let uplink = uplink
        .map(|url| {
            format!(
                "[uplink]\nurl = \"{url}\"\nclient_id = \"cid-{}\"\nlookup_timeout_ms = 400\n",
                ulid::Ulid::new()
            )
        })
        .unwrap_or_default();
    format!(
        "[store]\nid = \"store-test\"\n{uplink}[[device]]\nid = \"phone-1\"\ndriver = \"callerid\"\ntransport = \"serial\"\npath = \"{}\"\nring_timeout_ms = 1500\n{extra}",
        link.display()
    )
}

/// A Bellcore MDMF message: type 0x80, parameters, checksum (sum ≡ 0 mod 256).
fn mdmf(date: &str, number: &str, name: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in [(1u8, date), (2, number), (7, name)] {
        body.push(t);
        body.push(v.len() as u8);
        body.extend_from_slice(v.as_bytes());
    }
    let mut m = vec![0x80, body.len() as u8];
    m.extend(body);
    let sum = m.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    m.push(0u8.wrapping_sub(sum));
    m
}

#[tokio::test]
async fn a_modem_box_call_pops_the_member_hq_pushed_and_lands_in_the_call_log() {
    let broker = Broker::start();
    let hq = Hq::connect(broker.port, "hq-cid-1", &[]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyCid");
    let mut dev = plug(&link);
    let d = Daemon::start(&config(&link, Some(&broker.url()), "")).await;
    d.uplink_connected().await;
    hq.publish(
        &format!("{PREFIX}/members"),
        json!({"op": "upsert", "members": [{"id": "m-7", "name": "王芳", "tier": "金卡", "points": 1280, "balance_fen": 35000, "phones": ["138-1234-5678"]}]}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while d.get_json("/v1/members/lookup?phone=13812345678").await["source"] != "cache" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "member never cached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = d
        .ws("/v1/events?types=call.*,device.attached&since=0")
        .await;
    next_of_type(&mut ws, "device.attached").await;

    // The driver asks the modem for caller ID.
    let mut init = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&init).contains("AT+VCID=1\r") {
        let n = dev.master.read(&mut buf).expect("read init");
        init.extend_from_slice(&buf[..n]);
    }
    dev.master.write_all(b"OK\r\n").expect("write");

    // One call: RING, the CID block, two more RINGs — one ringing, one popup.
    dev.master
        .write_all(b"RING\r\n\r\nDATE = 1124\r\nTIME = 1015\r\nNMBR = 13812345678\r\nNAME = WANG FANG\r\n\r\n")
        .expect("write");
    let ringing = next_of_type(&mut ws, "call.ringing").await;
    let r = &ringing["data"];
    assert_eq!(r["number"], "13812345678");
    assert_eq!(r["normalized"], "+8613812345678");
    assert_eq!(r["name"], "WANG FANG");
    assert!(
        r["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{ringing}"
    );
    let popup = next_of_type(&mut ws, "call.popup").await;
    let p = &popup["data"];
    assert_eq!(p["call_id"], r["call_id"]);
    assert_eq!(p["source"], "cache");
    assert_eq!(p["member"]["name"], "王芳");
    assert_eq!(p["member"]["points"], 1280);
    assert!(p["took_ms"].as_u64().is_some());
    assert_eq!(popup["device"], "phone-1");
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        dev.master.write_all(b"RING\r\n").expect("write");
    }
    // Rings stop: the call ends (a modem cannot tell answered from missed).
    let ended = next_of_type(&mut ws, "call.ended").await;
    assert_eq!(ended["data"]["call_id"], r["call_id"]);
    assert!(ended["data"]["answered"].is_null());
    let again: Vec<Value> = {
        let mut v = Vec::new();
        while let Ok(Some(Ok(m))) = tokio::time::timeout(
            Duration::from_millis(300),
            futures_util::StreamExt::next(&mut ws),
        )
        .await
        {
            v.push(serde_json::from_str(m.to_text().unwrap_or("{}")).unwrap_or(Value::Null));
        }
        v
    };
    assert!(
        again.iter().all(|e| e["type"] != "call.ringing"),
        "one ringing per call, not per RING: {again:?}"
    );

    let log = d.get_json("/v1/calls?missed=true").await;
    assert_eq!(log[0]["call_id"], r["call_id"]);
    assert_eq!(log[0]["number"], "13812345678");
    assert_eq!(log[0]["ended"], true);
    assert_eq!(log[0]["missed"], true);
    assert_eq!(log[0]["member"]["name"], "王芳");
    assert_eq!(log[0]["source"], "cache");
}

#[tokio::test]
async fn an_fsk_frame_is_looked_up_at_hq_and_an_hq_that_never_answers_gives_none() {
    let broker = Broker::start();
    let mut hq = Hq::connect(
        broker.port,
        "hq-cid-2",
        &[&format!("{PREFIX}/lookup/request")],
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyFsk");
    let mut dev = plug(&link);
    let d = Daemon::start(&config(&link, Some(&broker.url()), "format = \"mdmf\"\n")).await;
    d.uplink_connected().await;
    let mut ws = d.ws("/v1/events?types=call.*").await;

    // Channel seizure and marks before the message, as demodulating boxes forward them.
    let mut bytes = vec![0x55; 12];
    bytes.extend(mdmf("11241015", "13912345678", "LI LEI"));
    dev.master.write_all(&bytes).expect("write");
    let ringing = next_of_type(&mut ws, "call.ringing").await;
    assert_eq!(ringing["data"]["number"], "13912345678");
    assert_eq!(ringing["data"]["name"], "LI LEI");
    assert_eq!(ringing["data"]["box_time"], "11-24 10:15");

    let req = hq.next(WAIT).await.expect("lookup request at HQ");
    let q: Value = serde_json::from_slice(&req.payload).expect("json");
    assert!(
        q["phone"] == "+8613912345678" || q["phone"] == "13912345678",
        "{q}"
    );
    hq.publish(
        &format!("{PREFIX}/lookup/response"),
        json!({"corr": q["corr"], "member": {"id": "m-9", "name": "李雷", "tier": "银卡"}}),
    )
    .await;
    let popup = next_of_type(&mut ws, "call.popup").await;
    assert_eq!(popup["data"]["source"], "hq");
    assert_eq!(popup["data"]["member"]["name"], "李雷");
    next_of_type(&mut ws, "call.ended").await;

    // A frame with a broken checksum is reported, not announced.
    let mut bad = mdmf("11241016", "13700000000", "X");
    if let Some(last) = bad.last_mut() {
        *last = last.wrapping_add(1);
    }
    dev.master.write_all(&bad).expect("write");
    // Then a caller HQ does not know and never answers for.
    tokio::time::sleep(Duration::from_millis(200)).await;
    dev.master
        .write_all(&mdmf("11241017", "02012345678", "GUEST"))
        .expect("write");
    let ringing = next_of_type(&mut ws, "call.ringing").await;
    assert_eq!(
        ringing["data"]["number"], "02012345678",
        "the bad frame made no call"
    );
    assert_eq!(ringing["data"]["normalized"], "+862012345678");
    let popup = next_of_type(&mut ws, "call.popup").await;
    assert_eq!(popup["data"]["source"], "none");
    assert!(popup["data"]["member"].is_null());
    assert!(popup["data"]["took_ms"].as_u64() >= Some(400), "{popup}");
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("posbridge_member_lookups_timed_out_total 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("posbridge_malformed_input_total 0"),
        "the bad frame was counted"
    );
}

#[tokio::test]
async fn withheld_numbers_and_no_hq_pop_at_once_with_no_member() {
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyPriv");
    let mut dev = plug(&link);
    let d = Daemon::start(&config(&link, None, "format = \"modem\"\n")).await;
    let mut ws = d.ws("/v1/events?types=call.*").await;
    dev.master
        .write_all(b"RING\r\nDATE = 1124\r\nTIME = 1020\r\nNMBR = P\r\n\r\n")
        .expect("write");
    let ringing = next_of_type(&mut ws, "call.ringing").await;
    assert_eq!(ringing["data"]["number"], "private");
    assert!(ringing["data"].get("normalized").is_none());
    let popup = next_of_type(&mut ws, "call.popup").await;
    assert_eq!(popup["data"]["source"], "none");
    assert!(popup["data"]["took_ms"].as_u64() < Some(100));
    next_of_type(&mut ws, "call.ended").await;

    // No [uplink]: a real number is looked up in the cache only.
    dev.master
        .write_all(b"RING\r\nDATE = 1124\r\nTIME = 1021\r\nNMBR = 075512345678\r\n\r\n")
        .expect("write");
    let ringing = next_of_type(&mut ws, "call.ringing").await;
    assert_eq!(ringing["data"]["normalized"], "+8675512345678");
    let popup = next_of_type(&mut ws, "call.popup").await;
    assert_eq!(popup["data"]["source"], "none");
    let calls = d.get_json("/v1/calls").await;
    assert_eq!(calls.as_array().map(Vec::len), Some(2));
    assert_eq!(calls[0]["number"], "075512345678", "newest first");
    assert_eq!(calls[1]["number"], "private");
}

#[tokio::test]
async fn an_ncid_server_over_tcp_is_a_caller_id_source_and_its_end_line_ends_the_call() {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    let cfg = format!(
        "[store]\nid = \"store-test\"\n[[device]]\nid = \"ncid-1\"\ndriver = \"callerid\"\ntransport = \"tcp\"\naddress = \"{addr}\"\nformat = \"ncid\"\n"
    );
    let d = Daemon::start(&cfg).await;
    let mut ws = d.ws("/v1/events?types=call.*").await;
    let (mut sock, _) = tokio::time::timeout(WAIT, server.accept())
        .await
        .expect("the daemon connects")
        .expect("accept");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    sock.write_all(b"200 NCID Server: ncidd (NCID) 1.11\r\n300 End of connection startup\r\n")
        .await
        .expect("write");
    sock.write_all(
        b"CID: *DATE*11242026*TIME*1015*LINE*2*NMBR*13812345678*MESG*NONE*NAME*WANG*\r\n",
    )
    .await
    .expect("write");
    let ringing = next_of_type(&mut ws, "call.ringing").await;
    assert_eq!(ringing["data"]["number"], "13812345678");
    assert_eq!(ringing["data"]["line"], "2");
    next_of_type(&mut ws, "call.popup").await;
    // NCID says the caller hung up before anyone answered.
    sock.write_all(b"CIDINFO: *LINE*2*RING*-1*TIME*10:15:30*\r\n")
        .await
        .expect("write");
    let ended = next_of_type(&mut ws, "call.ended").await;
    assert_eq!(ended["data"]["answered"], false);
    let missed = d.get_json("/v1/calls?missed=true").await;
    assert_eq!(missed[0]["answered"], false);
    // No modem init was sent to the server.
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_millis(200), sock.read(&mut buf)).await;
    assert!(
        !matches!(got, Ok(Ok(n)) if n > 0),
        "nothing written to an NCID server"
    );
}

#[tokio::test]
async fn a_usb_box_is_decoded_with_the_report_layout_from_the_config() {
    let cfg = "[store]\nid = \"store-test\"\n[[device]]\nid = \"usb-phone\"\ndriver = \"callerid\"\ntransport = \"sim\"\nformat = \"hid\"\n[device.hid_layout]\nmodel = \"test-box\"\nreport_len = 16\nreport_id = 1\nring = { byte = 1, mask = 1 }\noff_hook = { byte = 1, mask = 2 }\nhang_up = { byte = 1, mask = 4 }\nnumber = { offset = 3, length_at = 2, max_digits = 13 }\n";
    let d = Daemon::start(cfg).await;
    let mut ws = d.ws("/v1/events?types=call.*").await;
    let report = |flags: u8, number: &str| {
        let mut r = vec![1u8, flags, number.len() as u8];
        r.extend_from_slice(number.as_bytes());
        r.resize(16, 0);
        hex::encode(r)
    };
    // Captured-style reports replayed as the HID transport would hand them over.
    for hex in [report(0x01, "13812345678"), report(0x04, "")] {
        let r = d
            .http
            .post(d.url("/v1/devices/usb-phone/simulate"))
            .json(&json!({ "hex": hex }))
            .send()
            .await
            .expect("simulate");
        assert_eq!(r.status().as_u16(), 202);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ringing = next_of_type(&mut ws, "call.ringing").await;
    assert_eq!(ringing["data"]["number"], "13812345678");
    next_of_type(&mut ws, "call.popup").await;
    let ended = next_of_type(&mut ws, "call.ended").await;
    assert_eq!(
        ended["data"]["answered"], false,
        "the box reported the caller hung up"
    );
}

#[tokio::test]
async fn the_call_log_survives_a_restart_and_a_power_cut() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let dev = "[[device]]\nid = \"phone-1\"\ndriver = \"callerid\"\ntransport = \"sim\"\nring_timeout_ms = 1000\n";
    let say = |b: &Binary, text: String| {
        let url = b.url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/v1/devices/phone-1/simulate"))
                .json(&json!({ "data": text }))
                .send()
                .await
                .expect("simulate");
            assert_eq!(r.status(), 202);
        }
    };
    let ring = |b: &Binary, number: &str| {
        say(
            b,
            format!("RING\r\nDATE = 1124\r\nTIME = 1030\r\nNMBR = {number}\r\n\r\n"),
        )
    };
    let calls = |b: &Binary| {
        let url = b.url.clone();
        async move {
            reqwest::get(format!("{url}/v1/calls"))
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json")
        }
    };

    // A call an NCID gateway reports answered, then at once a clean stop:
    // its end and its lookup were written (a call read back unended would
    // come back missed, with no source).
    let b = Binary::start(&state, dev, &[]).await;
    say(&b, "CID: *DATE*11242026*TIME*1030*LINE*1*NMBR*13812345678*MESG*NONE*NAME*WANG*\r\nCIDINFO: *LINE*1*RING*-2*\r\n".into()).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = calls(&b).await;
        if v[0]["ended"] == true && v[0]["source"].is_string() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first call never ended: {v}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.stop_and_log();
    let b = Binary::start(&state, dev, &[]).await;
    let v = calls(&b).await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["number"], "13812345678");
    assert_eq!(
        (
            &v[0]["answered"],
            &v[0]["missed"],
            &v[0]["source"],
            &v[0]["line"]
        ),
        (&json!(true), &json!(false), &json!("none"), &json!("1")),
        "{v}"
    );

    // A second call still ringing at a power cut: back as missed.
    ring(&b, "13987654321").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while calls(&b).await.as_array().map(Vec::len) != Some(2) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second call never showed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Written through within milliseconds; the kill comes well after.
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.kill();
    let b = Binary::start(&state, dev, &[]).await;
    let v = calls(&b).await;
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v[0]["number"], "13987654321", "newest first: {v}");
    assert_eq!(
        (&v[0]["ended"], &v[0]["missed"], &v[0]["answered"]),
        (&json!(true), &json!(true), &Value::Null),
        "interrupted: its outcome is unknown, so it is on the call-back list: {v}"
    );
    let missed = reqwest::get(format!("{}/v1/calls?missed=true", b.url))
        .await
        .expect("get")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(missed.as_array().map(Vec::len), Some(1), "{missed}");
    assert_eq!(missed[0]["number"], "13987654321", "{missed}");
    b.stop_and_log();
}

#[test]
fn hid_layouts_are_checked_by_key() {
    let problems = |dev: &str| match posbridge::Config::parse(
        &format!("[store]\nid = \"s\"\n[[device]]\nid = \"p\"\ndriver = \"callerid\"\n{dev}"),
        std::iter::empty(),
        "t",
    ) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    };
    let p = problems("transport = \"hid\"\npath = \"/dev/hidraw0\"\nformat = \"hid\"\n");
    assert!(
        p.iter()
            .any(|x| x.starts_with("device[0].hid_layout: format \"hid\" needs")),
        "{p:?}"
    );
    let p = problems("transport = \"hid\"\npath = \"/dev/hidraw0\"\nformat = \"hid\"\n[device.hid_layout]\nreport_len = 16\nring = { byte = 1 }\n");
    assert!(
        p.iter().any(|x| x.starts_with("device[0].hid_layout.ring")),
        "{p:?}"
    );
    let p = problems("path = \"/dev/ttyACM0\"\n[device.hid_layout]\nreport_len = 8\n");
    assert!(
        p.iter()
            .any(|x| x == "device[0].hid_layout: only used with format = \"hid\""),
        "{p:?}"
    );
}

/// A Whozz Calling Ethernet unit's datagram: `^^<U>`, unit number, `<S>`,
/// serial number (binary), then the record.
fn whozz(record: &str) -> Vec<u8> {
    let mut d = b"^^<U>\x00\x00\x07\x0d\x0a\x01<S>\x00\x25\x5e\xff\x10\x02$".to_vec();
    d.extend_from_slice(record.as_bytes());
    d
}

#[tokio::test]
async fn a_whozz_calling_unit_is_heard_over_udp_and_other_senders_are_not() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    // A port another program holds: that device says so, the other works.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let busy = held.local_addr().expect("addr").port();
    let cfg = format!(
        "[store]\nid = \"store-test\"\n[[device]]\nid = \"wc-1\"\ndriver = \"callerid\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{port}\"\nfrom = \"127.0.0.1\"\nring_timeout_ms = 1500\n[[device]]\nid = \"wc-busy\"\ndriver = \"callerid\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{busy}\"\nfrom = \"127.0.0.1\"\n"
    );
    let d = Daemon::start(&cfg).await;
    let mut ws = d
        .ws("/v1/events?types=call.*,device.attached&since=0")
        .await;
    next_of_type(&mut ws, "device.attached").await;
    let to = format!("127.0.0.1:{port}");
    // Another host on the LAN (127.0.0.2 here) sends a call: not the unit.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    stranger
        .send_to(
            &whozz("01 I S 0000 G A1 11/24 10:15 AM 13900000000   SPOOF          "),
            &to,
        )
        .await
        .expect("send");
    let unit = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for record in [
        "01 R             11/24 10:15:02",
        "01 I S 0000 G A1 11/24 10:15 AM 138-1234-5678 王芳           ",
    ] {
        unit.send_to(&whozz(record), &to).await.expect("send");
    }
    let ringing = next_of_type(&mut ws, "call.ringing").await;
    let data = &ringing["data"];
    assert_eq!(
        data["number"], "13812345678",
        "the unit's call, not the stranger's"
    );
    assert_eq!(data["normalized"], "+8613812345678");
    assert_eq!(data["name"], "王芳");
    assert_eq!(data["line"], "1");
    assert_eq!(data["box_time"], "11-24 10:15");
    next_of_type(&mut ws, "call.popup").await;
    // Off hook: answered.
    unit.send_to(&whozz("01 F             11/24 10:15:09"), &to)
        .await
        .expect("send");
    let ended = next_of_type(&mut ws, "call.ended").await;
    assert_eq!(ended["data"]["answered"], true);
    let calls = d.get_json("/v1/calls").await;
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "{calls}");
    assert_eq!(calls[0]["answered"], true);
    let devices = d.get_json("/v1/devices").await;
    let busy_dev = devices
        .as_array()
        .and_then(|a| a.iter().find(|v| v["id"] == "wc-busy"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(busy_dev["state"], "error", "{busy_dev}");
    assert!(
        busy_dev["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot listen") && e.contains("in use")),
        "{busy_dev}"
    );
    drop(held);
    d.stop().await;
}

/// NCID parity: a Whozz Calling unit with several lines. Two callers ring
/// at once on lines 1 and 2 and each gets its own call and popup; a phone
/// lifted on line 2 answers only line 2's call; a call dialed out on line 3
/// is `call.outgoing`; line 1's caller gives up.
#[tokio::test]
async fn two_lines_of_one_unit_ring_at_once_and_a_call_out_is_reported() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let cfg = format!(
        "[store]\nid = \"store-test\"\n[[device]]\nid = \"wc-1\"\ndriver = \"callerid\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{port}\"\nfrom = \"127.0.0.1\"\nring_timeout_ms = 20000\n"
    );
    let d = Daemon::start(&cfg).await;
    let mut ws = d
        .ws("/v1/events?types=call.*,device.attached&since=0")
        .await;
    next_of_type(&mut ws, "device.attached").await;
    let to = format!("127.0.0.1:{port}");
    let unit = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for record in [
        "01 R             11/24 10:15:02",
        "01 I S 0000 G A1 11/24 10:15 AM 13812345678   王芳",
        "02 R             11/24 10:15:03",
        "02 I S 0000 G A1 11/24 10:15 AM 13900000000   李雷",
        "03 O S 0000 G A0 11/24 10:15 AM 02112345678",
        "02 F             11/24 10:15:07",
        "01 I E 0000 G A2 11/24 10:15 AM 13812345678   王芳",
    ] {
        unit.send_to(&whozz(record), &to).await.expect("send");
    }
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|e: &&Value| e["type"] == "call.ended")
        .count()
        < 2
    {
        seen.push(next_event(&mut ws).await);
    }
    let of = |kind: &str| -> Vec<Value> {
        seen.iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["data"].clone())
            .collect()
    };
    let rung = of("call.ringing");
    assert_eq!(rung.len(), 2, "{seen:?}");
    let by_line = |l: &str| {
        rung.iter()
            .find(|c| c["line"] == l)
            .cloned()
            .unwrap_or_default()
    };
    let (one, two) = (by_line("1"), by_line("2"));
    assert_eq!(
        (one["number"].as_str(), two["number"].as_str()),
        (Some("13812345678"), Some("13900000000"))
    );
    assert_ne!(one["call_id"], two["call_id"]);
    let out = of("call.outgoing");
    assert_eq!(out.len(), 1, "{seen:?}");
    assert_eq!(out[0]["number"], "02112345678");
    assert_eq!(out[0]["normalized"], "+862112345678");
    assert_eq!(out[0]["line"], "3");
    let ended = of("call.ended");
    let end_of = |id: &Value| {
        ended
            .iter()
            .find(|e| e["call_id"] == *id)
            .map(|e| e["answered"].clone())
    };
    assert_eq!(
        end_of(&two["call_id"]),
        Some(Value::Bool(true)),
        "{ended:?}"
    );
    assert_eq!(
        end_of(&one["call_id"]),
        Some(Value::Bool(false)),
        "{ended:?}"
    );
    // Both calls are in the call log, each with its own line.
    let calls = d.get_json("/v1/calls").await;
    let lines: Vec<&str> = calls
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["line"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(lines.len(), 2, "{calls}");
    assert!(lines.contains(&"1") && lines.contains(&"2"), "{calls}");
    d.stop().await;
}

#[test]
fn udp_settings_are_checked_by_key() {
    let problems = |dev: &str| match posbridge::Config::parse(
        &format!("[store]\nid = \"s\"\n[[device]]\nid = \"p\"\ndriver = \"callerid\"\n{dev}"),
        std::iter::empty(),
        "t",
    ) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    };
    let p = problems("transport = \"udp\"\n");
    assert!(
        p.iter()
            .any(|x| x.starts_with("device[0].address: transport \"udp\" needs")),
        "{p:?}"
    );
    let p = problems("transport = \"udp\"\naddress = \"0.0.0.0:3520\"\nfrom = \"the-unit\"\n");
    assert!(
        p.iter()
            .any(|x| x == "device[0].from: \"the-unit\" is not an IP address"),
        "{p:?}"
    );
    let p = problems("transport = \"tcp\"\naddress = \"127.0.0.1:3333\"\nfrom = \"10.0.0.9\"\n");
    assert!(
        p.iter()
            .any(|x| x.starts_with("device[0].from: only applies to transport \"udp\"")),
        "{p:?}"
    );
    assert!(problems("transport = \"udp\"\naddress = \"0.0.0.0:3520\"\nfrom = \"192.168.1.90\"\nformat = \"whozz\"\n").is_empty());
    let p = problems("transport = \"udp\"\naddress = \"0.0.0.0:0\"\n");
    assert!(
        p.iter().any(|x| x.starts_with("device[0].address:")),
        "{p:?}"
    );
    let p = problems("transport = \"udp\"\naddress = \"0.0.0.0:3520\"\nformat = \"modem\"\n");
    assert!(
        p.iter().any(
            |x| x == "device[0].format: transport \"udp\" takes format \"whozz\" (or \"auto\")"
        ),
        "{p:?}"
    );
    let p = problems("path = \"/dev/ttyS0\"\nformat = \"whozz\"\n");
    assert!(
        p.iter()
            .any(|x| x.starts_with("device[0].format: format \"whozz\" needs transport \"udp\"")),
        "{p:?}"
    );
}
