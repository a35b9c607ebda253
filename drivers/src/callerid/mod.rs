//! Caller-ID boxes (PROTOCOLS.md §2; `driver = "callerid"`): the store's
//! phone line rings, the box tells us who is calling, and the front desk
//! sees the member before picking up.
//!
//! Decoders, one per wire format, each turning bytes into [`Signal`]s:
//! - [`modem`]: modem text (`RING`, `NMBR = …`), also raw hex (`AT+VCID=2`);
//! - [`fsk`]: Bellcore GR-30 SDMF/MDMF and ETSI EN 300 659 binary messages;
//! - [`dtmf`]: the four DTMF caller-ID variants;
//! - [`ncid`]: NCID server lines and NetCallerID serial lines;
//! - [`hid`]: USB HID boxes, through a per-model [`hid::HidReportLayout`];
//! - [`whozz`]: Whozz Calling Ethernet units, one UDP datagram per record.
//!
//! [`stream`] cuts the byte stream into units for them, and [`number`]
//! normalizes numbers to E.164 and gives member-cache lookup keys.
//!
//! [`CallerId`] is the [`Protocol`]: it turns signals into the life of a
//! call — exactly one `call.ringing` and one `call.ended` per call:
//! - A call starts at its first `RING` or its first caller-ID data, whichever
//!   comes first (exchanges send the number before the first ring or between
//!   the first and second).
//! - `call.ringing` goes out as soon as the number is known. A call whose
//!   number never comes is announced with number `unavailable` at its
//!   second `RING`, or [`Options::cid_wait_ms`] after its first, whichever
//!   is first (the number always comes before the second ring when it comes
//!   at all). Caller-ID data after that is ignored for the call, unless it
//!   names a different number than the one announced — then it is a new call.
//! - `call.ended` goes out when the box reports the end, or when no `RING`
//!   (or data) came for [`Options::ring_timeout_ms`]. Its `answered` is
//!   `true` when the box reported off-hook / answer (NCID `RING -2`, `END`
//!   `BYE`, a HID off-hook bit), `false` when it reported the caller hung up
//!   first (NCID `RING -1`, `END` `CANCEL`, a HID hang-up bit), and `null`
//!   when the rings just stopped (plain modems and FSK boxes cannot tell
//!   an answered call from an abandoned one).
//!
//! - Boxes that serve several lines (Whozz Calling units, NCID servers, TCI
//!   units) name the line on each record; each line has its own call, with
//!   its own timers, so two callers at once are two calls. Records without
//!   a line (modems, FSK, DTMF, HID boxes) belong to the box's one call.
//!   At most [`MAX_CALLS`] calls are followed at once; a further one ends
//!   the oldest.
//! - `call.outgoing` goes out once for a call dialed out, where the box
//!   reports one (Whozz Calling `O` records, NCID `OUT:`).

pub mod dtmf;
pub mod fsk;
pub mod hid;
pub mod modem;
pub mod ncid;
pub mod number;
pub mod stream;
pub mod whozz;

#[cfg(test)]
mod tests;

use crate::{Action, Event, Instant, Protocol};
use serde::{Deserialize, Serialize};
use stream::{Accept, Splitter, Unit};

/// `number` when the caller withheld it.
pub const PRIVATE: &str = "private";
/// `number` when the line did not deliver it.
pub const UNAVAILABLE: &str = "unavailable";

/// Calls followed at once: units have 2, 4 or 8 lines.
pub const MAX_CALLS: usize = 8;
/// Longest number kept; E.164 allows 15 digits, exchanges add prefixes.
const MAX_NUMBER: usize = 32;
/// Longest name kept, in characters.
const MAX_NAME: usize = 64;
/// A partial unit older than this is flushed: a DTMF string or line sent
/// without its end, or an FSK message cut short (then dropped).
pub const FLUSH_MS: u64 = 500;
/// Modem fields arrive back to back; a block without a name is complete
/// after this much quiet.
pub const BLOCK_WAIT_MS: u64 = 300;

/// What a box delivers (config key `format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Decide per unit: binary FSK (a message type after optional
    /// `0x55`/`0xFF` preamble), NCID/NetCallerID lines (their labels), modem
    /// text (`RING`, `KEY = value`), DTMF strings (short `0-9A-D*#` runs
    /// with their terminator). Sends the modem init commands on open.
    #[default]
    Auto,
    /// Modem text after `AT+VCID=1` (sent on open), and raw-hex lines.
    Modem,
    /// Binary FSK, Bellcore MDMF. `mdmf`, `sdmf` and `etsi` all read SDMF,
    /// MDMF and ETSI messages alike (a box set one way may deliver the
    /// other); the name records what the exchange sends.
    Mdmf,
    /// Binary FSK, Bellcore SDMF (see [`Format::Mdmf`]).
    Sdmf,
    /// Binary FSK, ETSI EN 300 659 call setup (see [`Format::Mdmf`]).
    Etsi,
    /// DTMF strings, with or without line ends.
    Dtmf,
    /// NCID server lines (TCP 3333) and NetCallerID serial lines.
    Ncid,
    /// One USB HID report per read, decoded by [`Options::hid_layout`].
    Hid,
    /// Whozz Calling Ethernet units: one UDP datagram per read. `auto`
    /// also knows their datagrams (they start `^^<U>`).
    Whozz,
}

/// Settings a caller-ID box takes from its config.
#[derive(Clone, Debug)]
pub struct Options {
    pub format: Format,
    /// Call ids are this prefix and a counter from 1 (`phone-1-` → `phone-1-7`).
    pub call_id_prefix: String,
    /// No ring for this long ends the call. Rings repeat every 5–6 s.
    pub ring_timeout_ms: u64,
    /// A call whose number has not come this long after its first ring is
    /// announced as `unavailable` (if its second ring did not come first).
    pub cid_wait_ms: u64,
    /// Calling code for numbers without one (`"86"`), see [`number::normalize`].
    pub country: String,
    /// The report layout, for [`Format::Hid`].
    pub hid_layout: Option<hid::HidReportLayout>,
    /// Send [`modem::INIT_COMMANDS`] on open (formats `auto` and `modem`).
    pub send_init: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            format: Format::Auto,
            call_id_prefix: String::new(),
            ring_timeout_ms: 8000,
            cid_wait_ms: 4500,
            country: number::DEFAULT_COUNTRY.to_string(),
            hid_layout: None,
            send_init: true,
        }
    }
}

/// Caller data one decoder read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// Digits as delivered, or [`PRIVATE`] / [`UNAVAILABLE`].
    pub number: String,
    pub name: Option<String>,
    /// The box's line label.
    pub line: Option<String>,
    /// `MM-DD HH:MM` from the box.
    pub box_time: Option<String>,
}

/// What a decoder saw; [`CallerId`] turns these into call events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The line rang once.
    Ring,
    /// Caller ID for the current (or a new) call.
    Info(CallInfo),
    /// A phone on the line was picked up.
    Answered,
    /// The box says the call is over; `answered` as far as it knows.
    Ended { answered: Option<bool> },
    /// A call was dialed out (the number dialed).
    Outgoing(CallInfo),
}

/// The number as delivered, without separators or junk; [`UNAVAILABLE`]
/// when nothing is left.
pub(crate) fn clean_number(raw: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#'))
        .take(MAX_NUMBER)
        .collect();
    if s.is_empty() {
        UNAVAILABLE.to_string()
    } else {
        s
    }
}

/// A name without control characters, trimmed and capped; `None` when empty.
pub(crate) fn clean_name(raw: &[u8]) -> Option<String> {
    let s: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// `MMDDHHMM` → `MM-DD HH:MM`; `None` unless 8 digits of a possible date.
pub(crate) fn date_mmddhhmm(raw: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(raw).ok()?;
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let two = |i: usize| s.get(i..i + 2).unwrap_or("99");
    let num = |i: usize| two(i).parse::<u32>().unwrap_or(99);
    let ok = (1..=12).contains(&num(0)) && (1..=31).contains(&num(2)) && num(4) < 24 && num(6) < 60;
    ok.then(|| format!("{}-{} {}:{}", two(0), two(2), two(4), two(6)))
}

/// Which format a unit is in (what `auto` saw).
fn classify(unit: &Unit) -> Option<Format> {
    match unit {
        Unit::Message(m) => match m.first() {
            Some(&fsk::SDMF) => Some(Format::Sdmf),
            Some(_) if is_etsi(m) => Some(Format::Etsi),
            Some(_) => Some(Format::Mdmf),
            None => None,
        },
        Unit::Dtmf(_) => Some(Format::Dtmf),
        Unit::Line(raw) => {
            let s = String::from_utf8_lossy(raw);
            if ncid::parse_ncid(&s).is_some() || ncid::parse_netcallerid(&s).is_some() {
                Some(Format::Ncid)
            } else if !matches!(modem::parse_line(&s), modem::ModemLine::Unknown) {
                Some(Format::Modem)
            } else if dtmf::parse(raw).is_ok() {
                Some(Format::Dtmf)
            } else {
                None
            }
        }
        Unit::Dropped(_) => None,
    }
}

/// An MDMF message with a parameter only ETSI defines (call type, redirecting number).
fn is_etsi(m: &[u8]) -> bool {
    let body = m.get(2..m.len().saturating_sub(1)).unwrap_or_default();
    let mut i = 0;
    while let (Some(t), Some(l)) = (body.get(i), body.get(i + 1)) {
        if matches!(*t, fsk::param::CALL_TYPE | fsk::param::REDIRECTING) {
            return true;
        }
        i += 2 + usize::from(*l);
    }
    false
}

/// The format of the first recognizable unit in `bytes`, as `auto` would
/// read it (a diagnostic for `posbridge devices` and tests). NetCallerID
/// lines count as [`Format::Ncid`].
pub fn detect_format(bytes: &[u8]) -> Option<Format> {
    if whozz::is_datagram(bytes) {
        return Some(Format::Whozz);
    }
    let mut s = Splitter::new(accept(Format::Auto));
    let mut units = Vec::new();
    s.push(bytes, &mut units);
    s.flush(&mut units);
    units.iter().find_map(classify)
}

fn accept(format: Format) -> Accept {
    let (binary, text, dtmf) = match format {
        Format::Auto => (true, true, true),
        Format::Modem | Format::Ncid => (false, true, false),
        Format::Mdmf | Format::Sdmf | Format::Etsi => (true, false, false),
        Format::Dtmf => (false, true, true),
        Format::Hid | Format::Whozz => (false, false, false),
    };
    Accept {
        binary,
        text,
        dtmf,
        strict_dtmf: format == Format::Auto,
    }
}

#[derive(Debug)]
struct Call {
    id: String,
    /// The box's line label; `None` for boxes with one line.
    line: Option<String>,
    announced: bool,
    /// The digits announced, when a real number was.
    announced_number: Option<String>,
    rings: u32,
    cid_deadline: Instant,
    end_deadline: Instant,
}

/// A caller-ID box: see the module docs for the call life it reports.
#[derive(Debug)]
pub struct CallerId {
    opts: Options,
    splitter: Splitter,
    block: modem::Block,
    block_deadline: Instant,
    last_byte: Instant,
    /// Calls in progress, oldest first; at most one per line.
    calls: Vec<Call>,
    /// Call ids handed out so far (incoming and outgoing).
    count: u64,
    armed: Option<Instant>,
    /// The HID ring bit in the previous report (a ring is its rising edge).
    hid_ringing: bool,
    detected: Option<Format>,
    /// The Whozz Calling unit sent detail records: it reports off-hook.
    whozz_deluxe: bool,
}

impl CallerId {
    pub fn new(opts: Options) -> Self {
        CallerId {
            splitter: Splitter::new(accept(opts.format)),
            opts,
            block: modem::Block::default(),
            block_deadline: Instant(0),
            last_byte: Instant(0),
            calls: Vec::new(),
            count: 0,
            armed: None,
            hid_ringing: false,
            detected: None,
            whozz_deluxe: false,
        }
    }

    /// The format the last recognized unit was in (with `auto`, what the box
    /// turned out to speak).
    pub fn detected(&self) -> Option<Format> {
        self.detected
    }

    /// The ids of the calls in progress, oldest first.
    pub fn calls_in_progress(&self) -> Vec<&str> {
        self.calls.iter().map(|c| c.id.as_str()).collect()
    }

    fn units(&mut self, now: Instant, units: Vec<Unit>, out: &mut Vec<Action>) {
        for unit in units {
            if let Some(f) = classify(&unit) {
                self.detected = Some(f);
            }
            match unit {
                Unit::Message(m) => match fsk::parse_message(&m) {
                    Ok(fsk::FskMessage::Call(info)) => {
                        self.signal(now, None, Signal::Info(info), out);
                    }
                    Ok(fsk::FskMessage::Other(_)) => {}
                    Err(e) => out.push(Action::Malformed(e.to_string())),
                },
                Unit::Dtmf(s) => self.dtmf(now, &s, out),
                Unit::Line(raw) => self.line(now, &raw, out),
                Unit::Dropped(why) => out.push(Action::Malformed(why)),
            }
        }
    }

    fn dtmf(&mut self, now: Instant, s: &[u8], out: &mut Vec<Action>) {
        match dtmf::parse(s) {
            Ok(info) => self.signal(now, None, Signal::Info(info), out),
            Err(e) => out.push(Action::Malformed(e.to_string())),
        }
    }

    fn line(&mut self, now: Instant, raw: &[u8], out: &mut Vec<Action>) {
        let s = String::from_utf8_lossy(raw);
        let format = self.opts.format;
        if matches!(format, Format::Auto | Format::Ncid) {
            if let Some(record) = ncid::parse_ncid(&s) {
                for sig in record.signals {
                    self.signal(now, record.line.clone(), sig, out);
                }
                return;
            }
            if let Some(sig) = ncid::parse_netcallerid(&s) {
                self.signal(now, None, sig, out);
                return;
            }
            if s.trim_start().starts_with("###") {
                // NetCallerID status lines (message waiting) carry no call.
                return;
            }
        }
        if matches!(format, Format::Auto | Format::Modem) {
            match modem::parse_line(&s) {
                modem::ModemLine::Ring => {
                    self.flush_block(now, out);
                    self.signal(now, None, Signal::Ring, out);
                    return;
                }
                modem::ModemLine::Call(info) => {
                    self.flush_block(now, out);
                    self.signal(now, None, Signal::Info(info), out);
                    return;
                }
                modem::ModemLine::Field(field, value) => {
                    self.block.add(field, &value);
                    self.block_deadline = now.plus_ms(BLOCK_WAIT_MS);
                    if self.block.complete() {
                        self.flush_block(now, out);
                    }
                    return;
                }
                modem::ModemLine::Hex(bytes) => {
                    self.flush_block(now, out);
                    self.units(now, vec![Unit::Message(bytes)], out);
                    return;
                }
                modem::ModemLine::Noise => return,
                modem::ModemLine::Unknown => self.flush_block(now, out),
            }
        }
        if matches!(format, Format::Auto | Format::Dtmf) && raw.iter().all(|b| dtmf::is_dtmf(*b)) {
            self.dtmf(now, raw, out);
            return;
        }
        // Line content may be a caller's number: only its size is reported.
        out.push(Action::Malformed(format!(
            "caller-ID box sent an unrecognized {}-byte line; dropped",
            raw.len()
        )));
    }

    fn flush_block(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Some(info) = self.block.take() {
            self.signal(now, None, Signal::Info(info), out);
        }
    }

    fn hid_report(&mut self, now: Instant, report: &[u8], out: &mut Vec<Action>) {
        let Some(layout) = &self.opts.hid_layout else {
            out.push(Action::Malformed(
                "caller-ID format hid needs a HID report layout; report dropped".into(),
            ));
            return;
        };
        let r = match hid::decode_report(layout, report) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                out.push(Action::Malformed(e.to_string()));
                return;
            }
        };
        self.detected = Some(Format::Hid);
        let rising = r.ring && !self.hid_ringing;
        self.hid_ringing = r.ring;
        if let Some(n) = r.number {
            let number =
                modem::withheld(&n).map_or_else(|| clean_number(n.as_bytes()), str::to_string);
            self.signal(
                now,
                None,
                Signal::Info(CallInfo {
                    number,
                    ..CallInfo::default()
                }),
                out,
            );
        }
        if rising {
            self.signal(now, None, Signal::Ring, out);
        }
        if r.off_hook {
            self.signal(now, None, Signal::Answered, out);
        }
        if r.hang_up {
            self.signal(
                now,
                None,
                Signal::Ended {
                    answered: Some(false),
                },
                out,
            );
        }
    }

    fn whozz(&mut self, now: Instant, datagram: &[u8], out: &mut Vec<Action>) {
        let d = whozz::decode(datagram);
        if let Some(p) = d.problem {
            out.push(Action::Malformed(p));
        }
        self.whozz_deluxe |= d.detail;
        if !d.signals.is_empty() {
            self.detected = Some(Format::Whozz);
        }
        for sig in d.signals {
            let sig = match sig {
                // A Deluxe unit reports off-hook (which ends the call as
                // answered): an end record still in a call means nobody did.
                Signal::Ended { answered: None } if self.whozz_deluxe => Signal::Ended {
                    answered: Some(false),
                },
                s => s,
            };
            self.signal(now, d.line.clone(), sig, out);
        }
    }

    /// The call a signal about `line` belongs to. A record that names a
    /// line may claim a call a ring without a line started (its caller ID
    /// still to come); a record without one goes to the call without a
    /// line, or to the only call there is.
    fn find(&mut self, line: Option<&str>) -> Option<usize> {
        let Some(l) = line else {
            let unlined = self.calls.iter().position(|c| c.line.is_none());
            return unlined.or_else(|| (self.calls.len() == 1).then_some(0));
        };
        if let Some(i) = self.calls.iter().position(|c| c.line.as_deref() == Some(l)) {
            return Some(i);
        }
        let i = self
            .calls
            .iter()
            .position(|c| c.line.is_none() && !c.announced)?;
        if let Some(c) = self.calls.get_mut(i) {
            c.line = Some(l.to_string());
        }
        Some(i)
    }

    fn next_id(&mut self) -> String {
        self.count += 1;
        format!("{}{}", self.opts.call_id_prefix, self.count)
    }

    /// Starts a call on `line`; the oldest call ends first when
    /// [`MAX_CALLS`] are in progress.
    fn start_call(
        &mut self,
        now: Instant,
        line: Option<String>,
        rings: u32,
        out: &mut Vec<Action>,
    ) -> usize {
        if self.calls.len() >= MAX_CALLS {
            self.finish(0, None, out);
        }
        let call = Call {
            id: self.next_id(),
            line,
            announced: false,
            announced_number: None,
            rings,
            cid_deadline: now.plus_ms(self.opts.cid_wait_ms),
            end_deadline: now.plus_ms(self.opts.ring_timeout_ms),
        };
        self.calls.push(call);
        self.calls.len() - 1
    }

    /// Feeds one signal into the life of the call on `line` (caller data
    /// names its own line).
    fn signal(&mut self, now: Instant, line: Option<String>, sig: Signal, out: &mut Vec<Action>) {
        let line = match &sig {
            Signal::Info(i) | Signal::Outgoing(i) => i.line.clone().or(line),
            _ => line,
        };
        let found = self.find(line.as_deref());
        match (sig, found) {
            (Signal::Ring, None) => {
                self.start_call(now, line, 1, out);
            }
            (Signal::Ring, Some(i)) => self.ring(now, i, out),
            (Signal::Info(info), None) => {
                let i = self.start_call(now, line, 0, out);
                self.announce(i, Some(info), out);
            }
            (Signal::Info(info), Some(i)) => self.info(now, i, info, out),
            (Signal::Answered, Some(i)) => self.finish(i, Some(true), out),
            (Signal::Ended { answered }, Some(i)) => self.finish(i, answered, out),
            (Signal::Answered | Signal::Ended { .. }, None) => {}
            (Signal::Outgoing(info), _) => self.outgoing(info, out),
        }
    }

    fn ring(&mut self, now: Instant, i: usize, out: &mut Vec<Action>) {
        let timeout = self.opts.ring_timeout_ms;
        let Some(c) = self.calls.get_mut(i) else {
            return;
        };
        c.rings = c.rings.saturating_add(1);
        c.end_deadline = now.plus_ms(timeout);
        if c.rings >= 2 && !c.announced {
            self.announce(i, None, out);
        }
    }

    fn info(&mut self, now: Instant, i: usize, info: CallInfo, out: &mut Vec<Action>) {
        let timeout = self.opts.ring_timeout_ms;
        let Some(c) = self.calls.get_mut(i) else {
            return;
        };
        c.end_deadline = c.end_deadline.max(now.plus_ms(timeout));
        if !c.announced {
            self.announce(i, Some(info), out);
            return;
        }
        let other = is_digits(&info.number)
            && c.announced_number
                .as_ref()
                .is_some_and(|n| *n != info.number);
        if other {
            // A different caller on this line: the previous call is over.
            let line = c.line.clone();
            self.end(i, None, out);
            let i = self.start_call(now, line, 0, out);
            self.announce(i, Some(info), out);
        }
    }

    fn outgoing(&mut self, info: CallInfo, out: &mut Vec<Action>) {
        let call_id = self.next_id();
        out.push(Action::Emit(Event::CallOutgoing {
            call_id,
            normalized: number::normalize(&info.number, &self.opts.country),
            number: info.number,
            line: info.line,
        }));
    }

    /// Ends call `i` (announcing it first if it never was).
    fn finish(&mut self, i: usize, answered: Option<bool>, out: &mut Vec<Action>) {
        if self.calls.get(i).is_some_and(|c| !c.announced) {
            self.announce(i, None, out);
        }
        self.end(i, answered, out);
    }

    /// Emits `call.ringing` for call `i`; `None` = no number came.
    fn announce(&mut self, i: usize, info: Option<CallInfo>, out: &mut Vec<Action>) {
        let Some(c) = self.calls.get_mut(i) else {
            return;
        };
        if c.announced {
            return;
        }
        let info = info.unwrap_or_else(|| CallInfo {
            number: UNAVAILABLE.to_string(),
            ..CallInfo::default()
        });
        c.announced = true;
        c.announced_number = is_digits(&info.number).then(|| info.number.clone());
        out.push(Action::Emit(Event::CallRinging {
            call_id: c.id.clone(),
            normalized: number::normalize(&info.number, &self.opts.country),
            number: info.number,
            name: info.name,
            line: info.line.or_else(|| c.line.clone()),
            at: None,
            box_time: info.box_time,
        }));
    }

    fn end(&mut self, i: usize, answered: Option<bool>, out: &mut Vec<Action>) {
        if i < self.calls.len() {
            let c = self.calls.remove(i);
            out.push(Action::Emit(Event::CallEnded {
                call_id: c.id,
                answered,
            }));
        }
    }

    /// Arms the timer for the earliest pending deadline, if it changed.
    fn arm(&mut self, out: &mut Vec<Action>) {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.splitter.has_partial() {
            consider(self.last_byte.plus_ms(FLUSH_MS));
        }
        if self.block.started() {
            consider(self.block_deadline);
        }
        for c in &self.calls {
            if !c.announced {
                consider(c.cid_deadline);
            }
            consider(c.end_deadline);
        }
        if next != self.armed {
            if let Some(t) = next {
                out.push(Action::SetTimer(t));
            }
            self.armed = next;
        }
    }

    /// Announces calls whose number is overdue and ends calls whose rings
    /// stopped.
    fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        let overdue: Vec<usize> = (0..self.calls.len())
            .filter(|&i| {
                self.calls
                    .get(i)
                    .is_some_and(|c| !c.announced && now >= c.cid_deadline)
            })
            .collect();
        for i in overdue {
            self.announce(i, None, out);
        }
        while let Some(i) = self.calls.iter().position(|c| now >= c.end_deadline) {
            self.finish(i, None, out);
        }
    }
}

/// Checks the call life a run of actions describes, as the module docs
/// promise it: every `call.ringing` and `call.outgoing` has a number and a
/// call id not seen before, a normalized number is E.164, and every
/// `call.ended` follows its call's ringing, once; no other event. Returns how many calls rang and
/// ended (for the property test and the fuzz targets).
pub fn check_call_life(actions: &[Action]) -> Result<(usize, usize), String> {
    let mut rung: Vec<&str> = Vec::new();
    let mut over: Vec<&str> = Vec::new();
    let mut dialed: Vec<&str> = Vec::new();
    for a in actions {
        match a {
            Action::Emit(Event::CallRinging {
                call_id,
                number,
                normalized,
                ..
            }) => {
                if rung.contains(&call_id.as_str()) || dialed.contains(&call_id.as_str()) {
                    return Err(format!("{call_id} announced twice"));
                }
                if number.is_empty() {
                    return Err(format!("{call_id} announced without a number"));
                }
                if let Some(n) = normalized {
                    let digits = n.strip_prefix('+').unwrap_or_default();
                    if !(8..=15).contains(&digits.len())
                        || !digits.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(format!("{call_id}: {n} is not E.164"));
                    }
                }
                rung.push(call_id);
            }
            Action::Emit(Event::CallOutgoing {
                call_id, number, ..
            }) => {
                if rung.contains(&call_id.as_str()) || dialed.contains(&call_id.as_str()) {
                    return Err(format!("{call_id} used twice"));
                }
                if number.is_empty() {
                    return Err(format!("{call_id} dialed without a number"));
                }
                dialed.push(call_id);
            }
            Action::Emit(Event::CallEnded { call_id, .. }) => {
                if !rung.contains(&call_id.as_str()) {
                    return Err(format!("{call_id} ended unannounced"));
                }
                if over.contains(&call_id.as_str()) {
                    return Err(format!("{call_id} ended twice"));
                }
                over.push(call_id);
            }
            Action::Emit(other) => return Err(format!("unexpected event {}", other.kind())),
            _ => {}
        }
    }
    Ok((rung.len(), over.len()))
}

fn is_digits(n: &str) -> bool {
    n != PRIVATE && n != UNAVAILABLE && n.bytes().any(|b| b.is_ascii_digit())
}

impl Protocol for CallerId {
    fn handle_open(&mut self, _now: Instant, out: &mut Vec<Action>) {
        self.splitter.reset();
        self.block = modem::Block::default();
        self.hid_ringing = false;
        let init = self.opts.send_init && matches!(self.opts.format, Format::Auto | Format::Modem);
        if init {
            for cmd in modem::INIT_COMMANDS {
                out.push(Action::Write(cmd.to_vec()));
            }
        }
        // The shell may have dropped its timer with the old transport.
        self.armed = None;
        self.arm(out);
    }

    fn handle_bytes(&mut self, now: Instant, bytes: &[u8], out: &mut Vec<Action>) {
        let whozz = self.opts.format == Format::Whozz
            || (self.opts.format == Format::Auto
                && whozz::is_datagram(bytes)
                && !self.splitter.has_partial());
        if self.opts.format == Format::Hid {
            self.hid_report(now, bytes, out);
        } else if whozz {
            self.whozz(now, bytes, out);
        } else {
            self.last_byte = now;
            let mut units = Vec::new();
            self.splitter.push(bytes, &mut units);
            self.units(now, units, out);
        }
        self.arm(out);
    }

    fn handle_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        // The timer that fired is spent: re-arm whatever is still pending.
        self.armed = None;
        if self.splitter.has_partial() && now >= self.last_byte.plus_ms(FLUSH_MS) {
            let mut units = Vec::new();
            self.splitter.flush(&mut units);
            self.units(now, units, out);
        }
        if self.block.started() && now >= self.block_deadline {
            self.flush_block(now, out);
        }
        self.expire(now, out);
        self.arm(out);
    }
}
