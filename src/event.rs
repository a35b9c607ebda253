//! The event envelope and the bus: one sequence per daemon run, a ring buffer
//! for resume and long-poll, and fan-out to subscribers that can never stall
//! the devices or each other.
//!
//! Publishing takes one short lock: assign `seq`, serialize once, keep it in
//! the ring, and `try_send` it to each matching subscriber's bounded queue. A
//! subscriber whose queue is full is cut off (its `overflow` token fires) and
//! its connection is closed with 4008 — events are never silently skipped.

use crate::metrics::Metrics;
use axum::extract::ws::Utf8Bytes;
use posbridge_drivers::{Event, KINDS};
use serde::Serialize;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

/// A published event: routing facts plus its JSON, serialized once.
#[derive(Debug)]
pub struct Published {
    pub seq: u64,
    pub kind: &'static str,
    /// `kind`'s place in `KINDS`, which compiled filters test.
    pub kind_index: usize,
    pub device: Option<Arc<str>>,
    /// The full event. A refcounted WebSocket text payload, so every client's
    /// frame shares these bytes instead of copying them.
    pub json: Utf8Bytes,
    /// What clients without the `idcard` scope get, where that differs.
    pub masked_json: Option<Utf8Bytes>,
}

impl Published {
    pub fn json_for(&self, idcard: bool) -> &Utf8Bytes {
        match (&self.masked_json, idcard) {
            (Some(m), false) => m,
            _ => &self.json,
        }
    }
}

/// The envelope every frame shares; `body` supplies `type` and `data`.
#[derive(Serialize)]
struct Envelope<'a, B: Serialize> {
    seq: u64,
    boot: &'a str,
    id: &'a str,
    time: String,
    store: &'a str,
    device: Option<&'a str>,
    #[serde(flatten)]
    body: B,
}

/// The body of a synthetic stream notice (`stream.gap`, `stream.reset`).
#[derive(Serialize)]
struct NoticeBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: serde_json::Value,
}

/// Most entries a subscriber's `types=` or `devices=` may list, and the
/// longest entry. A query string may be 64 KiB; a filter that size must not
/// reach the bus.
pub const MAX_FILTER_ENTRIES: usize = 64;
pub const MAX_FILTER_ENTRY_LEN: usize = 64;

/// Which events a subscriber wants, compiled once when it subscribes: the
/// `types` globs become a set of event kinds, so matching one event under the
/// bus lock costs the same whatever the client sent.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Bit `i` set: `KINDS[i]` is wanted. `None`: every kind.
    kinds: Option<u64>,
    /// Device ids; `None`: every device.
    devices: Option<HashSet<Box<str>>>,
}

impl Filter {
    /// From globs over `type` (`card.*`) and device ids; empty lists mean all.
    pub fn new<'a>(
        types: impl IntoIterator<Item = &'a str>,
        devices: impl IntoIterator<Item = &'a str>,
    ) -> Filter {
        let globs: Vec<&str> = types.into_iter().collect();
        let kinds = (!globs.is_empty()).then(|| {
            KINDS
                .iter()
                .enumerate()
                .filter(|(_, k)| globs.iter().any(|g| glob(g, k)))
                .fold(0u64, |bits, (i, _)| bits | 1 << i)
        });
        let devices: HashSet<Box<str>> = devices.into_iter().map(Into::into).collect();
        Filter {
            kinds,
            devices: (!devices.is_empty()).then_some(devices),
        }
    }

    /// Parses a client's comma-separated query values (blanks ignored),
    /// refusing more or longer entries than the limits allow.
    pub fn from_query(types: Option<&str>, devices: Option<&str>) -> Result<Filter, String> {
        let types = split_query("types", types)?;
        let devices = split_query("devices", devices)?;
        Ok(Filter::new(types, devices))
    }

    pub fn matches(&self, p: &Published) -> bool {
        let type_ok = self.kinds.is_none_or(|k| k & kind_bit(p.kind_index) != 0);
        let dev_ok = self
            .devices
            .as_ref()
            .is_none_or(|set| p.device.as_deref().is_some_and(|d| set.contains(d)));
        type_ok && dev_ok
    }
}

fn kind_bit(index: usize) -> u64 {
    1u64.checked_shl(index as u32).unwrap_or(0)
}

fn split_query<'a>(key: &str, value: Option<&'a str>) -> Result<Vec<&'a str>, String> {
    let entries: Vec<&str> = value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(MAX_FILTER_ENTRIES + 1)
        .collect();
    if entries.len() > MAX_FILTER_ENTRIES {
        return Err(format!(
            "{key}: more than {MAX_FILTER_ENTRIES} entries (the limit per filter)"
        ));
    }
    if entries.iter().any(|e| e.len() > MAX_FILTER_ENTRY_LEN) {
        return Err(format!(
            "{key}: an entry is longer than {MAX_FILTER_ENTRY_LEN} characters (the limit per entry)"
        ));
    }
    Ok(entries)
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Where a client wants to start.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    pub since: Option<u64>,
    pub boot: Option<String>,
}

/// What a subscriber gets first, before live events.
#[derive(Debug)]
pub enum Backlog {
    /// A synthetic notice, already serialized.
    Notice(String),
    Event(Arc<Published>),
}

struct Subscriber {
    id: u64,
    filter: Arc<Filter>,
    tx: mpsc::Sender<Arc<Published>>,
    overflow: CancellationToken,
}

struct Inner {
    next_seq: u64,
    ring: VecDeque<Arc<Published>>,
    subs: Vec<Subscriber>,
    next_sub: u64,
}

/// The event bus. Cheap to share through an `Arc`.
pub struct Bus {
    boot: String,
    store: Arc<str>,
    capacity: usize,
    client_queue: usize,
    inner: Mutex<Inner>,
    latest: watch::Sender<u64>,
    metrics: Arc<Metrics>,
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    pub backlog: Vec<Backlog>,
    pub rx: mpsc::Receiver<Arc<Published>>,
    /// Fires when this subscriber fell too far behind and was cut off.
    pub overflow: CancellationToken,
    id: u64,
    bus: Arc<Bus>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.bus.lock();
        inner.subs.retain(|s| s.id != self.id);
        self.bus.metrics.set_subscribers(inner.subs.len());
    }
}

impl Bus {
    pub fn new(
        store: &str,
        capacity: usize,
        client_queue: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<Bus> {
        let (latest, _) = watch::channel(0);
        Arc::new(Bus {
            boot: Ulid::new().to_string(),
            store: store.into(),
            capacity: capacity.max(1),
            client_queue: client_queue.max(1),
            inner: Mutex::new(Inner {
                next_seq: 1,
                ring: VecDeque::with_capacity(capacity.max(1)),
                subs: Vec::new(),
                next_sub: 0,
            }),
            latest,
            metrics,
        })
    }

    /// This run's id (a ULID).
    pub fn boot(&self) -> &str {
        &self.boot
    }

    pub fn store(&self) -> &str {
        &self.store
    }

    // A poisoned lock only means a panic elsewhere mid-publish; the data is
    // still consistent enough to keep serving.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes one event and returns it as sent.
    pub fn publish(&self, device: Option<&str>, event: &Event) -> Arc<Published> {
        let now = OffsetDateTime::now_utc();
        let masked = event.masked();
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        // One id for the event, whichever copy a client gets.
        let id = Ulid::new().to_string();
        let json = Utf8Bytes::from(self.envelope(seq, &id, now, device, event));
        let masked_json = masked
            .as_ref()
            .map(|m| Utf8Bytes::from(self.envelope(seq, &id, now, device, m)));
        let p = Arc::new(Published {
            seq,
            kind: event.kind(),
            kind_index: event.kind_index(),
            device: device.map(Into::into),
            json,
            masked_json,
        });
        if inner.ring.len() == self.capacity {
            inner.ring.pop_front();
        }
        inner.ring.push_back(p.clone());
        let mut cut = 0;
        inner.subs.retain(|s| {
            if !s.filter.matches(&p) {
                return true;
            }
            match s.tx.try_send(p.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.overflow.cancel();
                    cut += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        let subs = inner.subs.len();
        drop(inner);
        self.metrics.event_published(p.kind);
        self.metrics.set_subscribers(subs);
        for _ in 0..cut {
            self.metrics.client_cut_off();
        }
        self.latest.send_replace(seq);
        p
    }

    /// Subscribes, atomically with taking the backlog, so nothing is missed or doubled.
    pub fn subscribe(self: &Arc<Self>, filter: Filter, resume: &Resume) -> Subscription {
        let filter = Arc::new(filter);
        let (tx, rx) = mpsc::channel(self.client_queue);
        let overflow = CancellationToken::new();
        let mut inner = self.lock();
        let backlog = self.backlog(&inner, &filter, resume, usize::MAX);
        let id = inner.next_sub;
        inner.next_sub += 1;
        inner.subs.push(Subscriber {
            id,
            filter,
            tx,
            overflow: overflow.clone(),
        });
        self.metrics.set_subscribers(inner.subs.len());
        drop(inner);
        Subscription {
            backlog,
            rx,
            overflow,
            id,
            bus: self.clone(),
        }
    }

    /// The buffered events a resuming client missed, for long-poll.
    /// Returns the backlog and the newest seq published so far.
    pub fn poll(&self, filter: &Filter, resume: &Resume, limit: usize) -> (Vec<Backlog>, u64) {
        let inner = self.lock();
        let b = self.backlog(&inner, filter, resume, limit);
        (b, inner.next_seq - 1)
    }

    /// The last `seq` published (0 before the first); takes the bus lock.
    pub fn latest_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// A receiver that changes whenever something is published.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    fn backlog(
        &self,
        inner: &Inner,
        filter: &Filter,
        resume: &Resume,
        limit: usize,
    ) -> Vec<Backlog> {
        let mut out = Vec::new();
        let last = inner.next_seq - 1;
        let reset = resume.boot.as_deref().is_some_and(|b| b != self.boot);
        let since = match (reset, resume.since) {
            (true, _) => {
                out.push(Backlog::Notice(self.notice(
                    0,
                    "stream.reset",
                    serde_json::json!({
                        "boot": self.boot,
                        "previous_boot": resume.boot,
                    }),
                )));
                0
            }
            (false, Some(s)) => s,
            // No resume point: live events only.
            (false, None) => return out,
        };
        let oldest = inner.ring.front().map_or(last + 1, |p| p.seq);
        // `since` comes from a client: saturate rather than overflow on u64::MAX.
        if since.saturating_add(1) < oldest && since < last {
            let to = oldest - 1;
            out.push(Backlog::Notice(self.notice(
                to,
                "stream.gap",
                serde_json::json!({
                    "from": since + 1,
                    "to": to,
                }),
            )));
        }
        // `limit` counts events only: notices never crowd out what they announce.
        let mut events = 0;
        for p in inner.ring.iter().filter(|p| p.seq > since) {
            if events >= limit {
                break;
            }
            if filter.matches(p) {
                out.push(Backlog::Event(p.clone()));
                events += 1;
            }
        }
        out
    }

    fn notice(&self, seq: u64, kind: &str, data: serde_json::Value) -> String {
        let now = OffsetDateTime::now_utc();
        let id = Ulid::new().to_string();
        self.envelope(seq, &id, now, None, NoticeBody { kind, data })
    }

    fn envelope(
        &self,
        seq: u64,
        id: &str,
        time: OffsetDateTime,
        device: Option<&str>,
        body: impl Serialize,
    ) -> String {
        let e = Envelope {
            seq,
            boot: &self.boot,
            id,
            time: crate::clock::rfc3339_ms(time),
            store: &self.store,
            device,
            body,
        };
        // Serializing strings, numbers and maps cannot fail.
        serde_json::to_string(&e).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posbridge_drivers::CodeKind;

    fn ev(text: &str) -> Event {
        Event::CodeScanned {
            text: text.into(),
            kind: CodeKind::Member,
            symbology: None,
            weighed: None,
        }
    }

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob("card.*", "card.swiped"));
        assert!(glob("*", "x"));
        assert!(glob("*.scanned", "code.scanned"));
        assert!(glob("code.scanned", "code.scanned"));
        assert!(!glob("card.*", "code.scanned"));
        assert!(!glob("card", "card.swiped"));
        assert!(glob("c*d.*d", "card.swiped"));
    }

    #[test]
    fn a_compiled_filter_matches_as_its_globs_and_ids_say() {
        let bus = Bus::new("s", 64, 8, Arc::new(Metrics::default()));
        let scan = bus.publish(Some("scan-1"), &ev("x"));
        let other = bus.publish(Some("scan-2"), &ev("y"));
        let f = |t: &str, d: &str| Filter::from_query(Some(t), Some(d)).expect("filter");
        assert!(f("", "").matches(&scan));
        assert!(f("code.*", "").matches(&scan));
        assert!(f("card.*, *.scanned", "scan-1").matches(&scan));
        assert!(!f("card.*", "").matches(&scan));
        assert!(!f("code.scanned", "scan-1").matches(&other));
        assert!(
            !f("nothing.*", "").matches(&scan),
            "globs matching no kind match nothing"
        );
        assert!(Filter::new(["code.scanned"], ["scan-2"]).matches(&other));
    }

    /// Issue 16: 21,800 patterns in one URI made every publish slow.
    #[test]
    fn filters_over_the_limits_are_refused_naming_the_limit() {
        let many = vec!["card.*"; MAX_FILTER_ENTRIES + 1].join(",");
        let e = Filter::from_query(Some(&many), None).expect_err("too many");
        assert!(e.starts_with("types:") && e.contains("64"), "{e}");
        let at_limit = vec!["card.*"; MAX_FILTER_ENTRIES].join(",");
        assert!(Filter::from_query(Some(&at_limit), None).is_ok());
        let long = "x".repeat(MAX_FILTER_ENTRY_LEN + 1);
        let e = Filter::from_query(None, Some(&long)).expect_err("too long");
        assert!(e.starts_with("devices:") && e.contains("64"), "{e}");
        // Blanks are not entries.
        assert!(Filter::from_query(Some(&",".repeat(10_000)), None).is_ok());
    }

    #[test]
    fn full_queue_cuts_off_only_the_slow_subscriber() {
        let bus = Bus::new("s", 64, 8, Arc::new(Metrics::default()));
        let slow = bus.subscribe(Filter::default(), &Resume::default());
        let mut fast = bus.subscribe(Filter::default(), &Resume::default());
        for i in 0..20 {
            bus.publish(Some("d"), &ev(&i.to_string()));
            while let Ok(p) = fast.rx.try_recv() {
                assert_eq!(p.seq, i + 1);
            }
        }
        assert!(slow.overflow.is_cancelled());
        assert!(!fast.overflow.is_cancelled());
    }

    #[test]
    fn resume_reports_gap_then_the_buffered_rest() {
        let bus = Bus::new("s", 16, 8, Arc::new(Metrics::default()));
        for i in 0..20 {
            bus.publish(Some("d"), &ev(&i.to_string()));
        }
        let resume = Resume {
            since: Some(2),
            boot: Some(bus.boot().to_owned()),
        };
        let (b, last) = bus.poll(&Filter::default(), &resume, 100);
        assert_eq!(last, 20);
        assert!(
            matches!(&b[0], Backlog::Notice(n) if n.contains("\"from\":3") && n.contains("\"to\":4"))
        );
        let seqs: Vec<u64> = b[1..]
            .iter()
            .filter_map(|x| match x {
                Backlog::Event(p) => Some(p.seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, (5..=20).collect::<Vec<_>>());
    }
}
