//! Magnetic-stripe readers that deliver tracks as ASCII text: serial (RS-232,
//! USB CDC-ACM) and keyboard-wedge readers, whose keystrokes the daemon turns
//! into text before calling us (PROTOCOLS.md §3).
//!
//! Track 1 is `%` … `?` (6-bit alphanumeric, `^` separates fields), track 2 is
//! `;` … `?` (5-bit BCD, `=` — or `D` on some readers — separates the number),
//! track 3 is `;` … `?` or `+` … `?`.
//!
//! # Where a swipe ends
//!
//! A swipe is the tracks of one card, in track order. Readers send them in one
//! burst, on one line or one line per track, with or without a line end, so
//! line ends are only separators and never end a swipe by themselves. A swipe
//! ends when:
//! - no byte arrives for [`Options::idle_ms`] (the caller's timer fires);
//! - a start sentinel arrives that cannot belong to it: `%` once any track is
//!   held (track 1 always comes first), `;` or `+` once track 3 is held. A `;`
//!   after a held track 2 is track 3, which is how readers send an ISO track 3;
//! - it holds track 3: nothing can follow, so it is decided at once.
//!
//! So two swipes in one read decode as two swipes whenever the second cannot
//! continue the first (every reader that sends track 1 or track 3). Known
//! limit: two track-2-only swipes less than `idle_ms` apart read as one card's
//! tracks 2 and 3. No hand swipes that fast, and the alternative — a `;` after
//! a line end starting a new swipe — would turn the track 3 of a bank card on a
//! one-track-per-line reader into a "member" swipe of its own.
//!
//! Bytes outside any `start … ?` pair (noise from a re-plugged reader, a track
//! cut off by a control byte or a new sentinel, a track over
//! [`MAX_TRACK_LEN`]) are counted and reported as one [`Action::Malformed`]
//! per run, when the next track is complete or the timer fires; they never
//! change the swipe being read. A track still open when the timer fires is
//! unreadable.
//!
//! # Payment cards
//!
//! PCI DSS forbids keeping bank-card track data. Every swipe passes
//! [`is_payment_card`] before anything is emitted; a bank card becomes
//! `card.rejected` with the masked number, and its track bytes are
//! overwritten before their buffers are freed. Track text never appears in
//! [`Action::Malformed`] messages or in this module's `Debug` output.

use crate::{Action, Event, Instant, Protocol, RejectReason, Tracks};
use std::fmt;

/// Longest track accepted, in characters between the sentinels. ISO 7811
/// tracks hold at most 79 (track 1), 40 (track 2) and 107 (track 3).
pub const MAX_TRACK_LEN: usize = 120;

/// Default [`Options::idle_ms`].
pub const DEFAULT_IDLE_MS: u64 = 150;

/// Settings a magstripe device takes from its config.
#[derive(Clone, Debug)]
pub struct Options {
    /// Silence, in milliseconds, after which the swipe being read is decided.
    /// Readers send all tracks of a swipe within a few milliseconds (wedges
    /// within tens); people cannot swipe twice within several hundred.
    pub idle_ms: u64,
    /// The reader sends one LRC character after each track's end sentinel
    /// (serial readers in some modes; never keyboard wedges), as a character of
    /// the track's own encoding (`0x20 + v` on track 1, `0x30 + v` on tracks 2
    /// and 3). A wrong or missing LRC on a readable track makes the swipe
    /// `card.rejected` with `bad_lrc` (a payment card is still `payment_card`).
    pub lrc: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            idle_ms: DEFAULT_IDLE_MS,
            lrc: false,
        }
    }
}

/// One track position of the swipe being read.
enum Slot {
    Empty,
    /// The reader reported the track as failed (`E`), it was empty, or it was
    /// still open when the swipe ended.
    Unreadable,
    /// Characters between the sentinels: printable ASCII only.
    Data(Vec<u8>),
}

impl Slot {
    fn is_empty(&self) -> bool {
        matches!(self, Slot::Empty)
    }
}

/// The LRC character due right after a track's end sentinel.
#[derive(Clone, Copy)]
struct LrcDue {
    slot: usize,
    /// XOR of the track's character values, sentinels included.
    expected: u8,
    readable: bool,
}

/// The magnetic-stripe reader protocol.
pub struct Magstripe {
    opts: Options,
    /// The open track's slot (0 = track 1), or `None` between tracks.
    open: Option<usize>,
    /// The open track's characters. Its capacity is reserved up front and
    /// never exceeded, so pushes never reallocate: a reallocation would leave
    /// a copy of card data in freed memory that [`wipe`] cannot reach.
    buf: Vec<u8>,
    /// Running LRC of the open track.
    lrc_acc: u8,
    lrc_due: Option<LrcDue>,
    /// Tracks 1, 2 and 3 of the swipe being read.
    slots: [Slot; 3],
    bad_lrc: bool,
    /// Bytes skipped outside any track since the last report.
    garbage: usize,
    /// Whether an over-long track is among them.
    overlong: bool,
    deadline: Option<Instant>,
}

impl Magstripe {
    /// A reader with nothing read yet.
    pub fn new(opts: Options) -> Self {
        Magstripe {
            opts,
            open: None,
            buf: Vec::with_capacity(MAX_TRACK_LEN),
            lrc_acc: 0,
            lrc_due: None,
            slots: [Slot::Empty, Slot::Empty, Slot::Empty],
            bad_lrc: false,
            garbage: 0,
            overlong: false,
            deadline: None,
        }
    }

    /// Whether anything waits for more bytes or the timer.
    fn pending(&self) -> bool {
        self.open.is_some()
            || self.lrc_due.is_some()
            || self.garbage > 0
            || self.slots.iter().any(|s| !s.is_empty())
    }

    /// Highest track slot the swipe holds.
    fn last_slot(&self) -> Option<usize> {
        self.slots.iter().rposition(|s| !s.is_empty())
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Action>) {
        if let Some(due) = self.lrc_due.take() {
            let consumed = self.take_lrc(due, b);
            self.finish_if_full(out);
            if consumed {
                return;
            }
        }
        match self.open {
            Some(slot) => self.in_track(slot, b, out),
            None => match b {
                b'\r' | b'\n' => {}
                b'%' | b';' | b'+' => self.start(b, out),
                _ => self.garbage = self.garbage.saturating_add(1),
            },
        }
    }

    fn in_track(&mut self, slot: usize, b: u8, out: &mut Vec<Action>) {
        match b {
            b'?' => self.close_track(slot, out),
            // A new start sentinel means the open track was cut off (noise
            // that happened to hold a sentinel, or a reader restarting).
            // `+` is a valid track-1 character but not a BCD one.
            b'%' | b';' => {
                self.abandon_track();
                self.start(b, out);
            }
            b'+' if slot != 0 => {
                self.abandon_track();
                self.start(b, out);
            }
            0x20..=0x7e => {
                if self.buf.len() >= MAX_TRACK_LEN {
                    self.abandon_track();
                    self.overlong = true;
                    self.garbage = self.garbage.saturating_add(1);
                } else {
                    self.buf.push(b);
                    self.lrc_acc ^= char_value(slot, b);
                }
            }
            // A line end inside a track: the track is cut off; the line end
            // itself is only a separator.
            b'\r' | b'\n' => self.abandon_track(),
            _ => {
                self.abandon_track();
                self.garbage = self.garbage.saturating_add(1);
            }
        }
    }

    /// The open track is garbage: count its bytes (sentinel included) and wipe it.
    fn abandon_track(&mut self) {
        self.garbage = self.garbage.saturating_add(self.buf.len() + 1);
        wipe_vec(&mut self.buf);
        self.open = None;
    }

    fn start(&mut self, sentinel: u8, out: &mut Vec<Action>) {
        let slot_for = |last: Option<usize>| match sentinel {
            b'%' => 0,
            b';' if last == Some(1) => 2,
            b';' => 1,
            _ => 2,
        };
        let mut slot = slot_for(self.last_slot());
        if self.last_slot().is_some_and(|last| slot <= last) {
            self.finish_swipe(out);
            slot = slot_for(None);
        }
        self.open = Some(slot);
        self.lrc_acc = char_value(slot, sentinel);
    }

    fn close_track(&mut self, slot: usize, out: &mut Vec<Action>) {
        // A real track ends the run of garbage before it: report the run once,
        // however many stray sentinels it held.
        self.flush_garbage(out);
        self.open = None;
        let expected = self.lrc_acc ^ char_value(slot, b'?');
        let mut data = std::mem::replace(&mut self.buf, Vec::with_capacity(MAX_TRACK_LEN));
        let readable = !(data.is_empty() || data.eq_ignore_ascii_case(b"E"));
        self.slots[slot] = if readable {
            Slot::Data(data)
        } else {
            wipe_vec(&mut data);
            Slot::Unreadable
        };
        if self.opts.lrc {
            self.lrc_due = Some(LrcDue {
                slot,
                expected,
                readable,
            });
        } else {
            self.finish_if_full(out);
        }
    }

    /// Checks the byte after an end sentinel as an LRC. Returns whether it was
    /// one (consumed). The LRC is sent as a character of the track's own
    /// encoding, so a byte outside that range means it is missing. After a
    /// failed (`E`) track only the exact LRC is taken: some readers send none
    /// there, and the next track's sentinel must not be swallowed.
    fn take_lrc(&mut self, due: LrcDue, b: u8) -> bool {
        let value = if due.slot == 0 {
            (0x20..=0x5f).contains(&b).then_some(b.wrapping_sub(0x20))
        } else {
            (0x30..=0x3f).contains(&b).then_some(b & 0x0f)
        };
        match (due.readable, value) {
            (true, Some(v)) => {
                self.bad_lrc |= v != due.expected;
                true
            }
            (true, None) => {
                self.bad_lrc = true;
                false
            }
            (false, Some(v)) => v == due.expected,
            (false, None) => false,
        }
    }

    /// A swipe holding track 3 cannot grow: decide it now.
    fn finish_if_full(&mut self, out: &mut Vec<Action>) {
        if !self.slots[2].is_empty() && self.open.is_none() && self.lrc_due.is_none() {
            self.finish_swipe(out);
        }
    }

    /// Decides the swipe being read, emits its event and wipes its data.
    fn finish_swipe(&mut self, out: &mut Vec<Action>) {
        if let Some(slot) = self.open.take() {
            wipe_vec(&mut self.buf);
            self.slots[slot] = Slot::Unreadable;
        }
        if let Some(due) = self.lrc_due.take() {
            self.bad_lrc |= due.readable;
        }
        let bad_lrc = std::mem::take(&mut self.bad_lrc);
        if self.slots.iter().all(Slot::is_empty) {
            return;
        }
        let [t1, t2, t3] =
            std::mem::replace(&mut self.slots, [Slot::Empty, Slot::Empty, Slot::Empty]);
        let tracks = Tracks {
            t1: slot_text(t1),
            t2: slot_text(t2),
            t3: slot_text(t3),
        };
        out.push(Action::Emit(decide(tracks, bad_lrc)));
    }

    fn flush_garbage(&mut self, out: &mut Vec<Action>) {
        let n = std::mem::take(&mut self.garbage);
        let overlong = std::mem::take(&mut self.overlong);
        if n > 0 {
            out.push(Action::Malformed(format!(
                "{n} byte{} outside any track skipped{}",
                if n == 1 { "" } else { "s" },
                if overlong {
                    " (a track longer than 120 characters)"
                } else {
                    ""
                }
            )));
        }
    }

    /// Overwrites and forgets everything held (transport reopened, dropped).
    fn wipe_all(&mut self) {
        wipe_vec(&mut self.buf);
        for slot in &mut self.slots {
            if let Slot::Data(d) = slot {
                wipe_vec(d);
            }
            *slot = Slot::Empty;
        }
        self.open = None;
        self.lrc_acc = 0;
        self.lrc_due = None;
        self.bad_lrc = false;
        self.garbage = 0;
        self.overlong = false;
        self.deadline = None;
    }
}

/// Hand-written so buffers holding track data are never printed.
impl fmt::Debug for Magstripe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Magstripe")
            .field("opts", &self.opts)
            .field("open_track", &self.open.map(|s| s + 1))
            .field(
                "tracks_held",
                &self.slots.iter().filter(|s| !s.is_empty()).count(),
            )
            .field("garbage", &self.garbage)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Drop for Magstripe {
    fn drop(&mut self) {
        self.wipe_all();
    }
}

impl Protocol for Magstripe {
    fn handle_open(&mut self, _now: Instant, _out: &mut Vec<Action>) {
        self.wipe_all();
    }

    fn handle_bytes(&mut self, now: Instant, bytes: &[u8], out: &mut Vec<Action>) {
        for &b in bytes {
            self.byte(b, out);
        }
        if !self.pending() {
            self.deadline = None;
        } else if !bytes.is_empty() {
            let at = now.plus_ms(self.opts.idle_ms);
            self.deadline = Some(at);
            out.push(Action::SetTimer(at));
        }
    }

    fn handle_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(at) = self.deadline else { return };
        if now < at {
            // Early call: the reader may still be sending. Keep waiting.
            out.push(Action::SetTimer(at));
            return;
        }
        self.deadline = None;
        self.finish_swipe(out);
        self.flush_garbage(out);
    }
}

/// A character's value for the LRC: 6-bit (`c - 0x20`) on track 1, the low
/// four bits (`c - 0x30` for the BCD set) on tracks 2 and 3.
fn char_value(slot: usize, c: u8) -> u8 {
    if slot == 0 {
        c.wrapping_sub(0x20) & 0x3f
    } else {
        c & 0x0f
    }
}

fn slot_text(slot: Slot) -> Option<String> {
    match slot {
        // Track bytes are printable ASCII, so this never fails; if it did,
        // the bytes are wiped and the track counts as unreadable.
        Slot::Data(d) => String::from_utf8(d)
            .map_err(|e| wipe_vec(&mut e.into_bytes()))
            .ok(),
        Slot::Empty | Slot::Unreadable => None,
    }
}

/// The event for a finished swipe. Payment cards are checked first and win
/// over every other outcome.
fn decide(tracks: Tracks, bad_lrc: bool) -> Event {
    if tracks.t1.is_none() && tracks.t2.is_none() && tracks.t3.is_none() {
        return Event::CardRejected {
            reason: RejectReason::Unreadable,
            masked: None,
        };
    }
    if let Some(pan) = payment_pan(&tracks) {
        let masked = pan.and_then(masked_number);
        wipe_tracks(tracks);
        return Event::CardRejected {
            reason: RejectReason::PaymentCard,
            masked,
        };
    }
    let card_no = card_no(&tracks);
    if bad_lrc {
        let masked = card_no.as_deref().and_then(masked_number);
        if let Some(no) = card_no {
            wipe_vec(&mut no.into_bytes());
        }
        wipe_tracks(tracks);
        return Event::CardRejected {
            reason: RejectReason::BadLrc,
            masked,
        };
    }
    match card_no {
        Some(card_no) => Event::CardSwiped { card_no, tracks },
        None => {
            wipe_tracks(tracks);
            Event::CardRejected {
                reason: RejectReason::Unreadable,
                masked: None,
            }
        }
    }
}

/// `mask(number)` when the number is digits (spaces aside), else nothing: a
/// masked non-number tells the cashier nothing.
fn masked_number(number: &str) -> Option<String> {
    digit_count(number).filter(|&n| n > 0).map(|_| mask(number))
}

/// The member number: track 2's number field (before `=` or `D`, or the whole
/// track), else track 1's (after the format code, before the first `^`),
/// else track 3's (before the first `=`), spaces removed; the first that is
/// not empty.
fn card_no(tracks: &Tracks) -> Option<String> {
    let fields = [
        tracks.t2.as_deref().map(track2_number),
        tracks.t1.as_deref().map(track1_number),
        tracks
            .t3
            .as_deref()
            .map(|t| t.split('=').next().unwrap_or_default()),
    ];
    fields
        .into_iter()
        .flatten()
        .map(|f| f.chars().filter(|&c| c != ' ').collect::<String>())
        .find(|f| !f.is_empty())
}

/// Track 2's number field: up to the first `=`, or the `D` some readers send
/// instead (`d` when the keyboard's Caps Lock was on).
fn track2_number(t: &str) -> &str {
    t.split(['=', 'D', 'd']).next().unwrap_or_default()
}

/// Track 1's number field: after the format code (a letter), up to the first `^`.
fn track1_number(t: &str) -> &str {
    let t = t.trim_start_matches(' ');
    let t = match t.as_bytes().first() {
        Some(c) if c.is_ascii_alphabetic() => &t[1..],
        _ => t,
    };
    t.split('^').next().unwrap_or_default()
}

/// Whether a swipe's tracks are a bank card's (PROTOCOLS.md §3, PCI DSS), so
/// they must be dropped, never emitted, logged or stored.
///
/// True when any of:
/// - track 1's format code is `B` (`b` too: a wedge typed with Caps Lock on);
/// - track 2 — or track 3, in case a reader mislabels it — holds a bank
///   track 2: a 12–19 digit number that passes [`luhn_ok`], then `=` (or `D`),
///   then a plausible expiry `YYMM` (month 01–12) and a service code whose
///   first digit is 1, 2, 5, 6, 7 or 9. Luhn alone passes one random number
///   in ten, so all of these must hold;
/// - track 3 holds an ISO 4909 financial track: two format digits, then a
///   12–19 digit number that passes Luhn, then `=`. Chinese bank cards long
///   carried track 3.
///
/// Spaces are ignored throughout.
pub fn is_payment_card(tracks: &Tracks) -> bool {
    payment_pan(tracks).is_some()
}

/// `Some(number field)` when the tracks are a payment card; the inner
/// `None` when track 1's `B` is all there is to go on.
fn payment_pan(tracks: &Tracks) -> Option<Option<&str>> {
    for t in [tracks.t2.as_deref(), tracks.t3.as_deref()]
        .into_iter()
        .flatten()
    {
        if let Some(pan) = bank_track2(t) {
            return Some(Some(pan));
        }
    }
    if let Some(pan) = tracks.t3.as_deref().and_then(iso4909_track3) {
        return Some(Some(pan));
    }
    let t1 = tracks.t1.as_deref()?;
    if t1.trim_start_matches(' ').starts_with(['B', 'b']) {
        let pan = track1_number(t1);
        return Some(digit_count(pan).is_some_and(|n| n > 0).then_some(pan));
    }
    None
}

/// The number of a bank track 2 (`PAN=YYMMSVC…`), if `t` is one.
fn bank_track2(t: &str) -> Option<&str> {
    let (pan, rest) = t.split_once(['=', 'D', 'd'])?;
    if !is_pan(pan) {
        return None;
    }
    let mut rest = rest.bytes().filter(|&c| c != b' ');
    let mut digit = || rest.next().filter(u8::is_ascii_digit).map(|c| c - b'0');
    let (_y1, _y2) = (digit()?, digit()?);
    let month = digit()? * 10 + digit()?;
    let service = digit()?;
    ((1..=12).contains(&month) && matches!(service, 1 | 2 | 5 | 6 | 7 | 9)).then_some(pan)
}

/// The number of an ISO 4909 track 3 (`FF PAN = …`), if `t` is one.
fn iso4909_track3(t: &str) -> Option<&str> {
    let (field, _) = t.split_once('=')?;
    // Skip the two format-code digits (and any spaces around them).
    let mut seen = 0;
    let at = field.bytes().position(|c| {
        if c != b' ' {
            seen += 1;
        }
        seen > 2
    })?;
    let (code, pan) = field.split_at(at);
    (digit_count(code) == Some(2) && is_pan(pan)).then_some(pan)
}

/// 12–19 digits (spaces aside) passing Luhn.
fn is_pan(s: &str) -> bool {
    digit_count(s).is_some_and(|n| (12..=19).contains(&n)) && luhn_ok(s)
}

/// How many digits `s` holds, if everything but spaces is a digit.
fn digit_count(s: &str) -> Option<usize> {
    let mut n = 0;
    for c in s.bytes() {
        match c {
            b' ' => {}
            b'0'..=b'9' => n += 1,
            _ => return None,
        }
    }
    Some(n)
}

/// Whether `number` passes the Luhn (mod 10) check that card numbers carry.
/// Spaces are ignored; false when it is empty or holds anything else but
/// digits. One random number in ten passes: a hint, not proof of a bank card.
pub fn luhn_ok(number: &str) -> bool {
    let mut sum = 0u32;
    let mut n = 0usize;
    for c in number.bytes().rev() {
        if c == b' ' {
            continue;
        }
        if !c.is_ascii_digit() {
            return false;
        }
        let d = u32::from(c - b'0');
        sum += if n % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
        n += 1;
    }
    n > 0 && sum % 10 == 0
}

/// A card number as it may be shown: the first 6 and last 4 characters kept,
/// the rest `*` (`4111111111111111` → `411111******1111`), as PCI DSS allows.
/// Numbers shorter than 11 keep only their last 4; numbers of 4 or fewer are
/// all `*`. Spaces are dropped first.
pub fn mask(number: &str) -> String {
    let chars = || number.chars().filter(|&c| c != ' ');
    let n = chars().count();
    let (head, tail) = match n {
        11.. => (6, 4),
        5..=10 => (0, 4),
        _ => (0, 0),
    };
    chars()
        .enumerate()
        .map(|(i, c)| if i < head || i + tail >= n { c } else { '*' })
        .collect()
}

/// Overwrites then empties a buffer that held track data. Best effort: the
/// `black_box` keeps the compiler from dropping the writes as dead stores.
fn wipe_vec(buf: &mut Vec<u8>) {
    buf.fill(0);
    std::hint::black_box(&mut *buf);
    buf.clear();
}

fn wipe_tracks(tracks: Tracks) {
    for t in [tracks.t1, tracks.t2, tracks.t3].into_iter().flatten() {
        wipe_vec(&mut t.into_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The well-known Visa test number on tracks 1 and 2, as a wedge types it.
    const BANK: &[u8] =
        b"%B4111111111111111^DOE/JOHN^2512101000000000?;4111111111111111=25121010000000000000?\r\n";

    /// Feeds the reads at one instant, then lets the idle timer fire. Returns
    /// what was decoded; timer requests are left out.
    fn decode_with(opts: Options, reads: &[&[u8]]) -> Vec<Action> {
        let mut p = Magstripe::new(opts);
        let mut out = Vec::new();
        p.handle_open(Instant(0), &mut out);
        for r in reads {
            p.handle_bytes(Instant(0), r, &mut out);
        }
        p.handle_timer(Instant(10_000), &mut out);
        out.retain(|a| !matches!(a, Action::SetTimer(_)));
        out
    }

    fn decode(reads: &[&[u8]]) -> Vec<Action> {
        decode_with(Options::default(), reads)
    }

    fn lrc_on() -> Options {
        Options {
            lrc: true,
            ..Options::default()
        }
    }

    fn swiped(card_no: &str, t1: Option<&str>, t2: Option<&str>, t3: Option<&str>) -> Action {
        Action::Emit(Event::CardSwiped {
            card_no: card_no.into(),
            tracks: Tracks {
                t1: t1.map(Into::into),
                t2: t2.map(Into::into),
                t3: t3.map(Into::into),
            },
        })
    }

    fn rejected(reason: RejectReason, masked: Option<&str>) -> Action {
        Action::Emit(Event::CardRejected {
            reason,
            masked: masked.map(Into::into),
        })
    }

    /// Decodes `input` in one read, in two reads split at every point, and one
    /// byte per read; all must agree. Returns the one-read result.
    fn split_invariant(opts: &Options, input: &[u8]) -> Vec<Action> {
        let whole = decode_with(opts.clone(), &[input]);
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            // No `{:?}` of the actions: they may hold (test) card data.
            assert!(
                decode_with(opts.clone(), &[a, b]) == whole,
                "split at {i} decodes differently"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert!(
            decode_with(opts.clone(), &bytes) == whole,
            "byte-wise differs"
        );
        whole
    }

    #[test]
    fn member_card_with_only_track_2_waits_for_the_idle_timer() {
        let mut p = Magstripe::new(Options::default());
        let mut out = Vec::new();
        p.handle_bytes(Instant(1000), b";00012345?\r\n", &mut out);
        assert_eq!(out, vec![Action::SetTimer(Instant(1150))]);
        out.clear();
        p.handle_timer(Instant(1150), &mut out);
        assert_eq!(out, vec![swiped("00012345", None, Some("00012345"), None)]);
        out.clear();
        p.handle_timer(Instant(1300), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn swipe_without_a_line_end_ends_at_the_timer_and_early_timers_rearm() {
        let mut p = Magstripe::new(Options {
            idle_ms: 80,
            ..Options::default()
        });
        let mut out = Vec::new();
        p.handle_bytes(Instant(500), b";0001", &mut out);
        p.handle_bytes(Instant(520), b"2345?", &mut out);
        assert_eq!(
            out,
            vec![
                Action::SetTimer(Instant(580)),
                Action::SetTimer(Instant(600))
            ]
        );
        out.clear();
        p.handle_timer(Instant(580), &mut out);
        assert_eq!(out, vec![Action::SetTimer(Instant(600))]);
        out.clear();
        p.handle_timer(Instant(600), &mut out);
        assert_eq!(out, vec![swiped("00012345", None, Some("00012345"), None)]);
    }

    #[test]
    fn store_card_with_a_separator_that_is_not_a_bank_card_is_swiped() {
        // Number fails Luhn.
        assert_eq!(
            decode(&[b";6200123456789012=25121010000?\r\n"]),
            vec![swiped(
                "6200123456789012",
                None,
                Some("6200123456789012=25121010000"),
                None
            )]
        );
        // Passes Luhn, but month 99 is no expiry.
        assert_eq!(
            decode(&[b";8800001234567892=99990000?\r\n"]),
            vec![swiped(
                "8800001234567892",
                None,
                Some("8800001234567892=99990000"),
                None
            )]
        );
        // Passes Luhn with a real expiry, but service code 3xx is no bank's.
        assert_eq!(
            decode(&[b";8800001234567892=2512300?\r\n"]),
            vec![swiped(
                "8800001234567892",
                None,
                Some("8800001234567892=2512300"),
                None
            )]
        );
    }

    #[test]
    fn member_card_with_tracks_1_and_2_takes_the_number_from_track_2() {
        assert_eq!(
            decode(&[b"%A 0001 2345^ZHANG/SAN^?;00012346?\r\n"]),
            vec![swiped(
                "00012346",
                Some("A 0001 2345^ZHANG/SAN^"),
                Some("00012346"),
                None
            )]
        );
        assert_eq!(
            decode(&[b"%A 0001 2345^ZHANG/SAN^?\r\n"]),
            vec![swiped(
                "00012345",
                Some("A 0001 2345^ZHANG/SAN^"),
                None,
                None
            )]
        );
    }

    #[test]
    fn bank_card_on_tracks_1_and_2_is_rejected_masked_and_not_leaked() {
        let out = decode(&[BANK]);
        assert_eq!(
            out,
            vec![rejected(
                RejectReason::PaymentCard,
                Some("411111******1111")
            )]
        );
        let shown = format!("{out:?}");
        assert!(!shown.contains("4111111111111111"));
        assert!(!shown.contains("DOE"));
    }

    #[test]
    fn bank_card_on_track_1_only_is_rejected() {
        assert_eq!(
            decode(&[b"%B4111111111111111^DOE/JOHN^2512101000000000?\r\n"]),
            vec![rejected(
                RejectReason::PaymentCard,
                Some("411111******1111")
            )]
        );
        // A wedge typing with Caps Lock on sends the format code in lower case.
        assert_eq!(
            decode(&[b"%b4111111111111111^doe/john^2512101?\r\n"]),
            vec![rejected(
                RejectReason::PaymentCard,
                Some("411111******1111")
            )]
        );
    }

    #[test]
    fn bank_card_on_track_2_with_a_d_separator_is_rejected() {
        assert_eq!(
            decode(&[b";6222021234567890128D30121010000000000?\r\n"]),
            vec![rejected(
                RejectReason::PaymentCard,
                Some("622202*********0128")
            )]
        );
    }

    #[test]
    fn bank_track_3_is_dropped_with_its_card() {
        // One track per line, track 3 with `;`: it stays with the swipe.
        let per_line = b"%B4111111111111111^DOE/JOHN^2512101?\n;4111111111111111=2512101?\n;014111111111111111=1561560000000000?\n";
        let out = decode(&[per_line]);
        assert_eq!(
            out,
            vec![rejected(
                RejectReason::PaymentCard,
                Some("411111******1111")
            )]
        );
        // Only track 3 readable: the ISO 4909 layout alone gives it away.
        let out = decode(&[b"%E?;E?;014111111111111111=1561560000000000?\r\n"]);
        assert_eq!(
            out,
            vec![rejected(
                RejectReason::PaymentCard,
                Some("411111******1111")
            )]
        );
    }

    #[test]
    fn every_split_point_decodes_the_same() {
        let opts = Options::default();
        let fixtures: [&[u8]; 7] = [
            b";00012345?\r\n",
            BANK,
            b"%A00012345^ZHANG/SAN^?;00012345?;99887766=123?\r\n",
            b"%A1^X^?;1?\r\n\x00\xffjunk\r\n%A2^Y^?;2?\r\n",
            b"%A1^X^?\n;1?\n+9?\n;6222021234567890128D30121010000000000?\n",
            b";E?\r\n",
            b"%A7^X^?;12",
        ];
        for f in fixtures {
            assert!(!split_invariant(&opts, f).is_empty());
        }
        let lrc = lrc_on();
        for f in [
            b"%A00012345^ZHANG/SAN^?S;00012345?5\r\n" as &[u8],
            b";00012345?6\r\n",
            b"%E?_;00012345?5\r\n",
            b"%B4111111111111111^DOE/JOHN^2512101000000000?;;4111111111111111=25121010000000000000?8\r\n",
        ] {
            assert!(!split_invariant(&lrc, f).is_empty());
        }
    }

    #[test]
    fn two_swipes_in_one_read_are_two_swipes() {
        assert_eq!(
            decode(&[b"%A00012345^ZHANG/SAN^?;00012345?\r\n%A00012346^LI/SI^?;00012346?\r\n"]),
            vec![
                swiped(
                    "00012345",
                    Some("A00012345^ZHANG/SAN^"),
                    Some("00012345"),
                    None
                ),
                swiped("00012346", Some("A00012346^LI/SI^"), Some("00012346"), None),
            ]
        );
        // A bank card, then a member card with track 1: both decoded.
        let mut input = BANK.to_vec();
        input.extend_from_slice(b"%A00012345^ZHANG/SAN^?;00012345?\r\n");
        assert_eq!(
            decode(&[&input]),
            vec![
                rejected(RejectReason::PaymentCard, Some("411111******1111")),
                swiped(
                    "00012345",
                    Some("A00012345^ZHANG/SAN^"),
                    Some("00012345"),
                    None
                ),
            ]
        );
        // A `;` track right after a bank card's track 2 is that card's
        // track 3 and is dropped with it; once track 3 is held, the next `;`
        // is a new swipe.
        let mut input = BANK.to_vec();
        input.extend_from_slice(b";014111111111111111=1561560000?\r\n;00012345?\r\n");
        assert_eq!(
            decode(&[&input]),
            vec![
                rejected(RejectReason::PaymentCard, Some("411111******1111")),
                swiped("00012345", None, Some("00012345"), None),
            ]
        );
    }

    #[test]
    fn garbage_between_swipes_is_skipped_with_one_report() {
        let out = decode(&[b";00012345?\r\n\x00\xffjunk\r\n\x1b[A;00012346?\r\n"]);
        // `\x1b[A` has no `?` or sentinel of its own, so it joins the run.
        assert_eq!(
            out,
            vec![
                Action::Malformed("9 bytes outside any track skipped".into()),
                swiped("00012345", None, Some("00012345"), Some("00012346")),
            ]
        );
        let out = decode(&[b"%A1^X^?;1?\r\n?\x07\r\n%A2^Y^?;2?\r\n"]);
        assert_eq!(
            out,
            vec![
                swiped("1", Some("A1^X^"), Some("1"), None),
                Action::Malformed("2 bytes outside any track skipped".into()),
                swiped("2", Some("A2^Y^"), Some("2"), None),
            ]
        );
    }

    #[test]
    fn noise_holding_sentinels_does_not_break_the_next_swipe() {
        // A re-plugged reader: a stray `;` opens a track that a control byte
        // cuts off, a stray `%` is cut off by the real swipe's `;`.
        let out = decode(&[b"\x00\xff;\x01%\x13;00012345?\r\n"]);
        assert_eq!(
            out,
            vec![
                Action::Malformed("6 bytes outside any track skipped".into()),
                swiped("00012345", None, Some("00012345"), None),
            ]
        );
        for a in &out {
            if let Action::Malformed(m) = a {
                assert!(m.bytes().all(|c| c.is_ascii_graphic() || c == b' '));
            }
        }
    }

    #[test]
    fn one_track_per_line_is_one_swipe() {
        assert_eq!(
            decode(&[
                b"%A00012345^ZHANG/SAN^?\r\n",
                b";00012345?\r\n",
                b"+99887766=123?\r\n"
            ]),
            vec![swiped(
                "00012345",
                Some("A00012345^ZHANG/SAN^"),
                Some("00012345"),
                Some("99887766=123")
            )]
        );
    }

    #[test]
    fn a_swipe_with_track_3_is_decided_without_waiting() {
        let mut p = Magstripe::new(Options::default());
        let mut out = Vec::new();
        p.handle_bytes(Instant(0), b";00012345?;99887766?", &mut out);
        assert_eq!(
            out,
            vec![swiped("00012345", None, Some("00012345"), Some("99887766"))]
        );
    }

    #[test]
    fn track_3_alone_gives_the_number() {
        assert_eq!(
            decode(&[b"+99887766=123?\r\n"]),
            vec![swiped("99887766", None, None, Some("99887766=123"))]
        );
    }

    #[test]
    fn unreadable_tracks() {
        assert_eq!(
            decode(&[b";E?\r\n"]),
            vec![rejected(RejectReason::Unreadable, None)]
        );
        assert_eq!(
            decode(&[b"%E?;E?+E?\r\n"]),
            vec![rejected(RejectReason::Unreadable, None)]
        );
        assert_eq!(
            decode(&[b"%A123^LI/SI^?;E?\r\n"]),
            vec![swiped("123", Some("A123^LI/SI^"), None, None)]
        );
        assert_eq!(
            decode(&[b";?\r\n"]),
            vec![rejected(RejectReason::Unreadable, None)]
        );
    }

    #[test]
    fn a_track_left_open_is_unreadable() {
        assert_eq!(
            decode(&[b";0001234"]),
            vec![rejected(RejectReason::Unreadable, None)]
        );
        assert_eq!(
            decode(&[b"%A777^X^?;0001"]),
            vec![swiped("777", Some("A777^X^"), None, None)]
        );
    }

    #[test]
    fn lrc_good_bad_and_missing() {
        assert_eq!(
            decode_with(lrc_on(), &[b";00012345?5\r\n"]),
            vec![swiped("00012345", None, Some("00012345"), None)]
        );
        assert_eq!(
            decode_with(lrc_on(), &[b";00012345?6\r\n"]),
            vec![rejected(RejectReason::BadLrc, Some("****2345"))]
        );
        assert_eq!(
            decode_with(lrc_on(), &[b";00012345?\r\n"]),
            vec![rejected(RejectReason::BadLrc, Some("****2345"))]
        );
        assert_eq!(
            decode_with(lrc_on(), &[b";00012345?"]),
            vec![rejected(RejectReason::BadLrc, Some("****2345"))]
        );
        assert_eq!(
            decode_with(lrc_on(), &[b"%A00012345^ZHANG/SAN^?S;00012345?5\r\n"]),
            vec![swiped(
                "00012345",
                Some("A00012345^ZHANG/SAN^"),
                Some("00012345"),
                None
            )]
        );
        // Track 1's LRC wrong, track 2's right: the swipe is rejected.
        assert_eq!(
            decode_with(lrc_on(), &[b"%A00012345^ZHANG/SAN^?T;00012345?5\r\n"]),
            vec![rejected(RejectReason::BadLrc, Some("****2345"))]
        );
        // After a failed track the LRC is optional.
        for input in [b"%E?_;00012345?5\r\n" as &[u8], b"%E?;00012345?5\r\n"] {
            assert_eq!(
                decode_with(lrc_on(), &[input]),
                vec![swiped("00012345", None, Some("00012345"), None)]
            );
        }
        // Without the option an LRC byte is just noise after the track.
        assert_eq!(
            decode(&[b";00012345?5\r\n"]),
            vec![
                swiped("00012345", None, Some("00012345"), None),
                Action::Malformed("1 byte outside any track skipped".into()),
            ]
        );
    }

    #[test]
    fn bank_card_with_lrc_is_a_payment_card_whether_the_lrc_is_right_or_not() {
        // Track 1's LRC here is `;`, which must not start a track.
        let good = b"%B4111111111111111^DOE/JOHN^2512101000000000?;;4111111111111111=25121010000000000000?8\r\n";
        let bad = b"%B4111111111111111^DOE/JOHN^2512101000000000?!;4111111111111111=25121010000000000000?9\r\n";
        for input in [good as &[u8], bad] {
            assert_eq!(
                decode_with(lrc_on(), &[input]),
                vec![rejected(
                    RejectReason::PaymentCard,
                    Some("411111******1111")
                )]
            );
        }
    }

    #[test]
    fn overlong_track_is_dropped_and_the_next_swipe_decodes() {
        let mut input = b";".to_vec();
        input.extend_from_slice(&[b'1'; 121]);
        input.extend_from_slice(b"?;00012345?\r\n");
        assert_eq!(
            decode(&[&input]),
            vec![
                Action::Malformed(
                    "123 bytes outside any track skipped (a track longer than 120 characters)"
                        .into()
                ),
                swiped("00012345", None, Some("00012345"), None),
            ]
        );
        let mut longest = b";".to_vec();
        longest.extend_from_slice(&[b'1'; MAX_TRACK_LEN]);
        longest.extend_from_slice(b"?\r\n");
        let out = decode(&[&longest]);
        assert!(
            matches!(&out[..], [Action::Emit(Event::CardSwiped { card_no, .. })] if card_no.len() == MAX_TRACK_LEN)
        );
    }

    #[test]
    fn reopen_forgets_a_partial_swipe() {
        let mut p = Magstripe::new(Options::default());
        let mut out = Vec::new();
        p.handle_bytes(Instant(0), b"%B4111111111111111^DOE", &mut out);
        p.handle_open(Instant(10), &mut out);
        out.clear();
        p.handle_timer(Instant(1000), &mut out);
        assert!(out.is_empty());
        p.handle_bytes(Instant(2000), b";00012345?\r\n", &mut out);
        p.handle_timer(Instant(3000), &mut out);
        assert_eq!(
            out,
            vec![
                Action::SetTimer(Instant(2150)),
                swiped("00012345", None, Some("00012345"), None)
            ]
        );
    }

    #[test]
    fn debug_output_never_shows_track_data() {
        let mut p = Magstripe::new(Options::default());
        let mut out = Vec::new();
        p.handle_bytes(Instant(0), &BANK[..60], &mut out);
        let shown = format!("{p:?}");
        assert!(shown.contains("tracks_held: 1"), "{shown}");
        assert!(!shown.contains("4111") && !shown.contains("DOE"));
        assert!(!shown.contains("52, 49, 49"), "no byte lists either");
    }

    #[test]
    fn luhn_mask_and_guard_helpers() {
        assert!(luhn_ok("4111111111111111"));
        assert!(luhn_ok("4111 1111 1111 1111"));
        assert!(luhn_ok("6222021234567890128"));
        assert!(!luhn_ok("4111111111111112"));
        assert!(!luhn_ok("4111-1111-1111-1111"));
        assert!(!luhn_ok(""));
        assert_eq!(mask("4111111111111111"), "411111******1111");
        assert_eq!(mask("4111 1111 1111 1111"), "411111******1111");
        assert_eq!(mask("00012345"), "****2345");
        assert_eq!(mask("12345678901"), "123456*8901");
        assert_eq!(mask("1234"), "****");
        assert_eq!(mask(""), "");
        let t2 = |s: &str| Tracks {
            t2: Some(s.into()),
            ..Tracks::default()
        };
        assert!(is_payment_card(&t2("4111111111111111=2512101")));
        assert!(is_payment_card(&t2("4111111111111111D2512201")));
        assert!(is_payment_card(&t2("4111 1111 1111 1111=2512901")));
        assert!(!is_payment_card(&t2("4111111111111111")));
        assert!(!is_payment_card(&t2("4111111111111111=2513101")));
        assert!(!is_payment_card(&t2("4111111111111111=2512301")));
        assert!(!is_payment_card(&t2("4111111111111111=251")));
        assert!(!is_payment_card(&t2("41111111111=2512101")), "11 digits");
        assert!(!is_payment_card(&t2("00012345=2512101")));
        let t1 = Tracks {
            t1: Some("B1^X^".into()),
            ..Tracks::default()
        };
        assert!(is_payment_card(&t1));
        let t1 = Tracks {
            t1: Some("A4111111111111111^X^2512101".into()),
            ..Tracks::default()
        };
        assert!(!is_payment_card(&t1));
    }

    #[test]
    fn no_panic_and_no_bank_card_swiped_on_arbitrary_bytes() {
        // A small deterministic generator stands in for the fuzzer in unit
        // tests. Half the bytes come from the magstripe alphabet so sentinels,
        // separators and digits meet often.
        const ALPHABET: &[u8] = b"%;+?^=D0123456789BE\r\n";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for lrc in [false, true] {
            let mut p = Magstripe::new(Options { idle_ms: 5, lrc });
            let mut out = Vec::new();
            for i in 0..5000u64 {
                let len = (next() % 97) as usize;
                let chunk: Vec<u8> = (0..len)
                    .map(|_| {
                        let r = next();
                        if r & 1 == 0 {
                            ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                        } else {
                            (r >> 8) as u8
                        }
                    })
                    .collect();
                p.handle_bytes(Instant(i * 3), &chunk, &mut out);
                if i % 7 == 0 {
                    p.handle_timer(Instant(i * 3 + 5), &mut out);
                }
                for a in out.drain(..) {
                    if let Action::Emit(Event::CardSwiped { card_no, tracks }) = a {
                        assert!(!card_no.is_empty());
                        assert!(!is_payment_card(&tracks));
                    }
                }
            }
        }
    }
}
