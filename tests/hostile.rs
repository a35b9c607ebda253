//! Hostile local clients (issue #12), each its own test against the real
//! daemon: none may crash it, block other clients or devices, or leak data.
//! Every test keeps a well-behaved WebSocket client and a simulated scanner
//! running through the abuse and checks that scans still arrive.
//! (Plain forged Hosts, foreign Origins and missing/wrong tokens are in
//! tests/guards.rs; this file covers what they do not.)

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// The daemon still serves: a scan on the sim scanner reaches `ws`.
async fn still_serving(d: &Daemon, ws: &mut Ws, code: &str) {
    d.simulate("scan-1", &format!("{code}\r\n")).await;
    let ev = next_of_type(ws, "code.scanned").await;
    assert_eq!(ev["data"]["text"], code, "{ev}");
}

/// Sends `req` on a raw connection and returns everything the daemon
/// answered before closing (or within `WAIT`).
async fn raw(d: &Daemon, req: &[u8]) -> String {
    let mut s = TcpStream::connect(d.addr).await.expect("connect");
    s.write_all(req).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("error body is JSON");
    v["error"]["code"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn dns_rebinding_host_tricks_are_refused_on_every_path() {
    let d = Daemon::start(&sim_config("")).await;
    let mut ws = d.ws("/v1/events").await;
    let port = d.addr.port();
    let tricks = [
        format!("Host: evil.example:{port}\r\nHost: 127.0.0.1:{port}"),
        format!("Host: 127.0.0.1:{port}\r\nHost: evil.example:{port}"),
        format!("Host: 127.0.0.1:{port}@evil.example"),
        format!("Host: evil.example#127.0.0.1:{port}"),
        format!("Host: localhost.:{port}"),
        format!("Host: 127.0.0.1:{port}.evil.example"),
        format!("Host: 0x7f.0.0.1:{port}"),
        format!("Host: 2130706433:{port}"),
        format!("Host: [::ffff:127.0.0.1]:{port}"),
        "Host: ".to_owned(),
    ];
    for t in &tricks {
        for path in [
            "/v1/health",
            "/v1/devices",
            "/v1/events/poll?timeout_ms=1",
            "/",
        ] {
            let resp = raw(
                &d,
                format!("GET {path} HTTP/1.1\r\n{t}\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await;
            let status = status_of(&resp);
            assert!(
                status == 403 || status == 400,
                "{t:?} {path}: got {status}\n{resp}"
            );
            assert!(!resp.contains("scan-1"), "no device data leaks: {resp}");
        }
    }
    // Without any Host (HTTP/1.0) and with an absolute-form target naming another host.
    let resp = raw(&d, b"GET /v1/devices HTTP/1.0\r\n\r\n").await;
    assert!(matches!(status_of(&resp), 400 | 403), "{resp}");
    let resp = raw(
        &d,
        format!("GET http://evil.example:{port}/v1/devices HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(matches!(status_of(&resp), 400 | 403), "{resp}");
    // The WebSocket upgrade under a rebinding name.
    let mut req = d.ws_url("/v1/events").into_client_request().expect("req");
    req.headers_mut().insert(
        "host",
        HeaderValue::from_str(&format!("rebind.evil.example:{port}")).expect("h"),
    );
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    still_serving(&d, &mut ws, "HOST-OK").await;
    close(ws).await;
    d.stop().await;
}

#[tokio::test]
async fn null_lookalike_and_binary_origins_are_refused_for_http_and_streams() {
    let d = Daemon::start(&sim_config("")).await;
    let mut ws = d.ws("/v1/events").await;
    let origins: [&[u8]; 7] = [
        b"null",
        b"NULL",
        b"https://pos.example.com.evil.example",
        b"https://evil.example/https://pos.example.com",
        b"http://pos.example.com",
        b"https://pos.example.com:8443",
        b"https://pos.\xe4xample.com",
    ];
    for o in origins {
        let shown = String::from_utf8_lossy(o);
        let r = d
            .http
            .get(d.url("/v1/devices"))
            .header("Origin", HeaderValue::from_bytes(o).expect("origin bytes"))
            .send()
            .await
            .expect("r");
        assert_eq!(r.status(), 403, "{shown}");
        assert!(r.headers().get("access-control-allow-origin").is_none());
        assert_eq!(error_code(r).await, "forbidden_origin", "{shown}");
        let r = d
            .http
            .post(d.url("/v1/transactions"))
            .header("Origin", HeaderValue::from_bytes(o).expect("origin bytes"))
            .json(&serde_json::json!({"id": "stolen", "total": 1}))
            .send()
            .await
            .expect("r");
        assert_eq!(r.status(), 403, "{shown}: nothing stored");
        let mut req = d.ws_url("/v1/events").into_client_request().expect("req");
        req.headers_mut()
            .insert("origin", HeaderValue::from_bytes(o).expect("origin"));
        assert!(
            tokio_tungstenite::connect_async(req).await.is_err(),
            "{shown}: stream refused"
        );
    }
    let r = d
        .http
        .get(d.url("/v1/transactions/stolen"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 404, "no refused post was stored");
    still_serving(&d, &mut ws, "ORIGIN-OK").await;
    close(ws).await;
    d.stop().await;
}

#[tokio::test]
async fn expired_and_lookalike_tokens_are_refused_and_a_valid_one_still_works() {
    let d = Daemon::start(&sim_config(
        r#"
[[api.tokens]]
name = "old"
token = "expired-token-0123456789"
scopes = ["events", "admin"]
expires = "2001-01-01T00:00:00Z"
[[api.tokens]]
name = "pos"
token = "valid-token-0123456789ab"
scopes = ["events", "admin"]
expires = "2999-01-01T00:00:00Z"
"#,
    ))
    .await;
    let mut ws = d.ws("/v1/events?token=valid-token-0123456789ab").await;
    let r = d
        .http
        .get(d.url("/v1/devices"))
        .bearer_auth("expired-token-0123456789")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(r).await, "token_expired");
    // Same length, one byte off; a prefix; with a trailing NUL; empty.
    for bad in [
        "valid-token-0123456789aX",
        "valid-token-0123456789a",
        "valid-token-0123456789ab%00",
        "",
    ] {
        let r = d
            .http
            .get(d.url(&format!("/v1/devices?token={bad}")))
            .send()
            .await
            .expect("r");
        assert_eq!(r.status(), 401, "{bad:?}");
    }
    assert!(
        tokio_tungstenite::connect_async(d.ws_url("/v1/events?token=expired-token-0123456789"))
            .await
            .is_err(),
        "an expired token opens no stream"
    );
    let sim = d
        .http
        .post(d.url("/v1/devices/scan-1/simulate"))
        .bearer_auth("expired-token-0123456789")
        .json(&serde_json::json!({"data": "X\r\n"}))
        .send()
        .await
        .expect("r");
    assert_eq!(sim.status(), 401);
    let sim = d
        .http
        .post(d.url("/v1/devices/scan-1/simulate"))
        .bearer_auth("valid-token-0123456789ab")
        .json(&serde_json::json!({"data": "TOKEN-OK\r\n"}))
        .send()
        .await
        .expect("r");
    assert_eq!(sim.status(), 202);
    let ev = next_of_type(&mut ws, "code.scanned").await;
    assert_eq!(ev["data"]["text"], "TOKEN-OK");
    close(ws).await;
    d.stop().await;
}

#[tokio::test]
async fn a_websocket_message_over_the_limit_closes_only_that_client() {
    let d = Daemon::start(&sim_config("max_ws_message_bytes = 4096")).await;
    let mut good = d.ws("/v1/events").await;
    let mut bad = d.ws("/v1/events").await;
    // One frame over the limit; then a flood of small messages on another
    // client, which are read and ignored.
    bad.send(Message::text("x".repeat(64 * 1024)))
        .await
        .expect("send");
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match bad.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(c))) => return c.map(|c| c.code),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the oversized client is dropped");
    assert!(
        matches!(closed, None | Some(CloseCode::Size)),
        "closed with {closed:?}"
    );
    let mut frag = d.ws("/v1/events").await;
    let mut sent = 0;
    for _ in 0..64 {
        if frag.send(Message::binary(vec![0u8; 1024])).await.is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent > 0);
    still_serving(&d, &mut good, "BIG-FRAME-OK").await;
    close(good).await;
    d.stop().await;
}

#[tokio::test]
async fn a_stream_flood_is_bounded_per_origin_and_overall_with_a_clear_close() {
    let d = Daemon::start(
        &sim_config("max_streams = 6\nmax_streams_per_origin = 3").replace(
            "[\"https://pos.example.com\"]",
            "[\"https://pos.example.com\", \"https://other.example.com\"]",
        ),
    )
    .await;
    let connect = |origin: &'static str| {
        let mut req = d.ws_url("/v1/events").into_client_request().expect("req");
        req.headers_mut()
            .insert("origin", HeaderValue::from_static(origin));
        async move {
            tokio_tungstenite::connect_async(req)
                .await
                .expect("upgrade")
                .0
        }
    };
    // A refused stream is upgraded, then closed at once with 1013 and why.
    async fn refused(mut ws: Ws) -> String {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an answer")
            .expect("a frame")
            .expect("ok");
        match msg {
            Message::Close(Some(c)) => {
                assert_eq!(c.code, CloseCode::Again, "{c:?}");
                c.reason.to_string()
            }
            other => panic!("expected a close, got {other:?}"),
        }
    }
    let mut pos = Vec::new();
    for _ in 0..3 {
        pos.push(connect("https://pos.example.com").await);
    }
    let why = refused(connect("https://pos.example.com").await).await;
    assert!(why.contains("max_streams_per_origin"), "{why}");
    // Another origin is not blocked by the first one's flood.
    let mut other = connect("https://other.example.com").await;
    let _o2 = connect("https://other.example.com").await;
    let _none = d.ws("/v1/events").await;
    // 6 open: the overall cap.
    let why = refused(d.ws("/v1/events").await).await;
    assert!(why.contains("max_streams"), "{why}");
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("posbridge_http_limited_total 2"),
        "{metrics}"
    );
    still_serving(&d, &mut other, "FLOOD-OK").await;
    // Closing one gives its place back.
    close(pos.pop().expect("one")).await;
    let mut again = None;
    for _ in 0..50 {
        let mut ws = connect("https://pos.example.com").await;
        match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => {
                again = Some(ws);
                break;
            }
        }
    }
    let mut again = again.expect("a place is free again after a close");
    still_serving(&d, &mut again, "FREED-OK").await;
    d.stop().await;
}

#[tokio::test]
async fn a_connection_flood_gets_503_and_idle_sockets_are_reaped() {
    let d = Daemon::start(&sim_config("max_connections = 6\nheader_timeout_ms = 1500")).await;
    let mut ws = d.ws("/v1/events").await;
    // Six idle sockets fill the cap (an upgraded stream no longer counts
    // here: streams have their own cap, api.max_streams).
    let mut idle = Vec::new();
    for _ in 0..6 {
        idle.push(TcpStream::connect(d.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let port = d.addr.port();
    let resp = raw(
        &d,
        format!("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert!(resp.contains("too_many_connections"), "{resp}");
    // Idle sockets are closed after the header timeout, freeing the places.
    let t = Instant::now();
    for mut s in idle {
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(WAIT, s.read(&mut b))
            .await
            .expect("the idle socket is closed by the daemon");
        assert!(matches!(n, Ok(0) | Err(_)), "closed, not answered");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let r = d.http.get(d.url("/v1/health")).send().await.expect("r");
    assert_eq!(r.status(), 200);

    // A flood past the cap: the first refusals are answered, and past 64
    // answers in flight the rest are closed at once, so held sockets stay
    // bounded while the flood's clients never read or close.
    let mut holders = Vec::new();
    for _ in 0..6 {
        holders.push(TcpStream::connect(d.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut flood = Vec::with_capacity(150);
    for _ in 0..150 {
        flood.push(TcpStream::connect(d.addr).await.expect("connect"));
    }
    let (mut answered, mut closed) = (0, 0);
    let mut kept = Vec::new();
    for mut s in flood {
        let mut b = [0u8; 512];
        match tokio::time::timeout(WAIT, s.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 && b.starts_with(b"HTTP/1.1 503") => answered += 1,
            Ok(Ok(0) | Err(_)) => closed += 1,
            other => panic!("neither a 503 nor closed: {other:?}"),
        }
        kept.push(s);
    }
    assert!(
        answered >= 1 && closed >= 1,
        "answered {answered}, closed {closed}"
    );
    assert!(answered <= 100, "answered {answered}: refusals are bounded");
    drop(kept);
    drop(holders);
    still_serving(&d, &mut ws, "CONN-FLOOD-OK").await;
    close(ws).await;
    d.stop().await;
}

#[tokio::test]
async fn a_slowloris_header_is_cut_off_while_others_are_served() {
    let d = Daemon::start(&sim_config("header_timeout_ms = 1000")).await;
    let mut ws = d.ws("/v1/events").await;
    let port = d.addr.port();
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(d.addr).await.expect("connect");
        s.write_all(format!("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n").as_bytes())
            .await
            .expect("w");
        slow.push(s);
    }
    let t = Instant::now();
    let dribble = async {
        // One header byte every 100 ms, never the blank line.
        let mut cut = vec![false; slow.len()];
        while cut.iter().any(|c| !c) && t.elapsed() < Duration::from_secs(8) {
            for (i, s) in slow.iter_mut().enumerate() {
                if !cut[i] && s.write_all(b"X").await.is_err() {
                    cut[i] = true;
                }
                let mut b = [0u8; 256];
                if let Ok(Ok(0)) =
                    tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await
                {
                    cut[i] = true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cut
    };
    let (cut, ()) = tokio::join!(dribble, async {
        // Meanwhile, a normal client and the device are served at once.
        let t0 = Instant::now();
        let r = d.http.get(d.url("/v1/health")).send().await.expect("r");
        assert_eq!(r.status(), 200);
        assert!(t0.elapsed() < Duration::from_secs(1));
        still_serving(&d, &mut ws, "SLOW-OK").await;
    });
    assert!(cut.iter().all(|c| *c), "every slow client was cut off");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "within the header timeout and some slack: {:?}",
        t.elapsed()
    );
    close(ws).await;
    d.stop().await;
}

#[tokio::test]
async fn huge_and_deeply_nested_json_bodies_get_clear_errors() {
    let d = Daemon::start(&sim_config("")).await;
    let mut ws = d.ws("/v1/events").await;
    let post = |path: &'static str, body: Vec<u8>| {
        let req = d
            .http
            .post(d.url(path))
            .header("content-type", "application/json")
            .body(body);
        async move { req.send().await.expect("post") }
    };
    // Deeper than serde_json's recursion limit (128), well under the size limit.
    for depth in [200usize, 100_000] {
        let mut deep = Vec::new();
        deep.extend(b"{\"id\":\"deep\",\"x\":");
        deep.extend(std::iter::repeat_n(b'[', depth));
        deep.extend(std::iter::repeat_n(b']', depth));
        deep.push(b'}');
        let deep = if deep.len() > 200 * 1024 {
            deep[..200 * 1024].to_vec()
        } else {
            deep
        };
        let r = post("/v1/transactions", deep.clone()).await;
        assert_eq!(r.status(), 400, "depth {depth}");
        assert_eq!(error_code(r).await, "bad_request");
        let mut doc = b"{\"printer\":\"p\",\"document\":".to_vec();
        doc.extend(&deep[b"{\"id\":\"deep\",\"x\":".len()..]);
        let r = post("/v1/print", doc).await;
        assert_eq!(r.status(), 400, "print, depth {depth}");
    }
    // Nested objects, at the limit's edge: 120 levels is legal JSON and is stored.
    let mut ok = String::from("{\"id\":\"nested-ok\",\"x\":");
    ok.push_str(&"{\"a\":".repeat(120));
    ok.push('1');
    ok.push_str(&"}".repeat(120));
    ok.push('}');
    let r = post("/v1/transactions", ok.into_bytes()).await;
    assert_eq!(r.status(), 202);
    // Over the size limits: 413, not a crash or an out-of-memory.
    let r = post("/v1/transactions", vec![b' '; 300 * 1024]).await;
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(r).await, "too_large");
    let r = post("/v1/devices/scan-1/simulate", vec![b'['; 4 * 1024 * 1024]).await;
    assert_eq!(r.status(), 413, "{}", r.text().await.unwrap_or_default());
    let mut long = b"{\"data\":\"".to_vec();
    long.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 10));
    long.extend(b"\"}");
    let r = post("/v1/devices/scan-1/simulate", long).await;
    assert_eq!(r.status(), 413);
    // A body that claims more than it sends, then stops: the client side
    // times out; the daemon is unaffected.
    let mut s = TcpStream::connect(d.addr).await.expect("c");
    s.write_all(
        format!(
            "POST /v1/transactions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"id\":",
            d.addr
        )
        .as_bytes(),
    )
    .await
    .expect("w");
    still_serving(&d, &mut ws, "JSON-OK").await;
    drop(s);
    close(ws).await;
    d.stop().await;
}

#[tokio::test]
async fn path_traversal_reaches_no_file() {
    let d = Daemon::start(&sim_config("")).await;
    let mut ws = d.ws("/v1/events").await;
    let port = d.addr.port();
    for path in [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/v1/print/..%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/transactions/..%2F..%2Foutbox.db",
        "/v1/transactions/../../outbox.db",
        "/v1/devices/..%2F..%2Fetc%2Fpasswd/read",
        "/popup/../../etc/passwd",
        "//etc/passwd",
        "/outbox.db",
        "/tls/ca.key",
    ] {
        for method in ["GET", "POST"] {
            let resp = raw(
                &d,
                format!(
                    "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
            let status = status_of(&resp);
            assert!(
                matches!(status, 400 | 404 | 405),
                "{method} {path}: {status}\n{resp}"
            );
            assert!(!resp.contains("root:"), "{path}");
            assert!(!resp.contains("SQLite format"), "{path}");
            assert!(!resp.contains("PRIVATE KEY"), "{path}");
        }
    }
    still_serving(&d, &mut ws, "PATH-OK").await;
    close(ws).await;
    d.stop().await;
}

#[tokio::test]
async fn a_body_that_never_arrives_frees_its_slot_and_cannot_hold_up_shutdown() {
    let d = Daemon::start(&sim_config("max_connections = 4\nheader_timeout_ms = 500")).await;
    let mut ws = d.ws("/v1/events").await;
    let port = d.addr.port();
    // Every slot taken by a POST whose body stops after a few bytes.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(d.addr).await.expect("connect");
        s.write_all(
            format!("POST /v1/transactions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"id\":").as_bytes(),
        )
        .await
        .expect("w");
        stalled.push(s);
    }
    // Within the stall timeout (and slack) the slots are free again.
    let t = Instant::now();
    loop {
        let r = d.http.get(d.url("/v1/health")).send().await;
        if matches!(&r, Ok(r) if r.status() == 200) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "slots never freed: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    still_serving(&d, &mut ws, "BODY-OK").await;
    // A fresh stalled body, then a stop: the daemon does not wait for it.
    let mut s = TcpStream::connect(d.addr).await.expect("connect");
    s.write_all(
        format!("POST /v1/transactions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ncontent-length: 100000\r\n\r\n{{").as_bytes(),
    )
    .await
    .expect("w");
    tokio::time::sleep(Duration::from_millis(100)).await;
    close(ws).await;
    let took = d.stop().await;
    assert!(took < Duration::from_secs(8), "stopped in {took:?}");
    drop(stalled);
}

#[tokio::test]
async fn a_stream_is_closed_when_its_token_expires() {
    // A token valid for two more seconds opens a stream; the stream ends with it.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let d = Daemon::start(&sim_config(&format!(
        "[[api.tokens]]\nname = \"shift\"\ntoken = \"shift-token-0123456789ab\"\nscopes = [\"events\", \"idcard\"]\nexpires = \"{soon}\"\n"
    )))
    .await;
    let mut ws = d.ws("/v1/events?token=shift-token-0123456789ab").await;
    let t = Instant::now();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(6), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => break Some(f),
            Ok(Some(Ok(_))) => continue,
            _ => break None,
        }
    };
    let f = code.expect("a close frame when the token expired");
    assert_eq!(u16::from(f.code), 4001, "{f:?}");
    assert!(f.reason.contains("token_expired"));
    assert!(t.elapsed() < Duration::from_secs(5));
    d.stop().await;
}
