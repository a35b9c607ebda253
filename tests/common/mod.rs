//! Test harness: starts the real daemon through `posbridge::run` on
//! 127.0.0.1:0 and talks to it with real HTTP and WebSocket clients.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod mqtt;
pub mod printer;
pub mod rabbit;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const WAIT: Duration = Duration::from_secs(10);

pub struct Daemon {
    pub addr: SocketAddr,
    /// This daemon's storage.dir (the outbox), removed when the test ends.
    pub state_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub http: reqwest::Client,
}

impl Daemon {
    pub async fn start(toml: &str) -> Daemon {
        Self::start_in(toml, tempfile::tempdir().expect("state dir")).await
    }

    /// Starts on a state directory that may already hold the daemon's files
    /// (a cache left by an earlier run).
    pub async fn start_in(toml: &str, state_dir: tempfile::TempDir) -> Daemon {
        let mut config = posbridge::Config::parse(toml, std::iter::empty(), "test config")
            .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        config.storage.dir = state_dir.path().to_path_buf();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(posbridge::run(config, listener, async {
            let _ = rx.await;
        }));
        Daemon {
            addr,
            state_dir,
            stop: Some(tx),
            task: Some(task),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    pub async fn ws(&self, path_and_query: &str) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url(path_and_query))
            .await
            .expect("websocket connect");
        ws
    }

    pub async fn simulate(&self, device: &str, data: &str) {
        let r = self
            .http
            .post(self.url(&format!("/v1/devices/{device}/simulate")))
            .json(&serde_json::json!({ "data": data }))
            .send()
            .await
            .expect("simulate request");
        assert_eq!(
            r.status(),
            202,
            "simulate failed: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// POSTs JSON; the status and the JSON answer (null when none).
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Waits until `GET /v1/uplink` says connected.
    pub async fn uplink_connected(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.get_json("/v1/uplink").await["connected"] != true {
            assert!(
                tokio::time::Instant::now() < deadline,
                "uplink never connected"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }

    /// The same, presenting a bearer token.
    pub async fn get_json_as(&self, path: &str, token: &str) -> Value {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        r.json().await.expect("json")
    }

    /// Stops the daemon and returns how long shutdown took.
    pub async fn stop(mut self) -> Duration {
        let t = std::time::Instant::now();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("daemon stops in time")
                .expect("daemon task")
                .expect("daemon run ok");
        }
        t.elapsed()
    }
}

/// The next event (text frame) as JSON; pings are skipped.
pub async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an event within the timeout")
            .expect("stream open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("event is JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// Waits for the next event of a given type, skipping others.
pub async fn next_of_type(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let ev = next_event(ws).await;
        if ev["type"] == kind {
            return ev;
        }
    }
}

/// Asserts that no event arrives within `d`.
pub async fn assert_quiet(ws: &mut Ws, d: Duration) {
    if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(d, ws.next()).await {
        panic!("expected no event, got {t}");
    }
}

pub async fn close(mut ws: Ws) {
    let _ = ws.send(Message::Close(None)).await;
}

pub fn sim_config(extra: &str) -> String {
    format!(
        r#"
[store]
id = "store-test"
[api]
allowed_origins = ["https://pos.example.com"]
{extra}
[[device]]
id = "scan-1"
driver = "barcode"
transport = "sim"
[[device]]
id = "scan-2"
driver = "barcode"
transport = "sim"
"#
    )
}

/// A serial device played by the test on a pty master; the daemon opens the
/// slave through a symlink, as it would a /dev/serial/by-id name.
pub struct FakeSerial {
    pub master: std::fs::File,
    // Kept open so the daemon's opens and closes never hang the line up.
    _slave: std::os::fd::OwnedFd,
}

/// Opens a pty pair and (atomically) points `link` at its slave: plugging in.
pub fn plug(link: &std::path::Path) -> FakeSerial {
    let nix::pty::OpenptyResult { master, slave } = nix::pty::openpty(None, None).expect("openpty");
    let name = nix::unistd::ttyname(&slave).expect("ttyname");
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp).expect("symlink");
    std::fs::rename(&tmp, link).expect("move symlink");
    FakeSerial {
        master: std::fs::File::from(master),
        _slave: slave,
    }
}

/// Unplugging: the pty goes away and so does its name.
pub fn unplug(dev: FakeSerial, link: &std::path::Path) {
    drop(dev);
    let _ = std::fs::remove_file(link);
}

/// The real `posbridge` binary, run the way a store runs it (for kill -9,
/// signals and log checks, which an in-process daemon cannot show).
pub struct Binary {
    child: Option<std::process::Child>,
    log: std::path::PathBuf,
    pub url: String,
}

impl Binary {
    /// Starts `posbridge run` with store `s`, a free loopback port, `state` as
    /// storage.dir and `extra` TOML after that; waits until it answers. Its
    /// log goes to a file, so a chatty trace level can never block it on a pipe.
    pub async fn start(state: &std::path::Path, extra: &str, env: &[(&str, &str)]) -> Binary {
        Binary::start_store("s", state, extra, env).await
    }

    /// The same, as store `store` (its config's `store.id`).
    pub async fn start_store(
        store: &str,
        state: &std::path::Path,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Binary {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let cfg = state.with_extension("toml");
        std::fs::write(
            &cfg,
            format!("[store]\nid = \"{store}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[storage]\ndir = \"{}\"\n{extra}\n", state.display()),
        )
        .expect("config");
        let log = state.with_extension(format!("{}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_posbridge"));
        cmd.args(["run", "--config"])
            .arg(&cfg)
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn posbridge");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "posbridge did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        Binary {
            child: Some(child),
            log,
            url,
        }
    }

    /// GET `path` as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("get");
        r.json().await.expect("json")
    }

    /// The ids in `GET /v1/devices`, in its order.
    pub async fn device_ids(&self) -> Vec<String> {
        self.get_json("/v1/devices")
            .await
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `POST /v1/devices/{dev}/simulate` with `data`; the status (0: no answer).
    pub async fn simulate(&self, dev: &str, data: &str) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/v1/devices/{dev}/simulate", self.url))
            .json(&serde_json::json!({ "data": data }))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// Sends a signal (SIGHUP: reload the config).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// What it has logged so far.
    pub fn log_so_far(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait for the exit, and return everything it logged.
    pub fn stop_and_log(mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `within` for the process to exit by itself; its exit code.
    pub fn wait_exit(mut self, within: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A power cut: SIGKILL, no shutdown at all.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
