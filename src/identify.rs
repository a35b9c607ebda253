//! Members identified by what they carry: watches the bus for a swiped
//! magstripe card, a tapped RFID card, a scanned member code and a read ID
//! card, finds the member (the cache, then HQ) and publishes
//! `member.identified` on the same device. An ID card is looked up by the
//! HMAC of its number (`members.id_key`); the number itself goes nowhere.

use crate::config::{Config, IDENTIFIERS};
use crate::event::{Bus, Filter, Published, Resume};
use crate::uplink::{Source, Uplink};
use posbridge_drivers::Event;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The events that carry a member's card.
const CARD_EVENTS: [&str; 4] = ["card.swiped", "card.tapped", "code.scanned", "idcard.read"];

/// Which devices identify: `identify` when set, else the default.
struct Policy {
    devices: HashMap<String, Option<bool>>,
    /// `[uplink]` is configured: HQ can always be asked.
    uplink: bool,
}

impl Policy {
    fn wants(&self, device: &str, uplink: &Uplink) -> bool {
        match self.devices.get(device) {
            Some(Some(set)) => *set,
            // Unset: when HQ can be asked or the cache has members to find.
            Some(None) => self.uplink || uplink.members.has_any(),
            None => false,
        }
    }
}

/// What a card event says: how it was read and the card as the cache files it.
struct Read {
    via: &'static str,
    /// The values to try, best first (an EM4100 tag: its UID, then its printed number).
    values: Vec<String>,
}

/// The card in a card event, or `None` for events that carry no member card
/// (a payment code, a weighed label). An ID card without `members.id_key`
/// has no value to look up: it is answered `none`.
fn read(kind: &str, d: &Value, uplink: &Uplink) -> Option<Read> {
    let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
    match kind {
        "card.swiped" => Some(Read {
            via: "magstripe",
            values: s("card_no").into_iter().collect(),
        }),
        "card.tapped" => Some(Read {
            via: "rfid",
            values: s("uid").into_iter().chain(s("decimal")).collect(),
        }),
        "code.scanned" if d.get("kind").and_then(Value::as_str) == Some("member") => Some(Read {
            via: "code",
            values: s("text").into_iter().collect(),
        }),
        "idcard.read" => Some(Read {
            via: "idcard",
            values: s("id_number")
                .and_then(|n| uplink.members.id_hmac(&n))
                .into_iter()
                .collect(),
        }),
        _ => None,
    }
}

/// Which devices may identify members, and their `identify`: read at start,
/// so a reload that changes it is reported as needing a restart.
pub fn readers(config: &Config) -> HashMap<String, Option<bool>> {
    config
        .devices
        .iter()
        .filter(|d| IDENTIFIERS.contains(&d.driver.as_str()))
        .map(|d| (d.id.clone(), d.identify))
        .collect()
}

/// Starts the watcher.
pub fn start(
    config: &Config,
    bus: &Arc<Bus>,
    uplink: &Arc<Uplink>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) {
    let devices = readers(config);
    if devices.values().all(|v| *v == Some(false)) {
        return;
    }
    let policy = Arc::new(Policy {
        devices,
        uplink: config.uplink.is_some(),
    });
    let (bus, uplink, cancel, t) = (bus.clone(), uplink.clone(), cancel.clone(), tracker.clone());
    tracker.spawn(async move {
        loop {
            let mut sub = bus.subscribe(Filter::new(CARD_EVENTS, []), &Resume::default());
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = sub.overflow.cancelled() => {
                        tracing::warn!("the member identifier fell behind the bus; resubscribing");
                        break;
                    }
                    p = sub.rx.recv() => match p {
                        Some(p) => on_event(&p, &policy, &bus, &uplink, &t),
                        None => return,
                    },
                }
            }
        }
    });
}

fn on_event(
    p: &Published,
    policy: &Policy,
    bus: &Arc<Bus>,
    uplink: &Arc<Uplink>,
    tracker: &TaskTracker,
) {
    let seen = std::time::Instant::now();
    let Some(device) = p.device.clone() else {
        return;
    };
    if !policy.wants(&device, uplink) {
        return;
    }
    // The full event: an ID card's number is hashed here and dropped.
    let Ok(v) = serde_json::from_str::<Value>(p.json.as_str()) else {
        return;
    };
    let Some(read) = read(p.kind, &v["data"], uplink) else {
        return;
    };
    let event_id = v["id"].as_str().unwrap_or_default().to_owned();
    let (bus, uplink) = (bus.clone(), uplink.clone());
    tracker.spawn(async move {
        // Every form of the card in the cache first; then HQ, once.
        let (mut member, mut source) = (None, Source::None);
        for value in &read.values {
            (member, source) = uplink.lookup_card(read.via, value, false).await;
            if member.is_some() {
                break;
            }
        }
        if let (None, Some(first)) = (&member, read.values.first()) {
            (member, source) = uplink.lookup_card(read.via, first, true).await;
        }
        let took_ms = seen.elapsed().as_millis() as u64;
        tracing::debug!(
            via = read.via,
            source = source.name(),
            took_ms,
            "member identified"
        );
        bus.publish(
            Some(&device),
            &Event::MemberIdentified {
                via: read.via.into(),
                event_id,
                member,
                source: source.name().into(),
                took_ms,
            },
        );
    });
}
