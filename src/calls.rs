//! Caller popups and the call log. Watches the bus for `call.ringing` and
//! `call.ended` (from any caller-ID device), looks each caller up (member
//! cache, then HQ), publishes `call.popup`, and keeps the recent calls for
//! `GET /v1/calls` and the `/popup` page.
//!
//! The log is served from memory and written through to `storage.dir/calls.db`
//! by a thread of its own, so the front desk's missed calls survive a restart
//! or a power cut. A call still ringing when the daemon stopped comes back
//! ended and missed: nobody knows it was answered, so it is worth a call back.

use crate::event::{Bus, Filter, Published, Resume};
use crate::uplink::{Source, Uplink};
use posbridge_drivers::callerid::{PRIVATE, UNAVAILABLE};
use posbridge_drivers::Event;
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Calls kept for `GET /v1/calls`, in memory and on disk.
const KEEP: usize = 500;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS call (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE,
    json    TEXT NOT NULL
);
";

/// How the call log opens, and what is salvaged from a damaged file.
const STORE: crate::storage::Store<'static> = crate::storage::Store {
    what: "call log",
    rows: "call(s)",
    schema: SCHEMA,
    table: "call",
    columns: &["call_id", "json"],
};

/// One call, as `GET /v1/calls` lists it.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Call {
    pub call_id: String,
    pub device: Option<String>,
    pub number: String,
    pub normalized: Option<String>,
    pub name: Option<String>,
    pub line: Option<String>,
    /// When it started ringing (RFC 3339).
    pub at: Option<String>,
    pub ended: bool,
    /// `true` picked up, `false` the caller gave up, `null` the box cannot tell.
    pub answered: Option<bool>,
    /// Not reported answered: the front desk's call-back list.
    pub missed: bool,
    pub member: Option<Value>,
    pub source: Option<Source>,
}

type Log = Arc<Mutex<VecDeque<Call>>>;

pub struct Calls {
    log: Log,
    /// Each changed call, for the writer thread; `None` when the log could
    /// not be opened (then it is in memory only, and the start says why).
    disk: Option<Disk>,
}

type Disk = std::sync::mpsc::Sender<ToDisk>;

/// What the writer thread is asked.
enum ToDisk {
    Save(Call),
    /// Answer once everything sent before is committed (at shutdown).
    Flush(std::sync::mpsc::Sender<()>),
}

/// Hands a changed call to the writer thread, if there is one.
fn save(disk: Option<&Disk>, c: Option<Call>) {
    if let (Some(disk), Some(c)) = (disk, c) {
        let _ = disk.send(ToDisk::Save(c));
    }
}

fn lock(log: &Log) -> std::sync::MutexGuard<'_, VecDeque<Call>> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Changes a call in memory; returns the new state for the disk.
fn update(log: &Log, call_id: &str, f: impl FnOnce(&mut Call)) -> Option<Call> {
    let mut log = lock(log);
    let c = log.iter_mut().rev().find(|c| c.call_id == call_id)?;
    f(c);
    Some(c.clone())
}

/// Opens `dir/calls.db` and reads back the newest calls, oldest first.
fn open_log(dir: &Path) -> Result<(rusqlite::Connection, VecDeque<Call>), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (conn, problem) = STORE.open_checked(&dir.join("calls.db"))?;
    if let Some(p) = problem {
        tracing::warn!("{p}");
    }
    // Not a ledger: a call lost to a power cut within a commit is acceptable.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| format!("call log: {e}"))?;
    let rows: Vec<String> = conn
        .prepare("SELECT json FROM call ORDER BY seq DESC LIMIT ?1")
        .and_then(|mut st| {
            st.query_map([KEEP as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| format!("call log: {e}"))?;
    let mut calls = VecDeque::with_capacity(rows.len());
    for json in rows.into_iter().rev() {
        match serde_json::from_str::<Call>(&json) {
            Ok(mut c) => {
                if !c.ended {
                    // Ringing when the daemon stopped: the outcome is unknown.
                    c.ended = true;
                    c.missed = c.answered != Some(true);
                }
                calls.push_back(c);
            }
            Err(e) => tracing::warn!("call log: skipped an unreadable entry: {e}"),
        }
    }
    Ok((conn, calls))
}

/// Writes changed calls, a batch per transaction, keeping the newest KEEP.
fn write_loop(mut conn: rusqlite::Connection, rx: std::sync::mpsc::Receiver<ToDisk>) {
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::new();
        let mut flushed = Vec::new();
        for m in std::iter::once(first).chain(rx.try_iter()) {
            match m {
                ToDisk::Save(c) => batch.push(c),
                ToDisk::Flush(done) => flushed.push(done),
            }
        }
        let r = (|| -> rusqlite::Result<()> {
            let t = conn.transaction()?;
            for c in &batch {
                let json = serde_json::to_string(c).unwrap_or_default();
                t.prepare_cached(
                    "INSERT INTO call (call_id, json) VALUES (?1, ?2)
                     ON CONFLICT (call_id) DO UPDATE SET json = excluded.json",
                )?
                .execute(rusqlite::params![c.call_id, json])?;
            }
            t.prepare_cached("DELETE FROM call WHERE seq <= (SELECT MAX(seq) FROM call) - ?1")?
                .execute([KEEP as i64])?;
            t.commit()
        })();
        if let Err(e) = r {
            tracing::warn!("call log: could not write {} call(s): {e}", batch.len());
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Call>> {
        lock(&self.log)
    }

    /// Waits (up to 2 s) until every change so far is on disk: the daemon
    /// is stopping, and a call that ended just before must not come back
    /// missed.
    pub async fn flush(&self) {
        let Some(disk) = &self.disk else { return };
        let (done, wait) = std::sync::mpsc::channel();
        if disk.send(ToDisk::Flush(done)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || {
                wait.recv_timeout(std::time::Duration::from_secs(2))
            })
            .await;
        }
    }

    /// Newest first; with `missed_only`, only ended calls nobody reported answering.
    pub fn recent(&self, missed_only: bool, limit: usize) -> Vec<Call> {
        self.lock()
            .iter()
            .rev()
            .filter(|c| !missed_only || c.missed)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Reads back the call log in `dir` and starts watching the bus for
    /// calls. A log that cannot be opened is logged, and calls are then kept
    /// in memory only: the popups matter more than the history.
    pub fn start(
        dir: &Path,
        bus: &Arc<Bus>,
        uplink: &Arc<Uplink>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Arc<Calls> {
        let (log, disk) = match open_log(dir) {
            Ok((conn, calls)) => {
                let (tx, rx) = std::sync::mpsc::channel();
                let spawned = std::thread::Builder::new()
                    .name("call-log".into())
                    .spawn(move || write_loop(conn, rx));
                match spawned {
                    Ok(_) => (calls, Some(tx)),
                    Err(e) => {
                        tracing::warn!("call log: cannot start its writer ({e}); calls are kept in memory only");
                        (calls, None)
                    }
                }
            }
            Err(e) => {
                tracing::warn!("{e}; calls are kept in memory only");
                (VecDeque::new(), None)
            }
        };
        let calls = Arc::new(Calls {
            log: Arc::new(Mutex::new(log)),
            disk,
        });
        let (c, bus, uplink, cancel) = (calls.clone(), bus.clone(), uplink.clone(), cancel.clone());
        let t = tracker.clone();
        tracker.spawn(async move {
            loop {
                let mut sub = bus.subscribe(
                    Filter::new(["call.ringing", "call.ended"], []),
                    &Resume::default(),
                );
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = sub.overflow.cancelled() => {
                            tracing::warn!("the call watcher fell behind the bus; resubscribing");
                            break;
                        }
                        p = sub.rx.recv() => match p {
                            Some(p) => {
                                // Every event already waiting is taken first,
                                // and the call log's writes for them (a cache
                                // hit's popup included) handed over after:
                                // woken earlier, its thread takes the CPU
                                // from the popup on a small box (measured:
                                // ~0.5 ms of a 2-vCPU machine's popup).
                                let mut later = Vec::new();
                                c.on_event(&p, &bus, &uplink, &t, &mut later);
                                while let Ok(p) = sub.rx.try_recv() {
                                    c.on_event(&p, &bus, &uplink, &t, &mut later);
                                }
                                for call in later {
                                    save(c.disk.as_ref(), Some(call));
                                }
                            }
                            None => return,
                        },
                    }
                }
            }
        });
        calls
    }

    /// Takes one call event; what changed for the call log's disk is added
    /// to `later` (see `start`).
    fn on_event(
        &self,
        p: &Published,
        bus: &Arc<Bus>,
        uplink: &Arc<Uplink>,
        tracker: &TaskTracker,
        later: &mut Vec<Call>,
    ) {
        let seen = std::time::Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(p.json.as_str()) else {
            return;
        };
        let d = &v["data"];
        let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
        let Some(call_id) = s("call_id") else { return };
        if p.kind == "call.ended" {
            let answered = d.get("answered").and_then(Value::as_bool);
            later.extend(update(&self.log, &call_id, |c| {
                c.ended = true;
                c.answered = answered;
                c.missed = answered != Some(true);
            }));
            return;
        }
        let number = s("number").unwrap_or_else(|| UNAVAILABLE.into());
        let call = {
            let mut log = self.lock();
            if log.len() == KEEP {
                log.pop_front();
            }
            log.push_back(Call {
                call_id: call_id.clone(),
                device: p.device.as_deref().map(str::to_owned),
                number: number.clone(),
                normalized: s("normalized"),
                name: s("name"),
                line: s("line"),
                at: s("at"),
                ended: false,
                answered: None,
                missed: false,
                member: None,
                source: None,
            });
            log.back().cloned()
        };
        let lookup_key = s("normalized").unwrap_or_else(|| number.clone());
        let withheld = number == PRIVATE || number == UNAVAILABLE;
        let popup = Popup {
            call_id,
            number,
            device: p.device.clone(),
            seen,
            log: self.log.clone(),
        };
        // A cache hit (or a withheld number) pops up from here, without a hop
        // to another task; asking HQ, or a cache busy with a write, waits in
        // a task of its own.
        let cached = if withheld {
            Some(None)
        } else {
            uplink.cached_now(&lookup_key)
        };
        match cached {
            Some(Some(m)) => later.extend(popup.show(bus, Some(m), Source::Cache)),
            Some(None) if withheld => later.extend(popup.show(bus, None, Source::None)),
            cached => {
                // Logged before the task's own write, which comes later.
                save(self.disk.as_ref(), call);
                let (bus, uplink, disk) = (bus.clone(), uplink.clone(), self.disk.clone());
                let cache_missed = cached.is_some();
                tracker.spawn(async move {
                    let (member, source) = if cache_missed {
                        uplink.ask_hq(&lookup_key, true).await
                    } else {
                        uplink.lookup(&lookup_key).await
                    };
                    let changed = popup.show(&bus, member, source);
                    save(disk.as_ref(), changed);
                });
            }
        }
    }
}

/// A ringing call waiting for its member.
struct Popup {
    call_id: String,
    number: String,
    device: Option<Arc<str>>,
    seen: std::time::Instant,
    log: Log,
}

impl Popup {
    /// Records what the lookup found and publishes `call.popup`; returns
    /// the call as changed, for the call log's disk (written after, so its
    /// thread wakes when the popup is already on its way).
    fn show(self, bus: &Bus, member: Option<Value>, source: Source) -> Option<Call> {
        let took_ms = self.seen.elapsed().as_millis() as u64;
        let changed = update(&self.log, &self.call_id, |c| {
            c.member.clone_from(&member);
            c.source = Some(source);
        });
        bus.publish(
            self.device.as_deref(),
            &Event::CallPopup {
                call_id: self.call_id,
                number: self.number,
                member,
                source: source.name().into(),
                took_ms,
            },
        );
        changed
    }
}
