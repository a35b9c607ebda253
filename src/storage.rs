//! The SQLite stores (the outbox, the print queue, the call log) open the same way:
//! WAL with `synchronous = FULL`, a passing lock waited out, and a file SQLite
//! calls damaged set aside with its WAL while what can still be read is copied
//! into a fresh one — the daemon never crash-loops on its own files. Any other
//! failure (locked, read-only, disk full) names the file and stops the start:
//! setting a healthy store aside over a passing lock would hide its rows.
//! (The call log, which is history rather than data owed to anyone, takes
//! that failure as a reason to keep calls in memory only.)

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OpenFlags};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// One durable store: how its messages name it and what it keeps.
pub struct Store<'a> {
    /// "outbox", "print queue".
    pub what: &'a str,
    /// "transaction(s)", "job(s)", for the salvage report.
    pub rows: &'a str,
    pub schema: &'a str,
    /// The table and columns copied out of a damaged file, in `seq` order.
    pub table: &'a str,
    pub columns: &'a [&'a str],
}

/// Makes `dir` the daemon's own: created 0700, or, when it exists with any
/// access for group or others, tightened to 0700. The stores hold
/// transactions, callers' numbers and members; outside the shipped unit
/// (whose `StateDirectoryMode` says the same) the umask would leave them
/// readable. A directory that belongs to another user (who could read,
/// replace or plant files there) or cannot be tightened stops the start.
/// Returns what to tell the log.
pub fn private_dir(dir: &Path) -> Result<Option<String>, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let shown = dir.display();
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{shown}: {e}"))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{shown}: {e}")),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!(
            "{shown} is not a directory (a link is not taken either)"
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "{shown} belongs to uid {}, not to the user the daemon runs as (uid {me}), who could read or replace the stores; use a directory of the daemon's own",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        format!("{shown} is mode {mode:04o}, so other users can read the stores, and it could not be tightened ({e}); run: chmod 700 {shown}")
    })?;
    Ok(Some(format!(
        "storage.dir {shown} was mode {mode:04o}, so other users could read the stores; it is now 0700"
    )))
}

/// Makes a store's file, and its WAL and shared-memory files where they
/// exist, readable by the daemon alone (0600) before SQLite opens it. SQLite
/// gives the WAL and -shm files it creates the database file's mode. Links
/// are not followed: a file in the store's place must be a plain file.
pub fn private_files(path: &Path) -> rusqlite::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tighten = || -> std::io::Result<()> {
        for (side, create) in [("", true), ("-wal", false), ("-shm", false)] {
            let p = PathBuf::from(format!("{}{side}", path.display()));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(create)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&p);
            let f = match f {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => continue,
                Err(e) => return Err(e),
            };
            let m = f.metadata()?;
            if !m.is_file() {
                return Err(std::io::Error::other("not a plain file"));
            }
            if m.permissions().mode() & 0o077 != 0 {
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
        }
        Ok(())
    };
    tighten().map_err(|e| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("{}: {e}", path.display())),
        )
    })
}

/// A connection with the durability every store needs, on a private file.
pub fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    private_files(path)?;
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

impl Store<'_> {
    fn open_healthy(&self, path: &Path) -> Result<Connection, OpenFailure> {
        let classify = |e: rusqlite::Error| {
            if is_corruption(&e) {
                OpenFailure::Damaged(e.to_string())
            } else {
                OpenFailure::Other(format!("{} {}: {e}", self.what, path.display()))
            }
        };
        let c = open_conn(path).map_err(classify)?;
        let ok: String = c
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(classify)?;
        if ok != "ok" {
            return Err(OpenFailure::Damaged(format!("integrity check: {ok}")));
        }
        c.execute_batch(self.schema).map_err(classify)?;
        Ok(c)
    }

    /// Opens (or creates) the store at `path`; the second value reports a
    /// damaged file that was set aside and salvaged.
    pub fn open_checked(&self, path: &Path) -> Result<(Connection, Option<String>), String> {
        let why = match self.open_healthy(path) {
            Ok(c) => return Ok((c, None)),
            Err(OpenFailure::Other(e)) => return Err(e),
            Err(OpenFailure::Damaged(why)) => why,
        };
        let what = self.what;
        let now = OffsetDateTime::now_utc();
        let aside = PathBuf::from(format!(
            "{}.corrupt-{}-{}",
            path.display(),
            now.unix_timestamp(),
            std::process::id()
        ));
        if aside.exists() {
            return Err(format!(
                "{what} {} is damaged ({why}) and {} already exists; move one away",
                path.display(),
                aside.display()
            ));
        }
        std::fs::rename(path, &aside).map_err(|e| {
            format!(
                "{what} {} is damaged ({why}) and cannot be moved aside: {e}",
                path.display()
            )
        })?;
        // The WAL moves along under a name SQLite still pairs with the file.
        for side in ["-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{side}", path.display()));
            if from.exists() {
                let _ = std::fs::rename(&from, format!("{}{side}", aside.display()));
            }
        }
        let c = open_conn(path)
            .and_then(|c| c.execute_batch(self.schema).map(|_| c))
            .map_err(|e| format!("cannot create the {what} at {}: {e}", path.display()))?;
        let salvaged = self.salvage(&aside, &c);
        let problem = format!(
            "{what} {} was damaged ({why}); moved to {} and started anew; {salvaged} {} recovered from it",
            path.display(),
            aside.display(),
            self.rows
        );
        tracing::error!("{problem}");
        Ok((c, Some(problem)))
    }

    /// Copies every readable row of a damaged store into the new one, in order.
    fn salvage(&self, damaged: &Path, into: &Connection) -> usize {
        // Read-write, so SQLite replays the WAL that was moved beside it.
        let Ok(old) = Connection::open_with_flags(damaged, OpenFlags::SQLITE_OPEN_READ_WRITE)
        else {
            return 0;
        };
        // Only the columns the damaged file has: one from an older version
        // lacks those added since.
        let present: Vec<&str> = self
            .columns
            .iter()
            .copied()
            .filter(|c| {
                old.query_row(
                    &format!(
                        "SELECT COUNT(*) FROM pragma_table_info('{}') WHERE name = ?1",
                        self.table
                    ),
                    [c],
                    |r| r.get::<_, i64>(0),
                )
                .is_ok_and(|n| n > 0)
            })
            .collect();
        let cols = present.join(", ");
        let Ok(mut stmt) = old.prepare(&format!("SELECT {cols} FROM {} ORDER BY seq", self.table))
        else {
            return 0;
        };
        let n_cols = present.len();
        let Ok(rows) = stmt.query_map([], |r| {
            (0..n_cols)
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<Value>>>()
        }) else {
            return 0;
        };
        let marks = (1..=n_cols)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!(
            "INSERT OR IGNORE INTO {} ({cols}) VALUES ({marks})",
            self.table
        );
        let mut n = 0;
        // A corrupt page ends the scan; everything before it is kept.
        for row in rows.map_while(Result::ok) {
            if into.execute(&insert, params_from_iter(row)).is_ok() {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: Store<'static> = Store {
        what: "test store",
        rows: "row(s)",
        schema: "CREATE TABLE IF NOT EXISTS t (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, body BLOB, note TEXT);",
        table: "t",
        columns: &["id", "body", "note"],
    };

    #[test]
    fn a_damaged_file_is_set_aside_and_its_readable_rows_kept_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let (c, problem) = STORE.open_checked(&path).unwrap();
            assert!(problem.is_none());
            for i in 0..400 {
                c.execute(
                    "INSERT INTO t (id, body, note) VALUES (?1, ?2, NULL)",
                    rusqlite::params![format!("r{i:04}"), vec![7u8; 500]],
                )
                .unwrap();
            }
            c.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let at = (bytes.len() / 4096 - 2) * 4096;
        bytes[at + 100..at + 4096].fill(0xA5);
        std::fs::write(&path, &bytes).unwrap();

        let (c, problem) = STORE.open_checked(&path).unwrap();
        let problem = problem.expect("the damage is reported");
        assert!(
            problem.starts_with("test store ") && problem.contains("row(s) recovered"),
            "{problem}"
        );
        let ids: Vec<String> = c
            .prepare("SELECT id FROM t ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(!ids.is_empty() && ids.len() < 400, "{}", ids.len());
        let want: Vec<String> = (0..ids.len()).map(|i| format!("r{i:04}")).collect();
        assert_eq!(ids, want, "the intact prefix, in order");
        let body: Vec<u8> = c
            .query_row("SELECT body FROM t WHERE id = 'r0000'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(body, vec![7u8; 500], "blobs survive");
        assert!(std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".corrupt-")));
    }

    #[test]
    fn a_file_that_is_not_a_database_is_set_aside_and_an_unopenable_one_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        std::fs::write(&path, b"this is not sqlite, not even close, really not").unwrap();
        let (_, problem) = STORE.open_checked(&path).unwrap();
        assert!(problem.unwrap().contains("0 row(s) recovered"));
        // A store that cannot be opened for another reason names the file and stops.
        let missing_dir = dir.path().join("no/such/dir/s.db");
        let e = STORE.open_checked(&missing_dir).unwrap_err();
        assert!(e.starts_with("test store ") && e.contains("s.db"), "{e}");
    }
}
