//! What a customer display shows: the newest request wins. Requests replace
//! the one not yet written, so a burst of totals while the link is slow
//! never queues stale ones behind it; what was last written is shown again
//! when the display comes back.

use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Screen {
    slot: Mutex<Slot>,
    ready: Notify,
}

#[derive(Default)]
struct Slot {
    /// Accepted, not yet written.
    pending: Option<Vec<u8>>,
    /// The last bytes written (or being written).
    shown: Option<Vec<u8>>,
}

impl Screen {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `bytes` as what the display should show next.
    pub fn put(&self, bytes: Vec<u8>) {
        self.slot().pending = Some(bytes);
        self.ready.notify_one();
    }

    /// Waits until something is pending.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// The pending bytes, now counted as shown.
    pub fn take(&self) -> Option<Vec<u8>> {
        let mut s = self.slot();
        let next = s.pending.take()?;
        s.shown = Some(next.clone());
        Some(next)
    }

    /// What to show again after the link reopens: the newest request.
    pub fn current(&self) -> Option<Vec<u8>> {
        let mut s = self.slot();
        match s.pending.take() {
            Some(p) => {
                s.shown = Some(p.clone());
                Some(p)
            }
            None => s.shown.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_request_replaces_the_unwritten_one() {
        let s = Screen::default();
        s.put(b"1".to_vec());
        s.put(b"2".to_vec());
        assert_eq!(s.take(), Some(b"2".to_vec()));
        assert_eq!(s.take(), None);
        assert_eq!(s.current(), Some(b"2".to_vec()));
    }
}
