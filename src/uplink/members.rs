//! The local member cache (SQLite): HQ pushes members over MQTT, the caller-ID
//! popup and `GET /v1/members/lookup` read them by phone number, and card
//! reads find them by card (`cards: [{"type", "value"}]`), without asking HQ.
//! It is a cache: a damaged file is set aside and rebuilt from HQ's pushes.
//!
//! ID-card numbers are never kept: an `idcard` card is filed, and stored in
//! the member's JSON, as HMAC-SHA256 under the store's `members.id_key`
//! (hex), or as the `hmac` HQ computed the same way; a clear number that
//! cannot be hashed (no key) is dropped.

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
CREATE TABLE IF NOT EXISTS member_card (
    key       TEXT NOT NULL,
    member_id TEXT NOT NULL REFERENCES member(id) ON DELETE CASCADE,
    PRIMARY KEY (key, member_id)
);
CREATE INDEX IF NOT EXISTS member_card_by_member ON member_card(member_id);
";

/// The card types a member may carry, as events name what read them.
pub const CARD_TYPES: [&str; 4] = ["magstripe", "rfid", "code", "idcard"];
/// Longest card value kept.
const MAX_CARD: usize = 128;

const MAX_ID: usize = 128;

pub struct Members {
    conn: Mutex<Connection>,
    /// `members.id_key`: what ID-card numbers are hashed with.
    id_key: Option<ring::hmac::Key>,
    /// Whether the cache holds a member: kept by the writes, so a card read
    /// asks it without taking the cache (a bulk push holds it for seconds).
    nonempty: std::sync::atomic::AtomicBool,
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

/// Every key a member is filed under: its phones' in every style, and its
/// cards' (of a sanitized member: ID cards as their HMAC).
fn member_keys(m: &Value) -> Vec<String> {
    let mut keys: Vec<String> = m
        .get("phones")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .flat_map(phone_keys)
        .collect();
    keys.extend(filed_cards(m));
    keys
}

/// The card keys of a sanitized member.
fn filed_cards(m: &Value) -> Vec<String> {
    let cards = m.get("cards").and_then(Value::as_array);
    cards
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let kind = c.get("type")?.as_str()?;
            let v = if kind == "idcard" {
                c.get("hmac")
            } else {
                c.get("value")
            };
            card_key(kind, v?.as_str()?)
        })
        .collect()
}

/// The key a card is filed and looked up under: `type:value`, the value
/// trimmed (RFID ids in upper case, ID-card HMACs in lower case).
pub fn card_key(kind: &str, value: &str) -> Option<String> {
    let v = value.trim();
    if v.is_empty() || v.len() > MAX_CARD || !CARD_TYPES.contains(&kind) {
        return None;
    }
    Some(match kind {
        "rfid" => format!("rfid:{}", v.to_ascii_uppercase()),
        "idcard" => format!("idcard:{}", v.to_ascii_lowercase()),
        _ => format!("{kind}:{v}"),
    })
}

/// Whether `s` is an HMAC-SHA256 as hex.
fn is_hmac(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The keys a phone number is filed and looked up under, so `138 1234 5678`,
/// `+86 13812345678` and `008613812345678` find the same member.
pub fn phone_keys(phone: &str) -> Vec<String> {
    posbridge_drivers::callerid::number::lookup_keys(phone, "86")
}

impl Members {
    /// Opens `dir/members.db`; a damaged cache is moved aside and started
    /// anew. `id_key` is `members.id_key`.
    pub fn open(dir: &Path, id_key: Option<&str>) -> Result<Members, String> {
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
        let nonempty = any_member(&conn);
        Ok(Members {
            conn: Mutex::new(conn),
            id_key: id_key.map(|k| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k.as_bytes())),
            nonempty: nonempty.into(),
            fresh: Mutex::default(),
        })
    }

    /// HMAC-SHA256 of an ID-card number under `members.id_key`, as lower-case
    /// hex (the number trimmed and upper-cased: the check digit may be `X`).
    /// `None` without a key.
    pub fn id_hmac(&self, number: &str) -> Option<String> {
        let key = self.id_key.as_ref()?;
        let number = number.trim();
        if number.is_empty() {
            return None;
        }
        let tag = ring::hmac::sign(key, number.to_ascii_uppercase().as_bytes());
        Some(hex::encode(tag.as_ref()))
    }

    /// The member as it may be kept and shown: each `idcard` card's clear
    /// `value` replaced by its `hmac` (or the card dropped when there is no
    /// key to hash it with); cards that are not objects with a known type dropped.
    pub fn sanitize(&self, mut m: Value) -> Value {
        // `cards` that is not a list could hold anything: it is not kept.
        if m.get("cards").is_some_and(|c| !c.is_array()) {
            if let Some(o) = m.as_object_mut() {
                o.remove("cards");
            }
        }
        let Some(cards) = m.get_mut("cards").and_then(Value::as_array_mut) else {
            return m;
        };
        cards.retain_mut(|c| {
            let Some(kind) = c.get("type").and_then(Value::as_str) else {
                return false;
            };
            if !CARD_TYPES.contains(&kind) {
                return false;
            }
            if kind != "idcard" {
                return c.get("value").and_then(Value::as_str).is_some();
            }
            let hmac = match (
                c.get("hmac").and_then(Value::as_str),
                c.get("value").and_then(Value::as_str),
            ) {
                (Some(h), _) if is_hmac(h) => Some(h.to_ascii_lowercase()),
                (_, Some(number)) => self.id_hmac(number),
                _ => None,
            };
            match hmac {
                Some(h) => {
                    *c = serde_json::json!({"type": "idcard", "hmac": h});
                    true
                }
                None => false,
            }
        });
        m
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores or replaces members (HQ's objects as they are; `id` and `phones`
    /// are what the cache indexes).
    pub fn upsert(&self, members: &[Value]) -> Result<Upserted, String> {
        let members: Vec<Value> = members.iter().map(|m| self.sanitize(m.clone())).collect();
        let members = &members[..];
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
        let member = &self.sanitize(member.clone());
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
                t.prepare_cached("DELETE FROM member_card WHERE member_id = ?1")?
                    .execute([id])?;
                let mut card = t.prepare_cached(
                    "INSERT OR IGNORE INTO member_card (key, member_id) VALUES (?1, ?2)",
                )?;
                for key in filed_cards(m) {
                    card.execute(params![key, id])?;
                }
                Ok::<_, rusqlite::Error>(())
            })();
            stored.map_err(|e| e.to_string())?;
            r.stored += 1;
        }
        t.commit().map_err(|e| e.to_string())?;
        if r.stored > 0 {
            self.nonempty
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
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
        self.nonempty
            .store(any_member(&c), std::sync::atomic::Ordering::Relaxed);
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
        self.find_now(PHONE_QUERY, phone_keys(phone))
    }

    /// The remembered answers, else `sql` over `keys` if the cache is free now.
    fn find_now(&self, sql: &str, keys: Vec<String>) -> Option<Result<Option<Value>, String>> {
        if let Some(m) = self.remembered(&keys) {
            return Some(Ok(Some(m)));
        }
        let c = match self.conn.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(query_in(&c, sql, keys))
    }

    /// The member who carries this card (`key` from [`card_key`]; an ID
    /// card's is its HMAC), if any.
    pub fn by_card(&self, key: &str) -> Result<Option<Value>, String> {
        let keys = vec![key.to_owned()];
        match self.remembered(&keys) {
            Some(m) => Ok(Some(m)),
            None => query_in(&self.lock(), CARD_QUERY, keys),
        }
    }

    /// `by_card` without waiting: `None` while a write holds the cache.
    pub fn by_card_now(&self, key: &str) -> Option<Result<Option<Value>, String>> {
        self.find_now(CARD_QUERY, vec![key.to_owned()])
    }

    /// Whether the cache holds any member (without touching the cache).
    pub fn has_any(&self) -> bool {
        self.nonempty.load(std::sync::atomic::Ordering::Relaxed)
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

fn any_member(c: &Connection) -> bool {
    c.query_row("SELECT EXISTS (SELECT 1 FROM member)", [], |r| r.get(0))
        .unwrap_or(false)
}

const PHONE_QUERY: &str = "SELECT m.json FROM member_phone p JOIN member m ON m.id = p.member_id
     WHERE p.key = ?1 ORDER BY m.updated_at DESC LIMIT 1";
const CARD_QUERY: &str = "SELECT m.json FROM member_card p JOIN member m ON m.id = p.member_id
     WHERE p.key = ?1 ORDER BY m.updated_at DESC LIMIT 1";

/// The member filed under the first of these phone `keys` that has one.
fn query(c: &Connection, keys: Vec<String>) -> Result<Option<Value>, String> {
    query_in(c, PHONE_QUERY, keys)
}

/// The member `sql` finds under the first of `keys` that has one.
fn query_in(c: &Connection, sql: &str, keys: Vec<String>) -> Result<Option<Value>, String> {
    // Prepared once per connection: a popup pays for the lookup, not the parse.
    let mut st = c.prepare_cached(sql).map_err(|e| e.to_string())?;
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
        let m = Members::open(dir.path(), None).unwrap();
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
        let m = Members::open(dir.path(), None).unwrap();
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
        assert!(m.has_any());
        drop(m);
        let m = Members::open(dir.path(), None).unwrap();
        assert!(m.has_any(), "known at open");
        assert_eq!(m.delete(&["m1".into(), "nope".into()]).unwrap(), 1);
        assert!(m.by_phone("13900000000").unwrap().is_none());
        assert_eq!(m.count(), 0);
        assert!(!m.has_any(), "the last member deleted");
    }

    #[test]
    fn a_damaged_cache_is_set_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("members.db"),
            b"this is not sqlite at all, not even close....",
        )
        .unwrap();
        let m = Members::open(dir.path(), None).unwrap();
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

    #[test]
    fn cards_find_their_member_and_id_numbers_are_kept_only_as_hmacs() {
        let dir = tempfile::tempdir().unwrap();
        let m = Members::open(dir.path(), Some("a store secret of 32 characters..")).unwrap();
        let number = "11010519491231002X";
        let hmac = m.id_hmac(number).unwrap();
        // As README says HQ computes it: `echo -n 11010519491231002X | openssl dgst -sha256 -hmac KEY`.
        assert_eq!(
            hmac,
            "c100bc39239a0e540f692a63f49e2ef03356439a42cf8933a413a4970c1ed2a4"
        );
        assert_eq!(m.id_hmac("  "), None, "no number, no hash");
        let odd = m.sanitize(json!({"id": "x", "cards": {"idcard": number}}));
        assert!(
            odd.get("cards").is_none(),
            "cards that is not a list is dropped: {odd}"
        );
        assert_eq!(
            m.id_hmac("11010519491231002x ").unwrap(),
            hmac,
            "trimmed, upper-cased"
        );
        m.upsert(&[
            json!({"id": "m1", "name": "张三", "cards": [
                {"type": "magstripe", "value": "88001234"},
                {"type": "rfid", "value": "04a1b2c3"},
                {"type": "idcard", "value": number},
                {"type": "bank", "value": "6222000011112222"},
            ]}),
            json!({"id": "m2", "cards": [{"type": "idcard", "hmac": "AB".repeat(32)}]}),
        ])
        .unwrap();
        let key = |t: &str, v: &str| card_key(t, v).unwrap();
        assert_eq!(
            m.by_card(&key("magstripe", " 88001234")).unwrap().unwrap()["id"],
            "m1"
        );
        assert_eq!(
            m.by_card(&key("rfid", "04A1B2C3")).unwrap().unwrap()["id"],
            "m1"
        );
        let found = m.by_card(&key("idcard", &hmac)).unwrap().unwrap();
        assert_eq!(found["id"], "m1");
        assert!(
            !found.to_string().contains("1231002"),
            "no clear number: {found}"
        );
        assert_eq!(
            found["cards"].as_array().unwrap().len(),
            3,
            "an unknown card type is dropped"
        );
        assert_eq!(
            m.by_card(&key("idcard", &"ab".repeat(32)))
                .unwrap()
                .unwrap()["id"],
            "m2"
        );
        assert!(
            m.by_card(&key("code", "88001234")).unwrap().is_none(),
            "types do not mix"
        );
        drop(m);
        let raw = std::fs::read(dir.path().join("members.db")).unwrap();
        let wal = std::fs::read(dir.path().join("members.db-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(!bytes.windows(number.len()).any(|w| w == number.as_bytes()));
        }
        // Without a key a clear number cannot be kept at all.
        let dir = tempfile::tempdir().unwrap();
        let m = Members::open(dir.path(), None).unwrap();
        let kept = m.sanitize(json!({"id": "m", "cards": [{"type": "idcard", "value": number}]}));
        assert_eq!(kept["cards"], json!([]));
    }
}
