//! Receipt printers end to end: a fake network printer on 127.0.0.1 (port
//! 9100 style: raw bytes in, one status byte out per `DLE EOT n`) captures
//! what the daemon sends, and answers status queries with chosen bytes.

use crate::common::printer::*;
use crate::common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

const KICK: [u8; 5] = [0x1b, b'p', 0, 25, 250];

fn golden(name: &str) -> (Value, Vec<u8>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/drivers/tests/golden/");
    let json = std::fs::read(format!("{dir}{name}.json")).expect("golden json");
    let bin = std::fs::read(format!("{dir}{name}.bin")).expect("golden bin");
    (
        serde_json::from_slice(&json).expect("golden json parses"),
        bin,
    )
}

pub(crate) fn printer(id: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "[[device]]\nid = \"{id}\"\ndriver = \"escpos\"\ntransport = \"tcp\"\naddress = \"{addr}\"\n{extra}\n"
    )
}

pub(crate) fn config(devices: &str) -> String {
    format!("[store]\nid = \"store-test\"\n[api]\nallowed_origins = [\"https://pos.example.com\"]\n{devices}")
}

async fn post(d: &Daemon, path: &str, body: Value) -> (u16, Value) {
    d.post_json(path, &body).await
}

/// Posts a job and returns its id, asserting 202.
pub(crate) async fn submit(d: &Daemon, body: Value) -> String {
    let (status, v) = post(d, "/v1/print", body).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["state"], "queued", "{v}");
    v["job"].as_str().expect("job id").to_owned()
}

pub(crate) fn raw(printer: &str, bytes: &[u8]) -> Value {
    use base64::Engine;
    json!({"printer": printer, "raw": base64::engine::general_purpose::STANDARD.encode(bytes)})
}

/// Waits until `GET /v1/print/{job}` shows `state`; returns the job.
async fn wait_job(get: impl AsyncFn(&str) -> Value, job: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = get(&format!("/v1/print/{job}")).await;
        if v["state"] == state {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job} never became {state}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn wait_state(d: &Daemon, job: &str, state: &str) -> Value {
    wait_job(async |p: &str| d.get_json(p).await, job, state).await
}

/// The next `printer.status` event matching `pred`.
pub(crate) async fn wait_status(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let ev = next_of_type(ws, "printer.status").await;
        if pred(&ev["data"]) {
            return ev;
        }
    }
}

#[tokio::test]
async fn golden_receipts_arrive_byte_for_byte_in_order() {
    let wide = FakePrinter::start(NORMAL).await;
    let narrow = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config(&format!(
        "{}{}",
        printer("printer-1", wide.addr, ""),
        printer("printer-58", narrow.addr, "columns = 32\ncut = \"full\"")
    )))
    .await;
    let (recharge, recharge_bin) = golden("recharge_receipt");
    let (purchase, purchase_bin) = golden("purchase_with_qr_barcode_cut_drawer");
    let (narrow_doc, narrow_bin) = golden("narrow_32col");
    // Posted back to back: they print in posting order, one after the other.
    let a = submit(&d, json!({"printer": "printer-1", "document": recharge})).await;
    let b = submit(&d, json!({"printer": "printer-1", "document": purchase})).await;
    let c = submit(&d, json!({"printer": "printer-58", "document": narrow_doc})).await;
    for job in [&a, &b, &c] {
        let v = wait_state(&d, job, "printed").await;
        assert_eq!(v["attempts"], 1, "{v}");
        assert_eq!(v["kind"], "document");
        assert!(
            v["printed_at"].is_string() && v["created_at"].is_string(),
            "{v}"
        );
    }
    let want = [recharge_bin, purchase_bin].concat();
    assert!(
        wide.data() == want,
        "printer-1 got {} bytes, the golden receipts are {}",
        wide.data().len(),
        want.len()
    );
    assert!(
        narrow.data() == narrow_bin,
        "printer-58 bytes differ from narrow_32col.bin"
    );
    // The purchase ends with the cut and then the drawer kick, last.
    assert!(wide
        .data()
        .ends_with(&[0x1d, b'V', 66, 0, 0x1b, b'p', 0, 25, 250]));
    assert!(
        wide.status_queries() >= 6,
        "status is asked before every job"
    );
    d.stop().await;
}

#[tokio::test]
async fn raw_passes_through_and_the_drawer_opens_in_order() {
    let p = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config(&printer("printer-1", p.addr, ""))).await;
    let mut jobs = Vec::new();
    let mut want = Vec::new();
    for i in 0..5u8 {
        // Bytes no renderer would make, including NUL and 0xFF.
        let bytes = [b'j', b'0' + i, 0x00, 0xff, b'\n'];
        jobs.push(submit(&d, raw("printer-1", &bytes)).await);
        want.extend_from_slice(&bytes);
        if i == 2 {
            let (status, v) = post(&d, "/v1/drawer/open", json!({"printer": "printer-1"})).await;
            assert_eq!(status, 202, "{v}");
            jobs.push(v["job"].as_str().expect("job").to_owned());
            want.extend_from_slice(&KICK);
        }
    }
    for j in &jobs {
        wait_state(&d, j, "printed").await;
    }
    assert_eq!(
        p.data(),
        want,
        "every job, raw and drawer, in posting order"
    );
    let v = d.get_json(&format!("/v1/print/{}", jobs[3])).await;
    assert_eq!(v["kind"], "drawer", "{v}");
    d.stop().await;
}

/// The printer reports `answers`: jobs are held with `reason`, a
/// printer.status event says so; once it is back to normal both print, in order.
async fn held_then_resumed(answers: [u8; 3], reason: &str, check: impl Fn(&Value) -> bool) {
    let p = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config(&printer("printer-1", p.addr, ""))).await;
    let mut ws = d.ws("/v1/events?types=printer.status").await;
    p.set(answers);
    let a = submit(&d, raw("printer-1", b"first\n")).await;
    let b = submit(&d, raw("printer-1", b"second\n")).await;
    let ev = wait_status(&mut ws, &check).await;
    assert_eq!(ev["device"], "printer-1", "{ev}");
    let v = wait_state(&d, &a, "held").await;
    assert_eq!(v["reason"], reason, "{v}");
    assert_eq!(v["attempts"], 0, "{v}");
    assert_eq!(
        d.get_json(&format!("/v1/print/{b}")).await["state"],
        "queued"
    );
    // Held means held: a few retries later, still nothing printed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(p.data().is_empty(), "nothing prints while held");
    assert_eq!(d.get_json(&format!("/v1/print/{a}")).await["state"], "held");
    p.set(NORMAL);
    wait_status(&mut ws, |s| {
        s["online"] == true && s["paper"] == "ok" && s["cover_open"] == false
    })
    .await;
    wait_state(&d, &a, "printed").await;
    let v = wait_state(&d, &b, "printed").await;
    assert_eq!(v["attempts"], 1);
    assert_eq!(p.data(), b"first\nsecond\n");
    close(ws).await;
    d.stop().await;
}

#[tokio::test]
async fn paper_out_holds_the_queue_until_paper_is_back() {
    held_then_resumed(PAPER_OUT, "paper_out", |s| {
        s["paper"] == "out" && s["online"] == true && s["cover_open"] == false
    })
    .await;
}

#[tokio::test]
async fn the_drawer_opens_at_once_while_the_receipt_waits_for_paper() {
    const REALTIME_KICK: [u8; 5] = [0x10, 0x14, 0x01, 0x00, 0x01];
    let p = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config(&printer("printer-1", p.addr, ""))).await;
    p.set(PAPER_OUT);
    let receipt = submit(&d, raw("printer-1", b"receipt\n")).await;
    wait_state(&d, &receipt, "held").await;
    let (status, v) = post(&d, "/v1/drawer/open", json!({"printer": "printer-1"})).await;
    assert_eq!(status, 202, "{v}");
    let kick = v["job"].as_str().expect("job").to_owned();
    let v = wait_state(&d, &kick, "printed").await;
    assert_eq!(v["kind"], "drawer", "{v}");
    assert_eq!(p.data(), REALTIME_KICK, "a real-time pulse, not ESC p");
    let v = d.get_json(&format!("/v1/print/{receipt}")).await;
    assert_eq!(v["state"], "held", "the receipt still waits for paper: {v}");
    p.set(NORMAL);
    wait_state(&d, &receipt, "printed").await;
    assert_eq!(
        p.data(),
        [&REALTIME_KICK[..], b"receipt\n"].concat(),
        "the receipt after paper is back, and the drawer not kicked twice"
    );
    d.stop().await;
}

/// A cashier whose printer waits for paper reprints elsewhere and cancels
/// the waiting job: it never prints, the job behind it still does, and only
/// jobs that have not started can be cancelled.
#[tokio::test]
async fn a_waiting_job_can_be_cancelled_and_never_prints() {
    let p = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config(&printer("printer-1", p.addr, ""))).await;
    let delete = async |job: &str| {
        let r = d
            .http
            .delete(d.url(&format!("/v1/print/{job}")))
            .send()
            .await
            .expect("delete");
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    p.set(PAPER_OUT);
    let a = submit(&d, raw("printer-1", b"first\n")).await;
    let b = submit(&d, raw("printer-1", b"second\n")).await;
    wait_state(&d, &a, "held").await;

    let (status, v) = delete(&a).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["reason"].as_str()),
        (Some("failed"), Some("cancelled")),
        "{v}"
    );
    let (status, v) = delete(&a).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("not_cancellable")),
        "{v}"
    );
    let (status, v) = delete("no-such-job").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("unknown_job")),
        "{v}"
    );

    p.set(NORMAL);
    wait_state(&d, &b, "printed").await;
    assert_eq!(p.data(), b"second\n", "the cancelled job never went out");
    let v = d.get_json(&format!("/v1/print/{a}")).await;
    assert_eq!(
        (v["state"].as_str(), v["attempts"].as_u64()),
        (Some("failed"), Some(0)),
        "{v}"
    );
    let (status, v) = delete(&b).await;
    assert_eq!(status, 409, "a printed job stays printed: {v}");
    assert_eq!(
        d.get_json(&format!("/v1/print/{b}")).await["state"],
        "printed"
    );

    // A page on another origin may cancel: the preflight allows DELETE.
    let r = d
        .http
        .request(reqwest::Method::OPTIONS, d.url(&format!("/v1/print/{b}")))
        .header("origin", "https://pos.example.com")
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .expect("preflight");
    assert_eq!(r.status(), 204);
    let methods = r
        .headers()
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(methods.contains("DELETE"), "{methods}");
    d.stop().await;
}

#[tokio::test]
async fn cover_open_holds_the_queue_until_it_is_shut() {
    held_then_resumed(COVER_OPEN, "cover_open", |s| {
        s["cover_open"] == true && s["paper"] == "ok"
    })
    .await;
}

#[tokio::test]
async fn a_printer_not_listening_is_offline_until_it_starts() {
    // A free port with nothing on it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let d = Daemon::start(&config(&printer("printer-1", addr, ""))).await;
    let mut ws = d.ws("/v1/events?types=printer.status,device.*").await;
    let job = submit(&d, raw("printer-1", b"hello\n")).await;
    let v = wait_state(&d, &job, "held").await;
    assert_eq!(v["reason"], "offline", "{v}");
    let devs = d.get_json("/v1/devices").await;
    let dev = devs
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == "printer-1"))
        .expect("printer in /v1/devices");
    assert_eq!(dev["state"], "disconnected", "{dev}");
    assert_eq!(dev["driver"], "escpos");
    assert_eq!(
        dev["path"],
        addr.to_string(),
        "a tcp printer shows its address"
    );
    assert!(
        dev["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("nothing listening")),
        "{dev}"
    );
    let p = FakePrinter::start_at(addr, NORMAL).await;
    wait_state(&d, &job, "printed").await;
    assert_eq!(p.data(), b"hello\n");
    wait_status(&mut ws, |s| s["online"] == true).await;
    let devs = d.get_json("/v1/devices").await;
    assert_eq!(devs[0]["state"], "connected", "{devs}");
    close(ws).await;
    d.stop().await;
}

#[tokio::test]
async fn a_usb_printer_found_by_id_waits_disconnected_until_plugged_in() {
    // No such printer on this machine: the lookup through /sys finds nothing.
    let d = Daemon::start(&config(
        "[[device]]\nid = \"printer-1\"\ndriver = \"escpos\"\ntransport = \"usb\"\nmatch = { vid = \"0416\", pid = \"5011\", serial = \"NO-SUCH-PRINTER\" }\n",
    ))
    .await;
    let job = submit(&d, raw("printer-1", b"hello\n")).await;
    let v = wait_state(&d, &job, "held").await;
    assert_eq!(v["reason"], "offline", "{v}");
    let devs = d.get_json("/v1/devices").await;
    assert_eq!(devs[0]["state"], "disconnected", "{devs}");
    let e = devs[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        e.contains("no printer node (usblp) on USB device 0416:5011 serial NO-SUCH-PRINTER"),
        "{devs}"
    );
    d.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_is_queued() {
    let p = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config(&printer("printer-1", p.addr, ""))).await;
    let bad_line = json!({"printer": "printer-1", "document": {"lines": [
        {"text": "好"}, {"feed": 1}, {"barcode": {"type": "EAN13", "data": "6901234567891"}}
    ]}});
    let (status, v) = post(&d, "/v1/print", bad_line).await;
    assert_eq!(status, 400, "{v}");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(
        msg.starts_with("document.lines[2]"),
        "names the line: {msg}"
    );
    let cases = [
        (
            json!({"printer": "nope", "raw": "aGk="}),
            404,
            "unknown_printer",
        ),
        (json!({"printer": "printer-1"}), 400, "bad_request"),
        (
            json!({"printer": "printer-1", "raw": "aGk=", "document": {"lines": []}}),
            400,
            "bad_request",
        ),
        (
            json!({"printer": "printer-1", "raw": "not base64!"}),
            400,
            "bad_request",
        ),
        (
            json!({"printer": "printer-1", "document": {"lines": [{"qr": 5}]}}),
            400,
            "bad_request",
        ),
        (
            json!({"printer": "printer-1", "raw": "A".repeat(1_500_000)}),
            413,
            "too_large",
        ),
    ];
    for (body, want, code) in cases {
        let shown = body.to_string().chars().take(120).collect::<String>();
        let (status, v) = post(&d, "/v1/print", body).await;
        assert_eq!(status, want, "{shown}: {v}");
        assert_eq!(v["error"]["code"], code, "{shown}: {v}");
    }
    let (status, _) = post(&d, "/v1/drawer/open", json!({"printer": "nope"})).await;
    assert_eq!(status, 404);
    let r = d
        .http
        .get(d.url("/v1/print/01JD0000000000000000000000"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(p.data().is_empty(), "nothing refused reached the printer");
    d.stop().await;
}

#[tokio::test]
async fn print_needs_the_print_scope_when_tokens_are_set() {
    let p = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config(&format!(
        r#"[[api.tokens]]
name = "till"
token = "till-token-0123456789"
scopes = ["print"]
[[api.tokens]]
name = "desk"
token = "desk-token-0123456789"
scopes = ["events", "members"]
{}"#,
        printer("printer-1", p.addr, "")
    )))
    .await;
    let body = raw("printer-1", b"x");
    let send = |token: Option<&'static str>, path: &'static str, body: Value| {
        let mut r = d.http.post(d.url(path)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.expect("post").status().as_u16() }
    };
    assert_eq!(send(None, "/v1/print", body.clone()).await, 401);
    assert_eq!(
        send(Some("desk-token-0123456789"), "/v1/print", body.clone()).await,
        403
    );
    let drawer = json!({"printer": "printer-1"});
    assert_eq!(
        send(
            Some("desk-token-0123456789"),
            "/v1/drawer/open",
            drawer.clone()
        )
        .await,
        403
    );
    assert_eq!(
        send(Some("till-token-0123456789"), "/v1/print", body).await,
        202
    );
    let cancel = |token: &'static str| {
        let r = d.http.delete(d.url("/v1/print/any-job")).bearer_auth(token);
        async move { r.send().await.expect("delete").status().as_u16() }
    };
    assert_eq!(cancel("desk-token-0123456789").await, 403);
    assert_eq!(cancel("till-token-0123456789").await, 404);
    assert_eq!(
        send(Some("till-token-0123456789"), "/v1/drawer/open", drawer).await,
        202
    );
    d.stop().await;
}

#[tokio::test]
async fn held_jobs_survive_a_restart_and_print_once() {
    let p = FakePrinter::start(PAPER_OUT).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let dev = printer("printer-1", p.addr, "");
    let b = Binary::start(&state, &dev, &[]).await;
    let http = reqwest::Client::new();
    let mut jobs = Vec::new();
    for text in ["one\n", "two\n"] {
        let r = http
            .post(format!("{}/v1/print", b.url))
            .json(&raw("printer-1", text.as_bytes()))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.expect("json");
        jobs.push(v["job"].as_str().expect("job").to_owned());
    }
    let v = wait_job(async |p: &str| b.get_json(p).await, &jobs[0], "held").await;
    assert_eq!(v["reason"], "paper_out");
    b.stop_and_log();
    // Paper back while the daemon was down; the new one finds the jobs on disk.
    p.set(NORMAL);
    let b = Binary::start(&state, &dev, &[]).await;
    for j in &jobs {
        let v = wait_job(async |p: &str| b.get_json(p).await, j, "printed").await;
        assert_eq!(v["attempts"], 1, "{v}");
    }
    assert_eq!(
        p.data(),
        b"one\ntwo\n",
        "each printed exactly once, in order"
    );
    b.stop_and_log();
}

#[tokio::test]
async fn a_file_printer_appends_each_job() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("receipts.bin");
    let d = Daemon::start(&config(&format!(
        "[[device]]\nid = \"printer-1\"\ndriver = \"escpos\"\ntransport = \"file\"\npath = \"{}\"\ncolumns = 32\n",
        out.display()
    )))
    .await;
    let a = submit(&d, raw("printer-1", b"AAA")).await;
    let (doc, _) = golden("recharge_receipt");
    let b = submit(&d, json!({"printer": "printer-1", "document": doc})).await;
    wait_state(&d, &a, "printed").await;
    wait_state(&d, &b, "printed").await;
    let bytes = std::fs::read(&out).expect("file written");
    assert!(
        bytes.starts_with(b"AAA\x1b@\x1c&"),
        "raw, then the receipt: {:?}",
        &bytes[..8]
    );
    let devs = d.get_json("/v1/devices").await;
    assert_eq!(devs[0]["state"], "connected", "{devs}");
    assert_eq!(devs[0]["transport"], "file");
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("posbridge_print_jobs_printed_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("posbridge_print_jobs_waiting{printer=\"printer-1\"} 0"));
    d.stop().await;
}

#[test]
fn printer_config_errors_name_the_key() {
    let cases = [
        ("columns = 10", "device[0].columns"),
        ("encoding = \"utf8\"", "device[0].encoding"),
        ("cut = \"half\"", "device[0].cut"),
        ("drawer_pin = 3", "device[0].drawer_pin"),
        ("poll_ms = 10", "device[0].poll_ms"),
        ("path = \"/dev/x\"", "device[0].path"),
    ];
    for (extra, key) in cases {
        let text = config(&printer(
            "p",
            "127.0.0.1:9100".parse().expect("addr"),
            extra,
        ));
        let err = posbridge::Config::parse(&text, std::iter::empty(), "t")
            .expect_err(extra)
            .to_string();
        assert!(err.contains(&format!("{key}:")), "{extra}: {err}");
    }
    for (transport, key) in [
        ("usb", "device[0].path"),
        ("file", "device[0].path"),
        ("tcp", "device[0].address"),
    ] {
        let text = config(&format!(
            "[[device]]\nid = \"p\"\ndriver = \"escpos\"\ntransport = \"{transport}\"\n"
        ));
        let err = posbridge::Config::parse(&text, std::iter::empty(), "t")
            .expect_err(transport)
            .to_string();
        assert!(err.contains(&format!("{key}:")), "{transport}: {err}");
    }
    // A USB printer may be found by its USB id instead of a path.
    let by_id = config(
        "[[device]]\nid = \"p\"\ndriver = \"escpos\"\ntransport = \"usb\"\nmatch = { vid = \"0416\", pid = \"5011\" }\n",
    );
    posbridge::Config::parse(&by_id, std::iter::empty(), "t").expect("usb printer by match");
    // The contract's example printer is a valid config.
    let ok = config(
        "[[device]]\nid = \"printer-1\"\ndriver = \"escpos\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:9100\"\nencoding = \"gb18030\"\ncolumns = 48\n",
    );
    posbridge::Config::parse(&ok, std::iter::empty(), "t").expect("contract example loads");
}

#[tokio::test]
async fn serial_and_usb_printers_print_and_hold() {
    // Serial: the daemon opens the pty slave through a symlink and sets it raw.
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyPRINTER");
    let serial = plug(&link);
    let (serial_data, serial_answers) =
        pty_printer(serial.master.try_clone().expect("dup"), NORMAL);
    // usblp: the daemon opens the node as a plain file, so the test makes the
    // pty raw itself (a usblp node has no line discipline).
    let nix::pty::OpenptyResult { master, slave } = nix::pty::openpty(None, None).expect("openpty");
    let mut t = nix::sys::termios::tcgetattr(&slave).expect("tcgetattr");
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &t).expect("raw");
    let usb_path = nix::unistd::ttyname(&slave).expect("ttyname");
    let (usb_data, _) = pty_printer(std::fs::File::from(master), NORMAL);
    let d = Daemon::start(&config(&format!(
        "[[device]]\nid = \"p-serial\"\ndriver = \"escpos\"\ntransport = \"serial\"\npath = \"{}\"\nbaud = 115200\n\
         [[device]]\nid = \"p-usb\"\ndriver = \"escpos\"\ntransport = \"usb\"\npath = \"{}\"\n",
        link.display(),
        usb_path.display()
    )))
    .await;
    serial_answers.lock().expect("lock").clone_from(&PAPER_OUT);
    let s = submit(&d, raw("p-serial", b"serial receipt\n")).await;
    let u = submit(&d, raw("p-usb", b"usb receipt\n")).await;
    wait_state(&d, &u, "printed").await;
    assert_eq!(*usb_data.lock().expect("lock"), b"usb receipt\n");
    let v = wait_state(&d, &s, "held").await;
    assert_eq!(v["reason"], "paper_out");
    serial_answers.lock().expect("lock").clone_from(&NORMAL);
    wait_state(&d, &s, "printed").await;
    assert_eq!(*serial_data.lock().expect("lock"), b"serial receipt\n");
    d.stop().await;
    drop(slave);
}

/// `print.db` as versions before HQ's print jobs made it.
const OLD_SCHEMA: &str = "
CREATE TABLE job (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    printer     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    bytes       BLOB NOT NULL,
    state       TEXT NOT NULL DEFAULT 'queued',
    reason      TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    printed_at  TEXT,
    finished_at TEXT
);
CREATE INDEX job_open ON job(printer, seq) WHERE state IN ('queued', 'printing', 'held');
CREATE INDEX job_done ON job(finished_at) WHERE state IN ('printed', 'failed');
";

#[tokio::test]
async fn a_print_queue_from_an_older_version_is_upgraded_and_its_jobs_print() {
    let p = FakePrinter::start(NORMAL).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    {
        let c = rusqlite::Connection::open(state.join("print.db")).expect("old db");
        c.execute_batch(OLD_SCHEMA).expect("old schema");
        c.execute(
            "INSERT INTO job (id, printer, kind, bytes, created_at) VALUES ('01OLD', 'printer-1', 'raw', ?1, '2026-01-01T00:00:00Z')",
            [b"from before the upgrade\n".to_vec()],
        )
        .expect("old job");
    }
    let b = Binary::start(&state, &printer("printer-1", p.addr, ""), &[]).await;
    let job = wait_job(
        async |path: &str| b.get_json(path).await,
        "01OLD",
        "printed",
    )
    .await;
    assert_eq!(job["attempts"], 1, "{job}");
    let r = reqwest::Client::new()
        .post(format!("{}/v1/print", b.url))
        .json(&raw("printer-1", b"after\n"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.data() != b"from before the upgrade\nafter\n" {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", p.data());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(b);
    let c = rusqlite::Connection::open(state.join("print.db")).expect("db");
    let cols: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('job') WHERE name IN ('remote_id', 'expire_at')",
            [],
            |r| r.get(0),
        )
        .expect("columns");
    assert_eq!(cols, 2, "the job table gained HQ's columns");
}
