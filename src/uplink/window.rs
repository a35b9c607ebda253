//! The relay's accounting for one connection, apart from its I/O: which
//! requested publishes are transactions (or print-job outcomes, tracked the
//! same way), the packet id each one got, how many await their PUBACK, and
//! how far this connection has read the outbox. No
//! socket, no clock, no async: the MQTT task tells it what happened and asks
//! it what to do, and the unit tests below play a broker.
//!
//! rumqttc reports `Outgoing::Publish(pkid)` in the order publishes were
//! requested, and the relay is the connection's only publisher, so a FIFO of
//! requests maps packet ids back to transactions.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// A publish whose PUBACK matters: the stored row it carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracked {
    /// A transaction, by its outbox `seq`.
    Tx(i64),
    /// A print job's outcome, by its `remote_status` `seq`.
    Status(i64),
}

/// One connection's publish window. A new connection starts a new one: the
/// outbox, not this, remembers what HQ may lack.
#[derive(Debug)]
pub struct Window {
    limit: usize,
    /// Each requested publish in request order: `None` for those nobody
    /// waits on (status, lookups, events).
    requested: VecDeque<Option<Tracked>>,
    /// Tracked publishes on the wire, by packet id.
    by_pkid: HashMap<u16, Tracked>,
    /// Transactions requested and not yet PUBACKed.
    outstanding: usize,
    /// Print-job outcomes requested and not yet PUBACKed.
    statuses: usize,
    /// The last outcome `seq` read on this connection.
    status_cursor: i64,
    /// The last `seq` read from the outbox on this connection.
    cursor: i64,
    /// Nothing more to read until the outbox says something was stored.
    drained: bool,
}

/// A packet id went out for a publish nobody requested (a bug, or rumqttc
/// changed how it reports publishes).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("packet id {0} went out for a publish the relay did not ask for")]
pub struct Unrequested(pub u16);

impl Window {
    /// At most `limit` transactions await a PUBACK at once.
    pub fn new(limit: usize) -> Window {
        Window {
            limit: limit.max(1),
            requested: VecDeque::new(),
            by_pkid: HashMap::new(),
            outstanding: 0,
            statuses: 0,
            status_cursor: 0,
            cursor: 0,
            drained: false,
        }
    }

    /// How many more transactions may be published now.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.outstanding)
    }

    /// Whether to read the outbox for more: there is room, and it may hold some.
    pub fn wants_more(&self) -> bool {
        !self.drained && self.room() > 0
    }

    /// The last `seq` this connection read; the next read starts after it.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// The last read found nothing: wait for the outbox to store something.
    pub fn drained(&self) -> bool {
        self.drained
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// A read of the outbox returned rows up to `last` (`None`: nothing new).
    pub fn read_to(&mut self, last: Option<i64>) {
        match last {
            Some(seq) => self.cursor = self.cursor.max(seq),
            None => self.drained = true,
        }
    }

    /// The outbox stored something, or PUBACKs made room: read again.
    pub fn wake(&mut self) {
        self.drained = false;
    }

    /// A transaction's publish was handed to the client (a first send or a re-send).
    pub fn requested_tx(&mut self, seq: i64) {
        self.requested.push_back(Some(Tracked::Tx(seq)));
        self.outstanding += 1;
    }

    /// A print job's outcome was handed to the client.
    pub fn requested_status(&mut self, seq: i64) {
        self.requested.push_back(Some(Tracked::Status(seq)));
        self.statuses += 1;
        self.status_cursor = self.status_cursor.max(seq);
    }

    /// Outcomes that may be published now (a few at a time, beside the
    /// transactions' window, within the client's in-flight limit).
    pub fn status_room(&self, limit: usize) -> usize {
        limit.saturating_sub(self.statuses)
    }

    /// The last outcome read on this connection; the next read starts after it.
    pub fn status_cursor(&self) -> i64 {
        self.status_cursor
    }

    /// Any other publish was handed to the client.
    pub fn requested_other(&mut self) {
        self.requested.push_back(None);
    }

    /// The client sent the oldest requested publish with packet id `pkid`.
    pub fn sent(&mut self, pkid: u16) -> Result<(), Unrequested> {
        match self.requested.pop_front() {
            Some(Some(t)) => {
                self.by_pkid.insert(pkid, t);
                Ok(())
            }
            Some(None) => Ok(()),
            None => Err(Unrequested(pkid)),
        }
    }

    /// The broker acknowledged `pkid`: the transaction it carried, if any.
    pub fn puback(&mut self, pkid: u16) -> Option<i64> {
        match self.puback_any(pkid)? {
            Tracked::Tx(seq) => Some(seq),
            Tracked::Status(_) => None,
        }
    }

    /// The broker acknowledged `pkid`: what it carried, if tracked.
    pub fn puback_any(&mut self, pkid: u16) -> Option<Tracked> {
        let t = self.by_pkid.remove(&pkid)?;
        match t {
            Tracked::Tx(_) => self.outstanding = self.outstanding.saturating_sub(1),
            Tracked::Status(_) => self.statuses = self.statuses.saturating_sub(1),
        }
        Some(t)
    }
}

/// `uplink.drain_rate`: at most `per_s` transactions a second, in bursts of
/// at most one second's worth, so a store back from an outage does not
/// push its whole backlog at HQ at once. Time is passed in.
#[derive(Debug)]
pub struct Rate {
    per_s: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Rate {
    pub fn new(per_s: u64) -> Rate {
        let per_s = per_s.max(1) as f64;
        Rate {
            per_s,
            tokens: per_s,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let gained = now.saturating_duration_since(last).as_secs_f64() * self.per_s;
            self.tokens = (self.tokens + gained).min(self.per_s);
        }
        self.last = Some(now);
    }

    /// How many of `want` may go now.
    pub fn allow(&mut self, want: usize, now: Instant) -> usize {
        self.refill(now);
        (self.tokens.floor() as usize).min(want)
    }

    /// `n` went.
    pub fn spend(&mut self, n: usize) {
        self.tokens = (self.tokens - n as f64).max(0.0);
    }

    /// When the next one may go.
    pub fn next_at(&self, now: Instant) -> Instant {
        let short = (1.0 - self.tokens).max(0.0) / self.per_s;
        now + Duration::from_secs_f64(short)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_is_matched_to_its_puback_by_packet_id() {
        let mut w = Window::new(4);
        assert!(w.wants_more());
        w.requested_other(); // the retained "online" status
        w.requested_tx(10);
        w.requested_tx(11);
        w.read_to(Some(11));
        assert_eq!((w.room(), w.cursor()), (2, 11));
        assert_eq!(w.sent(1), Ok(())); // the status
        assert_eq!(w.sent(2), Ok(()));
        assert_eq!(w.sent(3), Ok(()));
        // PUBACKs may come in any order; the status's is not a transaction.
        assert_eq!(w.puback(3), Some(11));
        assert_eq!(w.puback(1), None);
        assert_eq!(w.puback(2), Some(10));
        assert_eq!((w.outstanding(), w.room()), (0, 4));
        assert_eq!(w.puback(2), None, "a duplicate PUBACK counts once");
    }

    #[test]
    fn the_window_closes_when_full_and_opens_on_puback() {
        let mut w = Window::new(2);
        w.requested_tx(1);
        w.requested_tx(2);
        assert!(!w.wants_more(), "full");
        w.sent(7).expect("requested");
        w.sent(8).expect("requested");
        assert_eq!(w.puback(7), Some(1));
        assert!(w.wants_more());
        assert_eq!(w.room(), 1);
    }

    #[test]
    fn a_drained_outbox_is_read_again_only_when_woken() {
        let mut w = Window::new(8);
        w.read_to(None);
        assert!(!w.wants_more());
        w.wake();
        assert!(w.wants_more());
        w.read_to(Some(5));
        w.read_to(Some(3));
        assert_eq!(w.cursor(), 5, "the cursor never goes back");
    }

    #[test]
    fn print_outcomes_are_tracked_beside_transactions() {
        let mut w = Window::new(2);
        w.requested_tx(1);
        w.requested_status(40);
        w.requested_status(41);
        assert_eq!((w.room(), w.status_room(4), w.status_cursor()), (1, 2, 41));
        for pkid in 1..=3 {
            w.sent(pkid).expect("requested");
        }
        assert_eq!(w.puback_any(2), Some(Tracked::Status(40)));
        assert_eq!(w.puback(3), None, "an outcome is not a transaction");
        assert_eq!(w.puback(1), Some(1));
        assert_eq!((w.room(), w.status_room(4)), (2, 4));
    }

    #[test]
    fn a_packet_id_nobody_asked_for_is_reported() {
        let mut w = Window::new(8);
        assert_eq!(w.sent(9), Err(Unrequested(9)));
    }

    /// A re-send (HQ acks nothing) and a reconnect: packet ids are reused by
    /// the client, and a fresh window after a reconnect knows nothing of the
    /// old one; what was not PUBACKed is read from the outbox again.
    #[test]
    fn resends_and_reconnects_keep_each_packet_id_to_its_transaction() {
        let mut w = Window::new(8);
        w.requested_tx(1);
        w.sent(1).expect("requested");
        assert_eq!(w.puback(1), Some(1));
        w.requested_tx(1); // published again, same seq
        w.sent(1).expect("requested"); // packet id 1 is free again
        assert_eq!(w.outstanding(), 1);
        // The connection drops before the PUBACK.
        let mut next = Window::new(8);
        assert_eq!((next.cursor(), next.outstanding()), (0, 0));
        assert_eq!(next.puback(1), None, "an old connection's packet id");
        next.requested_tx(1);
        next.sent(1).expect("requested");
        assert_eq!(next.puback(1), Some(1));
    }

    #[test]
    fn the_drain_rate_allows_a_second_of_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = Rate::new(10);
        assert_eq!(r.allow(64, t0), 10, "one second's worth at once");
        r.spend(10);
        assert_eq!(r.allow(64, t0), 0);
        let next = r.next_at(t0);
        assert_eq!(next - t0, Duration::from_millis(100));
        assert_eq!(r.allow(64, t0 + Duration::from_millis(100)), 1);
        r.spend(1);
        // Idle time does not bank more than a second.
        assert_eq!(r.allow(64, t0 + Duration::from_secs(60)), 10);
        // Over a simulated minute, at most rate × seconds + burst go.
        let mut r = Rate::new(5);
        let mut sent = 0;
        let mut now = t0;
        while now < t0 + Duration::from_secs(60) {
            let n = r.allow(64, now);
            r.spend(n);
            sent += n;
            now = r.next_at(now).max(now + Duration::from_millis(1));
        }
        assert!((300..=305).contains(&sent), "{sent}");
    }
}
