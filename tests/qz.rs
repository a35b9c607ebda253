//! The QZ Tray endpoint (`[qz]`), spoken to as qz-tray.js speaks (frames as
//! its `sendData` writes them): guards, the handshake, printers, print
//! bytes at a fake network printer, status events, passthrough ports and
//! signed calls. tests/browser/qz.mjs drives the real qz-tray.js.

use crate::common::printer::*;
use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const ORIGIN: &str = "https://pos.example.com";
const SITE_CERT: &str = include_str!("fixtures/qz/site-cert.pem");
const OTHER_CERT: &str = include_str!("fixtures/qz/other-cert.pem");
const SITE_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/qz/site-key.pem"
);
const OTHER_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/qz/other-key.pem"
);

/// A page's connection, as qz-tray.js holds it.
struct Page {
    ws: Ws,
    uid: u32,
    /// Stream messages that arrived while waiting for a reply.
    streams: Vec<Value>,
    /// Signs calls with this key file (PEM) and algorithm, like a site's server.
    signer: Option<(&'static str, &'static str)>,
}

fn config(qz: &str, extra: &str) -> String {
    format!(
        "[store]\nid = \"store-test\"\n[api]\nallowed_origins = [\"{ORIGIN}\", \"https://other.example.com\"]\n{extra}\n[qz]\nenabled = true\nlisten = \"127.0.0.1:0\"\n{qz}\n"
    )
}

fn printer_at(p: &FakePrinter) -> String {
    format!(
        "[[device]]\nid = \"receipt\"\ndriver = \"escpos\"\ntransport = \"tcp\"\naddress = \"{}\"\nqz_name = \"XP-80C\"\npoll_ms = 500\n",
        p.addr
    )
}

/// Where the daemon's QZ endpoint listens, from `/v1/health`.
async fn qz_url(d: &Daemon) -> String {
    let h = d.get_json("/v1/health").await;
    h["qz"]["urls"][0].as_str().expect("qz url").to_owned()
}

/// Opens a connection with these headers; `Err(status)` when refused.
async fn open(url: &str, origin: Option<&str>, host: Option<&str>) -> Result<Page, u16> {
    let mut req = url.into_client_request().expect("request");
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().expect("origin"));
    }
    if let Some(h) = host {
        req.headers_mut().insert("host", h.parse().expect("host"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(Page {
            ws,
            uid: 0,
            streams: Vec::new(),
            signer: None,
        }),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("connect: {e}"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `openssl dgst -<alg> -sign key` over the SHA-256 hex of `text`, base64:
/// what a site's signing endpoint answers qz-tray.js.
fn sign(key: &str, alg: &str, text: &str) -> String {
    use base64::Engine;
    let hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()));
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", &format!("-{alg}"), "-sign", key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(hash.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("openssl");
    assert!(out.status.success());
    base64::engine::general_purpose::STANDARD.encode(out.stdout)
}

impl Page {
    async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// The next text frame, parsed; `None` when the daemon closed.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame within the wait");
            match m {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("json"))
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Sends a call as qz-tray.js does (signed when the page signs) and
    /// returns its reply; stream messages before it are kept in `streams`.
    async fn call(&mut self, name: &str, params: Option<Value>) -> Value {
        self.uid += 1;
        let uid = format!("u{}", self.uid);
        let ts = now_ms();
        let mut msg =
            json!({"call": name, "timestamp": ts, "uid": uid, "position": {"x": 0, "y": 0}});
        if let Some(p) = &params {
            msg["params"] = p.clone();
        }
        if let (Some((key, alg)), false) = (self.signer, name == "getVersion") {
            // serde_json writes keys sorted: call, params, timestamp, as the page does.
            let mut signed = json!({"call": name, "timestamp": ts});
            if let Some(p) = params {
                signed["params"] = p;
            }
            msg["signature"] = sign(key, alg, &signed.to_string()).into();
            msg["signAlgorithm"] = alg.to_ascii_uppercase().into();
        }
        self.send_text(msg.to_string()).await;
        self.reply(&uid).await
    }

    async fn reply(&mut self, uid: &str) -> Value {
        loop {
            let v = self
                .next()
                .await
                .expect("the daemon closed before replying");
            if v["uid"] == uid {
                return v;
            }
            assert!(v.get("type").is_some(), "not a reply nor a stream: {v}");
            self.streams.push(v);
        }
    }

    /// qz.websocket.connect(): getVersion, then the certificate message.
    async fn connect(&mut self, cert: Option<&str>) -> Value {
        let v = self.call("getVersion", None).await;
        assert_eq!(v["result"], "2.2.6", "{v}");
        self.uid += 1;
        let uid = format!("u{}", self.uid);
        let msg = json!({"certificate": cert, "timestamp": now_ms(), "uid": uid, "position": {"x": 0, "y": 0}});
        self.send_text(msg.to_string()).await;
        self.reply(&uid).await
    }

    /// The next stream message whose event (parsed) matches `pred`.
    async fn stream(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = match self.streams.is_empty() {
                true => self
                    .next()
                    .await
                    .expect("closed while waiting for a stream event"),
                false => self.streams.remove(0),
            };
            let ev: Value = v["event"]
                .as_str()
                .and_then(|e| serde_json::from_str(e).ok())
                .unwrap_or(Value::Null);
            if pred(&ev) {
                return ev;
            }
        }
    }
}

async fn wait_bytes(p: &FakePrinter, want: &[u8]) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = p.data();
        if got.windows(want.len()).any(|w| w == want) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "printer never got {want:02x?}: {got:02x?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_qz_page_finds_the_aliased_printer_and_prints_gb18030_with_cut_and_kick() {
    let printer = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config("", &printer_at(&printer))).await;
    let url = qz_url(&d).await;
    let mut page = open(&url, Some(ORIGIN), None).await.expect("open");
    assert_eq!(page.connect(None).await, json!({"uid": "u2"}));
    assert_eq!(
        page.call("printers.find", Some(json!({}))).await["result"],
        json!(["XP-80C"])
    );
    assert_eq!(
        page.call("printers.find", Some(json!({"query": "xp"})))
            .await["result"],
        "XP-80C"
    );
    let v = page
        .call("printers.find", Some(json!({"query": "zebra"})))
        .await;
    assert_eq!(v["error"], "Specified printer could not be found.");
    assert_eq!(
        page.call("printers.getDefault", Some(Value::Null)).await["result"],
        "XP-80C"
    );
    let detail = page.call("printers.detail", None).await;
    assert_eq!(detail["result"][0]["name"], "XP-80C", "{detail}");
    assert_eq!(detail["result"][0]["default"], true);
    // What qz.print(qz.configs.create("XP-80C", {encoding: "GB18030"}), data) sends.
    let params = json!({
        "printer": {"name": "XP-80C"},
        "options": {"copies": 1, "encoding": "GB18030", "forceRaw": false, "spool": null},
        "data": [
            "\u{1b}@会员卡 余额 ¥128.00\n",
            {"type": "raw", "format": "command", "flavor": "hex", "data": "1d564200"},
            {"type": "raw", "format": "command", "flavor": "base64", "data": "G3AAGfo="},
        ],
    });
    let v = page.call("print", Some(params)).await;
    assert_eq!(v, json!({"uid": page_uid(&page)}), "resolves once queued");
    let mut want = vec![0x1b, b'@'];
    want.extend(
        encoding_rs::GB18030
            .encode("会员卡 余额 ¥128.00\n")
            .0
            .iter(),
    );
    want.extend([0x1d, 0x56, 0x42, 0x00]); // cut
    want.extend([0x1b, b'p', 0, 25, 250]); // drawer kick, pin 2
    wait_bytes(&printer, &want).await;
    d.stop().await;
}

fn page_uid(p: &Page) -> String {
    format!("u{}", p.uid)
}

#[tokio::test]
async fn printer_status_events_follow_the_printer_in_qz_trays_shape() {
    let printer = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config("", &printer_at(&printer))).await;
    let mut page = open(&qz_url(&d).await, Some(ORIGIN), None)
        .await
        .expect("open");
    page.connect(None).await;
    let v = page.call("printers.getStatus", None).await;
    assert_eq!(v["error"], "No printer listeners started for this client.");
    let v = page
        .call(
            "printers.startListening",
            Some(json!({"printerNames": ["XP-80C"]})),
        )
        .await;
    assert_eq!(v, json!({"uid": page_uid(&page)}));
    // Wait until the printer has been asked, so OK is a status it gave.
    let asked = tokio::time::timeout(WAIT, async {
        while printer.status_queries() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(asked.is_ok(), "the printer was never asked its status");
    let v = page.call("printers.getStatus", None).await;
    assert_eq!(v, json!({"uid": page_uid(&page)}));
    let ev = page.stream(|e| e["eventType"] == "PRINTER").await;
    assert_eq!(ev["statusText"], "OK", "{ev}");
    assert_eq!(ev["printerName"], "XP-80C");
    printer.set(PAPER_OUT);
    let ev = page.stream(|e| e["statusText"] == "PAPER_OUT").await;
    assert_eq!(ev["severity"], "WARN");
    assert_eq!(ev["statusCode"], "media-empty");
    assert_eq!(
        ev["message"],
        "PAPER_OUT: Level: WARN, From: XP-80C, EventType: PRINTER, Code: media-empty"
    );
    printer.set(NORMAL);
    page.stream(|e| e["statusText"] == "OK").await;
    page.call("printers.stopListening", None).await;
    d.stop().await;
}

#[tokio::test]
async fn foreign_origins_dns_names_and_tokenless_pages_are_refused() {
    let printer = FakePrinter::start(NORMAL).await;
    let tokens =
        "[[api.tokens]]\nname = \"till\"\ntoken = \"0123456789abcdef0123\"\nscopes = [\"print\"]\n";
    let d = Daemon::start(&config(
        &format!("allowed_origins = [\"{ORIGIN}\"]"),
        &format!("{tokens}{}", printer_at(&printer)),
    ))
    .await;
    let url = qz_url(&d).await;
    let port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .expect("port")
        .to_owned();
    assert_eq!(
        open(&url, Some("https://evil.example"), None).await.err(),
        Some(403)
    );
    let dns = format!("localhost.qz.io:{port}");
    assert_eq!(open(&url, Some(ORIGIN), Some(&dns)).await.err(), Some(403));
    assert_eq!(
        open(&url, Some(ORIGIN), Some("localhost:1")).await.err(),
        Some(403)
    );
    // Allowed by the API but not given print on the QZ listener: told why, then closed.
    let mut page = open(&url, Some("https://other.example.com"), None)
        .await
        .expect("open");
    let v = page.connect(None).await;
    let why = v["error"].as_str().unwrap_or_default();
    assert!(why.contains("not in qz.allowed_origins"), "{v}");
    assert!(page.next().await.is_none(), "closed after the refusal");
    // The listed origin prints.
    let mut page = open(&url, Some(ORIGIN), Some(&format!("localhost:{port}")))
        .await
        .expect("open");
    assert_eq!(page.connect(None).await, json!({"uid": "u2"}));
    let v = page
        .call(
            "print",
            Some(json!({"printer": {"name": "XP-80C"}, "data": ["ok\n"]})),
        )
        .await;
    assert!(v.get("error").is_none(), "{v}");
    wait_bytes(&printer, b"ok\n").await;
    assert!(!printer.data().is_empty());
    d.stop().await;
}

#[tokio::test]
async fn what_posbridge_does_not_do_rejects_the_promise_naming_the_call() {
    let printer = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config("", &printer_at(&printer))).await;
    let mut page = open(&qz_url(&d).await, Some(ORIGIN), None)
        .await
        .expect("open");
    let v = page.call("printers.find", None).await;
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate first")),
        "{v}"
    );
    page.connect(None).await;
    for (call, params, says) in [
        (
            "file.read",
            json!({"path": "/etc/passwd"}),
            "file.read is not supported by posbridge",
        ),
        (
            "usb.listDevices",
            json!({}),
            "usb.listDevices is not supported",
        ),
        (
            "socket.open",
            json!({"host": "10.0.0.1", "port": 9100}),
            "socket.open is not supported",
        ),
        ("nonsense.call", json!({}), "nonsense.call is not supported"),
        (
            "print",
            json!({"printer": {"name": "XP-80C"}, "data": [{"type": "pixel", "format": "pdf", "data": "a.pdf"}]}),
            "pixel printing",
        ),
        (
            "print",
            json!({"printer": {"file": "/tmp/x"}, "data": ["x"]}),
            "files and network hosts",
        ),
        (
            "print",
            json!({"printer": {"name": "Zebra"}, "data": ["x"]}),
            "Cannot find printer with name \"Zebra\"",
        ),
        (
            "print",
            json!({"data": ["x"]}),
            "A printer must be specified before printing",
        ),
    ] {
        let v = page.call(call, Some(params)).await;
        let e = v["error"].as_str().unwrap_or_default();
        assert!(e.contains(says), "{call}: {v}");
    }
    // Network details are loopback only (qz.websocket.getNetworkInfo sends networking.device).
    let v = page.call("networking.device", Some(json!({}))).await;
    assert_eq!(v["result"]["ip"], "127.0.0.1", "{v}");
    let v = page.call("websocket.getNetworkInfo", Some(json!({}))).await;
    assert_eq!(v["result"]["ipAddress"], "127.0.0.1", "{v}");
    // security.* and api.* are no-ops; getVersion with details says who answers.
    assert!(page
        .call("security.setCertificatePromise", None)
        .await
        .get("error")
        .is_none());
    let v = page
        .call("getVersion", Some(json!({"details": true})))
        .await;
    assert_eq!(v["result"]["title"], "posbridge");
    // Garbage is answered, not fatal.
    page.send_text("{nope".into()).await;
    let v = page.next().await.expect("answer");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not a QZ message")),
        "{v}"
    );
    page.send_text("ping".into()).await;
    assert_eq!(
        page.call("printers.find", Some(json!({"query": "XP"})))
            .await["result"],
        "XP-80C"
    );
    assert!(
        printer.data().is_empty(),
        "nothing refused reached the printer"
    );
    d.stop().await;
}

#[tokio::test]
async fn signed_mode_passes_the_sites_signatures_and_refuses_forged_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = dir.path().join("site.pem");
    std::fs::write(&cert, SITE_CERT).expect("write");
    let printer = FakePrinter::start(NORMAL).await;
    let qz = format!("certificate = \"{}\"", cert.display());
    let d = Daemon::start(&config(&qz, &printer_at(&printer))).await;
    let url = qz_url(&d).await;
    // No certificate, or another site's: refused at connect.
    let mut page = open(&url, Some(ORIGIN), None).await.expect("open");
    assert!(page.connect(None).await["error"]
        .as_str()
        .is_some_and(|e| e.contains("sent none")));
    let mut page = open(&url, Some(ORIGIN), None).await.expect("open");
    assert!(page.connect(Some(OTHER_CERT)).await["error"]
        .as_str()
        .is_some_and(|e| e.contains("sent another")));
    // The site's certificate, calls signed with its key (SHA-512 and SHA-1).
    let mut page = open(&url, Some(ORIGIN), None).await.expect("open");
    assert_eq!(page.connect(Some(SITE_CERT)).await, json!({"uid": "u2"}));
    let print = json!({"printer": {"name": "XP-80C"}, "options": {"encoding": "GB18030"}, "data": ["签名 ok\n"]});
    for alg in ["sha512", "sha1"] {
        page.signer = Some((SITE_KEY, alg));
        let v = page.call("print", Some(print.clone())).await;
        assert!(v.get("error").is_none(), "{alg}: {v}");
    }
    wait_bytes(&printer, &encoding_rs::GB18030.encode("签名 ok\n").0).await;
    let before = printer.data().len();
    // Forged: signed by another key, or not signed at all.
    page.signer = Some((OTHER_KEY, "sha512"));
    let v = page.call("print", Some(print.clone())).await;
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid signature")),
        "{v}"
    );
    page.signer = None;
    let v = page.call("print", Some(print.clone())).await;
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("was not signed")),
        "{v}"
    );
    // qz-tray.js sends getStatus unsigned; it is answered.
    let v = page.call("printers.getStatus", None).await;
    assert_eq!(v["error"], "No printer listeners started for this client.");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(printer.data().len(), before, "no refused job printed");
    d.stop().await;
}

#[tokio::test]
async fn passthrough_ports_carry_bytes_both_ways_framed_as_the_page_asks() {
    let dir = tempfile::tempdir().expect("dir");
    let link = dir.path().join("scale");
    let mut dev = plug(&link);
    let extra = format!(
        "[[device]]\nid = \"scale-1\"\ndriver = \"passthrough\"\npath = \"{}\"\nqz_name = \"COM3\"\n",
        link.display()
    );
    let d = Daemon::start(&config("", &extra)).await;
    let mut events = d.ws("/v1/events?types=passthrough.data").await;
    let mut page = open(&qz_url(&d).await, Some(ORIGIN), None)
        .await
        .expect("open");
    page.connect(None).await;
    assert_eq!(
        page.call("serial.findPorts", None).await["result"],
        json!(["COM3"])
    );
    let v = page
        .call(
            "serial.sendData",
            Some(json!({"port": "COM3", "data": "W\r"})),
        )
        .await;
    assert_eq!(v["error"], "Serial port [COM3] must be opened first.");
    let open_port =
        json!({"port": "COM3", "options": {"baudRate": 9600, "rx": {"untilNewline": true}}});
    assert!(page
        .call("serial.openPort", Some(open_port.clone()))
        .await
        .get("error")
        .is_none());
    let v = page.call("serial.openPort", Some(open_port)).await;
    assert_eq!(v["error"], "Serial port [COM3] is already open.");
    // Wait for the device to be connected before writing to it.
    let deadline = tokio::time::Instant::now() + WAIT;
    while d.get_json("/v1/devices").await[0]["state"] != "connected" {
        assert!(tokio::time::Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dev.master.write_all(b"ST,GS,+  1.2").expect("write");
    dev.master.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(50)).await;
    dev.master.write_all(b"34kg\r\n").expect("write");
    let ev = page.stream(|e| e["portName"] == "COM3").await;
    assert_eq!(
        ev,
        json!({"portName": "COM3", "output": "ST,GS,+  1.234kg", "type": "RECEIVE"})
    );
    // The native API sees the same bytes as they came.
    let e = next_of_type(&mut events, "passthrough.data").await;
    assert_eq!(e["device"], "scale-1");
    // Page → device: hex and QZ's "0x" spelling.
    let v = page
        .call(
            "serial.sendData",
            Some(json!({"port": "COM3", "data": {"data": "570d", "type": "HEX"}})),
        )
        .await;
    assert!(v.get("error").is_none(), "{v}");
    let mut master = dev.master.try_clone().expect("clone");
    let got = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 2];
        master.read_exact(&mut buf).map(|_| buf)
    })
    .await
    .expect("join")
    .expect("read");
    assert_eq!(&got, b"W\r");
    // Bounded: a page cannot hold the port for minutes with one call.
    let big = json!({"port": "COM3", "data": {"data": "00".repeat(9000), "type": "HEX"}});
    let v = page.call("serial.sendData", Some(big)).await;
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("at most 8192")),
        "{v}"
    );
    assert!(page
        .call("serial.closePort", Some(json!({"port": "COM3"})))
        .await
        .get("error")
        .is_none());
    let v = page
        .call("serial.closePort", Some(json!({"port": "COM3"})))
        .await;
    assert_eq!(v["error"], "Serial port [COM3] is not open.");
    let v = page
        .call("serial.openPort", Some(json!({"port": "COM9"})))
        .await;
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Unable to open serial port [COM9]")),
        "{v}"
    );
    d.stop().await;
    unplug(dev, &link);
}

#[test]
fn qz_config_problems_name_their_keys() {
    let check = |qz: &str, devices: &str| -> String {
        let text = format!(
            "[store]\nid = \"s\"\n[api]\nallowed_origins = [\"{ORIGIN}\"]\n[qz]\nenabled = true\n{qz}\n{devices}"
        );
        match posbridge::Config::parse(&text, std::iter::empty(), "t.toml") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let p = |id: &str, name: &str| {
        format!("[[device]]\nid = \"{id}\"\ndriver = \"escpos\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:9100\"\nqz_name = \"{name}\"\n")
    };
    let two = |a: (&str, &str), b: (&str, &str)| format!("{}{}", p(a.0, a.1), p(b.0, b.1));
    for (qz, devices, says) in [
        (
            "listen = \"0.0.0.0:8182\"",
            String::new(),
            "qz.listen: 0.0.0.0:8182 is not a loopback address",
        ),
        (
            "allowed_origins = [\"https://x.example\"]",
            String::new(),
            "qz.allowed_origins[0]: \"https://x.example\" is not in api.allowed_origins",
        ),
        (
            "default_printer = \"kitchen\"",
            p("a", "XP"),
            "qz.default_printer: \"kitchen\" is not the id or qz_name",
        ),
        (
            "",
            two(("a", "XP"), ("b", "XP")),
            "device[1].qz_name: \"XP\" is already the name of printer \"a\"",
        ),
        (
            "",
            two(("a", "b"), ("b", "XP")),
            "device[0].qz_name: \"b\" is already the name of printer \"b\"",
        ),
        (
            "",
            p("a", ""),
            "device[0].qz_name: must be 1-128 characters",
        ),
        (
            "certificate = \"/nonexistent/site.pem\"",
            String::new(),
            "qz.certificate: /nonexistent/site.pem:",
        ),
        (
            "max_frames = 1",
            String::new(),
            "qz.max_frames: unknown field",
        ),
    ] {
        let e = check(qz, &devices);
        assert!(e.contains(says), "{qz} / {devices}: {e}");
    }
    let ok = check("default_printer = \"XP\"", &p("a", "XP"));
    assert_eq!(ok, "");
}

#[tokio::test]
async fn with_api_tls_the_secure_port_serves_wss_with_the_same_certificate() {
    use rustls::pki_types::ServerName;
    let printer = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config(
        "secure_listen = \"127.0.0.1:0\"",
        &format!("tls = true\n{}", printer_at(&printer)),
    ))
    .await;
    let ca = crate::wss::ca_of(&d).await;
    let answer = crate::wss::https(
        &d,
        &crate::wss::client(Some(ca.clone())),
        "GET",
        "/v1/health",
        "",
    )
    .await;
    let h: Value = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .expect("health");
    let urls: Vec<&str> = h["qz"]["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(urls.len(), 2, "{h}");
    assert!(
        urls[0].starts_with("ws://127.0.0.1:") && urls[1].starts_with("wss://127.0.0.1:"),
        "{urls:?}"
    );
    let port: u16 = urls[1]
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost".to_owned()).expect("name");
    let tls = crate::wss::client(Some(ca))
        .connect(name, tcp)
        .await
        .expect("the API's certificate on the QZ port");
    let mut req = format!("wss://localhost:{port}/")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("origin", ORIGIN.parse().expect("origin"));
    let (ws, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("wss upgrade");
    let (mut tx, mut rx) = ws.split();
    for (msg, want) in [
        (
            json!({"call": "getVersion", "timestamp": 1, "uid": "a"}),
            json!({"uid": "a", "result": "2.2.6"}),
        ),
        (
            json!({"certificate": null, "timestamp": 1, "uid": "b"}),
            json!({"uid": "b"}),
        ),
        (
            json!({"call": "printers.find", "params": {"query": "XP"}, "timestamp": 1, "uid": "c"}),
            json!({"uid": "c", "result": "XP-80C"}),
        ),
    ] {
        tx.send(Message::Text(msg.to_string().into()))
            .await
            .expect("send");
        let got = match tokio::time::timeout(WAIT, rx.next()).await.expect("reply") {
            Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(t.as_str()).expect("json"),
            other => panic!("{other:?}"),
        };
        assert_eq!(got, want);
    }
    // Plain WebSocket on the secure port is not answered as QZ.
    let plain = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/")).await;
    assert!(plain.is_err(), "a plaintext upgrade on the secure port");
    d.stop().await;
}
