//! Caller popups and the call log. Watches the bus for `call.ringing` and
//! `call.ended` (from any caller-ID device), looks each caller up (member
//! cache, then HQ), publishes `call.popup`, and keeps the recent calls for
//! `GET /v1/calls` and the `/popup` page.

use crate::event::{Bus, Filter, Published, Resume};
use crate::uplink::{Source, Uplink};
use posbridge_drivers::callerid::{PRIVATE, UNAVAILABLE};
use posbridge_drivers::Event;
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Calls kept for `GET /v1/calls` (in memory: a restart starts a new log).
const KEEP: usize = 500;

/// One call, as `GET /v1/calls` lists it.
#[derive(Clone, Debug, Serialize)]
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
}

fn lock(log: &Log) -> std::sync::MutexGuard<'_, VecDeque<Call>> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

fn update(log: &Log, call_id: &str, f: impl FnOnce(&mut Call)) {
    if let Some(c) = lock(log).iter_mut().rev().find(|c| c.call_id == call_id) {
        f(c);
    }
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Call>> {
        lock(&self.log)
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

    /// Starts watching the bus for calls.
    pub fn start(
        bus: &Arc<Bus>,
        uplink: &Arc<Uplink>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Arc<Calls> {
        let calls = Arc::new(Calls {
            log: Arc::new(Mutex::new(VecDeque::new())),
        });
        let (c, bus, uplink, cancel) = (calls.clone(), bus.clone(), uplink.clone(), cancel.clone());
        let t = tracker.clone();
        tracker.spawn(async move {
            loop {
                let mut sub = bus.subscribe(
                    Filter::from_query(Some("call.ringing,call.ended"), None),
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
                            Some(p) => c.on_event(&p, &bus, &uplink, &t),
                            None => return,
                        },
                    }
                }
            }
        });
        calls
    }

    fn on_event(&self, p: &Published, bus: &Arc<Bus>, uplink: &Arc<Uplink>, tracker: &TaskTracker) {
        let seen = std::time::Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(p.json.as_str()) else {
            return;
        };
        let d = &v["data"];
        let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
        let Some(call_id) = s("call_id") else { return };
        if p.kind == "call.ended" {
            let answered = d.get("answered").and_then(Value::as_bool);
            update(&self.log, &call_id, |c| {
                c.ended = true;
                c.answered = answered;
                c.missed = answered != Some(true);
            });
            return;
        }
        let number = s("number").unwrap_or_else(|| UNAVAILABLE.into());
        {
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
        }
        let device = p.device.clone();
        let (bus, uplink) = (bus.clone(), uplink.clone());
        let lookup_key = s("normalized").unwrap_or_else(|| number.clone());
        let log = self.log.clone();
        tracker.spawn(async move {
            let (member, source) = if number == PRIVATE || number == UNAVAILABLE {
                (None, Source::None)
            } else {
                uplink.lookup(&lookup_key).await
            };
            let took_ms = seen.elapsed().as_millis() as u64;
            update(&log, &call_id, |c| {
                c.member.clone_from(&member);
                c.source = Some(source);
            });
            bus.publish(
                device.as_deref(),
                &Event::CallPopup {
                    call_id,
                    number,
                    member,
                    source: source.name().into(),
                    took_ms,
                },
            );
        });
    }
}
