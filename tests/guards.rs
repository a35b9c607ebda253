//! The always-on guards: Host, Origin (HTTP and WebSocket), CORS and PNA
//! preflight, token scopes — against the real daemon.

use crate::common::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const ADMIN: &str = "admin-token-0123456789";
const DESK: &str = "desk-token-0123456789";
const ID: &str = "idcard-token-0123456789";

fn tokens() -> String {
    sim_config(&format!(
        r#"
[[api.tokens]]
name = "admin"
token = "{ADMIN}"
scopes = ["admin", "events"]
[[api.tokens]]
name = "desk"
token = "{DESK}"
scopes = ["members"]
[[api.tokens]]
name = "hotel"
token = "{ID}"
scopes = ["events", "idcard"]
"#
    ))
}

async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("error body is JSON");
    v["error"]["code"].as_str().expect("error.code").to_owned()
}

#[tokio::test]
async fn a_forged_host_is_refused_with_403() {
    let d = Daemon::start(&sim_config("")).await;
    for host in [
        "evil.example",
        "evil.example:80",
        "127.0.0.1:1",
        "localhost",
        "127.0.0.1.nip.io",
    ] {
        let r = d
            .http
            .get(d.url("/v1/health"))
            .header("Host", host)
            .send()
            .await
            .expect("r");
        assert_eq!(r.status(), 403, "Host {host}");
        assert_eq!(error_code(r).await, "forbidden_host");
    }
    let port = d.addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = d
            .http
            .get(d.url("/v1/health"))
            .header("Host", &host)
            .send()
            .await
            .expect("r");
        assert_eq!(r.status(), 200, "Host {host}");
    }
    // The WebSocket upgrade is guarded the same way.
    let mut req = d.ws_url("/v1/events").into_client_request().expect("req");
    req.headers_mut()
        .insert("host", HeaderValue::from_static("evil.example"));
    let err = tokio_tungstenite::connect_async(req)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("403"), "{err}");
    d.stop().await;
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_an_allowed_one_gets_cors() {
    let d = Daemon::start(&sim_config("")).await;
    let r = d
        .http
        .get(d.url("/v1/devices"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_eq!(error_code(r).await, "forbidden_origin");

    let r = d
        .http
        .get(d.url("/v1/devices"))
        .header("Origin", "https://pos.example.com")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://pos.example.com"
    );

    // The daemon's own origin is always allowed; "null" never is.
    let own = format!("http://127.0.0.1:{}", d.addr.port());
    let r = d
        .http
        .get(d.url("/v1/devices"))
        .header("Origin", &own)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    let r = d
        .http
        .get(d.url("/v1/devices"))
        .header("Origin", "null")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 403);

    // WebSocket upgrade from a foreign origin is refused; from an allowed one it streams.
    let mut req = d.ws_url("/v1/events").into_client_request().expect("req");
    req.headers_mut()
        .insert("origin", HeaderValue::from_static("https://evil.example"));
    let err = tokio_tungstenite::connect_async(req)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("403"), "{err}");
    let mut req = d
        .ws_url("/v1/events?types=code.scanned")
        .into_client_request()
        .expect("req");
    req.headers_mut().insert(
        "origin",
        HeaderValue::from_static("https://pos.example.com"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("allowed");
    d.simulate("scan-1", "ok\n").await;
    assert_eq!(next_event(&mut ws).await["data"]["text"], "ok");
    d.stop().await;
}

#[tokio::test]
async fn preflight_is_answered_for_allowed_origins_only_with_private_network_access() {
    let d = Daemon::start(&sim_config("")).await;
    let pre = |origin: &'static str| {
        d.http
            .request(
                reqwest::Method::OPTIONS,
                d.url("/v1/devices/scan-1/simulate"),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type,authorization",
            )
            .header("Access-Control-Request-Private-Network", "true")
            .send()
    };
    let r = pre("https://pos.example.com").await.expect("r");
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://pos.example.com");
    assert_eq!(h["access-control-allow-private-network"], "true");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .expect("s")
        .contains("POST"));
    assert!(h["access-control-allow-headers"]
        .to_str()
        .expect("s")
        .contains("authorization"));
    let r = pre("https://evil.example").await.expect("r");
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert!(r
        .headers()
        .get("access-control-allow-private-network")
        .is_none());
    d.stop().await;
}

#[tokio::test]
async fn tokens_gate_each_endpoint_by_scope() {
    let d = Daemon::start(&tokens()).await;
    let get = |path: &str, token: Option<&str>| {
        let mut r = d.http.get(d.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    // Health and the page need no token.
    assert_eq!(get("/v1/health", None).await.expect("r").status(), 200);
    assert_eq!(get("/", None).await.expect("r").status(), 200);
    // Missing, wrong, and insufficient tokens.
    let r = get("/v1/devices", None).await.expect("r");
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(r).await, "token_required");
    let r = get("/v1/devices", Some("wrong-token-0123456789"))
        .await
        .expect("r");
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(r).await, "invalid_token");
    let r = get("/v1/devices", Some(DESK)).await.expect("r");
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "insufficient_scope");
    assert_eq!(
        get("/v1/devices", Some(ADMIN)).await.expect("r").status(),
        200
    );
    assert_eq!(get("/metrics", Some(ADMIN)).await.expect("r").status(), 200);
    assert_eq!(get("/metrics", None).await.expect("r").status(), 401);
    // ?token= works too (browsers cannot set headers on a WebSocket).
    let r = d
        .http
        .get(d.url(&format!("/v1/events/poll?timeout_ms=10&token={ADMIN}")))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    // simulate needs admin.
    let sim = |t: &str| {
        d.http
            .post(d.url("/v1/devices/scan-1/simulate"))
            .bearer_auth(t)
            .json(&serde_json::json!({"data": "x\n"}))
            .send()
    };
    assert_eq!(sim(ID).await.expect("r").status(), 403);
    assert_eq!(sim(ADMIN).await.expect("r").status(), 202);
    // The stream: no token → refused; wrong → refused; events scope via ?token= → streams.
    for q in [
        "/v1/events",
        "/v1/events?token=nope-nope-nope-nope",
        &format!("/v1/events?token={DESK}"),
    ] {
        let err = tokio_tungstenite::connect_async(d.ws_url(q))
            .await
            .expect_err("refused");
        assert!(
            err.to_string().contains("401") || err.to_string().contains("403"),
            "{q}: {err}"
        );
    }
    let mut ws = d
        .ws(&format!("/v1/events?types=code.scanned&token={ID}"))
        .await;
    assert_eq!(sim(ADMIN).await.expect("r").status(), 202);
    assert_eq!(next_event(&mut ws).await["type"], "code.scanned");
    d.stop().await;
}

#[test]
fn a_non_loopback_listen_address_is_refused_unless_allow_remote() {
    let base = "[store]\nid = \"s\"\n[api]\nlisten = \"0.0.0.0:8731\"\n";
    let err = posbridge::Config::parse(base, std::iter::empty(), "t").expect_err("refused");
    assert!(err.problems.iter().any(|p| p.key == "api.listen"), "{err}");
    let ok = format!("{base}allow_remote = true\n");
    assert!(posbridge::Config::parse(&ok, std::iter::empty(), "t").is_ok());
}
