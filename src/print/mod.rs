//! Receipt printers (`driver = "escpos"`) and label printers (`driver =
//! "label"`, TSPL): `POST /v1/print`, `GET /v1/print/{job}`,
//! `POST /v1/drawer/open` and `printer.status`.
//!
//! A document is rendered when it is posted (by the drivers crate's sans-IO
//! renderer), so a bad one is refused at once with the line it is on; the
//! bytes are then stored durably ([`queue`]) and the page hears 202.
//!
//! One worker task per printer owns its link ([`link`]) — nothing else
//! writes to it, so status queries never land inside a job. It takes the
//! oldest unfinished job, asks the printer's status (ESC/POS `DLE EOT 1, 2,
//! 4`, TSPL `ESC ! ?`; one second to answer), and prints only when the printer
//! is online with paper (and ribbon) and the cover (or head) shut. Otherwise
//! the job is `held` with the reason (`offline`, `paper_out`, `cover_open`,
//! `ribbon_out`, `paper_jam`), `printer.status` is published when
//! the status changes, and the status is asked again every second; the queue
//! resumes, in order, when the printer is ready. Drawer kicks do not wait
//! behind a queue held for paper or the cover: they go as a real-time pulse
//! (`DLE DC4 1`), which printers carry out even then. A job whose bytes could not
//! all be sent is tried again (up to [`MAX_ATTEMPTS`]), then `failed`.
//!
//! At least once: a job cut off by a restart mid-print prints again.

pub mod link;
pub mod queue;
pub mod remote;

use crate::config::{Config, DeviceConfig, PrintConfig};
use crate::device::{Device, Devices, State};
use crate::event::Bus;
use crate::transport::OpenError;
use link::{Dialect, Link};
use posbridge_drivers::escpos::{
    drawer_kick, realtime_drawer_kick, render, Document, Paper, PrinterStatus, Profile,
};
use posbridge_drivers::tspl;
use posbridge_drivers::Event;
use queue::{JobStore, JobView, Kind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a printer has to answer the status queries before it counts as offline.
const STATUS_WAIT: Duration = Duration::from_secs(1);
/// How often a held queue asks the printer again.
const RETRY: Duration = Duration::from_secs(1);
/// Sends of one job that may fail part-way before it is given up as `failed`
/// (each may have printed part of the receipt).
pub const MAX_ATTEMPTS: u64 = 3;
/// Largest job, raw or rendered.
pub const MAX_JOB_BYTES: usize = 1024 * 1024;
/// Write time allowed per job: a base, plus 2 ms a byte (slower than 9600 baud).
const WRITE_BASE: Duration = Duration::from_secs(30);
/// How often finished jobs past `storage.retain_days` are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Why a status keeps jobs waiting, as the job's `reason`.
fn not_ready(s: &PrinterStatus) -> Option<&'static str> {
    if s.cover_open {
        Some("cover_open")
    } else if s.paper == Paper::Out {
        Some("paper_out")
    } else if s.jammed {
        Some("paper_jam")
    } else if s.ribbon_out {
        Some("ribbon_out")
    } else if !s.online {
        Some("offline")
    } else {
        None
    }
}

/// What a printer prints, and what rendering for it needs.
#[derive(Clone, Debug)]
pub enum Model {
    /// `driver = "escpos"`: receipts, and the cash drawer.
    Receipt(Profile),
    /// `driver = "label"`: TSPL labels on the loaded stock.
    Label {
        settings: tspl::Settings,
        stock: tspl::Stock,
    },
}

/// One configured printer.
pub struct Printer {
    pub id: String,
    pub cfg: DeviceConfig,
    pub model: Model,
    /// Status poll while the queue is empty; `None` = only before jobs.
    poll: Option<Duration>,
    /// Ask the status before each job (off for printers that never answer).
    status_query: bool,
    /// Takes print jobs from HQ (`accept_remote = true`).
    pub accept_remote: bool,
    wake: Notify,
    last: Mutex<Option<PrinterStatus>>,
    /// Its `/v1/devices` entry.
    device: Option<Arc<Device>>,
}

impl Printer {
    /// The last status the printer reported (or that it stopped answering).
    pub fn status(&self) -> Option<PrinterStatus> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dialect(&self) -> Dialect {
        match self.model {
            Model::Receipt(_) => Dialect::EscPos,
            Model::Label { .. } => Dialect::Tspl,
        }
    }

    /// `receipt` or `label`, as `GET /v1/printers` says.
    pub fn kind(&self) -> &'static str {
        match self.model {
            Model::Receipt(_) => "receipt",
            Model::Label { .. } => "label",
        }
    }
}

/// How a printer is driven: its status poll, whether to ask before each
/// job, whether HQ may send it jobs.
struct Driving {
    poll: Option<Duration>,
    status_query: bool,
    accept_remote: bool,
}

/// A printer's model and status settings from its `[[device]]` table
/// (validation already read them; a failure here is a bug, reported not panicked).
fn model(cfg: &DeviceConfig, print: &PrintConfig) -> anyhow::Result<(Model, Driving)> {
    let bad = |e: crate::family::KeyError| anyhow::anyhow!("device {}: {e}", cfg.id);
    if cfg.driver == crate::family::label::SPEC.name {
        let s = crate::family::label::settings(cfg).map_err(bad)?;
        let settings = tspl::Settings {
            dots_per_mm: s.dots_per_mm,
            max_image_pixels: print.max_image_pixels,
        };
        let m = Model::Label {
            settings,
            stock: s.stock,
        };
        let d = Driving {
            poll: s.poll,
            status_query: s.status_query,
            accept_remote: s.accept_remote,
        };
        return Ok((m, d));
    }
    let mut s = crate::family::escpos::settings(cfg).map_err(bad)?;
    s.profile.max_image_pixels = print.max_image_pixels;
    let d = Driving {
        poll: s.poll,
        status_query: s.status_query,
        accept_remote: s.accept_remote,
    };
    Ok((Model::Receipt(s.profile), d))
}

/// Why a print request was refused.
#[derive(Debug)]
pub enum SubmitError {
    UnknownPrinter(String),
    Bad(String),
    TooLarge(String),
    Storage(String),
}

/// What `POST /v1/print` asks to print.
pub enum Payload {
    /// The `document` value, parsed and rendered here.
    Document(serde_json::Value),
    /// The `raw` base64 text.
    Raw(String),
    /// Bytes already decoded (QZ Tray's raw data).
    Bytes(Vec<u8>),
    /// The `label` value, for a label printer.
    Label(serde_json::Value),
}

/// Every configured printer and the job store.
pub struct Printers {
    list: Vec<Arc<Printer>>,
    store: Arc<JobStore>,
    /// `[[print.logo]]` pictures by name, read once at start.
    logos: HashMap<String, Arc<[u8]>>,
}

impl Printers {
    /// Opens `storage.dir/print.db` and starts one worker per escpos device.
    /// `devices` holds their `/v1/devices` entries (no supervisor runs them).
    pub fn start(
        config: &Config,
        devices: &Devices,
        bus: &Arc<Bus>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Arc<Printers>> {
        let (store, interrupted) =
            JobStore::open(&config.storage.dir).map_err(|e| anyhow::anyhow!("storage.dir: {e}"))?;
        if interrupted > 0 {
            tracing::warn!(
                jobs = interrupted,
                "print job(s) were cut off mid-print by the last stop; they print again (at least once)"
            );
        }
        let mut list = Vec::new();
        for cfg in config
            .devices
            .iter()
            .filter(|d| crate::family::print_worker(d))
        {
            let (model, d) = model(cfg, &config.print)?;
            list.push(Arc::new(Printer {
                id: cfg.id.clone(),
                cfg: cfg.clone(),
                model,
                poll: d.poll,
                status_query: d.status_query,
                accept_remote: d.accept_remote,
                wake: Notify::new(),
                last: Mutex::new(None),
                device: devices.get(&cfg.id),
            }));
        }
        for p in &list {
            let worker = Worker {
                p: p.clone(),
                store: store.clone(),
                bus: bus.clone(),
                cancel: cancel.clone(),
                link: None,
                unsaved_printed: None,
                realtime_failed: false,
            };
            tracker.spawn(worker.run());
        }
        let names: Vec<String> = list.iter().map(|p| p.id.clone()).collect();
        let retain = Duration::from_secs(config.storage.retain_days.saturating_mul(86_400));
        tracker.spawn(housekeeping(store.clone(), names, retain, cancel.clone()));
        let logos = read_logos(&config.print)?;
        Ok(Arc::new(Printers { list, store, logos }))
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Printer>> {
        self.list.iter().find(|p| p.id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Printer>> {
        self.list.iter()
    }

    /// What the print queue store reported at start, if anything.
    pub fn start_problem(&self) -> Option<&str> {
        self.store.start_problem.as_deref()
    }

    fn printer(&self, id: &str) -> Result<&Arc<Printer>, SubmitError> {
        self.get(id)
            .ok_or_else(|| SubmitError::UnknownPrinter(format!("no printer {id:?}")))
    }

    async fn enqueue(
        &self,
        p: &Printer,
        kind: Kind,
        bytes: Vec<u8>,
    ) -> Result<JobView, SubmitError> {
        let id = ulid::Ulid::new().to_string();
        let v = self
            .store
            .insert(id, p.id.clone(), kind, bytes)
            .await
            .map_err(SubmitError::Storage)?;
        p.wake.notify_one();
        Ok(v)
    }

    /// Checks, renders and stores a print job; returns once it is durable.
    pub async fn print(&self, printer: &str, payload: Payload) -> Result<JobView, SubmitError> {
        let p = self.printer(printer)?;
        let (kind, bytes) = self.prepare(p, payload).await?;
        self.enqueue(p, kind, bytes).await
    }

    /// Checks and renders a job for `p`: its kind and the bytes to send.
    async fn prepare(&self, p: &Printer, payload: Payload) -> Result<(Kind, Vec<u8>), SubmitError> {
        let (kind, bytes) = match payload {
            Payload::Raw(b64) => {
                use base64::Engine;
                let clean: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                if clean.len() / 4 * 3 > MAX_JOB_BYTES + 3 {
                    return Err(SubmitError::TooLarge(format!(
                        "raw: at most {MAX_JOB_BYTES} bytes per job"
                    )));
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(clean.as_bytes())
                    .map_err(|e| SubmitError::Bad(format!("raw: not valid base64 ({e})")))?;
                if bytes.is_empty() {
                    return Err(SubmitError::Bad("raw: no bytes to print".into()));
                }
                (Kind::Raw, bytes)
            }
            Payload::Bytes(bytes) if bytes.is_empty() => {
                return Err(SubmitError::Bad("no bytes to print".into()))
            }
            Payload::Bytes(bytes) => (Kind::Raw, bytes),
            Payload::Document(v) => (Kind::Document, self.render(p, v).await?),
            Payload::Label(v) => (Kind::Label, self.render_label(p, v).await?),
        };
        if bytes.len() > MAX_JOB_BYTES {
            return Err(SubmitError::TooLarge(format!(
                "the job is {} bytes; at most {MAX_JOB_BYTES}",
                bytes.len()
            )));
        }
        Ok((kind, bytes))
    }

    /// Parses a document, puts in its logos and renders it for `p`. Images
    /// are decoded and dithered off the async threads.
    async fn render(&self, p: &Printer, v: serde_json::Value) -> Result<Vec<u8>, SubmitError> {
        let Model::Receipt(profile) = p.model else {
            return Err(SubmitError::Bad(format!(
                "{} is a label printer: send \"label\" or \"raw\"",
                p.id
            )));
        };
        let json =
            serde_json::to_vec(&v).map_err(|e| SubmitError::Bad(format!("document: {e}")))?;
        let mut doc = Document::from_json(&json).map_err(|e| SubmitError::Bad(doc_error(e)))?;
        doc.resolve_logos(|name| self.logos.get(name).cloned())
            .map_err(|e| SubmitError::Bad(doc_error(e)))?;
        let pictures = doc
            .lines
            .iter()
            .any(|l| matches!(l, posbridge_drivers::escpos::Line::Image(_)));
        let rendered = if pictures {
            tokio::task::spawn_blocking(move || render(&doc, &profile))
                .await
                .map_err(|e| SubmitError::Bad(format!("document: rendering stopped ({e})")))?
        } else {
            render(&doc, &profile)
        };
        rendered.map_err(|e| SubmitError::Bad(doc_error(e)))
    }

    /// Parses a label, puts in its logos and renders it as TSPL for `p`.
    async fn render_label(
        &self,
        p: &Printer,
        v: serde_json::Value,
    ) -> Result<Vec<u8>, SubmitError> {
        let Model::Label { settings, stock } = p.model else {
            return Err(SubmitError::Bad(format!(
                "{} is a receipt printer: send \"document\" or \"raw\"",
                p.id
            )));
        };
        let bad = |e: tspl::LabelError| SubmitError::Bad(label_error(&e));
        let json = serde_json::to_vec(&v).map_err(|e| SubmitError::Bad(format!("label: {e}")))?;
        let mut label = tspl::Label::from_json(&json, &stock).map_err(bad)?;
        label
            .resolve_logos(|name| self.logos.get(name).cloned())
            .map_err(bad)?;
        let rendered = if label.has_pictures() {
            tokio::task::spawn_blocking(move || tspl::render(&label, &settings))
                .await
                .map_err(|e| SubmitError::Bad(format!("label: rendering stopped ({e})")))?
        } else {
            tspl::render(&label, &settings)
        };
        rendered.map_err(bad)
    }

    /// Queues the drawer kick behind the printer's other jobs, so the drawer
    /// opens after the receipt before it, never in the middle of one.
    pub async fn open_drawer(&self, printer: &str) -> Result<JobView, SubmitError> {
        let p = self.printer(printer)?;
        let Model::Receipt(profile) = &p.model else {
            return Err(SubmitError::Bad(format!(
                "{printer} is a label printer; it has no cash drawer"
            )));
        };
        self.enqueue(p, Kind::Drawer, drawer_kick(profile)).await
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobView>, String> {
        self.store.get(id.to_owned()).await
    }

    /// Cancels a job still waiting (`DELETE /v1/print/{job}`), and wakes its
    /// printer's worker so the next job does not wait behind it.
    pub async fn cancel(&self, id: &str) -> Result<queue::Cancel, String> {
        let r = self.store.cancel(id.to_owned()).await?;
        if let queue::Cancel::Done(v) = &r {
            tracing::info!(printer = %v.printer, job = %v.job, "print job cancelled");
            if let Some(p) = self.get(&v.printer) {
                p.wake.notify_one();
            }
        }
        Ok(r)
    }

    /// Jobs printed and failed since start.
    pub fn totals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.store.printed_total.load(Relaxed),
            self.store.failed_total.load(Relaxed),
        )
    }

    /// Unfinished jobs of one printer.
    pub async fn waiting(&self, printer: &str) -> Result<u64, String> {
        self.store.waiting(printer).await
    }
}

/// Largest logo file read.
const MAX_LOGO_BYTES: u64 = 8 << 20;

/// A logo's bytes, once they are known to decode within `max_pixels`.
pub fn read_logo(path: &std::path::Path, max_pixels: u64) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if meta.len() > MAX_LOGO_BYTES {
        return Err(format!(
            "{shown} is {} bytes; a logo file is at most {MAX_LOGO_BYTES}",
            meta.len()
        ));
    }
    let data = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    posbridge_drivers::escpos::image::decode(&data, max_pixels)
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(data)
}

/// The `[[print.logo]]` files (already checked by loading the config).
fn read_logos(print: &crate::config::PrintConfig) -> anyhow::Result<HashMap<String, Arc<[u8]>>> {
    let mut logos = HashMap::new();
    for (i, l) in print.logos.iter().enumerate() {
        let data = read_logo(&l.file, print.max_image_pixels)
            .map_err(|e| anyhow::anyhow!("print.logo[{i}].file: {e}"))?;
        logos.insert(l.name.clone(), Arc::from(data));
    }
    Ok(logos)
}

/// `label.items[2].x: …` for an item or field, `label: …` for the whole.
fn label_error(e: &tspl::LabelError) -> String {
    if e.at.is_empty() {
        format!("label: {}", e.message)
    } else {
        format!("label.{e}")
    }
}

/// `document.lines[3]: …` for a line, `document: …` for the whole.
fn doc_error(e: impl std::fmt::Display) -> String {
    let m = e.to_string();
    if m.starts_with("lines[") {
        format!("document.{m}")
    } else {
        format!("document: {m}")
    }
}

/// Fails jobs of printers no longer configured, then prunes old finished jobs hourly.
async fn housekeeping(
    store: Arc<JobStore>,
    printers: Vec<String>,
    retain: Duration,
    cancel: CancellationToken,
) {
    match store.fail_orphans(printers).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            jobs = n,
            "print job(s) for printers no longer configured were marked failed (printer_removed)"
        ),
        Err(e) => tracing::warn!(error = %e, "could not check for jobs of removed printers"),
    }
    loop {
        match store.prune(retain).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned finished print jobs past retention"),
            Err(e) => tracing::warn!(error = %e, "could not prune finished print jobs"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

struct Worker {
    p: Arc<Printer>,
    store: Arc<JobStore>,
    bus: Arc<Bus>,
    cancel: CancellationToken,
    link: Option<Link>,
    /// A job that printed but whose `printed` state could not be stored yet:
    /// it must not print again when the store recovers.
    unsaved_printed: Option<String>,
    /// A real-time drawer kick could not be sent while the queue is held
    /// (a serial printer holding flow control): not tried again until the
    /// printer is ready, when the kick goes in its turn as `ESC p`.
    realtime_failed: bool,
}

async fn woken(d: Option<&Device>) {
    match d {
        Some(d) => d.woken().await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

impl Worker {
    fn report(&self, state: State, error: Option<String>) {
        if let Some(d) = &self.p.device {
            d.report(&self.bus, state, error);
        }
    }

    /// Records a status and publishes `printer.status` when it changed.
    fn observe(&self, s: PrinterStatus) {
        {
            let mut last = self.p.last.lock().unwrap_or_else(|p| p.into_inner());
            if *last == Some(s) {
                return;
            }
            *last = Some(s);
        }
        tracing::info!(printer = %self.p.id, online = s.online, paper = ?s.paper, cover_open = s.cover_open, "printer status");
        self.bus.publish(Some(&self.p.id), &Event::from(s));
        if let Some(d) = &self.p.device {
            d.note_event();
        }
    }

    /// The printer cannot be reached: offline, with the paper and cover as last known.
    fn observe_offline(&self) {
        let last = self.p.status();
        self.observe(PrinterStatus {
            online: false,
            ..last.unwrap_or_default()
        });
    }

    /// Opens the link if needed and asks the status. `Err(reason)` when jobs must wait.
    async fn check(&mut self) -> Result<(), &'static str> {
        if self.link.is_none() {
            match Link::open(&self.p.cfg).await {
                Ok(l) => self.link = Some(l),
                Err(e) => {
                    let state = match e {
                        OpenError::Absent(_) => State::Disconnected,
                        OpenError::Failed(_) => State::Error,
                    };
                    self.report(state, Some(e.to_string()));
                    self.observe_offline();
                    return Err("offline");
                }
            }
        }
        let Some(link) = self.link.as_mut() else {
            return Err("offline");
        };
        if !link.has_status() || !self.p.status_query {
            self.report(State::Connected, None);
            return Ok(());
        }
        let answer = link.status(STATUS_WAIT, self.p.dialect()).await;
        match answer {
            Ok(Some(s)) => {
                self.report(State::Connected, None);
                self.observe(s);
                not_ready(&s).map_or(Ok(()), Err)
            }
            Ok(None) => {
                // A late answer must not be taken for the next one: start afresh.
                self.link = None;
                self.report(
                    State::Disconnected,
                    Some(format!(
                        "no answer to the status query ({}) within {} s",
                        self.p.dialect().query_name(),
                        STATUS_WAIT.as_secs()
                    )),
                );
                self.observe_offline();
                Err("offline")
            }
            Err(e) => {
                self.link = None;
                self.report(State::Disconnected, Some(format!("link lost: {e}")));
                self.observe_offline();
                Err("offline")
            }
        }
    }

    /// The queue is held for paper or the cover, but the printer answers:
    /// drawer kicks waiting in it go now as a real-time pulse, which the
    /// printer carries out even so; the cashier still has change to give.
    /// One pulse answers every kick waiting (the drawer is open after it).
    async fn kick_waiting_drawers(&mut self, reason: &'static str) {
        let Model::Receipt(profile) = self.p.model else {
            return;
        };
        if self.realtime_failed || self.link.is_none() {
            return;
        }
        let id = self.p.id.clone();
        let kicks = match self.store.drawers_waiting(&id).await {
            Ok(k) if !k.is_empty() => k,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(printer = %id, error = %e, "cannot read the print queue");
                return;
            }
        };
        // Claimed before the pulse: a kick cancelled from here on is
        // refused (409), and one cancelled before is not pulsed for.
        let mut claimed = Vec::new();
        for job in kicks {
            match self.store.printing(&job).await {
                Ok(true) => claimed.push(job),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(printer = %id, job = %job, error = %e, "cannot record a drawer kick");
                }
            }
        }
        if claimed.is_empty() {
            return;
        }
        let pulse = realtime_drawer_kick(&profile);
        let sent = match self.link.as_mut() {
            // Short: a serial printer holding flow control for paper takes nothing.
            Some(link) => link.write_all(&pulse, Duration::from_secs(2)).await,
            None => Err(std::io::Error::other("no link")),
        };
        if let Err(e) = sent {
            // The kicks wait in the queue again; they go as ESC p in turn.
            tracing::warn!(printer = %id, error = %e, "real-time drawer kick not sent; the kick waits for the printer");
            self.link = None;
            self.realtime_failed = true;
            for job in &claimed {
                if let Err(e) = self.store.hold(job, reason).await {
                    tracing::error!(printer = %id, job = %job, error = %e, "cannot record a held job");
                }
            }
            return;
        }
        tracing::info!(printer = %id, jobs = claimed.len(), "drawer opened while the queue is held");
        for job in claimed {
            if let Err(e) = self.store.printed(&job).await {
                tracing::error!(printer = %id, job = %job, error = %e, "cannot record a drawer kick");
            }
        }
    }

    /// Waits `d`; false when the daemon is stopping.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    // Over 80 lines: one worker loop whose steps (status, hold, send, record) share the link and the job in hand; split, they would pass all of it around.

    async fn run(mut self) {
        let id = self.p.id.clone();
        // Learn the printer's state now, not at the first job.
        let _ = self.check().await;
        while !self.cancel.is_cancelled() {
            // Jobs from HQ past their expire_at, wherever they wait in the
            // queue (not one that printed and awaits its record).
            match self
                .store
                .expire_due(&id, self.unsaved_printed.clone(), remote::expired)
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(printer = %id, jobs = n, "print job(s) from HQ expired before they could print")
                }
                Err(e) => tracing::error!(printer = %id, error = %e, "cannot expire print jobs"),
            }
            let job = match self.store.next(&id).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(printer = %id, error = %e, "cannot read the print queue");
                    if !self.pause(RETRY).await {
                        break;
                    }
                    continue;
                }
            };
            let Some(job) = job else {
                if !self.link.as_ref().is_some_and(Link::keep_when_idle) {
                    if let Some(link) = self.link.take() {
                        link.release().await;
                    }
                }
                let poll = self.p.poll.filter(|_| self.p.status_query);
                let device = self.p.device.clone();
                tokio::select! {
                    _ = self.cancel.cancelled() => break,
                    _ = self.p.wake.notified() => {}
                    _ = sleep_opt(poll) => { let _ = self.check().await; }
                    // Hotplug saw a printer found by USB id come or go: look now.
                    _ = woken(device.as_deref()) => { let _ = self.check().await; }
                }
                continue;
            };
            if self.unsaved_printed.as_deref() == Some(job.id.as_str()) {
                match self.store.printed(&job.id).await {
                    Ok(()) => self.unsaved_printed = None,
                    Err(e) => {
                        tracing::error!(printer = %id, job = %job.id, error = %e, "cannot record a printed job");
                        if !self.pause(RETRY).await {
                            break;
                        }
                    }
                }
                continue;
            }
            if let Err(reason) = self.check().await {
                if job.state != "held" || job.reason.as_deref() != Some(reason) {
                    tracing::info!(printer = %id, job = %job.id, reason, "print queue held");
                    if let Err(e) = self.store.hold(&job.id, reason).await {
                        tracing::error!(printer = %id, error = %e, "cannot record a held job");
                    }
                }
                if reason != "offline" {
                    self.kick_waiting_drawers(reason).await;
                }
                if !self.pause(RETRY).await {
                    break;
                }
                continue;
            }
            self.realtime_failed = false;
            match self.store.printing(&job.id).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(printer = %id, job = %job.id, "print job cancelled before it went out");
                    continue;
                }
                Err(e) => {
                    tracing::error!(printer = %id, error = %e, "cannot record a job as printing");
                    if !self.pause(RETRY).await {
                        break;
                    }
                    continue;
                }
            }
            let Some(link) = self.link.as_mut() else {
                continue;
            };
            let limit = WRITE_BASE + Duration::from_millis(job.bytes.len() as u64 * 2);
            let sent = tokio::select! {
                // Stopping mid-job leaves it `printing`: it prints again after the restart.
                _ = self.cancel.cancelled() => break,
                r = link.write_all(&job.bytes, limit) => r,
            };
            match sent {
                Ok(()) => {
                    tracing::info!(printer = %id, job = %job.id, bytes = job.bytes.len(), "printed");
                    if let Err(e) = self.store.printed(&job.id).await {
                        tracing::error!(printer = %id, job = %job.id, error = %e, "cannot record a printed job");
                        self.unsaved_printed = Some(job.id.clone());
                    }
                }
                Err(e) => {
                    self.link = None;
                    let why = format!("write failed: {e}");
                    tracing::warn!(printer = %id, job = %job.id, error = %why, attempt = job.attempts + 1, "print job not sent");
                    self.report(State::Disconnected, Some(why.clone()));
                    let r = if job.attempts + 1 >= MAX_ATTEMPTS {
                        self.store
                            .failed(&job.id, format!("write_failed: {e}"))
                            .await
                    } else {
                        self.store.hold(&job.id, "offline").await
                    };
                    if let Err(e) = r {
                        tracing::error!(printer = %id, error = %e, "cannot record a failed send");
                    }
                    if !self.pause(RETRY).await {
                        break;
                    }
                }
            }
        }
    }
}
