//! The durable print queue: every job is in `storage.dir/print.db` (SQLite,
//! WAL, `synchronous = FULL`) before the page hears 202, with the bytes to
//! send already rendered, so a restart loses nothing and re-renders nothing.
//!
//! States: `queued` → `printing` → `printed` | `failed`, and `held` (with a
//! reason) while the printer is not ready. A job still `queued` or `held`
//! can be cancelled: it ends `failed` with reason `cancelled`, and nothing
//! moves a finished job back. On open, `printing` and `held`
//! jobs go back to `queued`: a job cut off mid-print prints again (at least
//! once). Finished jobs are kept `storage.retain_days` for `GET /v1/print/{job}`.
//!
//! Jobs from HQ (`P/S/print`) carry HQ's `remote_id`, unique, so a job sent
//! again prints once, and their outcomes (`queued`, `printed`, `failed`,
//! `expired`) are written to `remote_status` in the same transaction as the
//! state change: the relay publishes them to HQ and deletes each once the
//! broker has it, so an outcome reached while the broker is away is not lost.
//!
//! Volume is a few receipts a minute, so one connection behind a mutex,
//! used from blocking tasks, is enough (the outbox's group commit is not).

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS job (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    printer     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    bytes       BLOB NOT NULL,
    state       TEXT NOT NULL DEFAULT 'queued',
    reason      TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    printed_at  TEXT,
    finished_at TEXT,
    remote_id   TEXT,
    expire_at   TEXT
);
CREATE TABLE IF NOT EXISTS remote_status (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_open ON job(printer, seq)
    WHERE state IN ('queued', 'printing', 'held');
CREATE INDEX IF NOT EXISTS job_done ON job(finished_at)
    WHERE state IN ('printed', 'failed');
";

/// What a job prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A rendered `document`.
    Document,
    /// Bytes posted as `raw`, passed through.
    Raw,
    /// `POST /v1/drawer/open`: the drawer kick alone.
    Drawer,
    /// A rendered `label` (TSPL).
    Label,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Document => "document",
            Kind::Raw => "raw",
            Kind::Drawer => "drawer",
            Kind::Label => "label",
        }
    }
}

/// One job as `GET /v1/print/{job}` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct JobView {
    pub job: String,
    pub printer: String,
    pub kind: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub printed_at: Option<String>,
    pub attempts: u64,
    pub bytes: u64,
}

/// A job waiting to print, as the printer's worker takes it.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    pub bytes: Vec<u8>,
    pub state: String,
    pub reason: Option<String>,
    pub attempts: u64,
    /// A job from HQ is not printed past this time (RFC 3339).
    pub expire_at: Option<String>,
}

/// What storing a job from HQ found.
#[derive(Debug)]
pub enum Remote {
    /// Stored now; `queued` goes to HQ.
    New(JobView),
    /// HQ sent this `job_id` before: nothing stored, its outcome goes again.
    Known(JobView),
}

/// A job's outcome as HQ reads it on `P/S/print/status`.
fn outcome(state: &str, reason: Option<&str>) -> (&'static str, Option<String>) {
    match (state, reason) {
        ("printed", _) => ("printed", None),
        ("failed", Some("expired")) => ("expired", None),
        ("failed", r) => ("failed", Some(r.unwrap_or("failed").to_owned())),
        _ => ("queued", None),
    }
}

/// The `P/S/print/status` payload.
pub fn status_payload(job_id: Option<&str>, state: &str, error: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "job_id": job_id,
        "state": state,
        "at": crate::clock::now_rfc3339(),
    });
    if let Some(e) = error {
        v["error"] = e.into();
    }
    v.to_string()
}

fn add_status(c: &Connection, payload: String) -> rusqlite::Result<()> {
    c.execute("INSERT INTO remote_status (payload) VALUES (?1)", [payload])
        .map(|_| ())
}

/// A job from HQ that just changed state: its outcome for HQ, in the same transaction.
fn announce(c: &Connection, id: &str) -> rusqlite::Result<()> {
    let row: Option<(Option<String>, String, Option<String>)> = c
        .query_row(
            "SELECT remote_id, state, reason FROM job WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((Some(remote), state, reason)) = row {
        let (state, error) = outcome(&state, reason.as_deref());
        add_status(c, status_payload(Some(&remote), state, error.as_deref()))?;
    }
    Ok(())
}

/// Print databases from before jobs came from HQ gain its columns.
/// Each column is checked on its own and all is one transaction, so a stop
/// halfway leaves either the old table or the new one.
fn migrate(c: &Connection) -> rusqlite::Result<()> {
    let tx = c.unchecked_transaction()?;
    for column in ["remote_id", "expire_at"] {
        let has: i64 = tx.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('job') WHERE name = ?1",
            [column],
            |r| r.get(0),
        )?;
        if has == 0 {
            tx.execute_batch(&format!("ALTER TABLE job ADD COLUMN {column} TEXT;"))?;
        }
    }
    tx.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS job_remote ON job(remote_id) WHERE remote_id IS NOT NULL;",
    )?;
    tx.commit()
}

/// What `cancel` found.
#[derive(Debug)]
pub enum Cancel {
    /// Cancelled; the job as it is now.
    Done(JobView),
    /// No such job (or finished long enough ago to be pruned).
    Unknown,
    /// Printing or finished already: nothing changed.
    TooLate(JobView),
}

pub struct JobStore {
    conn: Arc<Mutex<Connection>>,
    /// What was wrong with the store at start, if anything (also logged).
    pub start_problem: Option<String>,
    /// Jobs that reached `printed` / `failed` since start (metrics).
    pub printed_total: std::sync::atomic::AtomicU64,
    pub failed_total: std::sync::atomic::AtomicU64,
    /// An outcome for HQ was stored (the relay publishes it).
    pub status_stored: tokio::sync::Notify,
}

/// How the print queue opens, and what is salvaged from a damaged file.
const STORE: crate::storage::Store<'static> = crate::storage::Store {
    what: "print queue",
    rows: "job(s)",
    schema: SCHEMA,
    table: "job",
    columns: &[
        "id",
        "printer",
        "kind",
        "bytes",
        "state",
        "reason",
        "attempts",
        "created_at",
        "printed_at",
        "finished_at",
        "remote_id",
        "expire_at",
    ],
};

fn view(c: &Connection, id: &str) -> rusqlite::Result<Option<JobView>> {
    c.query_row(
        "SELECT id, printer, kind, state, reason, created_at, printed_at, attempts, length(bytes) FROM job WHERE id = ?1",
        [id],
        |r| {
            Ok(JobView {
                job: r.get(0)?,
                printer: r.get(1)?,
                kind: r.get(2)?,
                state: r.get(3)?,
                reason: r.get(4)?,
                created_at: r.get(5)?,
                printed_at: r.get(6)?,
                attempts: r.get::<_, i64>(7)?.max(0) as u64,
                bytes: r.get::<_, i64>(8)?.max(0) as u64,
            })
        },
    )
    .optional()
}

impl JobStore {
    /// Opens (or creates) `dir/print.db` and puts every unfinished job back
    /// in the queue. Returns the store and how many jobs were interrupted
    /// mid-print (they print again).
    pub fn open(dir: &Path) -> Result<(Arc<JobStore>, usize), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("storage.dir {}: {e}", dir.display()))?;
        let path = dir.join("print.db");
        let (conn, start_problem) = STORE.open_checked(&path)?;
        migrate(&conn).map_err(|e| format!("print queue {}: {e}", path.display()))?;
        let interrupted = conn
            .execute(
                "UPDATE job SET state = 'queued', reason = NULL WHERE state = 'printing'",
                [],
            )
            .and_then(|n| {
                conn.execute(
                    "UPDATE job SET state = 'queued', reason = NULL WHERE state = 'held'",
                    [],
                )
                .map(|_| n)
            })
            .map_err(|e| format!("print queue {}: {e}", path.display()))?;
        Ok((
            Arc::new(JobStore {
                conn: Arc::new(Mutex::new(conn)),
                start_problem,
                printed_total: Default::default(),
                failed_total: Default::default(),
                status_stored: Default::default(),
            }),
            interrupted,
        ))
    }

    /// Runs `f` on the connection in a blocking task (commits fsync).
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&c).map_err(|e| format!("print queue: {e}"))
        })
        .await
        .map_err(|e| format!("print queue task failed: {e}"))?
    }

    /// Stores a job; returns once it is durable.
    pub async fn insert(
        &self,
        id: String,
        printer: String,
        kind: Kind,
        bytes: Vec<u8>,
    ) -> Result<JobView, String> {
        let created_at = crate::clock::now_rfc3339();
        let n = bytes.len() as u64;
        let view = JobView {
            job: id.clone(),
            printer: printer.clone(),
            kind: kind.name().into(),
            state: "queued".into(),
            reason: None,
            created_at: created_at.clone(),
            printed_at: None,
            attempts: 0,
            bytes: n,
        };
        // Durable here: WAL + synchronous=FULL syncs the log on commit.
        self.run(move |c| {
            c.execute(
                "INSERT INTO job (id, printer, kind, bytes, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, printer, kind.name(), bytes, created_at],
            )
        })
        .await?;
        Ok(view)
    }

    pub async fn get(&self, id: String) -> Result<Option<JobView>, String> {
        self.run(move |c| view(c, &id)).await
    }

    /// The printer's oldest unfinished job.
    pub async fn next(&self, printer: &str) -> Result<Option<Job>, String> {
        let printer = printer.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT id, bytes, state, reason, attempts, expire_at FROM job
                 WHERE printer = ?1 AND state IN ('queued', 'printing', 'held')
                 ORDER BY seq LIMIT 1",
                [printer],
                |r| {
                    Ok(Job {
                        id: r.get(0)?,
                        bytes: r.get(1)?,
                        state: r.get(2)?,
                        reason: r.get(3)?,
                        attempts: r.get::<_, i64>(4)?.max(0) as u64,
                        expire_at: r.get(5)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// The printer's drawer kicks still waiting, oldest first.
    pub async fn drawers_waiting(&self, printer: &str) -> Result<Vec<String>, String> {
        let printer = printer.to_owned();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id FROM job
                 WHERE printer = ?1 AND kind = 'drawer' AND state IN ('queued', 'held')
                 ORDER BY seq",
            )?;
            let ids = stmt.query_map([printer], |r| r.get(0))?;
            ids.collect()
        })
        .await
    }

    /// Jobs not finished yet for this printer.
    pub async fn waiting(&self, printer: &str) -> Result<u64, String> {
        let printer = printer.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM job WHERE printer = ?1 AND state IN ('queued', 'printing', 'held')",
                [printer],
                |r| r.get::<_, i64>(0),
            )
        })
        .await
        .map(|n| n.max(0) as u64)
    }

    /// Moves an unfinished job to `state`; false when it had finished
    /// already (cancelled while the worker held it).
    async fn set(
        &self,
        id: &str,
        state: &'static str,
        reason: Option<String>,
    ) -> Result<bool, String> {
        let id = id.to_owned();
        let now = crate::clock::now_rfc3339();
        let done = matches!(state, "printed" | "failed");
        let changed = self
            .run(move |c| {
                let finished = done.then_some(now.clone());
                let printed = (state == "printed").then_some(now);
                let tx = c.unchecked_transaction()?;
                let n = tx.execute(
                    "UPDATE job SET state = ?2, reason = ?3,
                    attempts = attempts + (?2 = 'printing'),
                    printed_at = COALESCE(?4, printed_at),
                    finished_at = COALESCE(?5, finished_at)
                 WHERE id = ?1 AND state IN ('queued', 'printing', 'held')",
                    params![id, state, reason, printed, finished],
                )?;
                if n > 0 && done {
                    announce(&tx, &id)?;
                }
                tx.commit().map(|_| n > 0)
            })
            .await?;
        if changed && done {
            self.status_stored.notify_one();
        }
        Ok(changed)
    }

    /// The printer is not ready: the job waits, and says why.
    pub async fn hold(&self, id: &str, reason: &str) -> Result<(), String> {
        self.set(id, "held", Some(reason.to_owned()))
            .await
            .map(|_| ())
    }

    /// Bytes are about to go out; counts an attempt. False when the job was
    /// cancelled meanwhile: it must not print.
    pub async fn printing(&self, id: &str) -> Result<bool, String> {
        self.set(id, "printing", None).await
    }

    /// Every byte went to the printer.
    pub async fn printed(&self, id: &str) -> Result<(), String> {
        if self.set(id, "printed", None).await? {
            self.printed_total
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    pub async fn failed(&self, id: &str, reason: String) -> Result<(), String> {
        if self.set(id, "failed", Some(reason)).await? {
            self.failed_total
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Cancels a job that has not started printing: it ends `failed` with
    /// reason `cancelled`. A job printing or finished is left as it is.
    pub async fn cancel(&self, id: String) -> Result<Cancel, String> {
        let now = crate::clock::now_rfc3339();
        let r = self
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                let n = tx.execute(
                    "UPDATE job SET state = 'failed', reason = 'cancelled', finished_at = ?2
                 WHERE id = ?1 AND state IN ('queued', 'held')",
                    params![id, now],
                )?;
                if n > 0 {
                    announce(&tx, &id)?;
                }
                let r = match view(&tx, &id)? {
                    None => Cancel::Unknown,
                    Some(v) if n > 0 => Cancel::Done(v),
                    Some(v) => Cancel::TooLate(v),
                };
                tx.commit().map(|_| r)
            })
            .await?;
        if matches!(r, Cancel::Done(_)) {
            self.status_stored.notify_one();
        }
        Ok(r)
    }

    /// Stores a job from HQ and its `queued` outcome, unless its `job_id`
    /// is known already: then its current outcome goes to HQ again.
    pub async fn insert_remote(
        &self,
        id: String,
        printer: String,
        kind: Kind,
        bytes: Vec<u8>,
        job_id: String,
        expire_at: Option<String>,
    ) -> Result<Remote, String> {
        let created_at = crate::clock::now_rfc3339();
        let r = self
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                let known: Option<String> = tx
                    .query_row("SELECT id FROM job WHERE remote_id = ?1", [&job_id], |r| {
                        r.get(0)
                    })
                    .optional()?;
                let r = match known {
                    Some(local) => {
                        announce(&tx, &local)?;
                        view(&tx, &local)?.map(Remote::Known)
                    }
                    None => {
                        tx.execute(
                            "INSERT INTO job (id, printer, kind, bytes, created_at, remote_id, expire_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![id, printer, kind.name(), bytes, created_at, job_id, expire_at],
                        )?;
                        add_status(&tx, status_payload(Some(&job_id), "queued", None))?;
                        view(&tx, &id)?.map(Remote::New)
                    }
                };
                tx.commit()?;
                Ok(r)
            })
            .await?
            .ok_or("print queue: the job vanished while it was stored")?;
        self.status_stored.notify_one();
        Ok(r)
    }

    /// The job HQ sent with `job_id` before, if it is still kept.
    pub async fn remote_known(&self, job_id: &str) -> Result<Option<String>, String> {
        let job_id = job_id.to_owned();
        self.run(move |c| {
            c.query_row("SELECT id FROM job WHERE remote_id = ?1", [job_id], |r| {
                r.get(0)
            })
            .optional()
        })
        .await
    }

    /// Ends the printer's waiting jobs whose `expire_at` has passed (by
    /// `expired`), except `keep`: `failed` with reason `expired`, told to HQ.
    pub async fn expire_due(
        &self,
        printer: &str,
        keep: Option<String>,
        expired: fn(&str) -> Result<bool, String>,
    ) -> Result<usize, String> {
        let printer = printer.to_owned();
        let now = crate::clock::now_rfc3339();
        let n = self
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                let due: Vec<String> = {
                    let mut stmt = tx.prepare_cached(
                        "SELECT id, expire_at FROM job WHERE printer = ?1
                           AND expire_at IS NOT NULL AND state IN ('queued', 'held')",
                    )?;
                    let rows = stmt.query_map([&printer], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                        .into_iter()
                        .filter(|(id, at)| Some(id) != keep.as_ref() && expired(at).unwrap_or(false))
                        .map(|(id, _)| id)
                        .collect()
                };
                for id in &due {
                    tx.execute(
                        "UPDATE job SET state = 'failed', reason = 'expired', finished_at = ?2 WHERE id = ?1",
                        params![id, now],
                    )?;
                    announce(&tx, id)?;
                }
                tx.commit().map(|_| due.len())
            })
            .await?;
        if n > 0 {
            self.status_stored.notify_one();
        }
        Ok(n)
    }

    /// Tells HQ a job's outcome again (HQ sent a job it already has).
    pub async fn announce_again(&self, local: &str) -> Result<(), String> {
        let local = local.to_owned();
        self.run(move |c| announce(c, &local)).await?;
        self.status_stored.notify_one();
        Ok(())
    }

    /// Stores an outcome for HQ of a job that was never queued (refused, expired on arrival).
    pub async fn outcome(
        &self,
        job_id: Option<String>,
        state: &'static str,
        error: Option<String>,
    ) -> Result<(), String> {
        let payload = status_payload(job_id.as_deref(), state, error.as_deref());
        self.run(move |c| add_status(c, payload)).await?;
        self.status_stored.notify_one();
        Ok(())
    }

    /// Outcomes for HQ after `after`, oldest first, as (seq, payload).
    pub async fn statuses_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, String> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, payload FROM remote_status WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows =
                stmt.query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// The broker has these outcomes: they are not sent again.
    pub async fn statuses_sent(&self, seqs: Vec<i64>) -> Result<(), String> {
        self.run(move |c| {
            let list = serde_json::Value::from(seqs).to_string();
            c.execute(
                "DELETE FROM remote_status WHERE seq IN (SELECT value FROM json_each(?1))",
                [list],
            )
            .map(|_| ())
        })
        .await
    }

    /// Fails the unfinished jobs of printers no longer configured (they would
    /// wait for ever otherwise). Returns how many.
    pub async fn fail_orphans(&self, printers: Vec<String>) -> Result<usize, String> {
        let now = crate::clock::now_rfc3339();
        self.run(move |c| {
            let list = serde_json::Value::from(printers).to_string();
            let tx = c.unchecked_transaction()?;
            let orphans: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM job WHERE state IN ('queued', 'printing', 'held')
                       AND printer NOT IN (SELECT value FROM json_each(?1))",
                )?;
                let ids = stmt.query_map([&list], |r| r.get(0))?;
                ids.collect::<rusqlite::Result<_>>()?
            };
            for id in &orphans {
                tx.execute(
                    "UPDATE job SET state = 'failed', reason = 'printer_removed', finished_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                announce(&tx, id)?;
            }
            tx.commit().map(|_| orphans.len())
        })
        .await
        .inspect(|n| {
            if *n > 0 {
                self.status_stored.notify_one();
            }
        })
    }

    /// Deletes finished jobs older than `retain`; unfinished ones are never touched.
    pub async fn prune(&self, retain: std::time::Duration) -> Result<usize, String> {
        let cutoff = crate::clock::rfc3339_ms(OffsetDateTime::now_utc() - retain);
        self.run(move |c| {
            c.execute(
                "DELETE FROM job WHERE state IN ('printed', 'failed') AND finished_at < ?1",
                [cutoff],
            )
        })
        .await
    }
}
