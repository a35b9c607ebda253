//! The MQTT relay to HQ (contract §5).
//!
//! Durability lives in the outbox, not here: rumqttc keeps nothing on disk and
//! a broker's PUBACK says nothing about its own persistence. So every
//! connection is a fresh rumqttc event loop, and on each one the relay
//! re-reads what HQ may not have from the outbox and publishes it in `seq`
//! order (QoS 1). A PUBACK is matched to its publish by packet id — rumqttc
//! reports `Outgoing::Publish(pkid)` in the order publishes were requested,
//! and this task is the only one that publishes — and marks the transaction
//! `sent`. With `ack = "hq"` only HQ's `tx/ack` ends a transaction, so `sent`
//! ones are re-sent after every reconnect until HQ acks them. Duplicates are
//! possible (at least once); HQ dedupes by `id`.

use super::members::Members;
use super::outbox::{AckMode, Outbox, Pending};
use super::window::{Rate, Tracked, Window};
use super::RelayStatus;
use crate::config::{BrokerAddr, UplinkConfig};
use crate::event::{Bus, Filter, Resume};
use futures_util::stream::{FuturesUnordered, StreamExt};
use posbridge_drivers::Event;
use rumqttc::{
    AsyncClient, ConnectionError, Event as MqEvent, LastWill, MqttOptions, Outgoing, Packet,
    Publish, QoS, SubscribeFilter, TlsConfiguration, Transport,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Transactions awaiting their PUBACK at once.
const WINDOW: usize = 64;
/// rumqttc's in-flight limit. Above `WINDOW` so the status and lookup
/// publishes never wait for a free packet id (no collisions, so packet ids
/// come back in the order publishes were asked for).
const INFLIGHT: u16 = 100;
/// rumqttc's request queue.
const CHANNEL: usize = 512;
/// Reconnect waits grow to this (or to `uplink.reconnect_spread_ms`, if longer).
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);
/// Member pushes can be large; transactions are at most 256 KiB plus envelope.
const MAX_INCOMING: usize = 4 * 1024 * 1024;
const MAX_OUTGOING: usize = 1024 * 1024;
/// Print-job outcomes awaiting their PUBACK at once (with `WINDOW`, under `INFLIGHT`).
const STATUS_WINDOW: usize = 16;
/// Lookups waiting for HQ at once; more are answered "none" at once.
const MAX_WAITING_LOOKUPS: usize = 256;
const GOODBYE: Duration = Duration::from_secs(2);
/// Longest wait for rumqttc to take a request. It stops taking them while its
/// in-flight window is full (a broker that stopped acking) or while nobody
/// polls it; past this the connection counts as broken and is rebuilt.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

struct Topics {
    tx: String,
    tx_ack: String,
    status: String,
    members: String,
    all_members: String,
    lookup_request: String,
    lookup_response: String,
    events: String,
    print: String,
    print_status: String,
    cmd: String,
    cmd_result: String,
    inventory: String,
}

impl Topics {
    fn new(prefix: &str, store: &str) -> Topics {
        let s = format!("{prefix}/{store}");
        Topics {
            tx: format!("{s}/tx"),
            tx_ack: format!("{s}/tx/ack"),
            status: format!("{s}/status"),
            members: format!("{s}/members"),
            all_members: format!("{prefix}/_all/members"),
            lookup_request: format!("{s}/lookup/request"),
            lookup_response: format!("{s}/lookup/response"),
            events: format!("{s}/events"),
            print: format!("{s}/print"),
            print_status: format!("{s}/print/status"),
            cmd: format!("{s}/cmd"),
            cmd_result: format!("{s}/cmd/result"),
            inventory: format!("{s}/inventory"),
        }
    }
}

enum Cmd {
    /// `{"corr", "phone"}` or `{"corr", "card": {"type", "value"}}`.
    Lookup { body: Value },
}

pub struct Relay {
    cfg: UplinkConfig,
    /// `uplink.urls` (or `url`), in the order they are tried.
    brokers: Vec<(String, BrokerAddr)>,
    /// The broker in use, or being tried.
    current: std::sync::atomic::AtomicUsize,
    tls: Option<Arc<rustls::ClientConfig>>,
    client_id: String,
    store: String,
    topics: Topics,
    bus: Arc<Bus>,
    outbox: Arc<Outbox>,
    members: Arc<Members>,
    status: Arc<RelayStatus>,
    cmds: mpsc::Sender<Cmd>,
    cmd_rx: Mutex<Option<mpsc::Receiver<Cmd>>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Option<Value>>>>,
    /// HQ's lookup answers to write into the cache once their popups are out.
    to_cache: Mutex<Vec<Value>>,
    /// HQ sent a message too large to take; the broker would redeliver it on
    /// every reconnect, so the next connection starts a clean session.
    drop_session: std::sync::atomic::AtomicBool,
    /// When the last too-large message came: a second one soon after the
    /// clean session is a retained message, which every subscribe brings back.
    last_oversize: Mutex<Option<std::time::Instant>>,
    /// The printers, for print jobs from HQ; attached before the relay runs.
    printers: std::sync::OnceLock<Arc<crate::print::Printers>>,
    /// The inventory and HQ's commands; attached before the relay runs.
    fleet: std::sync::OnceLock<Arc<dyn super::Steward>>,
}

/// The inventory is looked at this often, and published when it changed…
const INVENTORY_CHECK: Duration = Duration::from_secs(2);
/// …but at most this often.
const INVENTORY_EVERY: Duration = Duration::from_secs(10);

/// A mutex whose holder panicked still guards plain data.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits for a print-job outcome to be stored, or for ever without printers.
async fn status_stored(printers: Option<&Arc<crate::print::Printers>>) {
    match printers {
        Some(p) => p.status_stored().notified().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or for ever when there is no deadline.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Builds the TLS client config once, so a bad CA or key stops the start
/// with a clear message instead of failing every reconnect.
fn tls_config(cfg: &UplinkConfig) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca {
        Some(ca) => {
            let certs: Vec<_> = CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("uplink.ca {}: {e}", ca.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("uplink.ca {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "uplink.ca {}: no PEM certificate in it",
                    ca.display()
                ));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("uplink.ca {}: {e}", ca.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(
                    "mqtts:// without uplink.ca needs the system's CA certificates (ca-certificates)"
                        .into(),
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("uplink.cert {}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("uplink.cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("uplink.key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("uplink.cert/key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The `status` payload (retained; the will says "offline").
fn status_payload(state: &str, boot: &str) -> String {
    serde_json::json!({
        "state": state,
        "version": env!("CARGO_PKG_VERSION"),
        "boot": boot,
        "time": crate::clock::now_rfc3339(),
    })
    .to_string()
}

/// The `tx` payload. The body is stored as canonical JSON text and goes out
/// as it is, without a parse and re-serialize.
/// Written straight into one buffer: one allocation per message.
fn tx_payload(store: &str, p: &Pending) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + p.id.len() + store.len() + p.body.len());
    let string = |out: &mut Vec<u8>, key: &[u8], v: &str| {
        out.extend_from_slice(key);
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, v);
    };
    string(&mut out, b"{\"id\":", &p.id);
    string(&mut out, b",\"store\":", store);
    let _ = std::io::Write::write_fmt(&mut out, format_args!(",\"seq\":{}", p.seq));
    string(&mut out, b",\"queued_at\":", &p.queued_at);
    out.extend_from_slice(b",\"body\":");
    out.extend_from_slice(p.body.as_bytes());
    out.push(b'}');
    out
}

/// Exponential backoff with full jitter: each wait is drawn from zero to the
/// current step, which starts at `uplink.reconnect_spread_ms` and doubles
/// while reconnects fail. When a broker restarts, its stores come back
/// spread evenly over the first step instead of in the same second.
struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    fn new(spread: Duration) -> Self {
        Backoff {
            min: spread,
            max: BACKOFF_MAX.max(spread),
            step: spread,
        }
    }
    fn reset(&mut self) {
        self.step = self.min;
    }
    fn next(&mut self) -> Duration {
        let ms = self.step.as_millis() as u64;
        let wait = Duration::from_millis(fastrand::u64(0..=ms));
        self.step = (self.step * 2).min(self.max);
        wait
    }
}

/// A second too-large message this soon after the first is taken as retained.
const OVERSIZE_AGAIN: Duration = Duration::from_secs(60);
// How long member topics stay unsubscribed after that: uplink.members_pause_ms.

/// Longest wait between re-sends while HQ acknowledges nothing.
const RESEND_MAX: Duration = Duration::from_secs(3600);

/// `ack = "hq"`: what HQ has not acknowledged for a while is published again
/// on the same connection, since HQ's consumer may have lost it and a stable
/// link may not reconnect for days. Only the oldest window goes again, and
/// the wait doubles while the oldest stays unacknowledged, so an HQ that is
/// down does not fill the broker's queue with copies.
struct Resend {
    base: Duration,
    wait: Duration,
    due: tokio::time::Instant,
    /// The oldest unacknowledged `seq` at the last check.
    oldest: Option<i64>,
}

impl Resend {
    fn new(base: Duration) -> Self {
        Resend {
            base,
            wait: base,
            due: tokio::time::Instant::now() + base,
            oldest: None,
        }
    }

    /// At a due time, given the oldest unacknowledged `seq` and whether
    /// anything could go again now: whether to send (the oldest has been
    /// stuck since the last check). Sets the next check; the wait doubles
    /// only after a re-send.
    fn stuck(&mut self, oldest: Option<i64>, can_send: bool) -> bool {
        let stuck = oldest.is_some() && oldest == self.oldest;
        if !stuck {
            self.wait = self.base;
        } else if can_send {
            self.wait = (self.wait * 2).min(RESEND_MAX.max(self.base));
        }
        self.oldest = oldest;
        self.due = tokio::time::Instant::now() + self.wait;
        stuck && can_send
    }
}

/// One connection's bookkeeping.
struct Session {
    client: AsyncClient,
    /// Which publish is which transaction, and what awaits a PUBACK.
    window: Window,
    /// PUBACKed batches queued to the outbox writer, until their commit.
    recording: FuturesUnordered<oneshot::Receiver<Result<u64, String>>>,
    /// No print-job outcome is waiting to be read (until one is stored).
    statuses_drained: bool,
    /// The last inventory published on this connection: its fingerprint and when.
    inventory: Option<(String, tokio::time::Instant)>,
    /// `uplink.drain_rate`, and when it next lets a transaction go.
    rate: Option<Rate>,
    rate_wake: Option<tokio::time::Instant>,
}

impl Relay {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &UplinkConfig,
        store: &str,
        bus: Arc<Bus>,
        outbox: Arc<Outbox>,
        members: Arc<Members>,
        status: Arc<RelayStatus>,
    ) -> Result<Arc<Relay>, String> {
        let brokers = cfg.brokers()?;
        let tls = if brokers.iter().any(|(_, b)| b.tls) {
            Some(tls_config(cfg)?)
        } else {
            None
        };
        let (cmds, cmd_rx) = mpsc::channel(64);
        Ok(Arc::new(Relay {
            client_id: cfg.client_id_for(store),
            topics: Topics::new(&cfg.topic_prefix, store),
            cfg: cfg.clone(),
            brokers,
            current: std::sync::atomic::AtomicUsize::new(0),
            tls,
            store: store.to_owned(),
            bus,
            outbox,
            members,
            status,
            cmds,
            cmd_rx: Mutex::new(Some(cmd_rx)),
            waiting: Mutex::new(HashMap::new()),
            to_cache: Mutex::default(),
            drop_session: std::sync::atomic::AtomicBool::new(false),
            last_oversize: Mutex::new(None),
            printers: std::sync::OnceLock::new(),
            fleet: std::sync::OnceLock::new(),
        }))
    }

    /// Hands the relay the printers, so it takes print jobs from HQ and
    /// reports their outcomes. Called once, before `run`.
    pub fn attach_printers(&self, printers: Arc<crate::print::Printers>) {
        let _ = self.printers.set(printers);
    }

    /// The broker in use (or being tried), as configured.
    fn url(&self) -> &str {
        self.brokers
            .get(self.current.load(Relaxed))
            .map_or(self.cfg.url.as_str(), |(u, _)| u.as_str())
    }

    /// The broker in use now, for `/v1/uplink` and the inventory.
    pub fn broker_url(&self) -> String {
        self.url().to_owned()
    }

    /// Hands the relay the inventory and command runner. Called once, before `run`.
    pub fn attach_fleet(&self, fleet: Arc<dyn super::Steward>) {
        let _ = self.fleet.set(fleet);
    }

    fn options(&self) -> MqttOptions {
        let i = self
            .current
            .load(Relaxed)
            .min(self.brokers.len().saturating_sub(1));
        let (host, port, tls) = self
            .brokers
            .get(i)
            .map_or((String::new(), 1883, false), |(_, b)| {
                (b.host.clone(), b.port, b.tls)
            });
        let mut o = MqttOptions::new(&self.client_id, host, port);
        o.set_keep_alive(Duration::from_secs(self.cfg.keep_alive_s));
        // A persistent session: HQ's member pushes and acks sent while the
        // store was offline wait at the broker.
        o.set_clean_session(self.drop_session.swap(false, Relaxed));
        // Downlink messages are acked only after they are applied.
        o.set_manual_acks(true);
        o.set_inflight(INFLIGHT);
        o.set_request_channel_capacity(CHANNEL);
        o.set_max_packet_size(MAX_INCOMING, MAX_OUTGOING);
        o.set_last_will(LastWill::new(
            &self.topics.status,
            status_payload("offline", self.bus.boot()),
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(user) = &self.cfg.username {
            o.set_credentials(user, self.cfg.password.clone().unwrap_or_default());
        }
        if let Some(tls) = self.tls.as_ref().filter(|_| tls) {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        o
    }

    /// Keeps a connection up until `cancel`, reconnecting with backoff.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let Some(mut cmd_rx) = self.cmd_rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let mut late = self.fleet.get().and_then(|f| f.take_late());
        let mut backoff = Backoff::new(Duration::from_millis(self.cfg.reconnect_spread_ms));
        let mut last_logged: Option<String> = None;
        // Brokers tried since the last wait: a round ends when each was tried.
        let mut tried = 0;
        loop {
            let started = std::time::Instant::now();
            let result = self.session(&cancel, &mut cmd_rx, &mut late).await;
            let was_up = self.status.connected.swap(false, Relaxed);
            if let Err(e) = &result {
                self.status.errors.fetch_add(1, Relaxed);
                self.status.set_last_error(Some(e.clone()));
                // Days offline must not fill the journal with one line per retry.
                if last_logged.as_ref() != Some(e) {
                    tracing::warn!(error = %e, "HQ uplink down; transactions keep queuing");
                    last_logged = Some(e.clone());
                } else {
                    tracing::debug!(error = %e, "HQ uplink still down");
                }
            }
            if was_up {
                self.publish_status(false);
            }
            self.fail_waiting_lookups();
            if result.is_ok() || cancel.is_cancelled() {
                return;
            }
            if started.elapsed() >= STABLE {
                backoff.reset();
            }
            tried += 1;
            let n = self.brokers.len().max(1);
            let next = (self.current.load(Relaxed) + 1) % n;
            if !was_up && tried < n {
                // This broker would not have us: the next one at once (the
                // wait before this round already spread the stores out).
                self.current.store(next, Relaxed);
                continue;
            }
            // A broken connection goes on at the next broker; a round where
            // none would have us starts again at the first, the preferred.
            self.current.store(if was_up { next } else { 0 }, Relaxed);
            tried = 0;
            let wait = backoff.next();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    fn publish_status(&self, connected: bool) {
        self.bus.publish(
            None,
            &Event::UplinkStatus {
                connected,
                backlog: self.outbox.backlog_len(),
                last_error: if connected {
                    None
                } else {
                    self.status.last_error()
                },
            },
        );
    }

    fn fail_waiting_lookups(&self) {
        // Dropping the senders answers every waiting lookup with "none" now
        // rather than at its timeout.
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// One connection, from dial to drop. `Ok` only when shutting down.
    async fn session(
        &self,
        cancel: &CancellationToken,
        cmd_rx: &mut mpsc::Receiver<Cmd>,
        late: &mut Option<mpsc::Receiver<Value>>,
    ) -> Result<(), String> {
        let Some((client, mut ev_rx, _poller, session_present)) = self.connect(cancel).await?
        else {
            return Ok(());
        };
        // The last session's PUBACKs are recorded before this one reads the
        // backlog, so none of them is published again.
        self.outbox.flush().await?;
        let mut members_resume = self.subscribe(&client).await?;
        let mut s = Session {
            client,
            window: Window::new(WINDOW),
            recording: FuturesUnordered::new(),
            statuses_drained: false,
            rate: self.cfg.drain_rate.map(Rate::new),
            rate_wake: None,
            inventory: None,
        };
        self.go_online(&mut s, session_present, cmd_rx).await?;
        let t = &self.topics;
        let mut forward = self.forward_subscription();
        let mut resend = (self.outbox.mode() == AckMode::Hq)
            .then(|| Resend::new(Duration::from_millis(self.cfg.resend_after_ms)));
        let mut inventory = tokio::time::interval(INVENTORY_CHECK);
        inventory.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.cache_answers().await;
            if s.window.wants_more() {
                self.fill(&mut s).await?;
            }
            if !s.statuses_drained {
                self.fill_statuses(&mut s).await?;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.goodbye(&mut s, &mut ev_rx).await;
                    return Ok(());
                }
                ev = ev_rx.recv() => {
                    let mut batch = vec![ev];
                    while batch.len() < 256 {
                        match ev_rx.try_recv() {
                            Ok(ev) => batch.push(Some(ev)),
                            Err(_) => break,
                        }
                    }
                    self.on_events(&mut s, batch).await?;
                }
                _ = self.outbox.stored.notified(), if s.window.drained() => s.window.wake(),
                _ = status_stored(self.printers.get()), if s.statuses_drained => s.statuses_drained = false,
                Some(done) = s.recording.next(), if !s.recording.is_empty() => {
                    done.map_err(|_| "the outbox writer stopped".to_owned())??;
                }
                _ = sleep_until(resend.as_ref().map(|r| r.due)), if resend.is_some() => {
                    if let Some(r) = resend.as_mut() {
                        self.resend_stuck(&mut s, r).await?;
                    }
                }
                _ = sleep_until(s.rate_wake), if s.rate_wake.is_some() => s.rate_wake = None,
                _ = inventory.tick(), if self.fleet.get().is_some() => self.publish_inventory(&mut s, false).await?,
                Some(result) = recv_late(late) => {
                    self.publish(&mut s, &t.cmd_result, QoS::AtLeastOnce, false, result.to_string(), None).await?;
                }
                _ = sleep_until(members_resume), if members_resume.is_some() => {
                    members_resume = None;
                    self.resume_members(&s).await?;
                }
                Some(cmd) = cmd_rx.recv() => match cmd {
                    Cmd::Lookup { body } => {
                        let body = body.to_string();
                        self.publish(&mut s, &t.lookup_request, QoS::AtLeastOnce, false, body, None).await?;
                    }
                },
                p = recv_forward(&mut forward) => match p {
                    Some(p) => self.forward(&mut s, &p),
                    None => {
                        tracing::warn!("event forwarding fell behind the bus; resubscribing (some events were not forwarded)");
                        forward = self.forward_subscription();
                    }
                },
            }
        }
    }

    /// Writes HQ's lookup answers into the member cache, after yielding once
    /// so the popups they answer (woken on this worker) go out first: the
    /// write is ~1 ms of WAL pages, and `Members::remember` answers lookups
    /// meanwhile.
    async fn cache_answers(&self) {
        if lock(&self.to_cache).is_empty() {
            return;
        }
        tokio::task::yield_now().await;
        self.write_answers();
    }

    fn write_answers(&self) {
        let answers = std::mem::take(&mut *lock(&self.to_cache));
        if answers.is_empty() {
            return;
        }
        // A few rows written where the session runs: the popups are out.
        if let Err(e) = self.members.upsert(&answers) {
            tracing::warn!(error = %e, "could not cache HQ's lookup answers");
        }
    }

    /// Dials and waits for the CONNACK; then the event loop runs in its own
    /// task, so publishing here can never wait on the very loop that would
    /// drain it. `None` when cancelled first.
    async fn connect(&self, cancel: &CancellationToken) -> Result<Option<Connected>, String> {
        let (client, mut eventloop) = AsyncClient::new(self.options(), CHANNEL);
        eventloop.network_options.set_connection_timeout(10);
        // Lookups and acks are small writes; Nagle would hold each one ~20 ms.
        eventloop.network_options.set_tcp_nodelay(true);
        let url = &self.url();
        let first = tokio::select! {
            r = eventloop.poll() => r,
            _ = cancel.cancelled() => return Ok(None),
        };
        let session_present = match first {
            Ok(MqEvent::Incoming(Packet::ConnAck(ack))) => ack.session_present,
            Ok(other) => return Err(format!("{url}: expected CONNACK, got {other:?}")),
            Err(e) => return Err(describe(url, e)),
        };
        let (ev_tx, ev_rx) = mpsc::channel::<Result<MqEvent, ConnectionError>>(256);
        let poller = tokio::spawn(async move {
            loop {
                let r = eventloop.poll().await;
                let end = r.is_err();
                if ev_tx.send(r).await.is_err() || end {
                    break;
                }
            }
        });
        Ok(Some((client, ev_rx, AbortOnDrop(poller), session_present)))
    }

    /// Subscribes to the downlink. While member pushes are paused their
    /// topics wait: returns when to subscribe them on this connection.
    async fn subscribe(
        &self,
        client: &AsyncClient,
    ) -> Result<Option<tokio::time::Instant>, String> {
        let t = &self.topics;
        let mut topics = vec![&t.tx_ack, &t.lookup_response];
        if self.printers.get().is_some() {
            topics.push(&t.print);
        }
        if self.fleet.get().is_some() {
            topics.push(&t.cmd);
        }
        let members_resume = self
            .status
            .members_pause()
            .map(|(until, _)| tokio::time::Instant::from_std(until));
        if members_resume.is_none() {
            topics.extend([&t.members, &t.all_members]);
        }
        client
            .subscribe_many(
                topics
                    .into_iter()
                    .map(|topic| SubscribeFilter::new(topic.clone(), QoS::AtLeastOnce)),
            )
            .await
            .map_err(|e| format!("{}: subscribe: {e}", self.url()))?;
        Ok(members_resume)
    }

    /// The retained "online" status, and the connection counted as up.
    async fn go_online(
        &self,
        s: &mut Session,
        session_present: bool,
        cmd_rx: &mut mpsc::Receiver<Cmd>,
    ) -> Result<(), String> {
        let status = status_payload("online", self.bus.boot());
        self.publish(s, &self.topics.status, QoS::AtLeastOnce, true, status, None)
            .await?;
        self.publish_inventory(s, true).await?;
        // Lookups asked while offline have been answered "none" already.
        while cmd_rx.try_recv().is_ok() {}
        self.status.connects.fetch_add(1, Relaxed);
        self.status.connected.store(true, Relaxed);
        self.status.set_last_error(None);
        tracing::info!(broker = %self.url(), session_present, backlog = self.outbox.backlog_len(), "HQ uplink connected");
        self.publish_status(true);
        Ok(())
    }

    /// The member topics, once their pause is over.
    async fn resume_members(&self, s: &Session) -> Result<(), String> {
        let t = &self.topics;
        let filters = [&t.members, &t.all_members]
            .map(|topic| SubscribeFilter::new(topic.clone(), QoS::AtLeastOnce));
        match tokio::time::timeout(REQUEST_WAIT, s.client.subscribe_many(filters)).await {
            Ok(Ok(())) => {
                tracing::info!("member pushes resumed");
                Ok(())
            }
            Ok(Err(e)) => Err(format!("{}: subscribe: {e}", self.url())),
            Err(_) => Err(format!(
                "{}: the connection stopped taking requests; reconnecting",
                self.url()
            )),
        }
    }

    /// Publishes the next transactions after the cursor, up to the window
    /// and `uplink.drain_rate`.
    async fn fill(&self, s: &mut Session) -> Result<(), String> {
        let mut room = s.window.room();
        if let Some(rate) = s.rate.as_mut() {
            let now = tokio::time::Instant::now();
            room = rate.allow(room, now);
            if room == 0 {
                s.rate_wake = Some(rate.next_at(now));
                return Ok(());
            }
        }
        let rows = self.outbox.pending_after(s.window.cursor(), room).await?;
        if let Some(rate) = s.rate.as_mut() {
            rate.spend(rows.len());
        }
        s.window.read_to(rows.last().map(|p| p.seq));
        if !rows.is_empty() {
            self.publish_txs(s, &rows.iter().collect::<Vec<_>>())
                .await?;
        }
        Ok(())
    }

    /// Publishes print-job outcomes HQ has not had yet, a few at a time
    /// (QoS 1; each deleted once the broker has it, so at least once).
    async fn fill_statuses(&self, s: &mut Session) -> Result<(), String> {
        let Some(printers) = self.printers.get() else {
            s.statuses_drained = true;
            return Ok(());
        };
        let room = s.window.status_room(STATUS_WINDOW);
        if room == 0 {
            return Ok(());
        }
        let rows = printers
            .statuses_after(s.window.status_cursor(), room)
            .await?;
        if rows.is_empty() {
            s.statuses_drained = true;
        }
        for (seq, payload) in rows {
            let topic = &self.topics.print_status;
            self.publish(
                s,
                topic,
                QoS::AtLeastOnce,
                false,
                payload,
                Some(Tracked::Status(seq)),
            )
            .await?;
        }
        Ok(())
    }

    /// Publishes these transactions at QoS 1, each counted in the window
    /// until its PUBACK, and counts the attempts.
    async fn publish_txs(&self, s: &mut Session, rows: &[&Pending]) -> Result<(), String> {
        let mut seqs = Vec::with_capacity(rows.len());
        for p in rows {
            let payload = tx_payload(&self.store, p);
            self.publish(
                s,
                &self.topics.tx,
                QoS::AtLeastOnce,
                false,
                payload,
                Some(Tracked::Tx(p.seq)),
            )
            .await?;
            seqs.push(p.seq);
        }
        self.status.published.fetch_add(seqs.len() as u64, Relaxed);
        self.outbox.attempted(seqs);
        Ok(())
    }

    /// Publishes the oldest unacknowledged window again if HQ has not
    /// acknowledged its first since the last check (`ack = "hq"`).
    async fn resend_stuck(&self, s: &mut Session, r: &mut Resend) -> Result<(), String> {
        let rows = self.outbox.pending_after(0, WINDOW).await?;
        // Only what this connection already published (the rest is still to
        // come), and only as far as the window has room.
        let room = s.window.room();
        let again: Vec<&Pending> = rows
            .iter()
            .filter(|p| p.seq <= s.window.cursor())
            .take(room)
            .collect();
        if !r.stuck(rows.first().map(|p| p.seq), !again.is_empty()) {
            return Ok(());
        }
        tracing::info!(
            count = again.len(),
            oldest = again.first().map(|p| p.seq),
            "HQ has not acknowledged these; publishing them again"
        );
        self.publish_txs(s, &again).await?;
        self.status.resent.fetch_add(again.len() as u64, Relaxed);
        Ok(())
    }

    async fn publish(
        &self,
        s: &mut Session,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
        tracked: Option<Tracked>,
    ) -> Result<(), String> {
        match tokio::time::timeout(REQUEST_WAIT, s.client.publish(topic, qos, retain, payload)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("{}: publish: {e}", self.url())),
            Err(_) => {
                return Err(format!(
                    "{}: the connection stopped taking publishes for {REQUEST_WAIT:?} (broker not acknowledging); reconnecting",
                    self.url()
                ))
            }
        }
        match tracked {
            Some(Tracked::Tx(seq)) => s.window.requested_tx(seq),
            Some(Tracked::Status(seq)) => s.window.requested_status(seq),
            None => s.window.requested_other(),
        }
        Ok(())
    }

    // Over 80 lines: one pass over a batch of broker events; PUBACKs seen so far must be recorded before a downlink message in the same batch.

    async fn on_events(
        &self,
        s: &mut Session,
        batch: Vec<Option<Result<MqEvent, ConnectionError>>>,
    ) -> Result<(), String> {
        let mut acked = Vec::new();
        let mut outcomes = Vec::new();
        let mut failure = None;
        for ev in batch {
            match ev {
                None => {
                    failure = Some(format!("{}: connection task ended", self.url()));
                    break;
                }
                Some(Err(e)) => {
                    failure = Some(self.connection_lost(e));
                    break;
                }
                Some(Ok(MqEvent::Outgoing(Outgoing::Publish(pkid)))) => {
                    if let Err(e) = s.window.sent(pkid) {
                        tracing::warn!("{e}");
                    }
                }
                Some(Ok(MqEvent::Incoming(Packet::PubAck(ack)))) => {
                    match s.window.puback_any(ack.pkid) {
                        Some(Tracked::Tx(seq)) => acked.push(seq),
                        Some(Tracked::Status(seq)) => outcomes.push(seq),
                        None => {}
                    }
                }
                Some(Ok(MqEvent::Incoming(Packet::SubAck(ack)))) => {
                    use rumqttc::SubscribeReasonCode;
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure))
                    {
                        let e = format!(
                            "{}: the broker refused a subscription (check its ACL for {}/{}/#)",
                            self.url(),
                            self.cfg.topic_prefix,
                            self.store
                        );
                        tracing::warn!("{e}");
                        self.status.set_last_error(Some(e));
                    }
                }
                Some(Ok(MqEvent::Incoming(Packet::Publish(p)))) => {
                    // PUBACKs read before it are recorded first: HQ's ack for
                    // a transaction must find it `sent`, not still `queued`.
                    self.record_sent(s, &mut acked).await?;
                    // Acked only once applied (or found unusable): a crash or a
                    // storage failure before the ack gets it redelivered.
                    if p.topic == self.topics.cmd {
                        if let Err(e) = self.on_command(s, &p).await {
                            failure = Some(e);
                            break;
                        }
                    } else if let Err(e) = self.on_downlink(&p).await {
                        failure = Some(format!(
                            "{}: {e}; reconnecting so the broker delivers it again",
                            self.url()
                        ));
                        break;
                    }
                    match tokio::time::timeout(REQUEST_WAIT, s.client.ack(&p)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            failure = Some(format!("{}: ack: {e}", self.url()));
                            break;
                        }
                        Err(_) => {
                            failure = Some(format!(
                                "{}: the connection stopped taking acks; reconnecting",
                                self.url()
                            ));
                            break;
                        }
                    }
                }
                Some(Ok(MqEvent::Incoming(Packet::Disconnect))) => {
                    failure = Some(format!("{}: the broker closed the session", self.url()));
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
        // Marked even when the connection just broke: these did reach the broker.
        self.record_sent(s, &mut acked).await?;
        self.outcomes_sent(s, outcomes).await;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Queues the transactions the broker acknowledged to be recorded
    /// `sent`. The relay goes on publishing meanwhile (the window counts
    /// what the broker has not acknowledged, not what the disk has not
    /// recorded); whatever the downlink does next reaches the same writer
    /// after this, so HQ's ack finds them `sent`. A failed commit ends the
    /// session (see `session`), and the reconnect publishes them again.
    async fn record_sent(&self, s: &mut Session, acked: &mut Vec<i64>) -> Result<(), String> {
        if acked.is_empty() {
            return Ok(());
        }
        let n = acked.len() as u64;
        let done = self.outbox.queue_sent(std::mem::take(acked)).await?;
        self.status.broker_acked.fetch_add(n, Relaxed);
        s.recording.push(done);
        s.window.wake();
        Ok(())
    }

    /// Print-job outcomes the broker has: deleted, never sent again. A
    /// failed delete only means they go again (HQ takes `job_id` states
    /// as idempotent).
    async fn outcomes_sent(&self, s: &mut Session, seqs: Vec<i64>) {
        let Some(printers) = self.printers.get().filter(|_| !seqs.is_empty()) else {
            return;
        };
        if let Err(e) = printers.statuses_sent(seqs).await {
            tracing::warn!(error = %e, "could not record print outcomes as sent; they go again");
        }
        s.statuses_drained = false;
    }

    fn connection_lost(&self, e: ConnectionError) -> String {
        use rumqttc::{mqttbytes::Error as Bytes, StateError};
        if let ConnectionError::MqttState(StateError::Deserialization(
            Bytes::PayloadSizeLimitExceeded(n),
        )) = e
        {
            self.status.bad_downlink.fetch_add(1, Relaxed);
            self.drop_session.store(true, Relaxed);
            let now = std::time::Instant::now();
            let again = self
                .last_oversize
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replace(now)
                .is_some_and(|t| now.duration_since(t) < OVERSIZE_AGAIN);
            let pause = Duration::from_millis(self.cfg.members_pause_ms);
            let e = if again {
                // Back straight after a clean session: retained on a member
                // topic. Without those topics transactions still flow.
                let shown = crate::clock::rfc3339_ms(time::OffsetDateTime::now_utc() + pause);
                *self
                    .status
                    .members_paused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some((now + pause, shown.clone()));
                format!(
                    "{}: HQ keeps sending a message of {n} bytes, over the {MAX_INCOMING}-byte limit (retained on a members topic?); member pushes are paused until {shown} so transactions keep flowing; HQ should clear it (publish an empty retained message on that topic)",
                    self.url()
                )
            } else {
                format!(
                    "{}: HQ sent a message of {n} bytes, over the {MAX_INCOMING}-byte limit; starting a clean session to get past it (downlink messages queued at the broker for this store are dropped; HQ should push members again)",
                    self.url()
                )
            };
            tracing::error!("{e}");
            return e;
        }
        describe(self.url(), e)
    }

    /// Runs a command from HQ and publishes its result (QoS 1) before the
    /// command is acknowledged to the broker.
    async fn on_command(&self, s: &mut Session, p: &Publish) -> Result<(), String> {
        let Some(fleet) = self.fleet.get() else {
            return Ok(());
        };
        let result = fleet.command(&p.payload).await;
        let t = &self.topics.cmd_result;
        self.publish(s, t, QoS::AtLeastOnce, false, result.to_string(), None)
            .await?;
        // A config.apply or a device's trouble shows in the inventory at once.
        self.publish_inventory(s, false).await
    }

    /// The retained inventory: on connect (`force`), then when it changed,
    /// at most every [`INVENTORY_EVERY`].
    async fn publish_inventory(&self, s: &mut Session, force: bool) -> Result<(), String> {
        let Some(fleet) = self.fleet.get() else {
            return Ok(());
        };
        let v = fleet.inventory().await;
        let print = super::inventory_fingerprint(&v);
        let now = tokio::time::Instant::now();
        if !force {
            if let Some((last, at)) = &s.inventory {
                if *last == print || now < *at + INVENTORY_EVERY {
                    return Ok(());
                }
            }
        }
        let t = &self.topics.inventory;
        self.publish(s, t, QoS::AtLeastOnce, true, v.to_string(), None)
            .await?;
        s.inventory = Some((print, now));
        Ok(())
    }

    /// Applies one downlink message. `Err` only when it could be used but
    /// storing it failed (then it must not be acked); a message that can
    /// never be used is counted, logged and acked.
    async fn on_downlink(&self, p: &Publish) -> Result<(), String> {
        use posbridge_drivers::downlink::{self, Downlink, Topic};
        let t = &self.topics;
        let bad = |why: String| {
            self.status.bad_downlink.fetch_add(1, Relaxed);
            tracing::warn!(topic = %p.topic, "ignored a message from HQ: {why}");
            Ok(())
        };
        let topic = if p.topic == t.tx_ack {
            Topic::TxAck
        } else if p.topic == t.members || p.topic == t.all_members {
            Topic::Members
        } else if p.topic == t.lookup_response {
            Topic::LookupResponse
        } else if p.topic == t.print {
            Topic::Print
        } else {
            return bad("unexpected topic".into());
        };
        // Parsing is sans-IO (drivers/src/downlink.rs, fuzzed); only applying is here.
        let msg = match downlink::parse(topic, &p.payload) {
            Ok(m) => m,
            // Even a print message that is not JSON gets its `failed` answer.
            Err(e) if topic == Topic::Print => {
                self.status.bad_downlink.fetch_add(1, Relaxed);
                Downlink::Print(Err(downlink::BadJob {
                    job_id: None,
                    why: e.0,
                }))
            }
            Err(e) => return bad(e.0),
        };
        match msg {
            Downlink::TxAck { ids } => {
                let r = self
                    .outbox
                    .mark_acked(ids)
                    .await
                    .map_err(|e| format!("could not record HQ's ack: {e}"))?;
                self.status.hq_acked.fetch_add(r.acked, Relaxed);
                if r.ignored > 0 {
                    self.status.acks_ignored.fetch_add(r.ignored, Relaxed);
                    tracing::info!(
                        ignored = r.ignored,
                        "HQ acked ids that name no sent transaction; ignored"
                    );
                }
                Ok(())
            }
            Downlink::Print(job) => match self.printers.get() {
                Some(printers) => printers.take_remote(job).await,
                None => bad("print jobs are not taken here".into()),
            },
            Downlink::Upsert { members } => self.apply_members(Ok(members), bad).await,
            Downlink::Delete { ids } => self.apply_members(Err(ids), bad).await,
            Downlink::Lookup { corr, member } => {
                // An ID number HQ put in the answer stays out of the popup,
                // the event and the cache: only its HMAC is kept.
                let member = member.map(|m| self.members.sanitize(m));
                // Only an answer to a question this daemon asked and still
                // waits for: anyone else's would fill the cache.
                let waiter = self
                    .waiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&corr);
                let Some(waiter) = waiter else {
                    return bad(
                        "a lookup answer for no lookup in flight (late, or not ours)".into(),
                    );
                };
                // Cached, so the next call from this number pops at once:
                // remembered now, written once the popup is on its way
                // (`cache_answers`).
                if let Some(m) = &member {
                    self.members.remember(m);
                    lock(&self.to_cache).push(m.clone());
                }
                let _ = waiter.send(member);
                Ok(())
            }
        }
    }

    /// `Ok(members)` upserts them, `Err(ids)` deletes those ids.
    async fn apply_members(
        &self,
        change: Result<Vec<Value>, Vec<String>>,
        bad: impl Fn(String) -> Result<(), String>,
    ) -> Result<(), String> {
        // Lookup answers still waiting are written first: a push that
        // follows them (a delete above all) must have the last word.
        self.write_answers();
        let members = self.members.clone();
        let op = if change.is_ok() { "upsert" } else { "delete" };
        let result = match change {
            Ok(list) => {
                tokio::task::spawn_blocking(move || {
                    members.upsert(&list).map(|r| (r.stored, r.skipped))
                })
                .await
            }
            Err(ids) => {
                tokio::task::spawn_blocking(move || members.delete(&ids).map(|n| (n, 0))).await
            }
        };
        match result {
            Ok(Ok((n, skipped))) => {
                tracing::debug!(op, members = n, "member cache updated");
                if skipped > 0 {
                    return bad(format!(
                        "{skipped} member(s) without a string \"id\" were skipped"
                    ));
                }
                Ok(())
            }
            Ok(Err(e)) => Err(format!("member cache update failed: {e}")),
            Err(e) => Err(format!("member cache update failed: {e}")),
        }
    }

    fn forward_subscription(&self) -> Option<crate::event::Subscription> {
        if self.cfg.forward_events.is_empty() {
            return None;
        }
        let types = self.cfg.forward_events.iter().map(String::as_str);
        Some(
            self.bus
                .subscribe(Filter::new(types, []), &Resume::default()),
        )
    }

    /// QoS 0 and never queued: forwarded events are a live feed, not records.
    fn forward(&self, s: &mut Session, p: &crate::event::Published) {
        let topic = format!("{}/{}", self.topics.events, p.kind);
        // The masked copy, as a client without scopes would see it.
        let payload = p.json_for(false).as_str().to_owned();
        match s.client.try_publish(topic, QoS::AtMostOnce, false, payload) {
            Ok(()) => {
                s.window.requested_other();
                self.status.events_forwarded.fetch_add(1, Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "event not forwarded"),
        }
    }

    async fn goodbye(
        &self,
        s: &mut Session,
        ev_rx: &mut mpsc::Receiver<Result<MqEvent, ConnectionError>>,
    ) {
        // An orderly "offline" (the will covers crashes), then DISCONNECT;
        // wait briefly for it to leave.
        let _ = s.client.try_publish(
            &self.topics.status,
            QoS::AtLeastOnce,
            true,
            status_payload("offline", self.bus.boot()),
        );
        let _ = s.client.try_disconnect();
        let _ = tokio::time::timeout(GOODBYE, async {
            while let Some(ev) = ev_rx.recv().await {
                match ev {
                    Ok(MqEvent::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    _ => {}
                }
            }
        })
        .await;
    }

    /// Asks HQ for the member with this phone; `None` on no answer within
    /// `uplink.lookup_timeout_ms`, when offline, or when HQ has none.
    pub async fn lookup(&self, phone: &str) -> Option<Value> {
        self.ask(serde_json::json!({ "phone": phone })).await
    }

    /// Asks HQ for the member who carries a card (`value` as the cache files
    /// it: an ID card's HMAC), within `uplink.lookup_timeout_ms`.
    pub async fn lookup_card(&self, kind: &str, value: &str) -> Option<Value> {
        self.ask(serde_json::json!({ "card": {"type": kind, "value": value} }))
            .await
    }

    /// Publishes a lookup request with a fresh `corr` added to `question`
    /// and waits for HQ's answer.
    async fn ask(&self, mut question: Value) -> Option<Value> {
        if !self.status.connected.load(Relaxed) {
            return None;
        }
        let corr = ulid::Ulid::new().to_string();
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if w.len() >= MAX_WAITING_LOOKUPS {
                return None;
            }
            w.insert(corr.clone(), tx);
        }
        let forget = || {
            self.waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&corr);
        };
        question["corr"] = corr.clone().into();
        let cmd = Cmd::Lookup { body: question };
        if self.cmds.try_send(cmd).is_err() {
            forget();
            return None;
        }
        self.status.lookups_hq.fetch_add(1, Relaxed);
        let timeout = Duration::from_millis(self.cfg.lookup_timeout_ms);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(member)) => member,
            Ok(Err(_)) => None,
            Err(_) => {
                forget();
                self.status.lookups_timed_out.fetch_add(1, Relaxed);
                None
            }
        }
    }
}

async fn recv_late(late: &mut Option<mpsc::Receiver<Value>>) -> Option<Value> {
    match late {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_forward(
    sub: &mut Option<crate::event::Subscription>,
) -> Option<Arc<crate::event::Published>> {
    match sub {
        Some(s) => tokio::select! {
            p = s.rx.recv() => p,
            _ = s.overflow.cancelled() => None,
        },
        None => std::future::pending().await,
    }
}

fn describe(url: &str, e: ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("{url}: the broker refused the connection ({code:?}); check uplink.username/password and the broker's ACL")
        }
        e => format!("{url}: {e}"),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

/// A connection up to its CONNACK: the client, its events, the task polling
/// them (stopped when dropped) and whether the broker kept the session.
type Connected = (
    AsyncClient,
    mpsc::Receiver<Result<MqEvent, ConnectionError>>,
    AbortOnDrop,
    bool,
);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_from_the_spread_to_the_cap_and_resets() {
        let spread = Duration::from_millis(2000);
        let mut b = Backoff::new(spread);
        // Full jitter: the first waits fall anywhere from 0 to the spread.
        let firsts: Vec<Duration> = (0..200)
            .map(|_| {
                b.reset();
                b.next()
            })
            .collect();
        assert!(firsts.iter().all(|w| *w <= spread));
        assert!(firsts.iter().any(|w| *w < spread / 4), "{firsts:?}");
        assert!(firsts.iter().any(|w| *w > spread * 3 / 4), "{firsts:?}");
        let mut top = Duration::ZERO;
        for _ in 0..40 {
            top = top.max(b.next());
        }
        assert!(top <= BACKOFF_MAX && top > BACKOFF_MAX / 2, "{top:?}");
        b.reset();
        assert!(b.next() <= spread);
        // A spread longer than the cap is the cap.
        let mut long = Backoff::new(Duration::from_secs(60));
        for _ in 0..10 {
            assert!(long.next() <= Duration::from_secs(60));
        }
    }

    #[test]
    fn resends_back_off_while_hq_is_stuck_and_reset_on_progress() {
        let base = Duration::from_millis(300);
        let mut r = Resend::new(base);
        assert!(!r.stuck(Some(5), true), "first sight of the oldest");
        assert_eq!(r.wait, base);
        assert!(r.stuck(Some(5), true));
        assert_eq!(r.wait, base * 2);
        // Stuck, but the window is full: nothing goes, and the wait holds.
        assert!(!r.stuck(Some(5), false));
        assert_eq!(r.wait, base * 2);
        assert!(r.stuck(Some(5), true));
        assert_eq!(r.wait, base * 4);
        for _ in 0..40 {
            r.stuck(Some(5), true);
        }
        assert_eq!(r.wait, RESEND_MAX, "capped");
        // HQ acknowledged the oldest: back to the base wait, nothing sent.
        assert!(!r.stuck(Some(6), true));
        assert_eq!(r.wait, base);
        assert!(!r.stuck(None, true), "nothing unacknowledged");
        assert!(!r.stuck(None, true));
    }

    #[test]
    fn tx_payload_embeds_the_body_verbatim() {
        let p = Pending {
            seq: 7,
            id: "t\"1".into(),
            body: r#"{"amount":100,"id":"t\"1"}"#.into(),
            queued_at: "2026-11-24T10:00:00.000Z".into(),
        };
        let v: Value = serde_json::from_slice(&tx_payload("s-1", &p)).unwrap();
        assert_eq!(v["id"], "t\"1");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["store"], "s-1");
        assert_eq!(v["body"]["amount"], 100);
    }
}
