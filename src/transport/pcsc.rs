//! PC/SC readers through pcscd. One blocking thread per device waits in
//! `SCardGetStatusChange` on every matching reader plus the PnP pseudo-reader,
//! so taps, removals and readers coming and going are seen without polling.
//! `Context::cancel` wakes it to stop or to re-read. The APDU sequences and
//! ATR classification are sans-IO, in `posbridge_drivers::pcsc`.

use super::OpenError;
use crate::config::DeviceConfig;
use posbridge_drivers::pcsc::{self as apdu, ReadPlan};
use posbridge_drivers::{CardType, Event};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Longest wait in SCardGetStatusChange before checking stop and re-read flags.
const WAKE: std::time::Duration = std::time::Duration::from_secs(1);

pub enum Msg {
    Event(Event),
    /// pcscd went away or failed; the link is over.
    Lost(String),
}

pub struct PcscLink {
    rx: mpsc::Receiver<Msg>,
    ctx: pcsc::Context,
    stop: Arc<AtomicBool>,
    reread: Arc<AtomicBool>,
}

impl Drop for PcscLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.ctx.cancel();
    }
}

impl PcscLink {
    pub fn open(cfg: &DeviceConfig) -> Result<PcscLink, OpenError> {
        let opts: crate::family::pcsc::Options =
            crate::family::options(cfg).map_err(|e| OpenError::from(e.to_string()))?;
        let plan = opts
            .read_plan()
            .map_err(|e| OpenError::from(e.to_string()))?;
        let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(|e| {
            OpenError::from(format!(
                "cannot reach pcscd ({e}); is it running? (systemctl start pcscd.socket)"
            ))
        })?;
        let filter = opts.reader.unwrap_or_else(|| "*".into());
        let (tx, rx) = mpsc::channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let reread = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            ctx: ctx.clone(),
            filter,
            plan,
            tx,
            stop: stop.clone(),
            reread: reread.clone(),
        };
        std::thread::Builder::new()
            .name(format!("pcsc-{}", cfg.id))
            .spawn(move || worker.run())
            .map_err(|e| OpenError::from(format!("cannot start the PC/SC thread: {e}")))?;
        Ok(PcscLink {
            rx,
            ctx,
            stop,
            reread,
        })
    }

    pub async fn next(&mut self) -> Option<Msg> {
        self.rx.recv().await
    }

    /// Reads every card on the readers again (`POST /v1/devices/{id}/read`).
    pub fn reread(&self) {
        self.reread.store(true, Ordering::Relaxed);
        let _ = self.ctx.cancel();
    }
}

struct Worker {
    ctx: pcsc::Context,
    filter: String,
    plan: Option<ReadPlan>,
    tx: mpsc::Sender<Msg>,
    stop: Arc<AtomicBool>,
    reread: Arc<AtomicBool>,
}

impl Worker {
    fn matches(&self, name: &CStr) -> bool {
        self.filter == "*" || name.to_string_lossy().contains(&self.filter)
    }

    fn send(&self, m: Msg) -> bool {
        self.tx.blocking_send(m).is_ok()
    }

    // Over 80 lines: one blocking status-change loop over the readers; its reader table is the state every step changes.

    fn run(self) {
        let mut states = vec![pcsc::ReaderState::new(
            pcsc::PNP_NOTIFICATION(),
            pcsc::State::UNAWARE,
        )];
        // The card on each reader (UID, pcscd's event count when read), for
        // card.removed and for telling a swap from a card that stayed.
        let mut present: HashMap<CString, (String, u32)> = HashMap::new();
        if !self.refresh_readers(&mut states, &mut present) {
            return;
        }
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            for rs in &mut states {
                rs.sync_current_state();
            }
            // A finite wait: SCardCancel is not latched, so a cancel that lands
            // while we are not waiting would otherwise be lost until the next tap.
            let waited = self.ctx.get_status_change(WAKE, &mut states);
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            if self.reread.swap(false, Ordering::Relaxed) {
                let names: Vec<CString> = present.keys().cloned().collect();
                for name in names {
                    if let Some(ev) = self.read_card(&name) {
                        if !self.send(Msg::Event(ev)) {
                            return;
                        }
                    }
                }
            }
            match waited {
                Ok(()) => {}
                Err(pcsc::Error::Cancelled) | Err(pcsc::Error::Timeout) => continue,
                Err(e) => {
                    let _ = self.send(Msg::Lost(format!("pcscd: {e} (stopped or restarted?)")));
                    return;
                }
            }
            let pnp_changed = states
                .first()
                .is_some_and(|s| s.event_state().contains(pcsc::State::CHANGED));
            for rs in states.iter().skip(1) {
                let ev = rs.event_state();
                if !ev.contains(pcsc::State::CHANGED) {
                    continue;
                }
                let name = rs.name().to_owned();
                let count = rs.event_count();
                let has_card = ev.contains(pcsc::State::PRESENT) && !ev.contains(pcsc::State::MUTE);
                let gone = ev.intersects(pcsc::State::UNKNOWN | pcsc::State::UNAVAILABLE);
                // PRESENT in both snapshots but pcscd counted insertions in between:
                // the card was swapped (or lifted and re-tapped) while we were busy.
                let swapped = has_card
                    && !gone
                    && present
                        .get(&name)
                        .is_some_and(|(_, seen)| *seen != count && count != 0);
                if swapped {
                    if let Some((uid, _)) = present.remove(&name) {
                        let reader = name.to_string_lossy().into_owned();
                        if !self.send(Msg::Event(Event::CardRemoved { uid, reader })) {
                            return;
                        }
                    }
                }
                match (has_card && !gone, present.contains_key(&name)) {
                    (true, false) => {
                        let ev = self.read_card(&name);
                        // Remembered even when unreadable, so the removal is still reported.
                        let uid = match &ev {
                            Some(Event::CardTapped { uid, .. }) => uid.clone(),
                            _ => String::new(),
                        };
                        present.insert(name, (uid, count));
                        if let Some(ev) = ev {
                            if !self.send(Msg::Event(ev)) {
                                return;
                            }
                        }
                    }
                    (false, true) => {
                        let uid = present.remove(&name).map(|p| p.0).unwrap_or_default();
                        let reader = name.to_string_lossy().into_owned();
                        if !self.send(Msg::Event(Event::CardRemoved { uid, reader })) {
                            return;
                        }
                    }
                    _ => {}
                }
            }
            if pnp_changed && !self.refresh_readers(&mut states, &mut present) {
                return;
            }
        }
    }

    /// Tracks exactly the readers pcscd lists now that match the filter. A
    /// reader that vanished with a card on it reports that card removed.
    /// Returns false when the link is gone.
    fn refresh_readers(
        &self,
        states: &mut Vec<pcsc::ReaderState>,
        present: &mut HashMap<CString, (String, u32)>,
    ) -> bool {
        let readers = self.ctx.list_readers_owned().unwrap_or_default();
        let wanted: Vec<CString> = readers.into_iter().filter(|r| self.matches(r)).collect();
        states.retain(|s| {
            s.name() == pcsc::PNP_NOTIFICATION() || wanted.iter().any(|w| w.as_c_str() == s.name())
        });
        for w in wanted {
            if !states.iter().any(|s| s.name() == w.as_c_str()) {
                tracing::info!(reader = %w.to_string_lossy(), "PC/SC reader appeared");
                states.push(pcsc::ReaderState::new(w, pcsc::State::UNAWARE));
            }
        }
        let vanished: Vec<CString> = present
            .keys()
            .filter(|name| !states.iter().any(|s| s.name() == name.as_c_str()))
            .cloned()
            .collect();
        for name in vanished {
            if let Some((uid, _)) = present.remove(&name) {
                let reader = name.to_string_lossy().into_owned();
                if !self.send(Msg::Event(Event::CardRemoved { uid, reader })) {
                    return false;
                }
            }
        }
        true
    }

    /// Connects to the card on `reader` and reads UID, ATR and configured blocks.
    fn read_card(&self, reader: &CStr) -> Option<Event> {
        let reader_name = reader.to_string_lossy().into_owned();
        let card = match self
            .ctx
            .connect(reader, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(reader = %reader_name, error = %e, "card present but cannot connect");
                return None;
            }
        };
        let mut names = [0u8; 256];
        let mut atr_buf = [0u8; 64];
        let atr = card
            .status2(&mut names, &mut atr_buf)
            .map(|s| s.atr().to_vec())
            .unwrap_or_default();
        let mut rbuf = [0u8; 258];
        let uid = match card
            .transmit(&apdu::get_uid(), &mut rbuf)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                apdu::check(r)
                    .map(<[u8]>::to_vec)
                    .map_err(|e| e.to_string())
            }) {
            Ok(u) => apdu::hex_upper(&u),
            Err(e) => {
                tracing::warn!(reader = %reader_name, error = %e, "card present but its UID cannot be read");
                return None;
            }
        };
        let card_type: CardType = apdu::classify_atr(&atr);
        let (blocks, read_error) = match &self.plan {
            None => (None, None),
            Some(plan) => {
                let steps = plan.steps();
                let mut responses = Vec::with_capacity(steps.len());
                for s in &steps {
                    let r = card
                        .transmit(&s.apdu, &mut rbuf)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default();
                    let failed = apdu::check(&r).is_err();
                    responses.push(r);
                    if failed {
                        break;
                    }
                }
                match apdu::collect(&steps, &responses) {
                    Ok(b) => (Some(b), None),
                    Err(e) => (None, Some(e.to_string())),
                }
            }
        };
        Some(Event::CardTapped {
            uid,
            atr: apdu::hex_upper(&atr),
            card_type,
            reader: reader_name,
            decimal: None,
            blocks,
            read_error,
        })
    }
}
