//! wss:// and https:// on localhost (`api.tls = true`, issue #12): a real
//! TLS WebSocket client that trusts only the daemon's generated CA, the
//! guard's https origins, and `posbridge trust-cert` into a real NSS db.

use crate::common::*;
use futures_util::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// Waits for the daemon to write its CA, then returns it.
pub async fn ca_of(d: &Daemon) -> CertificateDer<'static> {
    let dir = d.state_dir.path().join("tls");
    for _ in 0..200 {
        if dir.join("state.json").exists() {
            return CertificateDer::from_pem_file(dir.join("ca.pem")).expect("ca.pem");
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no CA in {}", dir.display());
}

pub fn client(ca: Option<CertificateDer<'static>>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        roots.add(ca).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn tls(
    d: &Daemon,
    c: &tokio_rustls::TlsConnector,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(d.addr).await?;
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    c.connect(name, tcp).await
}

/// One HTTPS request on a fresh connection; the whole answer as text.
pub async fn https(
    d: &Daemon,
    c: &tokio_rustls::TlsConnector,
    method: &str,
    path: &str,
    body: &str,
) -> String {
    let mut s = tls(d, c, "localhost").await.expect("tls");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        d.addr.port(),
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn wss(
    d: &Daemon,
    c: &tokio_rustls::TlsConnector,
    name: &str,
    origin: &str,
) -> Result<WsTls, String> {
    let stream = tls(d, c, name).await.map_err(|e| e.to_string())?;
    let host = if name.contains(':') {
        format!("[{name}]")
    } else {
        name.to_owned()
    };
    let mut req = format!("wss://{host}:{}/v1/events", d.addr.port())
        .into_client_request()
        .expect("req");
    req.headers_mut()
        .insert("origin", HeaderValue::from_str(origin).expect("origin"));
    tokio_tungstenite::client_async(req, stream)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

type WsTls = tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>;

async fn next_scan(ws: &mut WsTls) -> serde_json::Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an event in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).expect("json");
            if v["type"] == "code.scanned" {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn wss_end_to_end_with_a_client_that_trusts_only_the_generated_ca() {
    let d = Daemon::start(&sim_config("tls = true")).await;
    let ca = ca_of(&d).await;
    let c = client(Some(ca));
    // Both names the page may use (the daemon listens on 127.0.0.1 only),
    // from the page's https origin.
    let mut streams = Vec::new();
    for name in ["localhost", "127.0.0.1"] {
        streams.push(
            wss(&d, &c, name, "https://pos.example.com")
                .await
                .expect("wss"),
        );
    }
    let resp = https(
        &d,
        &c,
        "POST",
        "/v1/devices/scan-1/simulate",
        r#"{"data":"TLS-1\r\n"}"#,
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    for ws in &mut streams {
        assert_eq!(next_scan(ws).await["data"]["text"], "TLS-1");
    }
    // The daemon's own https origin is allowed; its http twin is not.
    let port = d.addr.port();
    wss(&d, &c, "localhost", &format!("https://localhost:{port}"))
        .await
        .expect("own https origin");
    let refused = wss(&d, &c, "localhost", &format!("http://localhost:{port}")).await;
    assert!(
        refused.is_err_and(|e| e.contains("403")),
        "http origin on a TLS port"
    );
    let health = https(&d, &c, "GET", "/v1/health", "").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    d.stop().await;
}

#[tokio::test]
async fn untrusted_clients_and_plain_http_are_refused_and_harm_nothing() {
    let d = Daemon::start(&sim_config("tls = true\nheader_timeout_ms = 1000")).await;
    let ca = ca_of(&d).await;
    // No trust in the CA: the handshake fails (the certificate is really verified).
    let e = tls(&d, &client(None), "localhost")
        .await
        .expect_err("untrusted");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    // A name the certificate does not cover.
    let c = client(Some(ca));
    let e = tls(&d, &c, "pos.example.com")
        .await
        .expect_err("wrong name");
    assert!(
        e.to_string().to_lowercase().contains("name") || e.to_string().contains("NotValidFor"),
        "{e}"
    );
    // Plain HTTP on the TLS port gets nothing useful and breaks nothing.
    let mut s = TcpStream::connect(d.addr).await.expect("c");
    s.write_all(b"GET /v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("w");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    assert!(!String::from_utf8_lossy(&out).contains("scan-1"));
    // A client that connects and never says hello is dropped (api.header_timeout_ms).
    let mut mute = TcpStream::connect(d.addr).await.expect("c");
    let t = std::time::Instant::now();
    let mut b = [0u8; 8];
    let n = tokio::time::timeout(WAIT, mute.read(&mut b))
        .await
        .expect("dropped");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
    let mut ws = wss(&d, &c, "localhost", "https://pos.example.com")
        .await
        .expect("wss");
    let resp = https(
        &d,
        &c,
        "POST",
        "/v1/devices/scan-1/simulate",
        r#"{"data":"TLS-2\r\n"}"#,
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    assert_eq!(next_scan(&mut ws).await["data"]["text"], "TLS-2");
    d.stop().await;
}

/// Over the connection cap under TLS the client is closed, not sent a
/// plaintext 503 it would take for a broken handshake; once a place frees,
/// TLS works again.
#[tokio::test]
async fn over_the_cap_a_tls_client_is_closed_not_answered_in_plaintext() {
    let d = Daemon::start(&sim_config(
        "tls = true\nmax_connections = 4\nheader_timeout_ms = 1500",
    ))
    .await;
    let ca = ca_of(&d).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(d.addr).await.expect("connect"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(d.addr).await.expect("connect");
    let mut out = Vec::new();
    let r = tokio::time::timeout(WAIT, over.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "closed at once");
    assert!(
        out.is_empty(),
        "no plaintext answer: {:?}",
        String::from_utf8_lossy(&out)
    );
    drop(idle);
    // The idle ones are reaped (header timeout); TLS is served again.
    let c = client(Some(ca));
    let deadline = tokio::time::Instant::now() + WAIT;
    while tls(&d, &c, "localhost").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "TLS never served again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    d.stop().await;
}

#[tokio::test]
async fn the_certificate_survives_a_restart_and_the_ca_is_kept() {
    let d = Daemon::start(&sim_config("tls = true")).await;
    let ca = ca_of(&d).await;
    let dir = d.state_dir.path().join("tls");
    let cert = std::fs::read(dir.join("cert.pem")).expect("cert");
    // Opening the same storage.dir again (a restart) reuses both.
    let mut config = posbridge::Config::parse(&sim_config("tls = true"), std::iter::empty(), "t")
        .expect("config");
    config.storage.dir = d.state_dir.path().to_path_buf();
    let state = posbridge::tls::TlsState::open(&dir, config.api.tls_renew_days).expect("open");
    let _ = state.acceptor();
    assert_eq!(
        std::fs::read(dir.join("cert.pem")).expect("cert"),
        cert,
        "not renewed early"
    );
    assert_eq!(
        CertificateDer::from_pem_file(dir.join("ca.pem")).expect("ca"),
        ca
    );
    d.stop().await;
}

fn certutil(args: &[&str]) -> std::process::Output {
    std::process::Command::new("certutil")
        .args(args)
        .output()
        .expect("certutil (libnss3-tools, scripts/install-test-deps.sh)")
}

#[tokio::test]
async fn trust_cert_installs_the_ca_into_an_nss_db_and_the_system_dir() {
    let d = Daemon::start(&sim_config("tls = true")).await;
    let _ = ca_of(&d).await;
    let ca = d.state_dir.path().join("tls/ca.pem");
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("nssdb");
    std::fs::create_dir_all(&db).expect("db dir");
    let spec = format!("sql:{}", db.display());
    assert!(certutil(&["-N", "-d", &spec, "--empty-password"])
        .status
        .success());
    let system = tmp.path().join("ca-certificates");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_posbridge"))
            .arg("trust-cert")
            .arg("--ca")
            .arg(&ca)
            .arg("--system-dir")
            .arg(&system)
            .args(["--update-command", "true", "--nss-db"])
            .arg(&db)
            .args(extra)
            .output()
            .expect("posbridge trust-cert")
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Twice is harmless: the old entry is replaced, not duplicated.
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = certutil(&["-L", "-d", &spec]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.matches("posbridge local CA").count(), 1, "{listed}");
    assert!(listed.contains("C,,"), "trusted for TLS servers: {listed}");
    let copied = std::fs::read(system.join("posbridge-local-ca.crt")).expect("copied");
    assert_eq!(copied, std::fs::read(&ca).expect("ca"));
    // A missing CA is a clear error, not a panic.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_posbridge"))
        .args(["trust-cert", "--no-system", "--no-nss", "--ca"])
        .arg(Path::new("/nonexistent/ca.pem"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("api.tls = true"));
    d.stop().await;
}

/// `sudo posbridge trust-cert` is how IT runs it: the CA reaches the browsers
/// of the user who ran sudo, certutil runs as that user (so the NSS files
/// are theirs, not root's), and a symlink they planted cannot turn root's
/// rights on a file outside their home.
#[tokio::test]
async fn trust_cert_under_sudo_installs_for_that_user_as_that_user() {
    use std::os::unix::fs::MetadataExt;
    let d = Daemon::start(&sim_config("tls = true")).await;
    let _ = ca_of(&d).await;
    let ca = d.state_dir.path().join("tls/ca.pem");
    let trust = |extra: &[&str], sudo_user: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_posbridge"));
        c.args(["trust-cert", "--no-system", "--ca"])
            .arg(&ca)
            .args(extra)
            .env_remove("SUDO_USER");
        if let Some(u) = sudo_user {
            c.env("SUDO_USER", u);
        }
        c.output().expect("posbridge trust-cert")
    };
    let unknown = trust(&["--user", "no-such-user-4711"], None);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no user \"no-such-user-4711\""),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    if !nix::unistd::geteuid().is_root() {
        // Not root: another user's browsers are refused, plainly.
        let out = trust(&["--user", "nobody", "--home", "/nonexistent"], None);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("only root"));
        d.stop().await;
        return;
    }
    // A cashier account of our own, with a home in a temp dir.
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("home");
    let user = TestUser::add(&format!("pbcashier{}", std::process::id() % 100_000), &home);
    let (uid, gid) = (user.uid, user.gid);
    let out = trust(&[], Some(&user.name));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains(&format!("for user {}", user.name)), "{said}");
    let db = home.join(".pki/nssdb");
    for p in [
        home.join(".pki"),
        db.clone(),
        db.join("cert9.db"),
        db.join("key4.db"),
    ] {
        let m = std::fs::metadata(&p).expect("created");
        assert_eq!(
            (m.uid(), m.gid()),
            (uid, gid),
            "{} belongs to the user",
            p.display()
        );
    }
    let listed = certutil(&["-L", "-d", &format!("sql:{}", db.display())]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("posbridge local CA"));

    // The user points files of their NSS db at one of root's: running
    // again, for them by sudo or by root naming their home, must neither
    // write it nor hand it to them.
    let victim = tmp.path().join("roots-file");
    std::fs::write(&victim, "root's\n").expect("victim");
    let home_arg = home.to_str().expect("utf-8").to_owned();
    for (extra, sudo_user) in [
        (vec![], Some(user.name.as_str())),
        (vec!["--home", home_arg.as_str()], None),
    ] {
        for f in ["pkcs11.txt", "cert9.db"] {
            let _ = std::fs::remove_file(db.join(f));
            std::os::unix::fs::symlink(&victim, db.join(f)).expect("symlink");
        }
        let _ = trust(&extra, sudo_user);
        let m = std::fs::metadata(&victim).expect("victim");
        assert_eq!((m.uid(), m.gid()), (0, 0), "still root's ({extra:?})");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "root's\n",
            "{extra:?}"
        );
    }
    // Root naming the home of a user, without sudo: certutil runs as the
    // home's owner, so a fresh db is theirs.
    std::fs::remove_dir_all(home.join(".pki")).expect("rm .pki");
    let out = trust(&["--home", &home_arg], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = std::fs::metadata(db.join("cert9.db")).expect("db");
    assert_eq!(
        (m.uid(), m.gid()),
        (uid, gid),
        "a db made in their home is theirs"
    );

    // Paths given by hand may be someone else's: certutil runs as root there.
    let other = tmp.path().join("other-db");
    let out = trust(
        &["--nss-db", other.to_str().expect("utf-8")],
        Some(&user.name),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("for user"));
    assert_eq!(
        std::fs::metadata(other.join("cert9.db")).expect("db").uid(),
        0
    );
    d.stop().await;
}

/// A system user made for one test and removed after it (root only).
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn add(name: &str, home: &Path) -> TestUser {
        // A user left by a killed run of this test goes first.
        let _ = std::process::Command::new("/usr/sbin/userdel")
            .arg(name)
            .status();
        let ok = std::process::Command::new("/usr/sbin/useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--home-dir",
            ])
            .arg(home)
            .arg(name)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "useradd {name}");
        // The guard first: a panic below still removes the user.
        let mut user = TestUser {
            name: name.to_owned(),
            uid: 0,
            gid: 0,
        };
        let u = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .expect("the new user");
        (user.uid, user.gid) = (u.uid.as_raw(), u.gid.as_raw());
        std::fs::create_dir_all(home).expect("home");
        std::os::unix::fs::chown(home, Some(user.uid), Some(user.gid)).expect("chown home");
        // The temp dir above the home is root's 0700: let the user through.
        if let Some(parent) = home.parent() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711));
        }
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("/usr/sbin/userdel")
            .arg(&self.name)
            .status();
    }
}
