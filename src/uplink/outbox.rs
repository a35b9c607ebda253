//! The durable outbox: every transaction a page posts is on disk (SQLite, WAL,
//! `synchronous = FULL`) before the page hears 202, and stays until HQ has it.
//!
//! One writer thread owns the connection. It takes every insert waiting at
//! that moment and commits them in one transaction — one fsync for the whole
//! group — so concurrent posts do not each pay for a sync (group commit).
//! Reads use their own connection, which WAL lets run beside the writer.
//!
//! Commits stay off the runtime's threads on purpose. Committing on the
//! request's own worker (or in `block_in_place`) saves a lone page two
//! thread hand-offs, but a scan arriving during the fsync then waited for
//! it: `device_to_page.1_client_under_ingest` p99 went from ~0.75 ms to
//! 1–12 ms (BENCHMARKS.md, issue 18).

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
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
CREATE INDEX IF NOT EXISTS tx_queued ON tx(seq) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS tx_done ON tx(sent_at) WHERE state != 'queued';
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

/// Work for the writer thread: every change to the store goes through it.
enum Op {
    Insert(Insert),
    /// The broker acknowledged these (by `seq`).
    Sent(Vec<i64>, oneshot::Sender<Result<u64, String>>),
    /// HQ acknowledged these (by `id`).
    Acked(Vec<String>, oneshot::Sender<Result<Acked, String>>),
    /// These were published once more.
    Attempted(Vec<i64>),
    /// Answer once everything sent before is committed.
    Flush(oneshot::Sender<Result<(), String>>),
    /// Commit everything sent before, fold the WAL into the main file, stop.
    Close(oneshot::Sender<Result<(), String>>),
}

/// When a transaction stops counting as backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// The broker's PUBACK ends it (`sent`).
    Broker,
    /// Only HQ's `tx/ack` ends it (`acked`).
    Hq,
}

impl AckMode {
    /// SQL condition for "HQ may not have it yet".
    fn pending_sql(self) -> &'static str {
        match self {
            AckMode::Broker => "state = 'queued'",
            AckMode::Hq => "state != 'acked'",
        }
    }
    fn is_pending(self, state: &str) -> bool {
        match self {
            AckMode::Broker => state == "queued",
            AckMode::Hq => state != "acked",
        }
    }
}

/// What one `tx/ack` came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acked {
    /// `sent` transactions now `acked`.
    pub acked: u64,
    /// Ids that were not `sent`: unknown, still queued, or acked already.
    pub ignored: u64,
}

/// A transaction waiting for HQ, as the relay publishes it.
#[derive(Clone, Debug)]
pub struct Pending {
    pub seq: i64,
    pub id: String,
    pub body: String,
    pub queued_at: String,
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
    writer: mpsc::Sender<Op>,
    mode: AckMode,
    /// Wakes the relay when something new is stored.
    pub stored: tokio::sync::Notify,
    reader: Mutex<Connection>,
    pub stats: Arc<Stats>,
    /// What was wrong with the store at start, if anything (also logged).
    pub start_problem: Option<String>,
}

/// How the outbox opens, and what is salvaged from a damaged file.
const STORE: crate::storage::Store<'static> = crate::storage::Store {
    what: "outbox",
    rows: "transaction(s)",
    schema: SCHEMA,
    table: "tx",
    columns: &["id", "body", "state", "attempts", "queued_at", "sent_at"],
};

impl Outbox {
    /// Opens (or creates) `dir/outbox.db` and starts the writer thread.
    /// Finished transactions are kept `retain` for `GET /v1/transactions/{id}`.
    pub fn open(
        dir: &Path,
        max_backlog: u64,
        mode: AckMode,
        retain: std::time::Duration,
    ) -> Result<Arc<Outbox>, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("storage.dir {}: {e}", dir.display()))?;
        let path = dir.join("outbox.db");
        let (conn, start_problem) = STORE.open_checked(&path)?;
        let reader = crate::storage::open_conn(&path)
            .map_err(|e| format!("outbox {}: {e}", path.display()))?;
        let stats = Arc::new(Stats::default());
        let pending: i64 = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM tx WHERE {}", mode.pending_sql()),
                [],
                |r| r.get(0),
            )
            .map_err(|e| format!("outbox {}: {e}", path.display()))?;
        stats.backlog.store(pending.max(0) as u64, Relaxed);
        let (tx, rx) = mpsc::channel(4096);
        let st = stats.clone();
        std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || {
                Writer {
                    conn,
                    max_backlog,
                    mode,
                    retain,
                    stats: st,
                    last_prune: None,
                }
                .run(rx)
            })
            .map_err(|e| format!("cannot start the outbox writer: {e}"))?;
        Ok(Arc::new(Outbox {
            writer: tx,
            mode,
            stored: tokio::sync::Notify::new(),
            reader: Mutex::new(reader),
            stats,
            start_problem,
        }))
    }

    pub fn mode(&self) -> AckMode {
        self.mode
    }

    async fn ask<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Op,
    ) -> Result<T, String> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(op(reply))
            .await
            .map_err(|_| "the outbox writer stopped".to_owned())?;
        rx.await
            .map_err(|_| "the outbox writer stopped".to_owned())?
    }

    /// The broker has these; returns how many changed state.
    pub async fn mark_sent(&self, seqs: Vec<i64>) -> Result<u64, String> {
        self.queue_sent(seqs)
            .await?
            .await
            .map_err(|_| "the outbox writer stopped".to_owned())?
    }

    /// Returns once everything sent to the writer before is committed (a
    /// new relay session reads the backlog after its predecessor's PUBACKs
    /// are recorded; shutdown leaves none unrecorded).
    pub async fn flush(&self) -> Result<(), String> {
        self.ask(Op::Flush).await
    }

    /// At shutdown: commits what was sent to the writer before, folds the
    /// WAL into `outbox.db` (after a clean stop that one file holds every
    /// transaction, for a copy or a backup) and stops the writer.
    pub async fn close(&self) -> Result<(), String> {
        self.ask(Op::Close).await
    }

    /// Queues `mark_sent` behind everything sent to the writer before it;
    /// the receiver tells how many changed state once it is committed.
    pub async fn queue_sent(
        &self,
        seqs: Vec<i64>,
    ) -> Result<oneshot::Receiver<Result<u64, String>>, String> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Op::Sent(seqs, reply))
            .await
            .map_err(|_| "the outbox writer stopped".to_owned())?;
        Ok(rx)
    }

    /// HQ has these. Only `sent` ones change.
    pub async fn mark_acked(&self, ids: Vec<String>) -> Result<Acked, String> {
        self.ask(|r| Op::Acked(ids, r)).await
    }

    /// Counts one more publish of each (best effort: a lost count loses nothing).
    pub fn attempted(&self, seqs: Vec<i64>) {
        let _ = self.writer.try_send(Op::Attempted(seqs));
    }

    /// Up to `limit` transactions HQ may not have yet, after `after` in `seq` order.
    pub async fn pending_after(
        self: &Arc<Self>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Pending>, String> {
        let sql = format!(
            "SELECT seq, id, body, queued_at FROM tx WHERE {} AND seq > ?1 ORDER BY seq LIMIT ?2",
            self.mode.pending_sql()
        );
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![after, limit as i64], |r| {
                Ok(Pending {
                    seq: r.get(0)?,
                    id: r.get(1)?,
                    body: r.get(2)?,
                    queued_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Stores a transaction; returns once it is durable (or refused).
    pub async fn insert(&self, id: String, body: String) -> Result<Inserted, String> {
        let r = self
            .ask(|reply| Op::Insert(Insert { id, body, reply }))
            .await;
        if matches!(r, Ok(Inserted::Queued(_))) {
            self.stored.notify_one();
        }
        r
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, String> {
        let c = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&c).map_err(|e| format!("outbox read failed: {e}"))
    }

    /// One transaction's state. Reads run off the async workers: the reader
    /// may be busy with a relay batch.
    pub async fn get(self: &Arc<Self>, id: String) -> Result<Option<TxView>, String> {
        self.read(move |c| view(c, &id)).await
    }

    /// Runs `f` on the reader connection in a blocking task.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.with_reader(f))
            .await
            .map_err(|e| format!("outbox read failed: {e}"))?
    }

    /// Transactions HQ does not have yet (from memory: cheap for health and metrics).
    pub fn backlog_len(&self) -> u64 {
        self.stats.backlog.load(Relaxed)
    }

    /// Transactions HQ does not have yet, and when the oldest was queued.
    pub async fn backlog(self: &Arc<Self>) -> Result<(u64, Option<String>), String> {
        let sql = format!(
            "SELECT queued_at FROM tx WHERE {} ORDER BY seq LIMIT 1",
            self.mode.pending_sql()
        );
        let oldest = self
            .read(move |c| c.query_row(&sql, [], |r| r.get(0)).optional())
            .await?;
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

/// How often finished transactions past their retention are deleted.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

struct Writer {
    conn: Connection,
    max_backlog: u64,
    mode: AckMode,
    retain: std::time::Duration,
    stats: Arc<Stats>,
    last_prune: Option<std::time::Instant>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        self.prune();
        while let Some(first) = rx.blocking_recv() {
            let mut ops = vec![first];
            while ops.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let (mut inserts, mut others, mut closing) = (Vec::new(), Vec::new(), None);
            for op in ops {
                match op {
                    Op::Insert(i) => inserts.push(i),
                    Op::Close(reply) => closing = Some(reply),
                    other => others.push(other),
                }
            }
            if !inserts.is_empty() {
                self.inserts(inserts);
            }
            if !others.is_empty() {
                self.updates(others);
            }
            if let Some(reply) = closing {
                self.stats.writer_stopped.store(true, Relaxed);
                let _ = reply.send(self.checkpoint());
                break;
            }
            if self.last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                self.prune();
            }
        }
        self.stats.writer_stopped.store(true, Relaxed);
    }

    fn checkpoint(&self) -> Result<(), String> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| format!("outbox checkpoint failed: {e}"))
            .and_then(|busy| match busy {
                0 => Ok(()),
                _ => Err("outbox checkpoint incomplete: a reader was busy".to_owned()),
            })
    }

    fn inserts(&mut self, group: Vec<Insert>) {
        let result = commit_group(
            &mut self.conn,
            &group,
            self.max_backlog,
            self.stats.backlog.load(Relaxed),
        );
        self.stats.commits.fetch_add(1, Relaxed);
        match result {
            Ok(outcomes) => {
                for (ins, out) in group.into_iter().zip(outcomes) {
                    if matches!(out, Inserted::Queued(_)) {
                        self.stats.inserted.fetch_add(1, Relaxed);
                        self.stats.backlog.fetch_add(1, Relaxed);
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

    /// Applies the relay's updates of one batch in one transaction (one
    /// fsync for a window of PUBACKs, the attempts counted with them); each
    /// caller hears only after the commit, and every one of them hears of a
    /// failure.
    fn updates(&mut self, ops: Vec<Op>) {
        let mode = self.mode;
        let now = crate::clock::now_rfc3339();
        // The replies are taken out first, so a statement failing halfway
        // still answers every caller with the real error.
        let mut work = Vec::with_capacity(ops.len());
        let mut replies = Vec::with_capacity(ops.len());
        for op in ops {
            let (w, r) = match op {
                Op::Insert(_) => continue,
                Op::Sent(seqs, reply) => (Work::Sent(seqs), Some(Reply::Sent(reply, 0))),
                Op::Acked(ids, reply) => (
                    Work::Acked(ids),
                    Some(Reply::Acked(reply, Acked::default())),
                ),
                Op::Attempted(seqs) => (Work::Attempted(seqs), None),
                Op::Flush(reply) => (Work::Nothing, Some(Reply::Flush(reply))),
                Op::Close(_) => continue,
            };
            work.push(w);
            replies.push(r);
        }
        if work.iter().all(|w| matches!(w, Work::Nothing)) {
            // Only flushes: everything before them is committed already.
            for r in replies.into_iter().flatten() {
                r.send(Ok(()));
            }
            return;
        }
        let run = |conn: &mut Connection, replies: &mut [Option<Reply>]| {
            let t = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut done = 0;
            for (w, reply) in work.iter().zip(replies.iter_mut()) {
                match (w, reply) {
                    (Work::Sent(seqs), Some(Reply::Sent(_, n))) => {
                        // Only broker mode counts the PUBACK as the end.
                        let changed = mark_sent(&t, seqs, &now)?;
                        *n = if mode == AckMode::Broker { changed } else { 0 };
                        done += *n;
                    }
                    (Work::Acked(ids), Some(Reply::Acked(_, a))) => {
                        let (acked, left) = mark_acked(&t, ids, &now, mode)?;
                        done += left;
                        *a = Acked {
                            acked,
                            ignored: ids.len() as u64 - acked,
                        };
                    }
                    (Work::Attempted(seqs), _) => {
                        let mut st = t.prepare_cached(
                            "UPDATE tx SET attempts = attempts + 1 WHERE seq = ?1",
                        )?;
                        for seq in seqs {
                            st.execute([seq])?;
                        }
                    }
                    _ => {}
                }
            }
            t.commit()?;
            Ok::<_, rusqlite::Error>(done)
        };
        let result = run(&mut self.conn, &mut replies);
        if let Ok(done) = result {
            self.stats.commits.fetch_add(1, Relaxed);
            let _ = self
                .stats
                .backlog
                .fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(done)));
        }
        let result = result.map(|_| ()).map_err(|e| {
            // Nothing of the batch was recorded: the relay publishes it again.
            tracing::warn!(error = %e, "outbox update failed");
            format!("outbox update failed: {e}")
        });
        for r in replies.into_iter().flatten() {
            r.send(result.clone());
        }
    }

    /// Deletes finished transactions older than the retention, so the store
    /// does not grow for ever; pending ones are never touched.
    fn prune(&mut self) {
        self.last_prune = Some(std::time::Instant::now());
        let cutoff = OffsetDateTime::now_utc() - self.retain;
        let cutoff = crate::clock::rfc3339_ms(cutoff);
        let sql = format!(
            "DELETE FROM tx WHERE state != 'queued' AND sent_at < ?1 AND NOT ({})",
            self.mode.pending_sql()
        );
        match self.conn.execute(&sql, [&cutoff]) {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned finished transactions past retention"),
            Err(e) => tracing::warn!(error = %e, "could not prune finished transactions"),
        }
    }
}

/// One update of a batch, its reply taken out (`Writer::updates`).
enum Work {
    Sent(Vec<i64>),
    Acked(Vec<String>),
    Attempted(Vec<i64>),
    Nothing,
}

/// A reply the writer owes once the batch's commit is decided, with what
/// it will say if the commit succeeds.
enum Reply {
    Sent(oneshot::Sender<Result<u64, String>>, u64),
    Acked(oneshot::Sender<Result<Acked, String>>, Acked),
    Flush(oneshot::Sender<Result<(), String>>),
}

impl Reply {
    fn send(self, committed: Result<(), String>) {
        match self {
            Reply::Sent(r, n) => {
                let _ = r.send(committed.map(|()| n));
            }
            Reply::Acked(r, a) => {
                let _ = r.send(committed.map(|()| a));
            }
            Reply::Flush(r) => {
                let _ = r.send(committed);
            }
        }
    }
}

/// The broker has these: `queued` ones become `sent`; returns how many.
fn mark_sent(t: &rusqlite::Transaction<'_>, seqs: &[i64], now: &str) -> rusqlite::Result<u64> {
    let mut st = t.prepare_cached(
        "UPDATE tx SET state = 'sent', sent_at = ?2 WHERE seq = ?1 AND state = 'queued'",
    )?;
    let mut n = 0;
    for seq in seqs {
        n += st.execute(params![seq, now])? as u64;
    }
    Ok(n)
}

/// HQ has these. Only what was published can be acked: an ack for an id
/// never sent is a forgery (or a mistake) and must not stop that
/// transaction's relay. Published means `sent` (the broker took it), or
/// queued with an attempt: a PUBACK lost to a dropped connection must not
/// make HQ's real ack, delivered from the session before the re-send, count
/// for nothing. Returns (acked, how many left the backlog).
fn mark_acked(
    t: &rusqlite::Transaction<'_>,
    ids: &[String],
    now: &str,
    mode: AckMode,
) -> rusqlite::Result<(u64, u64)> {
    let mut from_queued = t.prepare_cached(
        "UPDATE tx SET state = 'acked', sent_at = COALESCE(sent_at, ?2) \
         WHERE id = ?1 AND state = 'queued' AND attempts > 0",
    )?;
    let mut from_sent = t.prepare_cached(
        "UPDATE tx SET state = 'acked', sent_at = COALESCE(sent_at, ?2) \
         WHERE id = ?1 AND state = 'sent'",
    )?;
    let (mut acked, mut left) = (0, 0);
    for id in ids {
        let queued = from_queued.execute(params![id, now])? as u64;
        let sent = from_sent.execute(params![id, now])? as u64;
        acked += queued + sent;
        left += queued + if mode.is_pending("sent") { sent } else { 0 };
    }
    Ok((acked, left))
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
            .prepare_cached("SELECT body FROM tx WHERE id = ?1")?
            .query_row([&ins.id], |r| r.get(0))
            .optional()?;
        let outcome = match existing {
            Some(body) if body == ins.body => match view(&t, &ins.id)? {
                Some(v) => Inserted::Existing(v),
                None => Inserted::Conflict,
            },
            Some(_) => Inserted::Conflict,
            None if pending >= max_backlog => Inserted::Full { backlog: pending },
            None => {
                let queued_at = crate::clock::now_rfc3339();
                t.prepare_cached("INSERT INTO tx (id, body, queued_at) VALUES (?1, ?2, ?3)")?
                    .execute(params![ins.id, ins.body, queued_at])?;
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn state(o: &Arc<Outbox>, id: &str) -> String {
        o.get(id.into())
            .await
            .ok()
            .flatten()
            .map(|v| v.state)
            .unwrap_or_default()
    }

    fn open(dir: &Path) -> Arc<Outbox> {
        Outbox::open(
            dir,
            10_000,
            AckMode::Broker,
            std::time::Duration::from_secs(60),
        )
        .expect("open")
    }

    /// A lone request commits on its own thread, one commit each; requests
    /// arriving together share commits, every one answered and stored once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lone_inserts_commit_alone_and_concurrent_ones_share_commits() {
        let dir = tempfile::tempdir().expect("tmp");
        let o = open(dir.path());
        for i in 0..5 {
            let r = o.insert(format!("a-{i}"), "{}".into()).await;
            assert!(matches!(r, Ok(Inserted::Queued(_))), "{r:?}");
        }
        assert_eq!(o.stats.commits.load(Relaxed), 5);
        let posts = (0..400).map(|i| {
            let o = o.clone();
            tokio::spawn(async move { o.insert(format!("b-{i:03}"), "{}".into()).await })
        });
        for r in futures_util::future::join_all(posts).await {
            assert!(matches!(r, Ok(Ok(Inserted::Queued(_)))), "{r:?}");
        }
        let commits = o.stats.commits.load(Relaxed) - 5;
        assert!(
            commits < 400,
            "{commits} commits for 400 concurrent inserts"
        );
        assert_eq!(o.backlog_len(), 405);
        let all = o.pending_after(0, 1000).await.expect("pending");
        assert_eq!(all.len(), 405, "each stored once");
    }

    /// Changes keep their order across batches and drivers: a PUBACK queued
    /// right behind an insert finds it, an ack right behind the PUBACK too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_apply_in_the_order_they_were_queued() {
        let dir = tempfile::tempdir().expect("tmp");
        let o = open(dir.path());
        for round in 0..50 {
            let id = format!("o-{round}");
            assert!(matches!(
                o.insert(id.clone(), "{}".into()).await,
                Ok(Inserted::Queued(_))
            ));
            let seq = o.pending_after(0, 1).await.expect("pending")[0].seq;
            let sent = o.queue_sent(vec![seq]).await.expect("queue");
            let acked = o.mark_acked(vec![id.clone()]).await.expect("ack");
            assert_eq!(sent.await.expect("answer"), Ok(1), "round {round}");
            assert_eq!(acked.acked, 1, "round {round}: the ack found it sent");
        }
        assert_eq!(o.backlog_len(), 0);
    }

    /// After close nothing more is taken, and health learns the writer stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_outbox_refuses_changes_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let o = open(dir.path());
        assert!(matches!(
            o.insert("c-1".into(), "{}".into()).await,
            Ok(Inserted::Queued(_))
        ));
        o.close().await.expect("close");
        assert!(o.stats.writer_stopped.load(Relaxed));
        let err = o
            .insert("c-2".into(), "{}".into())
            .await
            .expect_err("closed");
        assert!(err.contains("stopped"), "{err}");
        assert!(o.mark_sent(vec![1]).await.is_err());
        assert_eq!(state(&o, "c-1").await, "queued", "what was stored stays");
    }

    /// Issue 16: a forged `tx/ack` for ids never sent marked them acked, so
    /// they were never relayed. Only published transactions take an ack.
    #[tokio::test]
    async fn only_sent_transactions_take_an_ack() {
        for mode in [AckMode::Broker, AckMode::Hq] {
            let dir = tempfile::tempdir().expect("tmp");
            let o = Outbox::open(dir.path(), 100, mode, std::time::Duration::from_secs(60))
                .expect("open");
            let mut seqs = Vec::new();
            for id in ["t-1", "t-2"] {
                match o.insert(id.into(), "{}".into()).await {
                    Ok(Inserted::Queued(_)) => {}
                    other => panic!("{other:?}"),
                }
                let p = o.pending_after(seqs.last().copied().unwrap_or(0), 1).await;
                seqs.push(p.expect("pending")[0].seq);
            }
            let forged = o
                .mark_acked(vec!["t-1".into(), "t-2".into(), "nope".into()])
                .await
                .expect("ack");
            assert_eq!(
                forged,
                Acked {
                    acked: 0,
                    ignored: 3
                },
                "{mode:?}"
            );
            assert_eq!(state(&o, "t-1").await, "queued");
            assert_eq!(o.backlog_len(), 2);
            o.mark_sent(vec![seqs[0]]).await.expect("sent");
            let real = o.mark_acked(vec!["t-1".into()]).await.expect("ack");
            assert_eq!(
                real,
                Acked {
                    acked: 1,
                    ignored: 0
                },
                "{mode:?}"
            );
            assert_eq!(state(&o, "t-1").await, "acked");
            assert_eq!(state(&o, "t-2").await, "queued");
            assert_eq!(o.backlog_len(), 1, "{mode:?}: t-2 is still owed to HQ");
            let again = o.mark_acked(vec!["t-1".into()]).await.expect("ack");
            assert_eq!(
                again,
                Acked {
                    acked: 0,
                    ignored: 1
                },
                "a repeated ack changes nothing"
            );
            // Published, but the PUBACK was lost with the connection: HQ's
            // real ack, delivered before the re-send, still counts.
            o.attempted(vec![seqs[1]]);
            let late = o.mark_acked(vec!["t-2".into()]).await.expect("ack");
            assert_eq!(
                late,
                Acked {
                    acked: 1,
                    ignored: 0
                },
                "{mode:?}"
            );
            assert_eq!(o.backlog_len(), 0, "{mode:?}");
        }
    }
}
