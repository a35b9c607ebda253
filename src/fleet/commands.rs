//! Signed commands from HQ (`P/S/cmd`): checked (signature, expiry, replay),
//! run, and answered on `P/S/cmd/result` with `{"id", "ok", "result" |
//! "error"}`. A command id is stored before the command runs, so a command
//! runs at most once even if the daemon dies mid-way (HQ sees the effect in
//! the inventory; the same id again is refused as a replay).
//!
//! `config.apply` writes the new config beside the old one (`.prev`),
//! applies it through the reload path and watches it: if the daemon is not
//! healthy with it at the end of `confirm_s` — or HQ asked to confirm and
//! did not — the previous config comes back by itself and a second result
//! says so (`"rolled_back": true`).

use crate::config::Config;
use crate::device::{Devices, State as DevState};
use crate::print::Printers;
use crate::uplink::RelayStatus;
use ed25519_dalek::VerifyingKey;
use posbridge_drivers::command::{self, Command};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

const DEFAULT_CONFIRM_S: u64 = 60;
const MAX_CONFIRM_S: u64 = 3600;
const DEFAULT_LOG_LINES: usize = 100;
/// A restart waits this long so its result reaches the broker first.
const RESTART_AFTER: Duration = Duration::from_secs(1);
/// Replay ids are kept this long past their command's expiry.
const KEEP_SEEN_S: i64 = 86_400;

/// A config for the running daemon (SIGHUP or `config.apply`), and who
/// wants to hear what came of it.
pub struct Reload {
    pub config: Config,
    pub report: Option<oneshot::Sender<Reloaded>>,
}

/// What a reload did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Printers whose changes wait for a restart.
    pub kept: Vec<String>,
    /// Sections that changed and apply only after a restart.
    pub restart_needed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where the daemon's config lives and how to reload it (absent when the
/// daemon was started without a file, as in-process tests are).
pub struct Host {
    pub config_path: PathBuf,
    pub reload: mpsc::Sender<Reload>,
}

/// A `config.apply` waiting to be kept or rolled back.
struct Watch {
    id: String,
    confirmed: bool,
    /// Devices already in error before it that it did not touch (a scale
    /// switched off): they do not count against it.
    ignore: HashSet<String>,
}

pub struct Commands {
    keys: Vec<VerifyingKey>,
    /// This store's id: commands for another are refused.
    store: String,
    seen: Mutex<rusqlite::Connection>,
    host: Option<Host>,
    /// The running config (to tell a config that cuts the store off HQ).
    current: Mutex<Config>,
    devices: Arc<Devices>,
    printers: Arc<Printers>,
    status: Arc<RelayStatus>,
    watch: Mutex<Option<Watch>>,
    /// Results that come later (a rollback), for the relay to publish.
    late: mpsc::Sender<Value>,
    late_rx: Mutex<Option<mpsc::Receiver<Value>>>,
    /// Stops the daemon (for `restart`).
    stop: CancellationToken,
}

/// What a command answers: its result, or why it failed.
type Outcome = Result<Value, String>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the inventory and commands are built from.
pub struct Parts {
    pub config: Config,
    pub host: Option<Host>,
    pub devices: Arc<Devices>,
    pub printers: Arc<Printers>,
    pub status: Arc<RelayStatus>,
    pub stop: CancellationToken,
}

impl Commands {
    pub fn open(p: Parts) -> Result<Arc<Commands>, String> {
        let dir = &p.config.storage.dir;
        let keys = p
            .config
            .uplink
            .as_ref()
            .map(|u| {
                u.command_keys
                    .iter()
                    .filter_map(|k| command::parse_key(k).ok())
                    .collect()
            })
            .unwrap_or_default();
        let path = dir.join("commands.db");
        let db =
            rusqlite::Connection::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, expires INTEGER NOT NULL);",
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        let (late, late_rx) = mpsc::channel(64);
        Ok(Arc::new(Commands {
            keys,
            store: p.config.store.id.clone(),
            seen: Mutex::new(db),
            host: p.host,
            current: Mutex::new(p.config),
            devices: p.devices,
            printers: p.printers,
            status: p.status,
            watch: Mutex::new(None),
            late,
            late_rx: Mutex::new(Some(late_rx)),
            stop: p.stop,
        }))
    }

    /// The later results (rollbacks); the relay takes it once.
    pub fn take_late(&self) -> Option<mpsc::Receiver<Value>> {
        lock(&self.late_rx).take()
    }

    /// One `P/S/cmd` message: the result to publish.
    pub async fn handle(self: &Arc<Self>, payload: &[u8]) -> Value {
        let c = match command::verify(payload, &self.keys) {
            Ok(c) => c,
            Err(r) => {
                tracing::warn!(id = ?r.id, "refused a command from HQ: {}", r.why);
                return json!({"id": r.id, "ok": false, "error": r.why});
            }
        };
        // One fsync: off the runtime's threads.
        let (me, checked) = (self.clone(), c.clone());
        let admitted = tokio::task::spawn_blocking(move || me.admit(&checked))
            .await
            .unwrap_or_else(|e| Err(format!("the command check stopped: {e}")));
        if let Err(why) = admitted {
            tracing::warn!(id = %c.id, cmd = %c.cmd, "refused a command from HQ: {why}");
            return json!({"id": c.id, "ok": false, "error": why});
        }
        tracing::info!(id = %c.id, cmd = %c.cmd, "running a command from HQ");
        let out = self.run(&c).await;
        match out {
            Ok(result) => json!({"id": c.id, "ok": true, "result": result}),
            Err(error) => {
                // A refused config's problems may quote its lines (a password):
                // HQ gets them, the log does not.
                if c.cmd == "config.apply" {
                    tracing::warn!(id = %c.id, "config.apply refused or failed; the reason went to HQ");
                } else {
                    tracing::warn!(id = %c.id, cmd = %c.cmd, "command failed: {error}");
                }
                json!({"id": c.id, "ok": false, "error": error})
            }
        }
    }

    /// For this store, not expired, and not seen before (recorded now, durably).
    fn admit(&self, c: &Command) -> Result<(), String> {
        if c.store != self.store {
            return Err(format!(
                "store: this command is for {:?}, this store is {:?}",
                c.store, self.store
            ));
        }
        let expires = time::OffsetDateTime::parse(
            &c.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|_| format!("expires_at: {:?} is not RFC 3339", c.expires_at))?;
        let now = time::OffsetDateTime::now_utc();
        if expires <= now {
            return Err(format!("expired at {}", c.expires_at));
        }
        let db = lock(&self.seen);
        let _ = db.execute(
            "DELETE FROM seen WHERE expires < ?1",
            [now.unix_timestamp() - KEEP_SEEN_S],
        );
        let added = db
            .execute(
                "INSERT OR IGNORE INTO seen (id, expires) VALUES (?1, ?2)",
                rusqlite::params![c.id, expires.unix_timestamp()],
            )
            .map_err(|e| format!("cannot record the command id: {e}"))?;
        if added == 0 {
            return Err(format!("replayed: command {:?} was already received", c.id));
        }
        Ok(())
    }

    async fn run(self: &Arc<Self>, c: &Command) -> Outcome {
        match c.cmd.as_str() {
            "config.apply" => self.apply(c).await,
            "config.confirm" => self.confirm(&c.args),
            "restart" => Ok(self.restart()),
            "print.test" => self.print_test(&c.args).await,
            "log.tail" => Ok(log_tail(&c.args)),
            "diagnostics" => self.diagnostics().await,
            other => Err(format!(
                "unknown command {other:?}; known: config.apply, config.confirm, restart, print.test, log.tail, diagnostics"
            )),
        }
    }

    fn restart(&self) -> Value {
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RESTART_AFTER).await;
            tracing::info!("restarting as HQ asked");
            super::request_restart();
            stop.cancel();
        });
        json!({"restarting": true})
    }

    async fn print_test(&self, args: &Map<String, Value>) -> Outcome {
        let printer = args
            .get("printer")
            .and_then(Value::as_str)
            .ok_or("args.printer: the printer's id")?;
        let p = self
            .printers
            .get(printer)
            .ok_or_else(|| format!("args.printer: no printer {printer:?}"))?;
        let now = crate::clock::now_rfc3339();
        let text = format!("posbridge {} 打印测试 {now}", env!("CARGO_PKG_VERSION"));
        let payload = if p.kind() == "label" {
            crate::print::Payload::Label(json!({"items": [{"text": text, "x": 16, "y": 16}]}))
        } else {
            crate::print::Payload::Document(json!({"lines": [
                {"text": "打印测试 / TEST", "size": [2, 2]}, {"text": text}, {"cut": true}]}))
        };
        let job = self
            .printers
            .print(printer, payload)
            .await
            .map_err(|e| match e {
                crate::print::SubmitError::UnknownPrinter(m)
                | crate::print::SubmitError::Bad(m)
                | crate::print::SubmitError::TooLarge(m)
                | crate::print::SubmitError::Storage(m) => m,
            })?;
        Ok(json!({"job": job.job, "state": job.state}))
    }

    async fn diagnostics(&self) -> Outcome {
        let host = self.host.as_ref().ok_or(NO_FILE)?;
        let path = host.config_path.clone();
        let findings = tokio::task::spawn_blocking(move || {
            let who = crate::cli::doctor::Who::Me;
            let dirs = [
                Path::new("/etc/udev/rules.d"),
                Path::new("/usr/lib/udev/rules.d"),
            ];
            crate::cli::doctor::doctor(&path, Path::new("/sys"), Path::new("/dev"), &dirs, &who)
        })
        .await
        .map_err(|e| format!("diagnostics stopped: {e}"))?;
        let problems = findings.iter().filter(|f| f.is_problem()).count();
        Ok(json!({"problems": problems, "findings": findings}))
    }
}

const NO_FILE: &str = "this daemon was started without a config file (posbridge run --config FILE)";

fn log_tail(args: &Map<String, Value>) -> Value {
    let n = args
        .get("lines")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_LOG_LINES, |n| n as usize)
        .min(super::log::KEEP);
    json!({"lines": super::log::RING.tail(n)})
}

/// `config.apply` and its watch.
impl Commands {
    async fn apply(self: &Arc<Self>, c: &Command) -> Outcome {
        let host = self.host.as_ref().ok_or(NO_FILE)?;
        let text = c
            .args
            .get("toml")
            .and_then(Value::as_str)
            .ok_or("args.toml: the config file's text")?;
        let confirm_s = match c.args.get("confirm_s") {
            None => DEFAULT_CONFIRM_S,
            Some(v) => v
                .as_u64()
                .filter(|s| (1..=MAX_CONFIRM_S).contains(s))
                .ok_or(format!("args.confirm_s: 1 to {MAX_CONFIRM_S}"))?,
        };
        let flag = |k: &str| c.args.get(k).and_then(Value::as_bool).unwrap_or(false);
        let source = format!("config.apply {}", c.id);
        let new = Config::parse(text, std::env::vars(), &source).map_err(|e| {
            let all: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
            format!(
                "the config has {} problem(s): {}",
                all.len(),
                all.join("; ")
            )
        })?;
        if let Some(why) = cuts_off(&lock(&self.current), &new) {
            if !flag("allow_disconnect") {
                return Err(format!(
                    "{why}: the store would lose HQ; send args.allow_disconnect = true if that is meant"
                ));
            }
        }
        if let Some(w) = lock(&self.watch).as_ref() {
            return Err(format!(
                "config.apply {:?} is still being watched; wait for it or confirm it",
                w.id
            ));
        }
        let path = host.config_path.clone();
        let bytes = text.as_bytes().to_vec();
        let written = tokio::task::spawn_blocking(move || {
            let prev = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            write_atomically(&prev_path(&path), &prev)?;
            write_atomically(&path, &bytes)
        })
        .await
        .unwrap_or_else(|e| Err(format!("writing the config stopped: {e}")));
        written?;
        let broken_before = self.broken();
        let hash = super::inventory::config_hash(&new);
        let report = match self.reload(host, new).await {
            Ok(r) => r,
            Err(e) => {
                // Not applied: the previous file goes back at once.
                let back = self.restore(host).await;
                return Err(match back {
                    Ok(()) => format!("{e}; the previous config was put back"),
                    Err(b) => format!("{e}; putting the previous config back failed too: {b}"),
                });
            }
        };
        let touched: HashSet<&String> = report.added.iter().chain(&report.changed).collect();
        *lock(&self.watch) = Some(Watch {
            id: c.id.clone(),
            confirmed: false,
            ignore: broken_before
                .into_iter()
                .filter(|d| !touched.contains(d))
                .collect(),
        });
        let me = self.clone();
        let (id, required) = (c.id.clone(), flag("require_confirm"));
        tokio::spawn(async move { me.watch(id, confirm_s, required).await });
        Ok(
            json!({"applied": true, "config_hash": hash, "reload": report,
                  "watching_s": confirm_s, "require_confirm": required}),
        )
    }

    /// Hands `config` to the reload path and waits for what it did.
    async fn reload(&self, host: &Host, config: Config) -> Result<Reloaded, String> {
        let (tx, rx) = oneshot::channel();
        let next = config.clone();
        host.reload
            .send(Reload {
                config,
                report: Some(tx),
            })
            .await
            .map_err(|_| "the daemon is stopping".to_owned())?;
        let r = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .map_err(|_| "the reload did not finish within 60 s".to_owned())?
            .map_err(|_| "the daemon is stopping".to_owned())?;
        match &r.error {
            Some(e) => Err(format!("the config was written but not applied: {e}")),
            None => {
                *lock(&self.current) = next;
                Ok(r)
            }
        }
    }

    fn confirm(&self, args: &Map<String, Value>) -> Outcome {
        let id = args
            .get("id")
            .and_then(Value::as_str)
            .ok_or("args.id: the config.apply to confirm")?;
        match lock(&self.watch).as_mut() {
            Some(w) if w.id == id => {
                w.confirmed = true;
                Ok(json!({"confirmed": id}))
            }
            _ => Err(format!("no config.apply {id:?} is waiting to be confirmed")),
        }
    }

    /// Keeps the applied config if the daemon is healthy with it at the end
    /// of the window (and HQ confirmed, when asked to); else rolls back.
    async fn watch(self: Arc<Self>, id: String, confirm_s: u64, required: bool) {
        let start = tokio::time::Instant::now();
        let deadline = start + Duration::from_secs(confirm_s);
        // A confirmation ends the wait early, once the devices had a moment.
        let settled = start + Duration::from_secs(confirm_s.min(2));
        loop {
            let confirmed = lock(&self.watch).as_ref().is_some_and(|w| w.confirmed);
            let now = tokio::time::Instant::now();
            let healthy = || {
                let w = lock(&self.watch);
                self.unhealthy(w.as_ref().map_or(&HashSet::new(), |w| &w.ignore))
                    .is_none()
            };
            if (confirmed && now >= settled && healthy()) || now >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let confirmed = lock(&self.watch).as_ref().is_some_and(|w| w.confirmed);
        let ignore = lock(&self.watch)
            .as_ref()
            .map(|w| w.ignore.clone())
            .unwrap_or_default();
        let why = match self.unhealthy(&ignore) {
            Some(why) => Some(why),
            None if required && !confirmed => {
                Some(format!("HQ did not confirm it within {confirm_s} s"))
            }
            None => None,
        };
        if let Some(why) = why {
            let result = match self.roll_back(&why).await {
                Ok(()) => json!({"id": id, "ok": false, "rolled_back": true, "error": why}),
                Err(e) => json!({"id": id, "ok": false, "rolled_back": false,
                                 "error": format!("{why}; rolling back failed: {e}")}),
            };
            let _ = self.late.send(result).await;
        } else {
            tracing::info!(id, "config.apply kept");
        }
        *lock(&self.watch) = None;
    }

    /// The devices in error now.
    fn broken(&self) -> Vec<String> {
        self.devices
            .list()
            .iter()
            .map(|d| d.view())
            .filter(|v| v.state == DevState::Error)
            .map(|v| v.id)
            .collect()
    }

    /// Why the daemon is not healthy now: a device in error (but those in
    /// `ignore`), or HQ lost.
    fn unhealthy(&self, ignore: &HashSet<String>) -> Option<String> {
        let broken: Vec<String> = self
            .devices
            .list()
            .iter()
            .map(|d| d.view())
            .filter(|v| v.state == DevState::Error && !ignore.contains(&v.id))
            .map(|v| format!("{} ({})", v.id, v.last_error.unwrap_or_default()))
            .collect();
        if !broken.is_empty() {
            return Some(format!("devices in error: {}", broken.join(", ")));
        }
        let uplink = lock(&self.current).uplink.is_some();
        (uplink && !self.status.connected.load(Relaxed)).then(|| "not connected to HQ".to_owned())
    }

    async fn roll_back(&self, why: &str) -> Result<(), String> {
        let host = self.host.as_ref().ok_or(NO_FILE)?;
        tracing::warn!("config.apply rolled back: {why}");
        self.restore(host).await
    }

    /// Puts `<file>.prev` back and applies it.
    async fn restore(&self, host: &Host) -> Result<(), String> {
        let path = host.config_path.clone();
        let old = tokio::task::spawn_blocking(move || {
            let prev =
                std::fs::read(prev_path(&path)).map_err(|e| format!("{}: {e}", path.display()))?;
            let text = String::from_utf8_lossy(&prev).into_owned();
            let old = Config::parse(&text, std::env::vars(), &path.display().to_string())
                .map_err(|e| e.to_string())?;
            write_atomically(&path, &prev)?;
            Ok::<_, String>(old)
        })
        .await
        .unwrap_or_else(|e| Err(format!("restoring the config stopped: {e}")))?;
        self.reload(host, old).await.map(|_| ())
    }
}

/// Why a new config would cut the store off HQ, if it would.
fn cuts_off(old: &Config, new: &Config) -> Option<String> {
    let (Some(a), Some(b)) = (&old.uplink, &new.uplink) else {
        return old.uplink.as_ref().map(|_| "it has no [uplink]".to_owned());
    };
    if old.store.id != new.store.id || a.topic_prefix != b.topic_prefix {
        return Some("it changes store.id or uplink.topic_prefix (the store's topics)".into());
    }
    let shared = a.broker_urls().iter().any(|u| b.broker_urls().contains(u));
    (!shared).then(|| "none of its brokers is one the store uses now".to_owned())
}

fn prev_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".prev");
    PathBuf::from(p)
}

/// Writes through a temporary file, fsync and rename: a crash leaves the
/// old file or the new one, never half of one. Readable by the daemon's
/// group only, like the packaged config.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)
        .map_err(shown)?;
    f.write_all(bytes).map_err(shown)?;
    f.sync_all().map_err(shown)?;
    std::fs::rename(&tmp, path).map_err(shown)?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Config {
        Config::parse(t, std::iter::empty(), "t").expect("config")
    }

    #[test]
    fn a_config_that_would_lose_hq_is_told_apart() {
        let base = "[store]\nid = \"s\"\n";
        let a = parse(&format!(
            "{base}[uplink]\nurls = [\"mqtt://a\", \"mqtt://b\"]\n"
        ));
        let same = parse(&format!("{base}[uplink]\nurl = \"mqtt://b\"\n"));
        let other = parse(&format!("{base}[uplink]\nurl = \"mqtt://c\"\n"));
        let none = parse(base);
        assert_eq!(cuts_off(&a, &same), None);
        assert!(cuts_off(&a, &other).is_some_and(|w| w.contains("none of its brokers")));
        assert!(cuts_off(&a, &none).is_some_and(|w| w.contains("no [uplink]")));
        assert_eq!(cuts_off(&none, &none), None);
        let moved = parse("[store]\nid = \"t\"\n[uplink]\nurl = \"mqtt://a\"\n");
        assert!(cuts_off(&a, &moved).is_some_and(|w| w.contains("store.id")));
    }

    #[test]
    fn files_are_replaced_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("posbridge.toml");
        write_atomically(&p, b"one").expect("write");
        write_atomically(&p, b"two").expect("write");
        assert_eq!(std::fs::read(&p).unwrap_or_default(), b"two");
        assert_eq!(prev_path(&p), dir.path().join("posbridge.toml.prev"));
        assert!(!dir.path().join("posbridge.toml.tmp").exists());
    }
}
