//! Devices: one supervised task each. A task opens its transport, runs the
//! driver's sans-IO protocol over it, publishes what it emits, and reopens
//! with backoff when the device fails or goes away.

pub mod hotplug;
mod screen;

use crate::clock::rfc3339_ms;
use crate::config::{DeviceConfig, Transport};
use crate::event::Bus;
use crate::metrics::Metrics;
use crate::transport::{self, Chunk, Link};
use futures_util::FutureExt;
use posbridge_drivers::{Action, Event, Instant, Protocol};
use serde::Serialize;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A session this long counts as healthy: the next failure retries quickly again.
const HEALTHY_SESSION: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Connected,
    Disconnected,
    Error,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Connected => "connected",
            State::Disconnected => "disconnected",
            State::Error => "error",
        }
    }
}

#[derive(Clone, Debug)]
struct Status {
    /// The node a device found by USB id was opened at (it can change per plug-in).
    node: Option<String>,
    state: State,
    last_error: Option<String>,
    last_event_at: Option<OffsetDateTime>,
    events: u64,
    /// The device's latest reading (a scale's weight), and when it came.
    reading: Option<(Event, OffsetDateTime, std::time::Instant)>,
}

/// A device's latest reading as `GET /v1/scales/{id}` shows it.
pub struct Latest {
    pub event: Event,
    pub at: OffsetDateTime,
    pub age: Duration,
}

/// What `GET /v1/devices` shows for one device.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub driver: String,
    pub transport: String,
    pub path: Option<String>,
    pub state: State,
    pub last_error: Option<String>,
    pub last_event_at: Option<String>,
    pub events: u64,
}

/// Why bytes could not be fed to a simulated device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimulateError {
    #[error("the device's transport is not sim")]
    NotSimulated,
    #[error("the device did not take the bytes within 2 s")]
    Busy,
    #[error("the device is stopping")]
    Stopped,
}

/// Outcome of `POST /v1/devices/{id}/read`.
pub enum ReadOutcome {
    Started,
    NotSupported,
}

/// Why bytes could not be sent to a device (`serial.sendData`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("its driver takes no bytes from pages (only passthrough devices do)")]
    NotSupported,
    #[error("it is not connected")]
    NotConnected,
    #[error("it is busy; the bytes were not sent")]
    Busy,
    #[error("writing failed: {0}")]
    Write(String),
}

/// The most bytes one `Device::send` is expected to carry (its reply wait).
pub const SEND_MAX_BYTES: usize = 8 * 1024;

/// A command a client may send a device (besides a read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Tare,
    Zero,
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Tare => "tare",
            Command::Zero => "zero",
        }
    }

    fn request(self) -> crate::family::Request {
        match self {
            Command::Tare => crate::family::Request::Tare,
            Command::Zero => crate::family::Request::Zero,
        }
    }
}

/// Why a command or a display request was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    #[error("its driver does not take it")]
    NotSupported,
    #[error("this model has no such command configured")]
    NoCommand,
    #[error("it is not connected")]
    NotConnected,
    #[error("it is busy; try again")]
    Busy,
}

/// What a client asks of a device's live session.
pub enum Ask {
    /// Read now; the reply says whether a read started.
    Read(oneshot::Sender<ReadOutcome>),
    /// Tare or zero; the reply says whether the protocol has the command.
    Command(Command, oneshot::Sender<bool>),
    /// Write these bytes; the reply says whether they were all written.
    Send(Vec<u8>, oneshot::Sender<Result<(), String>>),
}

/// One configured device, shared between its task and the API.
pub struct Device {
    pub cfg: DeviceConfig,
    status: Mutex<Status>,
    sim_tx: Option<mpsc::Sender<Vec<u8>>>,
    ask_tx: mpsc::Sender<Ask>,
    /// Hotplug saw its node appear (or go): retry now, not after the backoff.
    wake: tokio::sync::Notify,
    /// What a customer display shows next (the newest request wins).
    screen: screen::Screen,
    /// Ends this device's supervisor alone (config reload); a child of the daemon's.
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Device {
    /// Makes the supervisor try to open the device now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits for [`Device::wake`] (for devices run by their own module: printers).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Its supervisor task is still running (devices run by their own module,
    /// like printers, count as supervised).
    pub fn supervised(&self) -> bool {
        // A device being retired by a reload is not a dead task.
        crate::family::print_worker(&self.cfg)
            || self.stop.is_cancelled()
            || !self.ask_tx.is_closed()
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> State {
        self.status().state
    }

    fn path_or(&self, node: Option<String>) -> Option<String> {
        self.cfg
            .path
            .clone()
            .or_else(|| self.cfg.address.clone())
            .or(node)
    }

    pub fn view(&self) -> DeviceView {
        let s = self.status().clone();
        DeviceView {
            id: self.cfg.id.clone(),
            driver: self.cfg.driver.clone(),
            transport: self.cfg.transport_name().to_owned(),
            // A network device has an address instead; one found by USB id, its node.
            path: self.path_or(s.node.clone()),
            state: s.state,
            last_error: s.last_error,
            last_event_at: s.last_event_at.map(rfc3339_ms),
            events: s.events,
        }
    }

    /// Feeds bytes into a `sim` device. `Err` when the device is not simulated.
    pub async fn simulate(&self, bytes: Vec<u8>) -> Result<(), SimulateError> {
        let tx = self.sim_tx.as_ref().ok_or(SimulateError::NotSimulated)?;
        tokio::time::timeout(Duration::from_secs(2), tx.send(bytes))
            .await
            .map_err(|_| SimulateError::Busy)?
            .map_err(|_| SimulateError::Stopped)
    }

    /// Asks the live session for a read, if its family takes one. `None`
    /// when the device is not connected or cannot take the request now.
    pub async fn request_read(&self) -> Option<ReadOutcome> {
        if self.state() != State::Connected {
            return None;
        }
        let takes = crate::family::spec(&self.cfg)
            .is_some_and(|f| f.requests.contains(&crate::family::Request::Read));
        if !takes {
            return Some(ReadOutcome::NotSupported);
        }
        let (tx, rx) = oneshot::channel();
        // Full (a read already waits) or closed (the session is stopping).
        self.ask_tx.try_send(Ask::Read(tx)).ok()?;
        tokio::time::timeout(Duration::from_secs(2), rx)
            .await
            .ok()?
            .ok()
    }

    /// Writes bytes to the device through its live session, if its family
    /// takes them; returns once they are written.
    pub async fn send(&self, bytes: Vec<u8>) -> Result<(), SendError> {
        let takes = crate::family::spec(&self.cfg)
            .is_some_and(|f| f.requests.contains(&crate::family::Request::Send));
        if !takes {
            return Err(SendError::NotSupported);
        }
        if self.state() != State::Connected {
            return Err(SendError::NotConnected);
        }
        let (tx, rx) = oneshot::channel();
        let wait = Duration::from_secs(2);
        tokio::time::timeout(wait, self.ask_tx.send(Ask::Send(bytes, tx)))
            .await
            .map_err(|_| SendError::Busy)?
            .map_err(|_| SendError::NotConnected)?;
        // The session bounds the write itself (by the data's size).
        let wait = wait + Duration::from_millis(2 * crate::device::SEND_MAX_BYTES as u64);
        match tokio::time::timeout(wait, rx).await {
            Err(_) => Err(SendError::Busy),
            Ok(Err(_)) => Err(SendError::NotConnected),
            Ok(Ok(r)) => r.map_err(SendError::Write),
        }
    }
}

impl Device {
    fn takes(&self, r: crate::family::Request) -> bool {
        crate::family::spec(&self.cfg).is_some_and(|f| f.requests.contains(&r))
    }

    /// Tares or zeroes the device through its live session.
    pub async fn command(&self, cmd: Command) -> Result<(), AskError> {
        if !self.takes(cmd.request()) {
            return Err(AskError::NotSupported);
        }
        if self.state() != State::Connected {
            return Err(AskError::NotConnected);
        }
        let (tx, rx) = oneshot::channel();
        self.ask_tx
            .try_send(Ask::Command(cmd, tx))
            .map_err(|_| AskError::Busy)?;
        match tokio::time::timeout(Duration::from_secs(2), rx).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(AskError::NoCommand),
            Ok(Err(_)) => Err(AskError::NotConnected),
            Err(_) => Err(AskError::Busy),
        }
    }

    /// Queues what a customer display shows next, replacing anything not
    /// yet written; refused while the display is not connected.
    pub fn show(&self, bytes: Vec<u8>) -> Result<(), AskError> {
        if !self.takes(crate::family::Request::Display) {
            return Err(AskError::NotSupported);
        }
        if self.state() != State::Connected {
            return Err(AskError::NotConnected);
        }
        self.screen.put(bytes);
        Ok(())
    }

    /// The latest reading the device gave (scales), with its age.
    pub fn latest(&self) -> Option<Latest> {
        let s = self.status();
        let (event, at, when) = s.reading.as_ref()?;
        Some(Latest {
            event: event.clone(),
            at: *at,
            age: when.elapsed(),
        })
    }

    /// For devices run outside the supervisor (receipt printers): records the
    /// state and publishes the lifecycle event the supervisor would —
    /// `device.attached` on connecting, `device.detached` on losing a
    /// connection, `device.error` once per distinct failure while not connected.
    pub fn report(&self, bus: &Bus, state: State, error: Option<String>) {
        let was = {
            let mut s = self.status();
            let same = s.state == state && (state == State::Connected || error == s.last_error);
            if same {
                return;
            }
            let was = s.state;
            s.state = state;
            if error.is_some() {
                s.last_error.clone_from(&error);
            }
            was
        };
        match (state, was) {
            (State::Connected, _) => {
                lifecycle(self, bus, |driver, transport, path| Event::DeviceAttached {
                    driver,
                    transport,
                    path,
                })
            }
            (_, State::Connected) => {
                lifecycle(self, bus, |driver, transport, path| Event::DeviceDetached {
                    driver,
                    transport,
                    path,
                    error,
                })
            }
            _ => lifecycle(self, bus, |driver, transport, path| Event::DeviceError {
                driver,
                transport,
                path,
                error: error.unwrap_or_default(),
            }),
        }
    }

    /// Counts an event the device's own module published.
    pub fn note_event(&self) {
        let mut s = self.status();
        s.events += 1;
        s.last_event_at = Some(OffsetDateTime::now_utc());
    }
}

/// All configured devices. The list changes on a config reload (SIGHUP);
/// handlers take a snapshot or look one device up, never hold the lock.
pub struct Devices {
    list: std::sync::RwLock<Vec<Arc<Device>>>,
    bus: Arc<Bus>,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    origin: tokio::time::Instant,
}

/// What a reload changed, by device id.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Changes that need a restart (printers run their own queue).
    pub kept: Vec<String>,
}

/// How long a reload waits for a replaced device to let go of its port.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

impl Devices {
    /// Creates every device and spawns its supervisor on `tracker`.
    pub fn start(
        configs: &[DeviceConfig],
        bus: &Arc<Bus>,
        metrics: &Arc<Metrics>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Arc<Devices>> {
        let devices = Arc::new(Devices {
            list: std::sync::RwLock::new(Vec::new()),
            bus: bus.clone(),
            metrics: metrics.clone(),
            tracker: tracker.clone(),
            cancel: cancel.clone(),
            origin: tokio::time::Instant::now(),
        });
        let mut list = Vec::new();
        for cfg in configs {
            list.push(devices.spawn(cfg)?);
        }
        *devices.write() = list;
        hotplug::start(&devices, tracker, cancel);
        Ok(devices)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Device>>> {
        self.list.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Device>>> {
        self.list.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds one device and starts its supervisor (printers are listed only).
    fn spawn(&self, cfg: &DeviceConfig) -> anyhow::Result<Arc<Device>> {
        let spec = crate::family::find(&cfg.driver)
            .ok_or_else(|| anyhow::anyhow!("device {}: unknown driver {}", cfg.id, cfg.driver))?;
        // Validation already built one; a failure here is a bug, reported not panicked.
        let protocol = spec
            .make(
                cfg,
                &crate::family::Make {
                    seed: random_seed(),
                },
            )
            .map_err(|e| anyhow::anyhow!("device {}: {e}", cfg.id))?;
        let (sim_tx, sim_rx) = if cfg.transport() == Transport::Sim {
            let (tx, rx) = mpsc::channel(64);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (ask_tx, ask_rx) = mpsc::channel(4);
        let stop = self.cancel.child_token();
        let dev = Arc::new(Device {
            cfg: cfg.clone(),
            status: Mutex::new(Status {
                node: None,
                state: State::Disconnected,
                last_error: None,
                last_event_at: None,
                events: 0,
                reading: None,
            }),
            sim_tx,
            ask_tx,
            wake: tokio::sync::Notify::new(),
            screen: screen::Screen::default(),
            stop: stop.clone(),
            task: Mutex::new(None),
        });
        if crate::family::print_worker(cfg) {
            // Listed and reported here; run by its own module (src/print).
            return Ok(dev);
        }
        let sup = Supervisor {
            dev: dev.clone(),
            bus: self.bus.clone(),
            metrics: self.metrics.clone(),
            protocol,
            sim_rx,
            ask_rx,
            origin: self.origin,
            cancel: stop,
        };
        let handle = self.tracker.spawn(sup.run());
        *dev.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(dev)
    }

    /// Applies a new device list: removed devices stop, new ones start,
    /// changed ones restart with their new settings; the rest, and every
    /// stream client, carry on untouched. Configs were validated before.
    pub async fn reload(&self, configs: &[DeviceConfig]) -> anyhow::Result<Reloaded> {
        let mut r = Reloaded::default();
        let old = self.list();
        let mut next = Vec::with_capacity(configs.len());
        let mut retire = Vec::new();
        for cfg in configs {
            match old.iter().find(|d| d.cfg.id == cfg.id) {
                Some(d) if d.cfg == *cfg => next.push(d.clone()),
                Some(d)
                    if crate::family::print_worker(&d.cfg) || crate::family::print_worker(cfg) =>
                {
                    r.kept.push(cfg.id.clone());
                    next.push(d.clone());
                }
                Some(d) => {
                    r.changed.push(cfg.id.clone());
                    retire.push(d.clone());
                }
                None if crate::family::print_worker(cfg) => {
                    r.kept.push(cfg.id.clone());
                }
                None => r.added.push(cfg.id.clone()),
            }
        }
        for d in &old {
            if !configs.iter().any(|c| c.id == d.cfg.id) {
                if crate::family::print_worker(&d.cfg) {
                    r.kept.push(d.cfg.id.clone());
                    next.push(d.clone());
                } else {
                    r.removed.push(d.cfg.id.clone());
                    retire.push(d.clone());
                }
            }
        }
        // Stop first, so a changed device's port is free before it reopens.
        for d in &retire {
            d.stop.cancel();
            let handle = d.task.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(h) = handle {
                if tokio::time::timeout(RELEASE_WAIT, h).await.is_err() {
                    tracing::warn!(device = %d.cfg.id, "the old device task did not stop in time");
                }
            }
        }
        for cfg in configs {
            if r.added.contains(&cfg.id) || r.changed.contains(&cfg.id) {
                // Validated before, so this does not fail; if it does, the rest
                // of the reload still applies and the list stays consistent.
                match self.spawn(cfg) {
                    Ok(d) => next.push(d),
                    Err(e) => tracing::error!("config reload: {e:#}"),
                }
            }
        }
        // Keep the configured order for listings.
        next.sort_by_key(|d| {
            configs
                .iter()
                .position(|c| c.id == d.cfg.id)
                .unwrap_or(usize::MAX)
        });
        *self.write() = next;
        Ok(r)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Device>> {
        self.read().iter().find(|d| d.cfg.id == id).cloned()
    }

    /// A snapshot of every device, in configured order.
    pub fn list(&self) -> Vec<Arc<Device>> {
        self.read().clone()
    }
}

struct Supervisor {
    dev: Arc<Device>,
    bus: Arc<Bus>,
    metrics: Arc<Metrics>,
    protocol: Box<dyn Protocol>,
    sim_rx: Option<mpsc::Receiver<Vec<u8>>>,
    ask_rx: mpsc::Receiver<Ask>,
    origin: tokio::time::Instant,
    cancel: CancellationToken,
}

/// Publishes a lifecycle event built from the device's driver, transport and path.
fn lifecycle(dev: &Device, bus: &Bus, make: impl FnOnce(String, String, Option<String>) -> Event) {
    let c = &dev.cfg;
    let node = dev.status().node.clone();
    let ev = make(
        c.driver.clone(),
        c.transport_name().to_owned(),
        dev.path_or(node),
    );
    bus.publish(Some(&c.id), &ev);
}

fn set_state(dev: &Device, state: State, error: Option<String>) {
    let mut s = dev.status();
    s.state = state;
    if error.is_some() {
        s.last_error = error;
    }
}

enum SessionEnd {
    Shutdown,
    Gone(Option<String>),
}

impl Supervisor {
    // Over 80 lines: the supervisor's open/backoff loop; its state (attempt, last error, backoff) lives across iterations.
    async fn run(mut self) {
        let id = self.dev.cfg.id.clone();
        let mut backoff = BACKOFF_MIN;
        let mut last_open_error: Option<String> = None;
        while !self.cancel.is_cancelled() {
            let opened = transport::open(&self.dev.cfg, self.sim_rx.as_mut()).await;
            match opened {
                Err(e) => {
                    let message = e.to_string();
                    if last_open_error.as_deref() != Some(message.as_str()) {
                        let state = match e {
                            transport::OpenError::Absent(_) => State::Disconnected,
                            transport::OpenError::Failed(_) => State::Error,
                        };
                        tracing::warn!(device = %id, error = %message, state = state.name(), "device cannot be opened; retrying with backoff");
                        set_state(&self.dev, state, Some(message.clone()));
                        lifecycle(&self.dev, &self.bus, |driver, transport, path| {
                            Event::DeviceError {
                                driver,
                                transport,
                                path,
                                error: message.clone(),
                            }
                        });
                        last_open_error = Some(message);
                    }
                }
                Ok(link) => {
                    last_open_error = None;
                    if self.dev.cfg.usb_match.is_some() {
                        self.dev.status().node = link.node();
                    }
                    tracing::info!(device = %id, driver = %self.dev.cfg.driver, "device attached");
                    set_state(&self.dev, State::Connected, None);
                    lifecycle(&self.dev, &self.bus, |driver, transport, path| {
                        Event::DeviceAttached {
                            driver,
                            transport,
                            path,
                        }
                    });
                    let started = tokio::time::Instant::now();
                    let end = AssertUnwindSafe(session(
                        link,
                        &mut self.protocol,
                        &self.dev,
                        &self.bus,
                        &self.metrics,
                        &mut self.ask_rx,
                        self.origin,
                        &self.cancel,
                    ))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        SessionEnd::Gone(Some("driver failed unexpectedly".into()))
                    });
                    if started.elapsed() >= HEALTHY_SESSION {
                        backoff = BACKOFF_MIN;
                    }
                    let error = match end {
                        SessionEnd::Shutdown => None,
                        SessionEnd::Gone(e) => e,
                    };
                    // Devices that announce themselves announce their going (dongle.detached).
                    let mut closing = Vec::new();
                    let now = Instant(self.origin.elapsed().as_millis() as u64);
                    self.protocol.handle_close(now, &mut closing);
                    for a in closing {
                        if let Action::Emit(ev) = a {
                            self.bus.publish(Some(&id), &ev);
                        }
                    }
                    match &error {
                        Some(e) => tracing::warn!(device = %id, error = %e, "device detached"),
                        None => tracing::info!(device = %id, "device detached"),
                    }
                    // The link went away (unplugged, EOF) or we stopped: either way the
                    // device is not connected; why stays in last_error.
                    set_state(&self.dev, State::Disconnected, error.clone());
                    lifecycle(&self.dev, &self.bus, |driver, transport, path| {
                        Event::DeviceDetached {
                            driver,
                            transport,
                            path,
                            error,
                        }
                    });
                    if self.cancel.is_cancelled() {
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
                // Hotplug: its node just appeared; retry now and quickly after.
                _ = self.dev.wake.notified() => backoff = BACKOFF_MIN / 2,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Runs one open session until the device goes away or the daemon stops.
#[allow(clippy::too_many_arguments)]
// Over 80 lines: one select! loop: executing a protocol's actions and feeding it bytes, timers and requests share the link and the protocol.
async fn session(
    mut link: Link<'_>,
    protocol: &mut Box<dyn Protocol>,
    dev: &Device,
    bus: &Bus,
    metrics: &Metrics,
    ask_rx: &mut mpsc::Receiver<Ask>,
    origin: tokio::time::Instant,
    cancel: &CancellationToken,
) -> SessionEnd {
    let now = || Instant(origin.elapsed().as_millis() as u64);
    let mut actions = Vec::new();
    let mut timer: Option<Instant> = None;
    let mut faulted = false;
    let mut buf = vec![0u8; 4096];
    protocol.handle_open(now(), &mut actions);
    // A display that comes back shows what it showed (or was last asked to).
    let display = dev.takes(crate::family::Request::Display);
    if let Some(shown) = display.then(|| dev.screen.current()).flatten() {
        actions.push(Action::Write(shown));
    }
    // A tare or zero is answered once its bytes are written.
    let mut answer: Option<(oneshot::Sender<bool>, bool)> = None;
    loop {
        for action in actions.drain(..) {
            match action {
                Action::Emit(mut ev) => {
                    if let Event::CardTapped { reader, .. } = &mut ev {
                        if reader.is_empty() {
                            reader.clone_from(&dev.cfg.id);
                        }
                    }
                    // Protocols read no clock; the wall-clock time of a call is ours.
                    if let Event::CallRinging { at: at @ None, .. } = &mut ev {
                        *at = Some(crate::clock::now_rfc3339());
                    }
                    bus.publish(Some(&dev.cfg.id), &ev);
                    let mut s = dev.status();
                    s.events += 1;
                    s.last_event_at = Some(OffsetDateTime::now_utc());
                }
                // Bounded like a client's bytes: a link that stops taking them
                // ends the session rather than hanging it past silence checks and stops.
                Action::Write(bytes) => {
                    if let Err(end) = write_bounded(&mut link, &bytes, cancel).await {
                        return end;
                    }
                }
                Action::SetTimer(at) => timer = Some(at),
                Action::Reading(ev) => {
                    dev.status().reading =
                        Some((ev, OffsetDateTime::now_utc(), std::time::Instant::now()));
                }
                Action::Malformed(why) => {
                    metrics.malformed_input();
                    tracing::warn!(device = %dev.cfg.id, "{why}");
                }
                Action::Fault(why) => {
                    if !faulted {
                        faulted = true;
                        tracing::warn!(device = %dev.cfg.id, error = %why, "device fault");
                        set_state(dev, State::Error, Some(why.clone()));
                        lifecycle(dev, bus, |driver, transport, path| Event::DeviceError {
                            driver,
                            transport,
                            path,
                            error: why,
                        });
                    }
                }
                Action::Recovered => {
                    if faulted {
                        faulted = false;
                        tracing::info!(device = %dev.cfg.id, "device recovered");
                        set_state(dev, State::Connected, None);
                        // Clients learn it is usable again the way they learn of a plug-in.
                        lifecycle(dev, bus, |driver, transport, path| Event::DeviceAttached {
                            driver,
                            transport,
                            path,
                        });
                    }
                }
            }
        }
        if let Some((reply, ok)) = answer.take() {
            let _ = reply.send(ok);
        }
        let deadline = timer.map(|t| origin + std::time::Duration::from_millis(t.0));
        tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Shutdown,
            r = link.read_chunk(&mut buf) => match r {
                Ok(Some(Chunk::Data(bytes))) => protocol.handle_bytes(now(), &bytes, &mut actions),
                Ok(Some(Chunk::Garbled(why))) => actions.push(Action::Malformed(why)),
                Ok(Some(Chunk::Event(ev))) => actions.push(Action::Emit(ev)),
                Ok(None) => return SessionEnd::Gone(None),
                Err(e) => return SessionEnd::Gone(Some(format!("read failed: {e}"))),
            },
            _ = sleep_until_opt(deadline) => {
                timer = None;
                protocol.handle_timer(now(), &mut actions);
            }
            _ = dev.screen.ready(), if display => {
                if let Some(bytes) = dev.screen.take() {
                    if let Err(why) = write_bounded(&mut link, &bytes, cancel).await {
                        return why;
                    }
                }
            }
            Some(ask) = ask_rx.recv() => match ask {
                // A caller that gave up (timed out while we were busy) wants no read now.
                Ask::Read(reply) if reply.is_closed() => {}
                Ask::Command(_, reply) if reply.is_closed() => {}
                Ask::Command(cmd, reply) => {
                    let ok = match cmd {
                        Command::Tare => protocol.request_tare(now(), &mut actions),
                        Command::Zero => protocol.request_zero(now(), &mut actions),
                    };
                    answer = Some((reply, ok));
                }
                Ask::Read(reply) => {
                    // A typed call on the link first (PC/SC reads by itself),
                    // else the protocol's own request on the wire.
                    let ok = link.request_read() || protocol.request_read(now(), &mut actions);
                    let _ = reply.send(if ok { ReadOutcome::Started } else { ReadOutcome::NotSupported });
                }
                // A caller that gave up was told so: its bytes are not written late.
                Ask::Send(_, reply) if reply.is_closed() => {}
                Ask::Send(bytes, reply) => {
                    let r = write_bounded(&mut link, &bytes, cancel).await;
                    let _ = reply.send(match &r {
                        Ok(()) => Ok(()),
                        Err(SessionEnd::Gone(why)) => Err(why.clone().unwrap_or_default()),
                        Err(SessionEnd::Shutdown) => Err("the daemon is stopping".into()),
                    });
                    if let Err(end) = r {
                        return end;
                    }
                }
            }
        }
    }
}

/// Writes bytes a client sent, bounded by their size (2 ms a byte, slower
/// than 9600 baud) and never holding up a stop; a write that fails or does
/// not finish ends the session.
async fn write_bounded(
    link: &mut Link<'_>,
    bytes: &[u8],
    cancel: &CancellationToken,
) -> Result<(), SessionEnd> {
    let limit = Duration::from_secs(2) + Duration::from_millis(2 * bytes.len() as u64);
    let r = tokio::select! {
        _ = cancel.cancelled() => return Err(SessionEnd::Shutdown),
        r = tokio::time::timeout(limit, link.write_all(bytes)) => r,
    };
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(SessionEnd::Gone(Some(format!("write failed: {e}")))),
        Err(_) => Err(SessionEnd::Gone(Some(format!(
            "a write did not finish within {limit:?}; the device stopped taking bytes"
        )))),
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Fresh bytes for dongle challenges, from the kernel's CSPRNG (a predictable
/// challenge could be answered in advance by borrowing a genuine dongle).
fn random_seed() -> [u8; 16] {
    use std::io::Read;
    let mut seed = [0u8; 16];
    let got = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
    if got.is_err() {
        // No /dev/urandom (a broken chroot): still unique per start, if guessable.
        seed[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
        seed[8..].copy_from_slice(&(ulid::Ulid::new().0 as u64).to_le_bytes());
    }
    seed
}
