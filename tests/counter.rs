//! The rest of the counter through real ptys: customer displays receive
//! exactly the documented bytes, scales are polled, tared, zeroed and
//! missed when silent, and weighed-goods labels decode (PROTOCOLS.md §7-8).

use crate::common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config(devices: &str) -> String {
    format!(
        "[store]\nid = \"store-test\"\n[api]\nallowed_origins = [\"https://pos.example.com\"]\n{devices}"
    )
}

fn device(id: &str, driver: &str, link: &Path, extra: &str) -> String {
    format!(
        "[[device]]\nid = \"{id}\"\ndriver = \"{driver}\"\ntransport = \"serial\"\npath = \"{}\"\n{extra}\n",
        link.display()
    )
}

/// Everything the daemon writes to a pty, collected by a thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Reads the master without blocking, so that dropping the capture
    /// closes its copy of the master (an unplug needs every copy closed).
    fn start(master: &std::fs::File) -> Capture {
        let c = Capture::default();
        let mut r = master.try_clone().expect("clone master");
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&r),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .expect("non-blocking");
        let sink = c.0.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while Arc::strong_count(&sink) > 1 {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => sink.lock().expect("capture").extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        c
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("capture"))
    }

    /// Waits until `want` bytes have come, then takes them (and asserts nothing more came).
    async fn expect(&self, want: &[u8]) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.0.lock().expect("capture").len() < want.len() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "display got {:02x?}, want {want:02x?}",
                self.0.lock().expect("capture")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(self.take(), want);
    }
}

fn gbk(s: &str) -> Vec<u8> {
    encoding_rs::GB18030.encode(s).0.into_owned()
}

fn padded(s: &str, cols: usize) -> Vec<u8> {
    let mut v = gbk(s);
    let width: usize = s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum();
    v.extend(std::iter::repeat_n(b' ', cols - width));
    v
}

#[tokio::test]
async fn displays_receive_exactly_the_documented_bytes() {
    let dir = tempfile::tempdir().expect("tmp");
    let (pole_link, led_link) = (dir.path().join("ttyPole"), dir.path().join("ttyLed"));
    let (pole, led) = (plug(&pole_link), plug(&led_link));
    let (pole_rx, led_rx) = (Capture::start(&pole.master), Capture::start(&led.master));
    let d = Daemon::start(&config(&format!(
        "{}{}[[device]]\nid = \"scan-1\"\ndriver = \"barcode\"\ntransport = \"sim\"\n",
        device("display-1", "display", &pole_link, "charset = \"gb18030\""),
        device("led-1", "display", &led_link, "protocol = \"led8\""),
    )))
    .await;
    // Opening resets each display: ESC @, then clear.
    pole_rx.expect(b"\x1b@\x0c").await;
    led_rx.expect(b"\x1b@\x0c").await;

    let (s, v) = d
        .post_json(
            "/v1/display",
            &json!({"display": "display-1", "lines": ["合计", "¥128.50"]}),
        )
        .await;
    assert_eq!((s, &v["queued"]), (202, &json!(true)), "{v}");
    let want = [
        &b"\x1bQA"[..],
        &padded("合计", 20),
        b"\r\x1bQB",
        &padded("￥128.50", 20),
        b"\r",
    ]
    .concat();
    pole_rx.expect(&want).await;

    // An amount on a pole display: the lamp's caption above, right-aligned below.
    d.post_json(
        "/v1/display",
        &json!({"display": "display-1", "amount": "6.00", "lamp": "change"}),
    )
    .await;
    let want = [
        &b"\x1bQA"[..],
        &padded("找零", 20),
        b"\r\x1bQB",
        format!("{:>20}", "6.00").as_bytes(),
        b"\r",
    ]
    .concat();
    pole_rx.expect(&want).await;

    for (lamp, n) in [
        ("price", b'1'),
        ("total", b'2'),
        ("paid", b'3'),
        ("change", b'4'),
    ] {
        let (s, _) = d
            .post_json(
                "/v1/display",
                &json!({"display": "led-1", "amount": "128.50", "lamp": lamp}),
            )
            .await;
        assert_eq!(s, 202);
        led_rx
            .expect(&[&[0x1b, b's', n, 0x1b, b'Q', b'A'][..], b"128.50\r"].concat())
            .await;
    }
    d.post_json("/v1/display", &json!({"display": "led-1", "clear": true}))
        .await;
    led_rx.expect(b"\x1bs0\x0c").await;
    d.post_json(
        "/v1/display",
        &json!({"display": "display-1", "clear": true}),
    )
    .await;
    pole_rx.expect(b"\x0c").await;

    // What a display cannot show is refused, naming the field; nothing is sent.
    for (body, field) in [
        (
            json!({"display": "display-1", "lines": ["ok", "😀"]}),
            "lines[1]",
        ),
        (
            json!({"display": "display-1", "lines": ["a", "b", "c"]}),
            "lines",
        ),
        (json!({"display": "led-1", "amount": "123456789"}), "amount"),
        (json!({"display": "led-1", "amount": 12.5}), "amount"),
        (
            json!({"display": "led-1", "amount": "1", "lamp": "tip"}),
            "lamp",
        ),
        (json!({"display": "led-1", "lines": ["1"]}), "lines"),
        (json!({"display": "led-1"}), "exactly one"),
    ] {
        let (s, v) = d.post_json("/v1/display", &body).await;
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert_eq!(s, 400, "{body}: {v}");
        assert!(
            msg.starts_with(field) || msg.contains(field),
            "{body}: {msg}"
        );
    }
    for id in ["nope", "scan-1"] {
        let (s, v) = d
            .post_json("/v1/display", &json!({"display": id, "clear": true}))
            .await;
        assert_eq!(s, 404, "{v}");
    }
    // A page from an origin that is not allowed shows nothing, even as a simple request.
    let r = d
        .http
        .post(d.url("/v1/display"))
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body(r#"{"display": "display-1", "lines": ["FREE"]}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(pole_rx.take().is_empty() && led_rx.take().is_empty());

    // Unplugged: 503 until it is back; back, it shows what it showed.
    d.post_json(
        "/v1/display",
        &json!({"display": "led-1", "amount": "9.99"}),
    )
    .await;
    led_rx.expect(b"\x1bs2\x1bQA9.99\r").await;
    drop(led_rx);
    tokio::time::sleep(Duration::from_millis(50)).await;
    unplug(led, &led_link);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut status = 0;
    while tokio::time::Instant::now() < deadline {
        // The same total: one taken before the unplug is noticed is shown on replug.
        let (s, _) = d
            .post_json(
                "/v1/display",
                &json!({"display": "led-1", "amount": "9.99"}),
            )
            .await;
        status = s;
        if s == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 503);
    let led = plug(&led_link);
    let led_rx = Capture::start(&led.master);
    led_rx.expect(b"\x1b@\x0c\x1bs2\x1bQA9.99\r").await;
    drop(pole);
}

#[tokio::test]
async fn a_burst_of_totals_on_a_stalled_display_ends_on_the_newest() {
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyLed");
    let led = plug(&link);
    let d = Daemon::start(&config(&device(
        "led-1",
        "display",
        &link,
        "protocol = \"led8\"",
    )))
    .await;
    let mut ws = d.ws("/v1/events?since=0").await;
    next_of_type(&mut ws, "device.attached").await;
    // Nobody reads the display's side: its buffer fills and writes stall.
    let posts = 3000;
    for i in 0..posts {
        let amount = format!("{}.{:02}", i / 100, i % 100);
        let (s, v) = d
            .post_json(
                "/v1/display",
                &json!({"display": "led-1", "amount": amount}),
            )
            .await;
        assert_eq!(s, 202, "{v}");
    }
    let rx = Capture::start(&led.master);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = rx.take();
    let frames: Vec<&[u8]> = got
        .split(|&b| b == b'\r')
        .filter(|f| !f.is_empty())
        .collect();
    let last = String::from_utf8_lossy(frames.last().expect("something shown"));
    assert!(
        last.ends_with("29.99"),
        "the newest total is shown last: {last}"
    );
    assert!(
        frames.len() < posts,
        "{} of {posts} updates were written: stale totals queued",
        frames.len()
    );
}

/// A Toledo 8217 scale played on a pty: answers `W` with what the test sets
/// (nothing: silent), and records every other command.
struct Toledo {
    answer: Arc<Mutex<Vec<u8>>>,
    commands: Arc<Mutex<Vec<u8>>>,
}

impl Toledo {
    fn start(master: std::fs::File) -> Toledo {
        let answer = Arc::new(Mutex::new(Vec::new()));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let (a, c) = (answer.clone(), commands.clone());
        let mut w = master.try_clone().expect("clone");
        let mut r = master;
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for &b in &buf[..n] {
                    if b == b'W' {
                        let answer = a.lock().expect("answer").clone();
                        if w.write_all(&answer).is_err() {
                            return;
                        }
                    } else {
                        c.lock().expect("commands").push(b);
                    }
                }
            }
        });
        Toledo { answer, commands }
    }

    fn set(&self, answer: &[u8]) {
        *self.answer.lock().expect("answer") = answer.to_vec();
    }

    async fn got_command(&self, b: u8) {
        for _ in 0..200 {
            if self.commands.lock().expect("commands").contains(&b) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the scale never got {:?}", b as char);
    }
}

#[tokio::test]
async fn a_toledo_scale_weighs_tares_zeroes_and_is_missed_when_silent() {
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyScale");
    let dev = plug(&link);
    let scale = Toledo::start(dev.master.try_clone().expect("clone"));
    scale.set(b"\x02  1.234\r");
    let d = Daemon::start(&config(&device(
        "scale-1",
        "scale",
        &link,
        "protocol = \"toledo\"\npoll_ms = 100\nsilent_ms = 800",
    )))
    .await;
    let mut ws = d.ws("/v1/events?since=0&types=scale.*,device.*").await;
    let w = next_of_type(&mut ws, "scale.weight").await;
    assert_eq!(
        w["data"],
        json!({"grams": 1234, "stable": true, "net": false, "overload": false, "negative": false})
    );
    scale.set(b"\x02?\x21\r");
    let w = next_of_type(&mut ws, "scale.weight").await;
    assert_eq!(
        (w["data"]["stable"].clone(), w["data"]["net"].clone()),
        (json!(false), json!(true))
    );
    scale.set(b"\x02  0.500N\r");
    let w = next_of_type(&mut ws, "scale.weight").await;
    assert_eq!(
        (w["data"]["grams"].clone(), w["data"]["stable"].clone()),
        (json!(500), json!(true))
    );

    // Over capacity: a flag, and no weight to show.
    scale.set(b"\x02?\x22\r");
    let w = next_of_type(&mut ws, "scale.weight").await;
    assert_eq!(
        (w["data"]["overload"].clone(), w["data"]["grams"].clone()),
        (json!(true), json!(0))
    );
    scale.set(b"\x02  0.500N\r");
    next_of_type(&mut ws, "scale.weight").await;

    let now = d.get_json("/v1/scales/scale-1").await;
    assert_eq!(now["reading"]["grams"], 500, "{now}");
    assert!(now["age_ms"].as_u64().is_some_and(|a| a < 2000), "{now}");
    assert_eq!(now["state"], "connected");

    for (path, b) in [("tare", b'T'), ("zero", b'Z')] {
        let (s, v) = d
            .post_json(&format!("/v1/devices/scale-1/{path}"), &json!({}))
            .await;
        assert_eq!((s, &v["command"]), (202, &json!(path)), "{v}");
        scale.got_command(b).await;
    }

    // Silent: an error with the reason, tare refused; answering again: back.
    scale.set(b"");
    let e = next_of_type(&mut ws, "device.error").await;
    assert!(
        e["data"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("does not answer"),
        "{e}"
    );
    let (s, v) = d.post_json("/v1/devices/scale-1/tare", &json!({})).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(d.get_json("/v1/scales/scale-1").await["state"], "error");
    scale.set(b"\x02  2.000\r");
    next_of_type(&mut ws, "device.attached").await;
    let w = next_of_type(&mut ws, "scale.weight").await;
    assert_eq!(w["data"]["grams"], 2000);
    let (s, _) = d.post_json("/v1/scales/nope", &json!({})).await;
    assert_eq!(s, 405);
    let r = d
        .http
        .get(d.url("/v1/scales/nope"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    drop(dev);
}

/// A daemon with one scale, `scale-1`, on a pty the test plays, and a
/// stream of its weights and lifecycle events, once it is attached.
async fn scale_on_pty(extra: &str) -> (tempfile::TempDir, FakeSerial, Daemon, Ws) {
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("ttyScale");
    let dev = plug(&link);
    let d = Daemon::start(&config(&device("scale-1", "scale", &link, extra))).await;
    let mut ws = d.ws("/v1/events?since=0&types=scale.weight,device.*").await;
    next_of_type(&mut ws, "device.attached").await;
    (dir, dev, d, ws)
}

#[tokio::test]
async fn a_continuous_scale_publishes_only_stable_changes() {
    let (_dir, mut dev, d, mut ws) = scale_on_pty("protocol = \"continuous\"\nsilent_ms = 0").await;
    let mut frames = String::new();
    for f in [
        "ST,GS,+  1.000kg",
        "ST,GS,+  1.000kg",
        "ST,GS,+  1.000kg",
        "ST,GS,+  1.000kg",
        "ST,NT,+  0.750kg",
        "ST,NT,+  0.750kg",
    ] {
        frames.push_str(f);
        frames.push_str("\r\n");
    }
    dev.master.write_all(frames.as_bytes()).expect("write");
    let a = next_of_type(&mut ws, "scale.weight").await;
    let b = next_of_type(&mut ws, "scale.weight").await;
    assert_eq!(
        (a["data"]["grams"].clone(), a["data"]["net"].clone()),
        (json!(1000), json!(false))
    );
    assert_eq!(
        (b["data"]["grams"].clone(), b["data"]["net"].clone()),
        (json!(750), json!(true))
    );
    assert_quiet(&mut ws, Duration::from_millis(300)).await;
    // A streaming indicator has no tare unless its command is configured.
    let (s, v) = d.post_json("/v1/devices/scale-1/tare", &json!({})).await;
    assert_eq!(s, 409, "{v}");
}

#[tokio::test]
async fn weighed_labels_decode_and_a_bad_check_digit_does_not() {
    let d = Daemon::start(&config(
        "[[device]]\nid = \"scan-1\"\ndriver = \"barcode\"\ntransport = \"sim\"\nweighed_barcodes = [{ pattern = \"22PPPPPWWWWWC\" }, { pattern = \"20PPPPPWWWWWEEEEEC\" }]\n",
    ))
    .await;
    let mut ws = d.ws("/v1/events?since=0&types=code.scanned").await;
    // 22 01234 01234 and its GS1 check digit 2.
    for (text, want) in [
        ("2201234012342\r", json!({"plu": "01234", "grams": 1234})),
        (
            "200123401500029906\r",
            json!({"plu": "01234", "grams": 1500, "price_fen": 2990}),
        ),
    ] {
        d.simulate("scan-1", text).await;
        let ev = next_of_type(&mut ws, "code.scanned").await;
        assert_eq!(ev["data"]["kind"], "weighed", "{ev}");
        assert_eq!(ev["data"]["weighed"], want);
    }
    d.simulate("scan-1", "2201234012343\r").await;
    let ev = next_of_type(&mut ws, "code.scanned").await;
    assert_ne!(ev["data"]["kind"], "weighed", "{ev}");
    assert_eq!(
        ev["data"].get("weighed"),
        None::<&Value>,
        "no weight from a misread"
    );
}

#[tokio::test]
async fn display_and_scale_requests_need_scope_print() {
    let d = Daemon::start(&config(
        "[[api.tokens]]\nname = \"desk\"\ntoken = \"desk-token-0123456789\"\nscopes = [\"events\", \"members\"]\n\
         [[api.tokens]]\nname = \"till\"\ntoken = \"till-token-0123456789\"\nscopes = [\"print\"]\n\
         [[device]]\nid = \"display-1\"\ndriver = \"display\"\ntransport = \"sim\"\n\
         [[device]]\nid = \"scale-1\"\ndriver = \"scale\"\ntransport = \"sim\"\nprotocol = \"continuous\"\nsilent_ms = 0\n",
    ))
    .await;
    let send = |token: Option<&'static str>, method: &'static str, path: &'static str| {
        let mut r = d
            .http
            .request(method.parse().expect("method"), d.url(path))
            .json(&json!({"display": "display-1", "clear": true}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.expect("send").status().as_u16() }
    };
    for (method, path, ok) in [
        ("POST", "/v1/display", 202),
        ("POST", "/v1/devices/scale-1/zero", 409),
        ("GET", "/v1/scales/scale-1", 200),
    ] {
        assert_eq!(send(None, method, path).await, 401, "{path}");
        assert_eq!(
            send(Some("desk-token-0123456789"), method, path).await,
            403,
            "{path}"
        );
        assert_eq!(
            send(Some("till-token-0123456789"), method, path).await,
            ok,
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_aclas_scale_streams_weights_through_a_pty() {
    let (_dir, mut dev, d, mut ws) =
        scale_on_pty("protocol = \"aclas\"\ntare_command = \"MT\\r\\n\"").await;
    let sent = Capture::start(&dev.master);
    // SOH STX flag sign weight(6) unit(2) BCC ETX EOT flag2 (docs/PROTOCOLS.md §8).
    let frame = |flag: u8, sign: u8, weight: &[u8; 6], flag2: u8| {
        let mut f = vec![0x01, 0x02, flag, sign];
        f.extend(weight);
        f.extend(b"kg");
        let bcc = f.iter().fold(0u8, |a, b| a ^ b);
        f.extend([bcc, 0x03, 0x04, flag2]);
        f
    };
    let mut stream = Vec::new();
    for _ in 0..3 {
        stream.extend(frame(b'S', b' ', b" 0.385", 0));
    }
    stream.extend(frame(b'S', b'-', b" 0.015", 0x20));
    dev.master.write_all(&stream).expect("write");
    let a = next_of_type(&mut ws, "scale.weight").await;
    assert_eq!(a["data"]["grams"], 385);
    let b = next_of_type(&mut ws, "scale.weight").await;
    assert_eq!(
        (
            b["data"]["grams"].clone(),
            b["data"]["net"].clone(),
            b["data"]["negative"].clone()
        ),
        (json!(-15), json!(true), json!(true))
    );
    // A tare command from the indicator's manual, configured, is what tare writes.
    let (s, v) = d.post_json("/v1/devices/scale-1/tare", &json!({})).await;
    assert_eq!(s, 202, "{v}");
    sent.expect(b"MT\r\n").await;
    // Silent for 3 s (the default for a streaming scale): an error.
    let e = next_of_type(&mut ws, "device.error").await;
    assert!(
        e["data"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("does not answer"),
        "{e}"
    );
}

#[test]
fn counter_config_errors_name_their_key() {
    let base = "[store]\nid = \"s\"\n";
    for (dev, key) in [
        (
            "driver = \"barcode\"\ntransport = \"sim\"\nweighed_barcodes = [{ pattern = \"25PPPPPPWWWWWEEEEC\" }]",
            "device[0].weighed_barcodes[0].pattern",
        ),
        ("driver = \"display\"\ntransport = \"sim\"\nprotocol = \"vfd9000\"", "device[0].protocol"),
        ("driver = \"display\"\ntransport = \"sim\"\nprotocol = \"led8\"\ncharset = \"gb18030\"", "device[0].charset"),
        ("driver = \"scale\"\ntransport = \"sim\"\nprotocol = \"hid\"", "device[0].protocol"),
        ("driver = \"scale\"\ntransport = \"sim\"\npoll_ms = 1000\nsilent_ms = 500", "device[0].silent_ms"),
        ("driver = \"scale\"\ntransport = \"sim\"\nprotocol = \"continuous\"\npoll_ms = 100", "device[0].poll_ms"),
        ("driver = \"scale\"\ntransport = \"evdev\"\npath = \"/dev/input/event3\"", "device[0].transport"),
    ] {
        let toml = format!("{base}[[device]]\nid = \"x\"\n{dev}\n");
        let e = posbridge::Config::parse(&toml, std::iter::empty(), "t")
            .err()
            .unwrap_or_else(|| panic!("accepted: {dev}"))
            .to_string();
        assert!(e.contains(key), "{dev}: {e}");
    }
}
