//! The local member cache (SQLite): HQ pushes members over MQTT, the caller-ID
//! popup and `GET /v1/members/lookup` read them by phone number without asking
//! HQ. It is a cache: a damaged file is set aside and rebuilt from HQ's pushes.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS member (
    id         TEXT PRIMARY KEY,
    json       TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS member_phone (
    key       TEXT NOT NULL,
    member_id TEXT NOT NULL REFERENCES member(id) ON DELETE CASCADE,
    PRIMARY KEY (key, member_id)
);
CREATE INDEX IF NOT EXISTS member_phone_by_member ON member_phone(member_id);
";

const MAX_ID: usize = 128;

pub struct Members {
    conn: Mutex<Connection>,
    /// HQ's lookup answers handed to a popup and not written yet, by phone
    /// key (see `remember`).
    fresh: Mutex<std::collections::HashMap<String, Value>>,
}

/// What one upsert message came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Upserted {
    pub stored: usize,
    /// Entries without a usable `id` (reported, not stored).
    pub skipped: usize,
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    crate::storage::private_files(path)?;
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    // A lost last update is re-sent by HQ; no need to sync every write.
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    let ok: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if ok != "ok" {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(format!("integrity check: {ok}")),
        ));
    }
    c.execute_batch(SCHEMA)?;
    Ok(c)
}

/// Every key a member is filed under (its phones', in every style).
fn member_keys(m: &Value) -> Vec<String> {
    m.get("phones")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .flat_map(phone_keys)
        .collect()
}

/// The keys a phone number is filed and looked up under, so `138 1234 5678`,
/// `+86 13812345678` and `008613812345678` find the same member.
pub fn phone_keys(phone: &str) -> Vec<String> {
    posbridge_drivers::callerid::number::lookup_keys(phone, "86")
}

impl Members {
    /// Opens `dir/members.db`; a damaged cache is moved aside and started anew.
    pub fn open(dir: &Path) -> Result<Members, String> {
        let path = dir.join("members.db");
        let conn = match open_conn(&path) {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
                ) =>
            {
                let aside = format!(
                    "{}.corrupt-{}",
                    path.display(),
                    time::OffsetDateTime::now_utc().unix_timestamp()
                );
                tracing::error!(error = %e, moved_to = %aside, "member cache damaged; starting an empty one (HQ's pushes refill it)");
                std::fs::rename(&path, &aside)
                    .map_err(|e| format!("member cache {}: {e}", path.display()))?;
                for side in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{side}", path.display()));
                }
                open_conn(&path).map_err(|e| format!("member cache {}: {e}", path.display()))?
            }
            Err(e) => return Err(format!("member cache {}: {e}", path.display())),
        };
        Ok(Members {
            conn: Mutex::new(conn),
            fresh: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores or replaces members (HQ's objects as they are; `id` and `phones`
    /// are what the cache indexes).
    pub fn upsert(&self, members: &[Value]) -> Result<Upserted, String> {
        let stored = self.write(members);
        let mut fresh = self.fresh();
        if !fresh.is_empty() {
            for key in members.iter().flat_map(member_keys) {
                fresh.remove(&key);
            }
        }
        stored
    }

    /// Keeps an HQ answer in memory until `upsert` has written it: the
    /// popup goes out before the write (~1 ms of WAL pages), and a lookup
    /// made after the popup still finds the member.
    pub fn remember(&self, member: &Value) {
        let mut fresh = self.fresh();
        for key in member_keys(member) {
            // At most a burst of answers wait here; never more than this.
            if fresh.len() >= 1024 {
                break;
            }
            fresh.insert(key, member.clone());
        }
    }

    fn fresh(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Value>> {
        self.fresh.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, members: &[Value]) -> Result<Upserted, String> {
        let now = crate::clock::now_rfc3339();
        let mut c = self.lock();
        let t = c.transaction().map_err(|e| e.to_string())?;
        let mut r = Upserted::default();
        for m in members {
            let Some(id) = m
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty() && id.len() <= MAX_ID)
            else {
                r.skipped += 1;
                continue;
            };
            let phones = m
                .get("phones")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                .unwrap_or_default();
            let stored = (|| {
                // Prepared once per connection: HQ pushes members in bulk.
                t.prepare_cached(
                    "INSERT INTO member (id, json, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(id) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at",
                )?
                .execute(params![id, m.to_string(), now])?;
                t.prepare_cached("DELETE FROM member_phone WHERE member_id = ?1")?
                    .execute([id])?;
                let mut phone = t.prepare_cached(
                    "INSERT OR IGNORE INTO member_phone (key, member_id) VALUES (?1, ?2)",
                )?;
                for key in phones.iter().flat_map(|p| phone_keys(p)) {
                    phone.execute(params![key, id])?;
                }
                Ok::<_, rusqlite::Error>(())
            })();
            stored.map_err(|e| e.to_string())?;
            r.stored += 1;
        }
        t.commit().map_err(|e| e.to_string())?;
        Ok(r)
    }

    /// Removes members by id; returns how many were there.
    pub fn delete(&self, ids: &[String]) -> Result<usize, String> {
        // HQ's word on a member it erased is final, in memory too.
        self.fresh().retain(|_, m| {
            let id = m.get("id").and_then(Value::as_str);
            !id.is_some_and(|id| ids.iter().any(|d| d == id))
        });
        let mut c = self.lock();
        let t = c.transaction().map_err(|e| e.to_string())?;
        let mut n = 0;
        for id in ids {
            n += t
                .execute("DELETE FROM member WHERE id = ?1", [id])
                .map_err(|e| e.to_string())?;
        }
        t.commit().map_err(|e| e.to_string())?;
        Ok(n)
    }

    /// The member filed under this phone number, if any (the most recently
    /// updated one when a number is shared, e.g. a family line).
    pub fn by_phone(&self, phone: &str) -> Result<Option<Value>, String> {
        let keys = phone_keys(phone);
        match self.remembered(&keys) {
            Some(m) => Ok(Some(m)),
            None => query(&self.lock(), keys),
        }
    }

    /// `by_phone` without waiting: `None` while a write holds the cache
    /// (HQ's bulk pushes can hold it for seconds), so a caller on an async
    /// worker can go the slow way instead of stalling it.
    pub fn by_phone_now(&self, phone: &str) -> Option<Result<Option<Value>, String>> {
        let keys = phone_keys(phone);
        if let Some(m) = self.remembered(&keys) {
            return Some(Ok(Some(m)));
        }
        let c = match self.conn.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(query(&c, keys))
    }

    fn remembered(&self, keys: &[String]) -> Option<Value> {
        let fresh = self.fresh();
        keys.iter().find_map(|k| fresh.get(k)).cloned()
    }

    pub fn count(&self) -> u64 {
        self.lock()
            .query_row("SELECT COUNT(*) FROM member", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .unwrap_or(0)
    }
}

/// The member filed under the first of `keys` that has one.
fn query(c: &Connection, keys: Vec<String>) -> Result<Option<Value>, String> {
    // Prepared once per connection: a popup pays for the lookup, not the parse.
    let mut st = c
        .prepare_cached(
            "SELECT m.json FROM member_phone p JOIN member m ON m.id = p.member_id
                 WHERE p.key = ?1 ORDER BY m.updated_at DESC LIMIT 1",
        )
        .map_err(|e| e.to_string())?;
    for key in keys {
        let json: Option<String> = st
            .query_row([&key], |r| r.get(0))
            .optional()
            .map_err(|e| e.to_string())?;
        if let Some(j) = json {
            return serde_json::from_str(&j)
                .map(Some)
                .map_err(|e| format!("member cache holds bad JSON: {e}"));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_remembered_answer_is_found_until_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let m = Members::open(dir.path()).unwrap();
        let member = json!({"id": "m9", "name": "李雷", "phones": ["13900001234"]});
        m.remember(&member);
        // Found in any style before the write, and not stored yet.
        assert_eq!(
            m.by_phone("+86 139 0000 1234").unwrap(),
            Some(member.clone())
        );
        assert_eq!(m.count(), 0);
        m.upsert(std::slice::from_ref(&member)).unwrap();
        assert!(m.fresh().is_empty(), "the write forgets it");
        assert_eq!(m.by_phone("13900001234").unwrap(), Some(member.clone()));
        // HQ's delete is final, for a member still only remembered too.
        m.remember(&member);
        m.delete(&["m9".to_owned()]).unwrap();
        assert_eq!(m.by_phone("13900001234").unwrap(), None);
        assert_eq!(m.by_phone_now("13900001234"), Some(Ok(None)));
    }

    #[test]
    fn upsert_lookup_delete_by_any_phone_style() {
        let dir = tempfile::tempdir().unwrap();
        let m = Members::open(dir.path()).unwrap();
        let r = m
            .upsert(&[
                json!({"id": "m1", "name": "王芳", "phones": ["138 1234 5678"], "tier": "gold"}),
                json!({"name": "no id"}),
            ])
            .unwrap();
        assert_eq!(
            r,
            Upserted {
                stored: 1,
                skipped: 1
            }
        );
        for q in ["13812345678", "+86 138-1234-5678", "008613812345678"] {
            let got = m.by_phone(q).unwrap().expect(q);
            assert_eq!(got["name"], "王芳", "{q}");
        }
        // Replacing the member replaces its phones too.
        m.upsert(&[json!({"id": "m1", "name": "王芳", "phones": ["13900000000"]})])
            .unwrap();
        assert!(m.by_phone("13812345678").unwrap().is_none());
        assert!(m.by_phone("13900000000").unwrap().is_some());
        assert_eq!(m.delete(&["m1".into(), "nope".into()]).unwrap(), 1);
        assert!(m.by_phone("13900000000").unwrap().is_none());
        assert_eq!(m.count(), 0);
    }

    #[test]
    fn a_damaged_cache_is_set_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("members.db"),
            b"this is not sqlite at all, not even close....",
        )
        .unwrap();
        let m = Members::open(dir.path()).unwrap();
        assert_eq!(m.count(), 0);
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains("members.db.corrupt-")
            });
        assert!(aside);
    }
}
