//! The HQ uplink: `outbox` holds every transaction durably until HQ has it,
//! `mqtt` relays it (and forwards events, asks HQ about callers, takes HQ's
//! member pushes), `members` is the local member cache.

pub mod members;
pub mod mqtt;
pub mod outbox;
pub mod window;

use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// What the relay reports (health, `/v1/uplink`, metrics).
#[derive(Default)]
pub struct RelayStatus {
    pub connected: AtomicBool,
    pub last_error: Mutex<Option<String>>,
    /// Transaction publishes (first sends and re-sends).
    pub published: AtomicU64,
    /// Transactions the broker acknowledged (PUBACK).
    pub broker_acked: AtomicU64,
    /// Transactions HQ acknowledged (`tx/ack`).
    pub hq_acked: AtomicU64,
    /// Ids in a `tx/ack` that were not `sent` (never published, or acked already).
    pub acks_ignored: AtomicU64,
    /// Re-sends on a live connection because HQ had not acknowledged (`ack = "hq"`).
    pub resent: AtomicU64,
    /// Member pushes are not subscribed to until then (monotonic, and as
    /// shown), after a message too large to take kept coming back.
    pub members_paused: Mutex<Option<(std::time::Instant, String)>>,
    /// Connection attempts that failed or connections that broke.
    pub errors: AtomicU64,
    pub connects: AtomicU64,
    /// Downlink messages that could not be used (including lookup answers
    /// for no lookup in flight).
    pub bad_downlink: AtomicU64,
    pub events_forwarded: AtomicU64,
    pub lookups_hq: AtomicU64,
    pub lookups_timed_out: AtomicU64,
}

impl RelayStatus {
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// When member pushes resume, if they are paused now.
    pub fn members_paused_until(&self) -> Option<String> {
        self.members_pause().map(|(_, shown)| shown)
    }
    /// The pause in force now: when it ends, and that time as shown.
    pub fn members_pause(&self) -> Option<(std::time::Instant, String)> {
        let g = self
            .members_paused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .filter(|(until, _)| *until > std::time::Instant::now())
            .cloned()
    }
    pub fn set_last_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }
}

/// A future the relay awaits from the module that answers for the store.
pub type Pending<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What HQ may see of the store and ask of it (`P/S/inventory`, `P/S/cmd`),
/// provided by the fleet module; the relay only carries it.
pub trait Steward: Send + Sync {
    /// The inventory now.
    fn inventory(&self) -> Pending<'_, Value>;
    /// Runs one `P/S/cmd` message; the result to publish.
    fn command<'a>(&'a self, payload: &'a [u8]) -> Pending<'a, Value>;
    /// Results that come later (a rollback); taken once.
    fn take_late(&self) -> Option<tokio::sync::mpsc::Receiver<Value>>;
}

/// The parts of an inventory whose change is worth telling HQ: not the
/// clock, and the free disk only by 100 MB steps.
pub fn inventory_fingerprint(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("time");
        o.remove("uptime_s");
        if let Some(free) = o.get("disk_free_bytes").and_then(Value::as_u64) {
            o.insert("disk_free_bytes".into(), (free / 100_000_000).into());
        }
    }
    v.to_string()
}

/// Where a member lookup found its answer (contract: `source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Cache,
    Hq,
    None,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Hq => "hq",
            Source::None => "none",
        }
    }
}

/// The uplink as the rest of the daemon sees it.
pub struct Uplink {
    pub outbox: Arc<outbox::Outbox>,
    pub members: Arc<members::Members>,
    pub status: Arc<RelayStatus>,
    /// Absent when no `[uplink]` is configured: transactions still queue.
    pub relay: Option<Arc<mqtt::Relay>>,
}

impl Uplink {
    pub fn connected(&self) -> bool {
        self.status.connected.load(Relaxed)
    }

    /// A member by phone: the local cache first, then HQ (when connected, up
    /// to `uplink.lookup_timeout_ms`), else none.
    pub async fn lookup(&self, phone: &str) -> (Option<Value>, Source) {
        self.lookup_from(phone, true).await
    }

    /// The cache, and HQ only when `may_ask_hq`.
    pub async fn lookup_from(&self, phone: &str, may_ask_hq: bool) -> (Option<Value>, Source) {
        let members = self.members.clone();
        let p = phone.to_owned();
        match tokio::task::spawn_blocking(move || members.by_phone(&p)).await {
            Ok(Ok(Some(m))) => return (Some(m), Source::Cache),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "member cache lookup failed; asking HQ"),
            Err(e) => tracing::warn!(error = %e, "member cache lookup failed; asking HQ"),
        }
        self.ask_hq(phone, may_ask_hq).await
    }

    /// The member cache alone, answered where it is called (a few indexed
    /// page reads: cheaper than a hop to the blocking pool and back), or
    /// `None` while a write holds the cache: then `lookup` is the way.
    pub fn cached_now(&self, phone: &str) -> Option<Option<Value>> {
        let found = self.members.by_phone_now(phone)?;
        Some(found.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "member cache lookup failed; asking HQ");
            None
        }))
    }

    /// The member who carries a card: the cache, then HQ (when connected and
    /// `may_ask_hq`, within `uplink.lookup_timeout_ms`), else none. `value`
    /// is as the cache files it (an ID card's HMAC, never its number).
    pub async fn lookup_card(
        &self,
        kind: &str,
        value: &str,
        may_ask_hq: bool,
    ) -> (Option<Value>, Source) {
        let Some(key) = members::card_key(kind, value) else {
            return (None, Source::None);
        };
        let found = match self.cached_card_now(&key) {
            Some(found) => found,
            None => {
                let members = self.members.clone();
                let key = key.clone();
                tokio::task::spawn_blocking(move || members.by_card(&key))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "member cache lookup failed; asking HQ");
                        None
                    })
            }
        };
        if let Some(m) = found {
            return (Some(m), Source::Cache);
        }
        if let Some(relay) = self.relay.as_ref().filter(|_| may_ask_hq) {
            // HQ is asked for the card as the cache files it (trimmed, RFID upper-case).
            let filed = key.get(kind.len() + 1..).unwrap_or(value);
            if let Some(m) = relay.lookup_card(kind, filed).await {
                return (Some(m), Source::Hq);
            }
        }
        (None, Source::None)
    }

    /// The cache by card key without waiting; `None` while a write holds it.
    fn cached_card_now(&self, key: &str) -> Option<Option<Value>> {
        let found = self.members.by_card_now(key)?;
        Some(found.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "member cache lookup failed; asking HQ");
            None
        }))
    }

    /// HQ, when connected and `may`, within `uplink.lookup_timeout_ms`.
    pub async fn ask_hq(&self, phone: &str, may: bool) -> (Option<Value>, Source) {
        if let Some(relay) = self.relay.as_ref().filter(|_| may) {
            if let Some(m) = relay.lookup(phone).await {
                return (Some(m), Source::Hq);
            }
        }
        (None, Source::None)
    }
}
