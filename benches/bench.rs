//! `make bench`: posbridge measured against a floor, side by side, in one run.
//!
//! Every figure is printed as one JSON line on stdout:
//! `{"name", "value", "unit", "baseline": {"name", "value", "unit"} | null, "ratio", "notes"}`
//! (`ratio` = value / baseline value). Progress goes to stderr. Nothing here
//! asserts a time: the figures are reported, not judged. See BENCHMARKS.md.
//!
//! The daemon is the real release binary (`target/release/posbridge`), run as
//! a store runs it; devices are played on real ptys, HQ is a real mosquitto
//! with MQTT clients, pages are real WebSocket clients in this process.
//! `BENCH_SCALE` (default 1) scales the counts down for a quick look.

#[path = "../tests/common/mod.rs"]
mod common;

use common::mqtt::Broker;
use common::{plug, FakeSerial};
use futures_util::{SinkExt, StreamExt};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_posbridge");
const WAIT: Duration = Duration::from_secs(20);
/// Events a fan-out producer may have ahead of the slowest client: below the
/// daemon's default `events.client_queue` (256), so no client is ever cut off.
const WINDOW: u64 = 200;
const CHUNK: u64 = 50;

// ---------------------------------------------------------------- output

struct Base<'a> {
    name: &'a str,
    value: f64,
    unit: &'a str,
}

fn round(v: f64) -> f64 {
    if v.abs() >= 100.0 {
        (v * 10.0).round() / 10.0
    } else {
        (v * 1000.0).round() / 1000.0
    }
}

/// Whole numbers as integers (bytes, counts), the rest rounded.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        json!(v as i64)
    } else {
        json!(round(v))
    }
}

fn emit(name: &str, value: f64, unit: &str, base: Option<Base>, notes: &str) {
    let (baseline, ratio) = match base {
        Some(b) => (
            json!({"name": b.name, "value": number(b.value), "unit": b.unit}),
            if b.value != 0.0 {
                json!(round(value / b.value))
            } else {
                Value::Null
            },
        ),
        None => (Value::Null, Value::Null),
    };
    let line = json!({
        "name": name, "value": number(value), "unit": unit,
        "baseline": baseline, "ratio": ratio, "notes": notes,
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}

fn scale() -> f64 {
    std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0 && *s <= 1.0)
        .unwrap_or(1.0)
}

fn scaled(n: u64) -> u64 {
    ((n as f64 * scale()).round() as u64).max(10)
}

/// Nearest-rank percentile of an ascending slice.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------- the daemon

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// mosquitto as the harness runs it (persistence on), with TCP_NODELAY, so
/// the broker adds no Nagle stall to a request/response through it.
fn broker() -> Broker {
    Broker::start_with("allow_anonymous true\nset_tcp_nodelay true\n")
}

/// An MQTT client of the bench's (HQ, the bare publisher), with TCP_NODELAY.
fn mqtt_client(id: &str, port: u16, inflight: Option<u16>) -> (AsyncClient, rumqttc::EventLoop) {
    mqtt_client_with(id, port, inflight, true)
}

fn mqtt_client_with(
    id: &str,
    port: u16,
    inflight: Option<u16>,
    nodelay: bool,
) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    if let Some(n) = inflight {
        o.set_inflight(n);
    }
    let (client, mut el) = AsyncClient::new(o, 1024);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(nodelay);
    el.set_network_options(net);
    (client, el)
}

/// The real `posbridge run`, its log in a file.
struct Pb {
    child: Option<Child>,
    url: String,
    port: u16,
    log: PathBuf,
}

impl Pb {
    /// Starts it on `state` (storage.dir) with `extra` TOML appended, and
    /// returns it with the time from spawn to the first 200 on /v1/health.
    async fn start(state: &Path, extra: &str) -> (Pb, Duration) {
        std::fs::create_dir_all(state).expect("state dir");
        let port = free_port();
        let cfg = state.join("posbridge.toml");
        std::fs::write(
            &cfg,
            format!(
                // 100 native clients (no Origin) share one per-origin bucket: raise the
                // stream caps (defaults 128 / 16) so the figures measure delivery, not refusal.
                "[store]\nid = \"s\"\n[api]\nlisten = \"127.0.0.1:{port}\"\nmax_streams = 512\nmax_streams_per_origin = 512\n[storage]\ndir = \"{}\"\n{extra}\n",
                state.display()
            ),
        )
        .expect("config");
        let log = state.join("posbridge.log");
        let out = std::fs::File::create(&log).expect("log");
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn posbridge");
        let mut pb = Pb {
            child: Some(child),
            url,
            port,
            log,
        };
        loop {
            if let Ok(r) = http.get(format!("{}/v1/health", pb.url)).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            if t0.elapsed() > WAIT {
                panic!(
                    "posbridge not ready; log:\n{}",
                    std::fs::read_to_string(&pb.log).unwrap_or_default()
                );
            }
            if let Some(Ok(Some(st))) = pb.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "posbridge exited ({st}); log:\n{}",
                    std::fs::read_to_string(&pb.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let ready = t0.elapsed();
        (pb, ready)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    fn ws_url(&self, q: &str) -> String {
        format!("ws://127.0.0.1:{}{q}", self.port)
    }

    async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }

    /// Polls `path` until `ok` holds for it.
    async fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) {
        let t0 = Instant::now();
        loop {
            let v = self.get(path).await;
            if ok(&v) {
                return;
            }
            assert!(t0.elapsed() < WAIT, "{what}: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_device(&self, id: &str) {
        self.wait_for("/v1/devices", "device never connected", |v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|d| d["id"] == id && d["state"] == "connected"))
        })
        .await;
    }

    /// SIGTERM and wait (a store's clean stop).
    fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pb {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// utime + stime, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let rest = &s[s.rfind(')').expect("stat") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------- the floor

/// The floor a device-to-page path cannot beat: bytes from a pty, cut at line
/// ends, each line broadcast as one text frame to every tokio-tungstenite
/// client. Its own two-worker runtime on its own thread, as the daemon has.
struct Floor {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Floor {
    fn start(link: PathBuf) -> Floor {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("floor runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let (frames, _) = tokio::sync::broadcast::channel::<Message>(8192);
                let pty = frames.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut port = tokio_serial::SerialStream::open(&tokio_serial::new(
                        link.to_string_lossy(),
                        9600,
                    ))
                    .expect("floor opens the pty");
                    let mut buf = [0u8; 4096];
                    let mut line = Vec::new();
                    while let Ok(n) = port.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        for &b in &buf[..n] {
                            if b == b'\r' || b == b'\n' {
                                if !line.is_empty() {
                                    let text = String::from_utf8_lossy(&line).into_owned();
                                    let _ = pty.send(Message::Text(text.into()));
                                    line.clear();
                                }
                            } else {
                                line.push(b);
                            }
                        }
                    }
                });
                ready_tx
                    .send(listener.local_addr().expect("addr").port())
                    .expect("ready");
                let accept = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let _ = tcp.set_nodelay(true);
                        let mut rx = frames.subscribe();
                        tokio::spawn(async move {
                            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                                return;
                            };
                            while let Ok(m) = rx.recv().await {
                                if ws.send(m).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        let port = ready_rx.recv().expect("floor started");
        Floor {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- pages

/// One WebSocket page: the last marker seen, gaps, and whether it was cut off.
#[derive(Default)]
struct ClientStat {
    /// Last marker received + 1 (0: none yet).
    next: AtomicU64,
    gaps: AtomicU64,
    /// 0 while open; the close code (or 1 for an error) once closed.
    closed: AtomicU64,
}

struct Clients {
    stats: Vec<Arc<ClientStat>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    rx: mpsc::UnboundedReceiver<(u64, Instant)>,
}

impl Drop for Clients {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Clients {
    async fn connect(url: &str, n: usize, report: bool) -> Clients {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut stats = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("websocket connect");
            let st = Arc::new(ClientStat::default());
            let (s, tx) = (st.clone(), report.then(|| tx.clone()));
            tasks.push(tokio::spawn(read_markers(ws, s, tx)));
            stats.push(st);
        }
        Clients { stats, tasks, rx }
    }

    fn min_next(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.next.load(Relaxed))
            .min()
            .unwrap_or(0)
    }

    fn closed(&self) -> Vec<u64> {
        self.stats
            .iter()
            .map(|s| s.closed.load(Relaxed))
            .filter(|c| *c != 0)
            .collect()
    }

    fn gaps(&self) -> u64 {
        self.stats.iter().map(|s| s.gaps.load(Relaxed)).sum()
    }
}

/// `BENCH` + 8 digits, wherever it is in the frame (an event's `data.text`,
/// or the floor's bare line).
fn marker(text: &str) -> Option<u64> {
    let i = text.find("BENCH")? + 5;
    text.get(i..i + 8)?.parse().ok()
}

fn marker_line(k: u64) -> String {
    format!("BENCH{k:08}\r\n")
}

async fn read_markers(
    mut ws: common::Ws,
    st: Arc<ClientStat>,
    tx: Option<mpsc::UnboundedSender<(u64, Instant)>>,
) {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let at = Instant::now();
                let Some(k) = marker(&t) else { continue };
                let prev = st.next.swap(k + 1, Relaxed);
                if prev != 0 && k != prev {
                    st.gaps.fetch_add(1, Relaxed);
                }
                if let Some(tx) = &tx {
                    let _ = tx.send((k, at));
                }
            }
            Some(Ok(Message::Close(f))) => {
                st.closed
                    .store(f.map_or(1005, |f| u16::from(f.code) as u64), Relaxed);
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                st.closed.store(1, Relaxed);
                return;
            }
        }
    }
}

/// A pty-fed server (posbridge or the floor) and the pages connected to it.
struct PtyTarget {
    dev: FakeSerial,
    ws_url: String,
    next_k: u64,
}

impl PtyTarget {
    fn write(&mut self, bytes: &[u8]) {
        self.dev.master.write_all(bytes).expect("pty write");
    }

    /// Writes markers until every client has one (late subscribers miss the
    /// first few); afterwards every client is at `next_k`.
    async fn sync(&mut self, c: &Clients) {
        for _ in 0..200 {
            let k = self.next_k;
            self.next_k += 1;
            self.write(marker_line(k).as_bytes());
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_millis(300) {
                if c.min_next() > k {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        panic!("clients never all received an event");
    }
}

/// Receipt times of marker `k` at all `n` clients.
async fn receipts(c: &mut Clients, k: u64, n: usize) -> Vec<Instant> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, c.rx.recv()).await {
            Ok(Some((m, at))) if m == k => got.push(at),
            Ok(Some(_)) => {}
            _ => panic!("marker {k} reached {} of {n} clients", got.len()),
        }
    }
    got
}

/// Device-to-page latency: pty write → frame at each of `n` clients, one
/// event at a time with 2 ms of quiet between them. Milliseconds, every receipt.
async fn latency(t: &mut PtyTarget, n: usize, samples: u64) -> Vec<f64> {
    let mut c = Clients::connect(&t.ws_url, n, true).await;
    t.sync(&c).await;
    for _ in 0..20 {
        // Warm-up, not recorded.
        let k = t.next_k;
        t.next_k += 1;
        t.write(marker_line(k).as_bytes());
        receipts(&mut c, k, n).await;
    }
    let mut out = Vec::with_capacity(samples as usize * n);
    for _ in 0..samples {
        let k = t.next_k;
        t.next_k += 1;
        let line = marker_line(k);
        let t0 = Instant::now();
        t.write(line.as_bytes());
        for at in receipts(&mut c, k, n).await {
            out.push(ms(at - t0));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    out
}

struct Fanout {
    events_per_s: f64,
    dropped_clients: usize,
    gaps: u64,
}

/// Fan-out: `events` markers written as fast as the slowest of `n` clients
/// allows (at most WINDOW ahead of it); time until every client has all.
async fn fanout(t: &mut PtyTarget, n: usize, events: u64) -> Fanout {
    let c = Clients::connect(&t.ws_url, n, false).await;
    t.sync(&c).await;
    let k0 = t.next_k;
    let end = k0 + events;
    let stats = c.stats.clone();
    let mut master = t.dev.master.try_clone().expect("pty clone");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let t0 = Instant::now();
    let producer = std::thread::spawn(move || {
        let mut k = k0;
        let mut buf = String::new();
        while k < end && !stopped.load(Relaxed) {
            let slowest = stats
                .iter()
                .map(|s| s.next.load(Relaxed))
                .min()
                .unwrap_or(0);
            if k + CHUNK.min(end - k) > slowest + WINDOW {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            buf.clear();
            let upto = (k + CHUNK).min(end);
            for m in k..upto {
                buf.push_str(&marker_line(m));
            }
            master.write_all(buf.as_bytes()).expect("pty write");
            k = upto;
        }
    });
    let mut done = false;
    while t0.elapsed() < Duration::from_secs(300) {
        if c.min_next() >= end {
            done = true;
            break;
        }
        if !c.closed().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = t0.elapsed();
    stop.store(true, Relaxed);
    let _ = producer.join();
    t.next_k = end;
    let dropped = c.closed().len();
    assert!(
        done || dropped > 0,
        "fan-out did not finish: {} of {events}",
        c.min_next().saturating_sub(k0)
    );
    Fanout {
        events_per_s: if done {
            events as f64 / elapsed.as_secs_f64()
        } else {
            0.0
        },
        dropped_clients: dropped,
        gaps: c.gaps(),
    }
}

// ---------------------------------------------------------------- 1. device to page

async fn bench_device_to_page(lat_samples: u64, lat100_samples: u64, fan_events: u64) {
    let dir = tempfile::tempdir().expect("tmp");
    let floor_link = dir.path().join("ttyFloor");
    let pb_link = dir.path().join("ttyScanner");
    let floor_dev = plug(&floor_link);
    let pb_dev = plug(&pb_link);
    let floor = Floor::start(floor_link);
    let (pb, _) = Pb::start(
        &dir.path().join("state"),
        &format!(
            "[[device]]\nid = \"scan-1\"\ndriver = \"barcode\"\ntransport = \"serial\"\npath = \"{}\"\n",
            pb_link.display()
        ),
    )
    .await;
    pb.wait_device("scan-1").await;
    let mut fl = PtyTarget {
        dev: floor_dev,
        ws_url: format!("ws://127.0.0.1:{}/", floor.port),
        next_k: 1,
    };
    let mut pt = PtyTarget {
        dev: pb_dev,
        ws_url: pb.ws_url("/v1/events?types=code.scanned"),
        next_k: 1,
    };

    let mut alone = Vec::new();
    for (n, samples) in [(1usize, lat_samples), (100, lat100_samples)] {
        progress(&format!(
            "device→page latency, {n} client(s), {samples} events"
        ));
        let base = sorted(latency(&mut fl, n, samples).await);
        let ours = sorted(latency(&mut pt, n, samples).await);
        let label = if n == 1 { "1_client" } else { "100_clients" };
        if n == 1 {
            alone.clone_from(&ours);
        }
        for (stat, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
            emit(
                &format!("device_to_page.{label}.{stat}"),
                pct(&ours, p),
                "ms",
                Some(Base {
                    name: &format!("floor.pty_to_tungstenite.{label}.{stat}"),
                    value: pct(&base, p),
                    unit: "ms",
                }),
                &format!(
                    "pty write → code.scanned frame at the WebSocket client (barcode driver, serial transport); {samples} events one at a time, {} receipts; baseline: the same bytes through a bare pty → tokio-tungstenite broadcast",
                    ours.len()
                ),
            );
        }
    }

    under_ingest(&pb, &mut pt, lat_samples, &alone).await;

    progress(&format!("fan-out, 100 clients, {fan_events} events"));
    let base = fanout(&mut fl, 100, fan_events).await;
    let ours = fanout(&mut pt, 100, fan_events).await;
    emit(
        "fanout.100_clients.throughput",
        ours.events_per_s,
        "msg/s",
        Some(Base {
            name: "floor.pty_to_tungstenite.100_clients.throughput",
            value: base.events_per_s,
            unit: "msg/s",
        }),
        &format!(
            "{fan_events} events each delivered to all 100 clients ({:.0} frames/s); the writer stays at most {WINDOW} events ahead of the slowest client (default events.client_queue is 256)",
            ours.events_per_s * 100.0
        ),
    );
    emit(
        "fanout.100_clients.drops",
        (ours.dropped_clients as u64 + ours.gaps) as f64,
        "events",
        Some(Base {
            name: "floor.pty_to_tungstenite.100_clients.drops",
            value: (base.dropped_clients as u64 + base.gaps) as f64,
            unit: "events",
        }),
        &format!(
            "clients cut off: {}, missing or out-of-order events: {} (must be 0)",
            ours.dropped_clients, ours.gaps
        ),
    );
    pb.stop();
    drop(floor);
}

/// Scans while pages post transactions as fast as they can: what durable
/// ingest (its commits, its fsyncs) costs the events beside it.
async fn under_ingest(pb: &Pb, pt: &mut PtyTarget, samples: u64, alone: &[f64]) {
    const POSTERS: usize = 4;
    progress(&format!(
        "device→page latency, 1 client, {samples} events, {POSTERS} clients posting transactions"
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let load = post_load(format!("{}/v1/transactions", pb.url), POSTERS, stop.clone());
    let ours = sorted(latency(pt, 1, samples).await);
    stop.store(true, Relaxed);
    let posted = load.await.expect("posters");
    for (stat, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        emit(
            &format!("device_to_page.1_client_under_ingest.{stat}"),
            pct(&ours, p),
            "ms",
            Some(Base {
                name: &format!("device_to_page.1_client.{stat}"),
                value: pct(alone, p),
                unit: "ms",
            }),
            &format!(
                "as device_to_page.1_client while {POSTERS} HTTP clients post transactions back to back ({posted} stored, each its own durable commit or a share of one); baseline: the daemon's own figure without them, from this run"
            ),
        );
    }
}

/// `clients` posting transactions back to back until `stop`; how many were stored.
fn post_load(url: String, clients: usize, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let posters = (0..clients).map(|c| {
            let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut ok = 0u64;
                while !stop.load(Relaxed) {
                    let id = format!("load{c}-{}", ulid::Ulid::new());
                    match http.post(&url).json(&tx_body(&id)).send().await {
                        Ok(r) if r.status() == 202 => ok += 1,
                        _ => {}
                    }
                }
                ok
            })
        });
        let mut ok = 0;
        for p in posters.collect::<Vec<_>>() {
            ok += p.await.unwrap_or(0);
        }
        ok
    })
}

// ---------------------------------------------------------------- 2. transactions

fn tx_body(id: &str) -> Value {
    json!({"id": id, "type": "recharge", "member": "M000123", "amount_fen": 10000, "till": "till-1"})
}

async fn post_for(url: String, clients: usize, dur: Duration) -> (u64, u64, Duration) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + dur;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut bad) = (0u64, 0u64);
            let mut i = 0u64;
            while Instant::now() < deadline {
                let id = format!("c{c}-{i:08}-{}", ulid::Ulid::new());
                i += 1;
                match http.post(&url).json(&tx_body(&id)).send().await {
                    Ok(r) if r.status() == 202 => ok += 1,
                    _ => bad += 1,
                }
            }
            (ok, bad)
        }));
    }
    let (mut ok, mut bad) = (0, 0);
    for t in tasks {
        let (o, b) = t.await.expect("poster");
        ok += o;
        bad += b;
    }
    (ok, bad, t0.elapsed())
}

/// The floor for a durable insert: one row per transaction, WAL +
/// synchronous=FULL (the commit fsyncs), on the same disk.
fn bare_sqlite(dir: &Path, dur: Duration) -> f64 {
    std::fs::create_dir_all(dir).expect("dir");
    let conn = rusqlite::Connection::open(dir.join("bare.db")).expect("sqlite");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    conn.execute_batch(
        "CREATE TABLE tx (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, queued_at TEXT NOT NULL)",
    )
    .expect("schema");
    let mut st = conn
        .prepare("INSERT INTO tx (id, body, queued_at) VALUES (?1, ?2, ?3)")
        .expect("prepare");
    let mut insert = |n: u64| {
        let id = format!("b-{n:08}-{}", ulid::Ulid::new());
        st.execute(rusqlite::params![
            id,
            tx_body(&id).to_string(),
            "2026-11-24T10:00:00.000Z"
        ])
        .expect("insert");
    };
    for n in 0..100 {
        insert(n); // warm-up, as the daemon gets
    }
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < dur {
        insert(100 + n);
        n += 1;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// The HTTP floor for `POST /v1/transactions`: a bare axum server (the
/// daemon's own HTTP stack, without its guards or storage) on its own
/// 2-worker runtime, parsing each body as JSON, checking `id` and answering
/// 202 `{"id", "state": "queued"}` without storing anything.
struct HttpFloor {
    url: String,
    stop: Option<oneshot::Sender<()>>,
}

impl HttpFloor {
    fn start() -> HttpFloor {
        use axum::{http::StatusCode, routing::post, Json, Router};
        async fn take(Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
            match body.get("id").and_then(Value::as_str) {
                Some(id) => (
                    StatusCode::ACCEPTED,
                    Json(json!({"id": id, "state": "queued"})),
                ),
                None => (StatusCode::BAD_REQUEST, Json(json!({"error": "id"}))),
            }
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!(
            "http://{}/v1/transactions",
            listener.local_addr().expect("addr")
        );
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = Router::new().route("/v1/transactions", post(take));
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        HttpFloor {
            url,
            stop: Some(stop),
        }
    }
}

impl Drop for HttpFloor {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// `http.floor.{label}`: the same clients against the bare HTTP floor.
async fn http_floor(floor: &HttpFloor, clients: usize, label: &str, dur: Duration) -> f64 {
    progress(&format!(
        "HTTP floor, {clients} client(s), {:.0} s",
        dur.as_secs_f64()
    ));
    let (ok, bad, took) = post_for(floor.url.clone(), clients, dur).await;
    let rate = ok as f64 / took.as_secs_f64();
    emit(
        &format!("http.floor.{label}"),
        rate,
        "req/s",
        None,
        &format!(
            "the same POST /v1/transactions bodies from {clients} concurrent reqwest client(s) to a bare axum server (own 2-worker runtime; JSON parsed, id checked, 202 answered, nothing stored) over {:.1} s: {ok} answered{}",
            took.as_secs_f64(),
            if bad > 0 { format!(", {bad} NOT 202") } else { String::new() }
        ),
    );
    rate
}

async fn bench_transactions(secs: f64) {
    let dur = Duration::from_secs_f64(secs);
    let dir = tempfile::tempdir().expect("tmp");
    let (pb, _) = Pb::start(&dir.path().join("state"), "").await;
    let floor = HttpFloor::start();
    let url = format!("{}/v1/transactions", pb.url);
    let _ = post_for(url.clone(), 4, Duration::from_millis(300)).await; // warm-up
    let _ = post_for(floor.url.clone(), 4, Duration::from_millis(300)).await;
    for clients in [1usize, 32] {
        let label = if clients == 1 {
            "1_client"
        } else {
            "32_clients"
        };
        let http = http_floor(&floor, clients, label, dur).await;
        // The disk's baseline right before each run: its speed drifts.
        progress(&format!("bare SQLite insert + fsync per row, {secs:.0} s"));
        let d = dir.path().join(format!("bare-{clients}"));
        let bare = tokio::task::spawn_blocking(move || bare_sqlite(&d, dur))
            .await
            .expect("bare sqlite");
        progress(&format!(
            "POST /v1/transactions, {clients} client(s), {secs:.0} s"
        ));
        let before = pb.get("/v1/uplink").await;
        let (ok, bad, took) = post_for(url.clone(), clients, dur).await;
        let after = pb.get("/v1/uplink").await;
        let commits = after["commits_total"].as_u64().unwrap_or(0)
            - before["commits_total"].as_u64().unwrap_or(0);
        let rate = ok as f64 / took.as_secs_f64();
        // One client waits for a round trip and a commit, one after the
        // other: its floor is the two times added. Many clients share
        // commits: their floor is HTTP alone.
        let (base_name, base) = if clients == 1 {
            let both = 1.0 / (1.0 / http + 1.0 / bare);
            ("http.floor.1_client + sqlite.insert_fsync_per_row", both)
        } else {
            ("http.floor.32_clients", http)
        };
        emit(
            &format!("transactions.{label}"),
            rate,
            "tx/s",
            Some(Base {
                name: base_name,
                value: base,
                unit: "tx/s",
            }),
            &format!(
                "202s (each on disk, WAL + synchronous=FULL) from {clients} concurrent HTTP client(s) over {:.1} s: {ok} stored in {commits} commits ({:.1} per commit){}; baseline: {}; for comparison, one rusqlite INSERT + commit (fsync) per row, WAL + synchronous=FULL, same disk, measured just before: {bare:.0} tx/s ({:.2}x)",
                took.as_secs_f64(),
                ok as f64 / commits.max(1) as f64,
                if bad > 0 { format!(", {bad} NOT 202") } else { String::new() },
                if clients == 1 {
                    format!("one HTTP round trip to the bare floor ({:.3} ms) plus one bare insert + fsync ({:.3} ms), one after the other", 1000.0 / http, 1000.0 / bare)
                } else {
                    "the bare HTTP floor from the same 32 clients, nothing stored".to_owned()
                },
                rate / bare
            ),
        );
    }
    pb.stop();
}

// ---------------------------------------------------------------- 3. relay

/// HQ: counts every distinct `id` arriving on `topic`; reports when it has `n`.
struct Counted {
    first: Instant,
    last: Instant,
    messages: u64,
    sample: String,
}

async fn hq_counter(
    port: u16,
    client_id: &str,
    topic: &str,
    n: usize,
) -> oneshot::Receiver<Counted> {
    let (client, mut el) = mqtt_client(client_id, port, None);
    client
        .subscribe(topic, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (ready_tx, ready_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut ready = Some(ready_tx);
        let mut done = Some(done_tx);
        let mut ids: HashSet<String> = HashSet::with_capacity(n);
        let (mut first, mut messages, mut sample) = (None, 0u64, String::new());
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let now = Instant::now();
                    messages += 1;
                    if first.is_none() {
                        first = Some(now);
                        sample = String::from_utf8_lossy(&p.payload).into_owned();
                    }
                    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
                        if let Some(id) = v["id"].as_str() {
                            ids.insert(id.to_owned());
                        }
                    }
                    if ids.len() == n {
                        if let Some(d) = done.take() {
                            let _ = d.send(Counted {
                                first: first.unwrap_or(now),
                                last: now,
                                messages,
                                sample: std::mem::take(&mut sample),
                            });
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(WAIT, ready_rx)
        .await
        .expect("HQ subscribed")
        .expect("HQ task");
    done_rx
}

/// Seeds `n` queued transactions straight into the outbox file (the schema
/// comes from `Outbox::open`), as if the store had been offline for a while.
fn seed_outbox(state: &Path, n: u64) {
    use posbridge::uplink::outbox::{AckMode, Outbox};
    drop(
        Outbox::open(
            state,
            1_000_000,
            AckMode::Broker,
            Duration::from_secs(86_400),
        )
        .expect("outbox schema"),
    );
    let mut conn = rusqlite::Connection::open(state.join("outbox.db")).expect("outbox");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    let t = conn.transaction().expect("tx");
    {
        let mut st = t
            .prepare("INSERT INTO tx (id, body, queued_at) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        for i in 0..n {
            let id = format!("t-{i:06}");
            st.execute(rusqlite::params![
                id,
                tx_body(&id).to_string(),
                "2026-11-24T10:00:00.000Z"
            ])
            .expect("seed");
        }
    }
    t.commit().expect("commit");
}

async fn bench_relay(n: u64) {
    let broker = broker();
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    progress(&format!("relay: seeding {n} transactions"));
    let seeded = Instant::now();
    let s2 = state.clone();
    tokio::task::spawn_blocking(move || seed_outbox(&s2, n))
        .await
        .expect("seed");
    let seed_s = seeded.elapsed().as_secs_f64();

    progress(&format!("relay: draining {n} into mosquitto"));
    let done = hq_counter(broker.port, "bench-hq-relay", "posbridge/s/tx", n as usize).await;
    let (pb, _) = Pb::start(
        &state,
        &format!(
            "[uplink]\nurl = \"{}\"\nclient_id = \"bench-relay\"\n",
            broker.url()
        ),
    )
    .await;
    let got = tokio::time::timeout(Duration::from_secs(600), done)
        .await
        .expect("every transaction at HQ")
        .expect("counter");
    let at_hq = got.last - got.first;
    // The drain is over when the outbox has marked every one sent.
    pb.wait_for("/v1/uplink", "backlog never drained", |v| v["backlog"] == 0)
        .await;
    let backlog_zero = got.first.elapsed();
    let relay_rate = (n - 1) as f64 / at_hq.as_secs_f64();
    let up = pb.get("/v1/uplink").await;
    pb.stop();

    progress(&format!(
        "relay baseline: bare rumqttc QoS 1 publisher, {n} messages"
    ));
    let template = got.sample.clone();
    let sample_id = serde_json::from_str::<Value>(&template).expect("relay payload is JSON")["id"]
        .as_str()
        .expect("relay payload has an id")
        .to_owned();
    let done = hq_counter(broker.port, "bench-hq-bare", "bench/s/tx", n as usize).await;
    let (client, mut el) = mqtt_client("bench-bare-publisher", broker.port, Some(64));
    let poller = tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    for i in 0..n {
        let payload = template.replace(&sample_id, &format!("b-{i:06}"));
        client
            .publish("bench/s/tx", QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
    }
    let bare = tokio::time::timeout(Duration::from_secs(600), done)
        .await
        .expect("every bare message at HQ")
        .expect("counter");
    poller.abort();
    let bare_rate = (n - 1) as f64 / (bare.last - bare.first).as_secs_f64();
    emit(
        "relay.drain_backlog",
        relay_rate,
        "msg/s",
        Some(Base {
            name: "mqtt.bare_rumqttc_qos1_publisher",
            value: bare_rate,
            unit: "msg/s",
        }),
        &format!(
            "{n} queued transactions (seeded into outbox.db in {seed_s:.1} s) relayed at QoS 1 to a real mosquitto 2.0 and counted by id at an HQ subscriber (first to last arrival: {:.2} s; {} messages for {n} ids); backlog 0 in outbox.db {:.2} s after the first arrival; broker_acked_total {}; payload {} bytes; baseline: rumqttc QoS 1, 64 in flight like the relay, no persistence, same payload size, same broker and HQ",
            at_hq.as_secs_f64(),
            got.messages,
            backlog_zero.as_secs_f64(),
            up["broker_acked_total"],
            template.len()
        ),
    );
}

// ---------------------------------------------------------------- 4. caller popup

fn member_phone(i: u64) -> String {
    format!("139{i:08}")
}

/// Member `i`'s magstripe card number.
fn member_card(i: u64) -> String {
    format!("88{i:08}")
}

/// `n` members straight into members.db (schema from `Members::open`, keys
/// from its `phone_keys`), as HQ's pushes would have left them.
fn seed_members(state: &Path, n: u64) {
    use posbridge::uplink::members::{card_key, phone_keys, Members};
    std::fs::create_dir_all(state).expect("state");
    drop(Members::open(state, None).expect("members schema"));
    let mut conn = rusqlite::Connection::open(state.join("members.db")).expect("members");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "OFF")
        .expect("sync");
    let t = conn.transaction().expect("tx");
    {
        let mut m = t
            .prepare("INSERT INTO member (id, json, updated_at) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        let mut p = t
            .prepare("INSERT OR IGNORE INTO member_phone (key, member_id) VALUES (?1, ?2)")
            .expect("prepare");
        let mut c = t
            .prepare("INSERT OR IGNORE INTO member_card (key, member_id) VALUES (?1, ?2)")
            .expect("prepare");
        for i in 0..n {
            let id = format!("m-{i:07}");
            let phone = member_phone(i);
            let card = member_card(i);
            let j = json!({"id": id, "name": format!("会员{i}"), "tier": "金卡", "points": i % 5000, "balance_fen": i % 100_000, "last_visit": "2026-11-01", "phones": [phone], "cards": [{"type": "magstripe", "value": card}]});
            m.execute(rusqlite::params![
                id,
                j.to_string(),
                "2026-11-24T10:00:00.000Z"
            ])
            .expect("member");
            for k in phone_keys(&phone) {
                p.execute(rusqlite::params![k, id]).expect("phone");
            }
            let key = card_key("magstripe", &card).expect("card key");
            c.execute(rusqlite::params![key, id]).expect("card");
        }
    }
    t.commit().expect("commit");
}

/// HQ answering every lookup request at once (and the floor's requests).
async fn hq_responder(port: u16) -> tokio::task::JoinHandle<()> {
    let (client, mut el) = mqtt_client("bench-hq-lookup", port, None);
    for t in ["posbridge/s/lookup/request", "floor/lookup/request"] {
        client.subscribe(t, QoS::AtLeastOnce).await.expect("sub");
    }
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut subacks = 0;
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let q: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    let phone = q["phone"].as_str().unwrap_or("").to_owned();
                    let answer = json!({"corr": q["corr"], "member": {"id": format!("hq-{phone}"), "name": "HQ member", "tier": "银卡", "phones": [phone]}});
                    let _ = client.try_publish(
                        p.topic.replace("/request", "/response"),
                        QoS::AtLeastOnce,
                        false,
                        answer.to_string(),
                    );
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    subacks += 1;
                    if subacks == 2 {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(WAIT, ready_rx)
        .await
        .expect("HQ responder subscribed")
        .expect("task");
    task
}

/// The MQTT floor under an HQ lookup: request → HQ → response through the
/// same broker, no daemon.
async fn mqtt_round_trips(port: u16, n: u64, nodelay: bool) -> Vec<f64> {
    let id = format!("bench-floor-lookup-{nodelay}");
    let (client, mut el) = mqtt_client_with(&id, port, None, nodelay);
    client
        .subscribe("floor/lookup/response", QoS::AtLeastOnce)
        .await
        .expect("sub");
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Value)>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let at = Instant::now();
                    let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    let _ = tx.send((at, v));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    let _ = ready_rx.await;
    let mut out = Vec::new();
    for i in 0..n + 5 {
        let t0 = Instant::now();
        client
            .publish(
                "floor/lookup/request",
                QoS::AtLeastOnce,
                false,
                json!({"corr": format!("f{i}"), "phone": "+8613700000000"}).to_string(),
            )
            .await
            .expect("publish");
        loop {
            let (at, v) = tokio::time::timeout(WAIT, rx.recv())
                .await
                .expect("floor response")
                .expect("open");
            if v["corr"] == format!("f{i}") {
                if i >= 5 {
                    out.push(ms(at - t0));
                }
                break;
            }
        }
        // Spaced like the calls.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    out
}

async fn bench_popup(members: u64, calls: u64, floor_1: &[f64]) {
    let broker = broker();
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    progress(&format!("popup: seeding {members} members"));
    let seeded = Instant::now();
    let s2 = state.clone();
    tokio::task::spawn_blocking(move || seed_members(&s2, members))
        .await
        .expect("seed");
    let seed_s = seeded.elapsed().as_secs_f64();
    let db_mb = std::fs::metadata(state.join("members.db"))
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(0.0);

    let responder = hq_responder(broker.port).await;
    let link = dir.path().join("ttyCid");
    let mut dev = plug(&link);
    let msr_link = dir.path().join("ttyMsr");
    let mut msr = plug(&msr_link);
    let (pb, _) = Pb::start(
        &state,
        &format!(
            "[uplink]\nurl = \"{}\"\nclient_id = \"bench-popup\"\n[[device]]\nid = \"phone-1\"\ndriver = \"callerid\"\ntransport = \"serial\"\npath = \"{}\"\nformat = \"modem\"\n[[device]]\nid = \"msr-1\"\ndriver = \"magstripe\"\ntransport = \"serial\"\npath = \"{}\"\n",
            broker.url(),
            link.display(),
            msr_link.display()
        ),
    )
    .await;
    pb.wait_device("msr-1").await;
    pb.wait_for("/v1/uplink", "uplink never connected", |v| {
        v["connected"] == true
    })
    .await;
    let cached = pb.get("/v1/uplink").await["members_cached"].as_u64();
    pb.wait_device("phone-1").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(pb.ws_url("/v1/events?types=call.popup"))
        .await
        .expect("ws");

    let mut call = |number: String| {
        let bytes = format!("RING\r\nNMBR = {number}\r\nNAME = BENCH CALLER\r\n\r\n");
        let t0 = Instant::now();
        dev.master.write_all(bytes.as_bytes()).expect("pty write");
        (number, t0)
    };
    async fn popup_for(ws: &mut common::Ws, number: &str) -> (Instant, Value) {
        loop {
            let m = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("call.popup in time")
                .expect("open")
                .expect("frame");
            let at = Instant::now();
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).expect("json");
                if v["data"]["number"] == number {
                    return (at, v);
                }
            }
        }
    }

    progress(&format!("popup: {calls} cache hits, {calls} HQ lookups"));
    let mut rng = fastrand::Rng::with_seed(7);
    let mut results = Vec::new();
    for (label, source) in [("cache_hit", "cache"), ("hq_lookup", "hq")] {
        let (mut lat, mut took, mut wrong) = (Vec::new(), Vec::new(), 0);
        for i in 0..calls + 3 {
            let number = if source == "cache" {
                member_phone(rng.u64(0..members))
            } else {
                format!("137{:08}", 10_000_000 + i)
            };
            let (number, t0) = call(number);
            let (at, v) = popup_for(&mut ws, &number).await;
            if i < 3 {
                continue; // warm-up
            }
            if v["data"]["source"] != source {
                wrong += 1;
            }
            lat.push(ms(at - t0));
            took.push(v["data"]["took_ms"].as_f64().unwrap_or(f64::NAN));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        results.push((label, source, sorted(lat), sorted(took), wrong));
    }
    progress(&format!(
        "identify: {calls} swipes of cached members' cards"
    ));
    let identified = identify_swipes(&pb, &mut msr, members, calls).await;
    progress("popup baseline: bare MQTT request/response round trips");
    let rtt = sorted(mqtt_round_trips(broker.port, calls, true).await);
    // The same client without TCP_NODELAY (rumqttc's default): what Nagle's
    // algorithm costs a request/response over MQTT.
    let rtt_nagle = sorted(mqtt_round_trips(broker.port, calls, false).await);
    pb.stop();
    responder.abort();

    emit_identify(&identified, members, floor_1);
    for (label, source, lat, took, wrong) in results {
        for (stat, p) in [("p50", 50.0), ("p99", 99.0)] {
            let (bname, bval) = if source == "cache" {
                (
                    format!("floor.pty_to_tungstenite.1_client.{stat}"),
                    pct(floor_1, p),
                )
            } else {
                // An HQ lookup is both legs: the box to the page, and the
                // question to HQ and back.
                (
                    format!(
                        "mqtt.request_response_round_trip.{stat} + floor.pty_to_tungstenite.1_client.{stat}"
                    ),
                    pct(&rtt, p) + pct(floor_1, p),
                )
            };
            emit(
                &format!("popup.{label}.{stat}"),
                pct(&lat, p),
                "ms",
                Some(Base {
                    name: &bname,
                    value: bval,
                    unit: "ms",
                }),
                &format!(
                    "modem box on a pty: last byte of `RING/NMBR/NAME` → call.popup (source {source}) at a WebSocket client; {} calls, distinct numbers; {} members in members.db ({db_mb:.0} MB, seeded in {seed_s:.1} s; /v1/uplink members_cached {}); daemon-side took_ms {stat} {}{}; baseline: {}{}",
                    lat.len(),
                    members,
                    cached.map_or("?".into(), |c| c.to_string()),
                    pct(&took, p),
                    if wrong > 0 { format!("; {wrong} popups had another source!") } else { String::new() },
                    if source == "cache" {
                        "the pty → tokio-tungstenite floor (1 client) measured above"
                    } else {
                        "an MQTT request → HQ → response round trip through the same mosquitto (set_tcp_nodelay), same HQ responder, rumqttc client with TCP_NODELAY, no daemon, plus the pty → tokio-tungstenite floor (1 client)"
                    },
                    if source == "cache" {
                        String::new()
                    } else {
                        format!(
                            "; the round trip alone {stat} {:.3} ms; from a client without TCP_NODELAY (rumqttc's default): {stat} {:.3} ms",
                            pct(&rtt, p),
                            pct(&rtt_nagle, p)
                        )
                    }
                ),
            );
        }
    }
}

/// Swipes of cached members' cards on the magstripe pty: (latency from the
/// last byte to `member.identified` at a client, daemon-side `took_ms`, wrong answers).
async fn identify_swipes(
    pb: &Pb,
    msr: &mut FakeSerial,
    members: u64,
    swipes: u64,
) -> (Vec<f64>, Vec<f64>, usize) {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(pb.ws_url("/v1/events?types=member.identified"))
            .await
            .expect("ws");
    let mut rng = fastrand::Rng::with_seed(11);
    let (mut lat, mut took, mut wrong) = (Vec::new(), Vec::new(), 0);
    for i in 0..swipes + 3 {
        let m = rng.u64(0..members);
        let t0 = Instant::now();
        msr.master
            // Tracks 2 and 3: nothing can follow track 3, so the swipe is
            // decided at its last byte, not after the reader's idle gap.
            .write_all(format!(";{c}?;{c}?\r\n", c = member_card(m)).as_bytes())
            .expect("pty write");
        let v = loop {
            let f = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("member.identified in time")
                .expect("open")
                .expect("frame");
            if let Message::Text(t) = f {
                break serde_json::from_str::<Value>(&t).expect("json");
            }
        };
        let at = Instant::now();
        if i < 3 {
            continue; // warm-up
        }
        if v["data"]["member"]["id"] != format!("m-{m:07}") || v["data"]["source"] != "cache" {
            wrong += 1;
        }
        lat.push(ms(at - t0));
        took.push(v["data"]["took_ms"].as_f64().unwrap_or(f64::NAN));
        // A person swipes the next card a moment later (magstripe.rs).
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    (sorted(lat), sorted(took), wrong)
}

fn emit_identify(r: &(Vec<f64>, Vec<f64>, usize), members: u64, floor_1: &[f64]) {
    let (lat, took, wrong) = r;
    for (stat, p) in [("p50", 50.0), ("p99", 99.0)] {
        emit(
            &format!("identify.cache_hit.{stat}"),
            pct(lat, p),
            "ms",
            Some(Base {
                name: &format!("floor.pty_to_tungstenite.1_client.{stat}"),
                value: pct(floor_1, p),
                unit: "ms",
            }),
            &format!(
                "magstripe reader on a pty: last byte of a member's swipe (tracks 2 and 3, so decided at once) → member.identified (source cache) at a WebSocket client; {} swipes of distinct members' cards among {members} members in members.db; daemon-side took_ms {stat} {}{}; baseline: the pty → tokio-tungstenite floor (1 client)",
                lat.len(),
                pct(took, p),
                if *wrong > 0 { format!("; {wrong} answers were wrong!") } else { String::new() },
            ),
        );
    }
}

// ---------------------------------------------------------------- 5. footprint

fn demo_devices() -> &'static str {
    "[[device]]\nid = \"scanner-1\"\ndriver = \"barcode\"\ntransport = \"sim\"\n\
     [[device]]\nid = \"scanner-2\"\ndriver = \"barcode\"\ntransport = \"sim\"\nmember_pattern = \"^M\\\\d{6}$\"\n\
     [[device]]\nid = \"msr-1\"\ndriver = \"magstripe\"\ntransport = \"sim\"\n\
     [[device]]\nid = \"rfid-1\"\ndriver = \"rfid-wedge\"\ntransport = \"sim\"\n\
     [[device]]\nid = \"id-1\"\ndriver = \"idcard-sam\"\ntransport = \"sim\"\n\
     [[device]]\nid = \"phone-1\"\ndriver = \"callerid\"\ntransport = \"sim\"\nformat = \"modem\"\n"
}

async fn bench_footprint() {
    let dir = tempfile::tempdir().expect("tmp");
    progress("footprint: 5 start-ups");
    let mut starts = Vec::new();
    let mut last = None;
    for i in 0..5 {
        let (pb, ready) = Pb::start(&dir.path().join(format!("state-{i}")), demo_devices()).await;
        starts.push(ms(ready));
        if i < 4 {
            pb.stop();
        } else {
            last = Some(pb);
        }
    }
    let pb = last.expect("daemon");
    let starts = sorted(starts);
    emit(
        "footprint.startup_to_ready",
        pct(&starts, 50.0),
        "ms",
        None,
        &format!(
            "spawn of the release binary → first 200 on /v1/health, demo config (6 sim devices), fresh storage.dir; median of 5 (min {:.1}, max {:.1})",
            starts[0],
            starts[starts.len() - 1]
        ),
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = pb.pid();
    let rss = proc_status_kb(pid, "VmRSS:") as f64 / 1024.0;
    let threads = proc_status_kb(pid, "Threads:");
    emit(
        "footprint.idle_rss",
        rss,
        "MB",
        None,
        &format!(
            "VmRSS of the idle daemon with 6 sim devices, no clients (MiB; {threads} threads)"
        ),
    );
    // Most of VmRSS is the binary's text, clean and shared with the page
    // cache; what the daemon itself allocated is the anonymous part.
    let anon = proc_status_kb(pid, "RssAnon:") as f64 / 1024.0;
    emit(
        "footprint.idle_rss_anon",
        anon,
        "MB",
        None,
        &format!(
            "RssAnon of the same idle daemon: heap, stacks and buffers it allocated (MiB; the other {:.1} MiB of VmRSS are mapped files, mostly the binary)",
            rss - anon
        ),
    );
    progress("footprint: 10 s idle CPU");
    let (c0, t0) = (cpu_ticks(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (c1, el) = (cpu_ticks(pid), t0.elapsed());
    let cpu = (c1 - c0) as f64 / clk_tck() / el.as_secs_f64() * 100.0;
    emit(
        "footprint.idle_cpu",
        cpu,
        "%",
        None,
        &format!(
            "utime+stime from /proc/<pid>/stat over {:.1} s idle, % of one core ({} ticks at {} Hz)",
            el.as_secs_f64(),
            c1 - c0,
            clk_tck()
        ),
    );
    let mut clients = Vec::new();
    for _ in 0..100 {
        let (ws, _) = tokio_tungstenite::connect_async(pb.ws_url("/v1/events"))
            .await
            .expect("ws");
        clients.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss100 = proc_status_kb(pid, "VmRSS:") as f64 / 1024.0;
    emit(
        "footprint.rss_100_clients",
        rss100,
        "MB",
        Some(Base {
            name: "footprint.idle_rss",
            value: rss,
            unit: "MB",
        }),
        &format!(
            "VmRSS with 100 WebSocket clients connected to /v1/events (idle streams), MiB: {:.0} KiB per client",
            (rss100 - rss) * 1024.0 / 100.0
        ),
    );
    drop(clients);
    pb.stop();
    let size = std::fs::metadata(BIN).map(|m| m.len()).unwrap_or(0);
    emit(
        "footprint.binary_size",
        size as f64,
        "bytes",
        None,
        &format!(
            "{} ({:.1} MiB; release profile: opt-level s, fat LTO, debuginfo stripped)",
            BIN,
            size as f64 / 1_048_576.0
        ),
    );
}

// ---------------------------------------------------------------- main

/// Whether this part runs: `BENCH_ONLY=popup,relay` runs just those (for
/// working on one figure; a published table runs them all).
fn only(part: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |o| o.split(',').any(|p| p.trim() == part))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let t0 = Instant::now();
    eprintln!(
        "bench: posbridge {} at {BIN}, BENCH_SCALE={}",
        env!("CARGO_PKG_VERSION"),
        scale()
    );
    rt.block_on(async {
        if only("footprint") {
            bench_footprint().await;
        }
        if only("device_to_page") {
            bench_device_to_page(scaled(2000), scaled(500), scaled(40_000)).await;
        }
        // The popup's cache-hit baseline: the floor at 1 client, measured again
        // here so both come from the same minute.
        let floor_1 = {
            let dir = tempfile::tempdir().expect("tmp");
            let link = dir.path().join("ttyFloor2");
            let dev = plug(&link);
            let floor = Floor::start(link);
            let mut t = PtyTarget {
                dev,
                ws_url: format!("ws://127.0.0.1:{}/", floor.port),
                next_k: 1,
            };
            sorted(latency(&mut t, 1, scaled(500)).await)
        };
        if only("popup") {
            bench_popup(scaled(1_000_000), scaled(100), &floor_1).await;
        }
        if only("transactions") {
            bench_transactions(5.0 * scale().max(0.2)).await;
        }
        if only("relay") {
            bench_relay(scaled(100_000)).await;
        }
    });
    eprintln!("bench: done in {:.0} s", t0.elapsed().as_secs_f64());
}
