//! The polling engine: status once, then find → select → read every
//! `poll_ms`, one `idcard.read` per card placement.

use super::base64_encode;
use super::frame::{
    build_frame, parse_read_data, FrameError, FrameParser, Response, CMD_FIND, CMD_READ,
    CMD_READ_FINGERPRINT, CMD_SAM_STATUS, CMD_SELECT, MAX_FRAME,
};
use super::status::SamStatus;
use super::text::decode_text;
use crate::{Action, Event, Instant, Protocol};
use std::fmt;

/// Default [`Options::poll_ms`].
pub const DEFAULT_POLL_MS: u64 = 300;
/// Default [`Options::response_timeout_ms`].
pub const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 1000;
/// Default [`Options::read_timeout_ms`].
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 3000;
/// Default [`Options::silent_after`].
pub const DEFAULT_SILENT_AFTER: u32 = 3;

/// Answers longer than this can only be a read answer; one arriving while
/// another command is outstanding is a late read answer and is ignored.
const SHORT_ANSWER_MAX: usize = 64;

/// Settings an `idcard-sam` device takes from its config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Pause between polls (after a cycle ends, or after a timeout).
    pub poll_ms: u64,
    /// How long to wait for the answer to status, find and select.
    pub response_timeout_ms: u64,
    /// How long to wait for the answer to a read: the SAM authenticates the
    /// card and the answer is 1295 bytes (≈ 115 ms at 115200 baud alone);
    /// readers quote "under 1 s", so this allows a slow one.
    pub read_timeout_ms: u64,
    /// Read with fingerprint (`30 10`) instead of `30 01`. The fingerprint
    /// data is not emitted (the contract has no field for it).
    pub fingerprint: bool,
    /// Consecutive timeouts before [`Action::Fault`] (0 counts as 1).
    pub silent_after: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            poll_ms: DEFAULT_POLL_MS,
            response_timeout_ms: DEFAULT_RESPONSE_TIMEOUT_MS,
            read_timeout_ms: DEFAULT_READ_TIMEOUT_MS,
            fingerprint: false,
            silent_after: DEFAULT_SILENT_AFTER,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Status,
    Find,
    Select,
    Read,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Status => "SAM status",
            Cmd::Find => "find",
            Cmd::Select => "select",
            Cmd::Read => "read",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not opened yet: timers and bytes are ignored.
    Closed,
    /// Next poll due at the armed timer.
    Idle,
    /// A command is out; its answer is due by the armed timer.
    Waiting(Cmd),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Fault {
    Silent,
    Sam(String),
}

/// An SAM ID-card reader (`driver = "idcard-sam"`).
///
/// Presence: one event per placement. Readers differ for a card left on
/// them: most answer find with `80` once it was selected, some keep
/// answering `9F`. So the engine remembers (a hash of) the last emitted
/// card's id number and emits again only for a different card or after a
/// find answered `80` (the card was lifted, or rests already read): lifting
/// and placing a card again always gives a new event; on a `9F`-repeating
/// reader a lift shorter than one poll cycle is not seen.
pub struct IdCardReader {
    opts: Options,
    parser: FrameParser,
    state: State,
    /// When the armed timer fires.
    deadline: Instant,
    /// The SAM answered status `90` since the last open or silence.
    sam_ok: bool,
    /// FNV-1a of the last emitted card's id number (not the number itself:
    /// nothing here should hold a full id number longer than needed).
    last_card: Option<u64>,
    /// `request_read` asked for the next read to be emitted.
    force: bool,
    timeouts: u32,
    fault: Option<Fault>,
}

// Shows state only; no card data is held.
impl fmt::Debug for IdCardReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdCardReader")
            .field("state", &self.state)
            .field("sam_ok", &self.sam_ok)
            .field("card_present", &self.last_card.is_some())
            .field("timeouts", &self.timeouts)
            .field("faulted", &self.fault.is_some())
            .finish_non_exhaustive()
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

impl IdCardReader {
    pub fn new(opts: Options) -> IdCardReader {
        IdCardReader {
            opts,
            parser: FrameParser::new(),
            state: State::Closed,
            deadline: Instant(0),
            sam_ok: false,
            last_card: None,
            force: false,
            timeouts: 0,
            fault: None,
        }
    }

    fn arm(&mut self, at: Instant, out: &mut Vec<Action>) {
        self.deadline = at;
        out.push(Action::SetTimer(at));
    }

    fn send(&mut self, now: Instant, cmd: Cmd, out: &mut Vec<Action>) {
        let (c, p) = match cmd {
            Cmd::Status => CMD_SAM_STATUS,
            Cmd::Find => CMD_FIND,
            Cmd::Select => CMD_SELECT,
            Cmd::Read if self.opts.fingerprint => CMD_READ_FINGERPRINT,
            Cmd::Read => CMD_READ,
        };
        out.push(Action::Write(build_frame(c, p, &[])));
        self.state = State::Waiting(cmd);
        let wait = if cmd == Cmd::Read {
            self.opts.read_timeout_ms
        } else {
            self.opts.response_timeout_ms
        };
        self.arm(now.plus_ms(wait), out);
    }

    /// Starts a poll cycle now.
    fn poll(&mut self, now: Instant, out: &mut Vec<Action>) {
        let cmd = if self.sam_ok { Cmd::Find } else { Cmd::Status };
        self.send(now, cmd, out);
    }

    /// Ends the cycle: the next poll is `poll_ms` from now.
    fn idle(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.state = State::Idle;
        self.arm(now.plus_ms(self.opts.poll_ms), out);
    }

    fn set_fault(&mut self, fault: Fault, out: &mut Vec<Action>) {
        if self.fault.as_ref() == Some(&fault) {
            return;
        }
        let why = match &fault {
            Fault::Silent => format!(
                "reader not answering ({} requests in a row timed out)",
                self.timeouts
            ),
            Fault::Sam(why) => why.clone(),
        };
        self.fault = Some(fault);
        out.push(Action::Fault(why));
    }

    fn clear_fault(&mut self, out: &mut Vec<Action>) {
        if self.fault.take().is_some() {
            out.push(Action::Recovered);
        }
    }

    fn on_timeout(&mut self, now: Instant, cmd: Cmd, out: &mut Vec<Action>) {
        // The rest of a partial answer is not coming; a late one would be
        // mistaken for the next command's.
        let dropped = self.parser.reset();
        if dropped > 0 {
            out.push(Action::Malformed(format!(
                "incomplete answer to {} dropped after timeout ({dropped} bytes)",
                cmd.name()
            )));
        }
        self.timeouts = self.timeouts.saturating_add(1);
        if self.timeouts >= self.opts.silent_after.max(1) && self.fault.is_none() {
            self.set_fault(Fault::Silent, out);
            // After an outage the reader may have been swapped or power
            // cycled: check its SAM again, and treat the next card as new.
            self.sam_ok = false;
            self.last_card = None;
        }
        self.idle(now, out);
    }

    fn on_frame(&mut self, now: Instant, r: Response, out: &mut Vec<Action>) {
        self.timeouts = 0;
        if self.fault == Some(Fault::Silent) {
            self.clear_fault(out);
        }
        let State::Waiting(cmd) = self.state else {
            // Unsolicited (or late, after a timeout): nothing asked for it.
            return;
        };
        if cmd != Cmd::Read && r.data.len() > SHORT_ANSWER_MAX {
            // A late read answer; keep waiting for ours.
            return;
        }
        let status = SamStatus::from_sw3(r.sw3);
        if status.is_sam_fault() {
            self.sam_ok = false;
            self.set_fault(Fault::Sam(format!("SAM error: {status}")), out);
            self.idle(now, out);
            return;
        }
        match (cmd, status) {
            (Cmd::Status, SamStatus::Ok) => {
                self.sam_ok = true;
                self.clear_fault(out);
                self.send(now, Cmd::Find, out);
            }
            (Cmd::Status, other) => {
                self.set_fault(Fault::Sam(format!("SAM error: {other}")), out);
                self.idle(now, out);
            }
            (Cmd::Find, SamStatus::FindOk) => self.send(now, Cmd::Select, out),
            (Cmd::Find, SamStatus::NoCard) => {
                // No card, or one resting that was already read: either way
                // the next find that succeeds is a new placement.
                self.last_card = None;
                if self.force {
                    // Readers that answer 80 for a resting card still let it
                    // be selected and read again.
                    self.send(now, Cmd::Select, out);
                } else {
                    self.idle(now, out);
                }
            }
            (Cmd::Select, SamStatus::Ok) => self.send(now, Cmd::Read, out),
            (Cmd::Select, SamStatus::SelectFailed) => {
                // Card moved away (or a forced read found none): not a fault.
                self.force = false;
                self.idle(now, out);
            }
            (Cmd::Read, SamStatus::Ok) => {
                self.on_read(&r.data, out);
                self.idle(now, out);
            }
            (Cmd::Read, SamStatus::ReadFailed) => {
                self.force = false;
                self.idle(now, out);
            }
            (cmd, other) => {
                out.push(Action::Malformed(format!(
                    "reader answered {}: {other}",
                    cmd.name()
                )));
                if cmd != Cmd::Find {
                    self.force = false;
                }
                self.idle(now, out);
            }
        }
    }

    fn on_read(&mut self, data: &[u8], out: &mut Vec<Action>) {
        self.emit_read(data, out);
        // A completed read answers a pending request_read, whatever came of it.
        self.force = false;
    }

    fn emit_read(&mut self, data: &[u8], out: &mut Vec<Action>) {
        let Some(parts) = parse_read_data(data) else {
            out.push(Action::Malformed(format!(
                "read answer lengths do not add up ({} data bytes)",
                data.len()
            )));
            return;
        };
        let mut card = match decode_text(parts.text) {
            Ok(card) => card,
            Err(e) => {
                out.push(Action::Malformed(e.to_string()));
                return;
            }
        };
        let h = fnv1a(&card.id_number);
        if self.last_card == Some(h) && !self.force {
            // Same card still resting on a reader that keeps finding it.
            return;
        }
        self.last_card = Some(h);
        if !parts.photo.is_empty() {
            card.photo_wlt = Some(base64_encode(parts.photo));
        }
        out.push(Action::Emit(Event::IdcardRead(Box::new(card))));
    }

    fn on_error(&mut self, e: FrameError, out: &mut Vec<Action>) {
        out.push(Action::Malformed(e.to_string()));
    }
}

impl Protocol for IdCardReader {
    fn handle_open(&mut self, now: Instant, out: &mut Vec<Action>) {
        let opts = self.opts.clone();
        *self = IdCardReader::new(opts);
        self.poll(now, out);
    }

    fn handle_bytes(&mut self, now: Instant, bytes: &[u8], out: &mut Vec<Action>) {
        // Pushed a frame's worth at a time so the parser never holds more
        // than two frames, however large the read.
        for chunk in bytes.chunks(MAX_FRAME) {
            self.parser.push(chunk);
            while let Some(r) = self.parser.pop() {
                match r {
                    Ok(resp) if self.state != State::Closed => self.on_frame(now, resp, out),
                    Ok(_) => {}
                    Err(e) => self.on_error(e, out),
                }
            }
        }
    }

    fn handle_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        if now < self.deadline {
            // Early (or stale) wake-up: keep our own deadline.
            let at = self.deadline;
            out.push(Action::SetTimer(at));
            return;
        }
        match self.state {
            State::Waiting(cmd) => self.on_timeout(now, cmd, out),
            State::Idle => self.poll(now, out),
            State::Closed => {}
        }
    }

    fn request_read(&mut self, now: Instant, out: &mut Vec<Action>) -> bool {
        self.force = true;
        if self.state == State::Idle {
            self.poll(now, out);
        }
        true
    }
}
