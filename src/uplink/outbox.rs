//! The durable outbox: every transaction a page posts is on disk (SQLite, WAL,
//! `synchronous = FULL`) before the page hears 202, and stays until HQ has it.
//!
//! One writer thread owns the connection. It takes every insert waiting at
//! that moment and commits them in one transaction — one fsync for the whole
//! group — so concurrent posts do not each pay for a sync (group commit).
//! Reads use their own connection, which WAL lets run beside the writer.

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// Largest group committed at once (bounds how long one commit holds the lock).
const MAX_GROUP: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tx (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    body       TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'queued',
    attempts   INTEGER NOT NULL DEFAULT 0,
    queued_at  TEXT NOT NULL,
    sent_at    TEXT
);
CREATE INDEX IF NOT EXISTS tx_pending ON tx(seq) WHERE state != 'acked';
";

/// One stored transaction, as `GET /v1/transactions/{id}` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TxView {
    pub id: String,
    pub state: String,
    pub attempts: u64,
    pub queued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
}

/// What an insert came to.
#[derive(Debug)]
pub enum Inserted {
    /// New, and durable.
    Queued(TxView),
    /// The same id with the same body was already there.
    Existing(TxView),
    /// The same id with a different body.
    Conflict,
    /// The backlog is at its limit; nothing was stored.
    Full { backlog: u64 },
}

struct Insert {
    id: String,
    body: String,
    reply: oneshot::Sender<Result<Inserted, String>>,
}

/// Counts for metrics and `/v1/uplink`.
#[derive(Default)]
pub struct Stats {
    pub commits: AtomicU64,
    pub inserted: AtomicU64,
    /// Transactions HQ does not have yet; kept by the writer, never counted by a scan.
    pub backlog: AtomicU64,
    /// The writer thread is gone: every insert fails (reported by health).
    pub writer_stopped: std::sync::atomic::AtomicBool,
    /// New transactions are being refused for a full backlog.
    pub refusing: std::sync::atomic::AtomicBool,
}

pub struct Outbox {
    writer: mpsc::Sender<Insert>,
    reader: Mutex<Connection>,
    pub stats: Arc<Stats>,
    /// What was wrong with the store at start, if anything (also logged).
    pub start_problem: Option<String>,
}

fn now_rfc3339() -> String {
    crate::event::rfc3339_ms(OffsetDateTime::now_utc())
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // First, so a passing lock (a backup reading the file) is waited out.
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL + FULL: a commit is on disk when it returns, power cut or not.
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    Ok(c)
}

/// Whether SQLite says the file itself is damaged (as opposed to busy,
/// read-only, missing permissions or a full disk, which IT must fix).
fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

enum OpenFailure {
    Damaged(String),
    Other(String),
}

fn open_healthy(path: &Path) -> Result<Connection, OpenFailure> {
    let classify = |e: rusqlite::Error| {
        if is_corruption(&e) {
            OpenFailure::Damaged(e.to_string())
        } else {
            OpenFailure::Other(format!("outbox {}: {e}", path.display()))
        }
    };
    let c = open_conn(path).map_err(classify)?;
    let ok: String = c
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(classify)?;
    if ok != "ok" {
        return Err(OpenFailure::Damaged(format!("integrity check: {ok}")));
    }
    c.execute_batch(SCHEMA).map_err(classify)?;
    Ok(c)
}

/// Opens the store. A store SQLite reports as damaged is set aside (with its
/// WAL, under names SQLite still pairs up), what can be read from it is
/// copied into a fresh one, and the problem is reported — the daemon never
/// crash-loops on its own files. Any other failure (locked, read-only, disk
/// full) is an error that names the file: setting a healthy store aside over a
/// passing lock would hide transactions.
fn open_checked(path: &Path) -> Result<(Connection, Option<String>), String> {
    let why = match open_healthy(path) {
        Ok(c) => return Ok((c, None)),
        Err(OpenFailure::Other(e)) => return Err(e),
        Err(OpenFailure::Damaged(why)) => why,
    };
    let now = OffsetDateTime::now_utc();
    let aside = PathBuf::from(format!(
        "{}.corrupt-{}-{}",
        path.display(),
        now.unix_timestamp(),
        std::process::id()
    ));
    if aside.exists() {
        return Err(format!(
            "outbox {} is damaged ({why}) and {} already exists; move one away",
            path.display(),
            aside.display()
        ));
    }
    std::fs::rename(path, &aside).map_err(|e| {
        format!(
            "outbox {} is damaged ({why}) and cannot be moved aside: {e}",
            path.display()
        )
    })?;
    for side in ["-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{side}", path.display()));
        if from.exists() {
            let _ = std::fs::rename(&from, format!("{}{side}", aside.display()));
        }
    }
    let c = open_conn(path)
        .and_then(|c| c.execute_batch(SCHEMA).map(|_| c))
        .map_err(|e| format!("cannot create the outbox at {}: {e}", path.display()))?;
    let salvaged = salvage(&aside, &c);
    let problem = format!(
        "outbox {} was damaged ({why}); moved to {} and started anew; {salvaged} transaction(s) recovered from it",
        path.display(),
        aside.display()
    );
    tracing::error!("{problem}");
    Ok((c, Some(problem)))
}

/// Copies every readable pending row of a damaged store into the new one.
fn salvage(damaged: &Path, into: &Connection) -> usize {
    // Read-write, so SQLite replays the WAL that was moved beside it.
    let Ok(old) = Connection::open_with_flags(damaged, OpenFlags::SQLITE_OPEN_READ_WRITE) else {
        return 0;
    };
    let Ok(mut stmt) =
        old.prepare("SELECT id, body, state, attempts, queued_at FROM tx ORDER BY seq")
    else {
        return 0;
    };
    let Ok(rows) = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    }) else {
        return 0;
    };
    let mut n = 0;
    // A corrupt page ends the scan; everything before it is kept.
    for row in rows.map_while(Result::ok) {
        let (id, body, state, attempts, queued_at) = row;
        if into
            .execute(
                "INSERT OR IGNORE INTO tx (id, body, state, attempts, queued_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, body, state, attempts, queued_at],
            )
            .is_ok()
        {
            n += 1;
        }
    }
    n
}

impl Outbox {
    /// Opens (or creates) `dir/outbox.db` and starts the writer thread.
    pub fn open(dir: &Path, max_backlog: u64) -> Result<Outbox, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("storage.dir {}: {e}", dir.display()))?;
        let path = dir.join("outbox.db");
        let (conn, start_problem) = open_checked(&path)?;
        let reader = open_conn(&path).map_err(|e| format!("outbox {}: {e}", path.display()))?;
        let stats = Arc::new(Stats::default());
        let pending: i64 = conn
            .query_row("SELECT COUNT(*) FROM tx WHERE state != 'acked'", [], |r| {
                r.get(0)
            })
            .map_err(|e| format!("outbox {}: {e}", path.display()))?;
        stats.backlog.store(pending.max(0) as u64, Relaxed);
        let (tx, rx) = mpsc::channel(4096);
        let st = stats.clone();
        std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || writer(conn, rx, max_backlog, st))
            .map_err(|e| format!("cannot start the outbox writer: {e}"))?;
        Ok(Outbox {
            writer: tx,
            reader: Mutex::new(reader),
            stats,
            start_problem,
        })
    }

    /// Stores a transaction; returns once it is durable (or refused).
    pub async fn insert(&self, id: String, body: String) -> Result<Inserted, String> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Insert { id, body, reply })
            .await
            .map_err(|_| "the outbox writer stopped".to_owned())?;
        rx.await
            .map_err(|_| "the outbox writer stopped".to_owned())?
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, String> {
        let c = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&c).map_err(|e| format!("outbox read failed: {e}"))
    }

    pub fn get(&self, id: &str) -> Result<Option<TxView>, String> {
        self.with_reader(|c| view(c, id))
    }

    /// Transactions HQ does not have yet (from memory: cheap for health and metrics).
    pub fn backlog_len(&self) -> u64 {
        self.stats.backlog.load(Relaxed)
    }

    /// Transactions HQ does not have yet, and when the oldest was queued.
    pub fn backlog(&self) -> Result<(u64, Option<String>), String> {
        let oldest = self.with_reader(|c| {
            c.query_row(
                "SELECT queued_at FROM tx WHERE state != 'acked' ORDER BY seq LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
        })?;
        Ok((self.backlog_len(), oldest))
    }
}

fn view(c: &Connection, id: &str) -> rusqlite::Result<Option<TxView>> {
    c.query_row(
        "SELECT id, state, attempts, queued_at, sent_at FROM tx WHERE id = ?1",
        [id],
        |r| {
            Ok(TxView {
                id: r.get(0)?,
                state: r.get(1)?,
                attempts: r.get::<_, i64>(2)?.max(0) as u64,
                queued_at: r.get(3)?,
                sent_at: r.get(4)?,
            })
        },
    )
    .optional()
}

fn writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Insert>,
    max_backlog: u64,
    stats: Arc<Stats>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(i) => group.push(i),
                Err(_) => break,
            }
        }
        let result = commit_group(&mut conn, &group, max_backlog, stats.backlog.load(Relaxed));
        stats.commits.fetch_add(1, Relaxed);
        match result {
            Ok(outcomes) => {
                for (ins, out) in group.into_iter().zip(outcomes) {
                    if matches!(out, Inserted::Queued(_)) {
                        stats.inserted.fetch_add(1, Relaxed);
                        stats.backlog.fetch_add(1, Relaxed);
                    }
                    let _ = ins.reply.send(Ok(out));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox commit failed; the transactions were not stored");
                for ins in group {
                    let _ = ins
                        .reply
                        .send(Err(format!("could not store the transaction: {e}")));
                }
            }
        }
    }
}

fn commit_group(
    conn: &mut Connection,
    group: &[Insert],
    max_backlog: u64,
    mut pending: u64,
) -> rusqlite::Result<Vec<Inserted>> {
    let t = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(group.len());
    for ins in group {
        let existing: Option<String> = t
            .query_row("SELECT body FROM tx WHERE id = ?1", [&ins.id], |r| r.get(0))
            .optional()?;
        let outcome = match existing {
            Some(body) if body == ins.body => match view(&t, &ins.id)? {
                Some(v) => Inserted::Existing(v),
                None => Inserted::Conflict,
            },
            Some(_) => Inserted::Conflict,
            None if pending >= max_backlog => Inserted::Full { backlog: pending },
            None => {
                let queued_at = now_rfc3339();
                t.execute(
                    "INSERT INTO tx (id, body, queued_at) VALUES (?1, ?2, ?3)",
                    params![ins.id, ins.body, queued_at],
                )?;
                pending += 1;
                Inserted::Queued(TxView {
                    id: ins.id.clone(),
                    state: "queued".into(),
                    attempts: 0,
                    queued_at,
                    sent_at: None,
                })
            }
        };
        out.push(outcome);
    }
    // Durable here: WAL + synchronous=FULL syncs the log on commit.
    t.commit()?;
    Ok(out)
}
