//! Real-time status: `DLE EOT n` (0x10 0x04 n), answered with one byte
//! each, even while the printer is offline or busy.
//!
//! Bit meanings are from Epson's ESC/POS reference for `DLE EOT`, which
//! Chinese printers (Xprinter, Gprinter, SNBC …) follow:
//!
//! | n | bit 2 | bit 3 | bit 5 | bit 6 |
//! |---|---|---|---|---|
//! | 1 printer | drawer pin 3 | offline | waiting for recovery | feed button |
//! | 2 offline cause | cover open | feed button | stopped by paper end | error |
//! | 4 paper sensor | near end | near end | paper end | paper end |
//!
//! In every answer bits 1 and 4 are 1 and bits 0 and 7 are 0 (`b & 0x93 ==
//! 0x12`). A byte without that pattern is not a status answer and is refused,
//! so line noise or a stray echo is never read as "paper out".

use crate::{Action, Event, Instant, Protocol};
use serde::{Deserialize, Serialize};
use std::fmt;

const DLE: u8 = 0x10;
const EOT: u8 = 0x04;
/// The queries, in the order [`StatusReader`] expects their answers.
const QUERIES: [u8; 3] = [1, 2, 4];
const FIXED_MASK: u8 = 0x93;
const FIXED_BITS: u8 = 0x12;

/// The three status queries (`DLE EOT 1`, `DLE EOT 2`, `DLE EOT 4`) in one write.
pub fn status_queries() -> [u8; 9] {
    [DLE, EOT, 1, DLE, EOT, 2, DLE, EOT, 4]
}

/// The paper roll, as the contract's `printer.status` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Paper {
    #[default]
    Ok,
    /// The near-end sensor sees little paper left.
    Low,
    /// No paper: printing has stopped.
    Out,
}

/// What the printer says about itself (contract: `printer.status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrinterStatus {
    pub online: bool,
    pub paper: Paper,
    /// The cover, or a label printer's print head, is open.
    pub cover_open: bool,
    /// A label printer's ribbon has run out (only sent when true).
    #[serde(default, skip_serializing_if = "crate::event::is_false")]
    pub ribbon_out: bool,
    /// A label printer's paper is jammed (only sent when true).
    #[serde(default, skip_serializing_if = "crate::event::is_false")]
    pub jammed: bool,
}

/// A byte that cannot be an answer to `DLE EOT n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusError {
    /// The query whose answer was expected (1, 2 or 4).
    pub query: u8,
    pub byte: u8,
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "byte 0x{:02X} is not an answer to DLE EOT {} (fixed bits 0x12 under mask 0x93)",
            self.byte, self.query
        )
    }
}

impl std::error::Error for StatusError {}

fn check(query: u8, byte: u8) -> Result<u8, StatusError> {
    if byte & FIXED_MASK == FIXED_BITS {
        Ok(byte)
    } else {
        Err(StatusError { query, byte })
    }
}

impl PrinterStatus {
    /// Decodes the answers to `DLE EOT 1`, `2` and `4`.
    pub fn from_responses(printer: u8, offline: u8, paper: u8) -> Result<Self, StatusError> {
        let printer = check(1, printer)?;
        let offline = check(2, offline)?;
        let paper = check(4, paper)?;
        // Either bit of a two-bit sensor field counts: Epson sets both, some
        // clones only one.
        let paper = if paper & 0x60 != 0 || offline & 0x20 != 0 {
            Paper::Out
        } else if paper & 0x0c != 0 {
            Paper::Low
        } else {
            Paper::Ok
        };
        Ok(PrinterStatus {
            online: printer & 0x08 == 0,
            paper,
            cover_open: offline & 0x04 != 0,
            ..PrinterStatus::default()
        })
    }
}

impl From<PrinterStatus> for Event {
    fn from(s: PrinterStatus) -> Event {
        Event::PrinterStatus {
            online: s.online,
            paper: s.paper,
            cover_open: s.cover_open,
            ribbon_out: s.ribbon_out,
            jammed: s.jammed,
        }
    }
}

/// Collects the answers to one [`status_queries`] write, byte by byte, however
/// the reads split them.
#[derive(Clone, Debug, Default)]
pub struct StatusReader {
    got: [u8; 3],
    next: usize,
}

impl StatusReader {
    /// A reader waiting for the answer to `DLE EOT 1`.
    pub fn new() -> StatusReader {
        StatusReader::default()
    }

    /// Forgets a partial round; call when writing the queries again.
    pub fn start(&mut self) {
        self.next = 0;
    }

    /// Takes one byte. A round's third valid answer yields the status and
    /// starts the next round; an invalid byte is refused and skipped.
    pub fn push(&mut self, byte: u8) -> Result<Option<PrinterStatus>, StatusError> {
        let query = QUERIES.get(self.next).copied().unwrap_or(1);
        let byte = check(query, byte)?;
        if let Some(slot) = self.got.get_mut(self.next) {
            *slot = byte;
        }
        self.next += 1;
        if self.next < QUERIES.len() {
            return Ok(None);
        }
        self.next = 0;
        let [a, b, c] = self.got;
        PrinterStatus::from_responses(a, b, c).map(Some)
    }
}

/// Rounds without an answer before the printer is reported as faulty.
pub const MISSED_ROUNDS_FOR_FAULT: u32 = 3;

/// Polls a printer's status: writes [`status_queries`] every interval, emits
/// `printer.status` when it changes (and once after each open), and reports
/// a fault after [`MISSED_ROUNDS_FOR_FAULT`] unanswered rounds.
#[derive(Clone, Debug)]
pub struct StatusPoller {
    reader: StatusReader,
    interval_ms: u64,
    last: Option<PrinterStatus>,
    waiting: bool,
    missed: u32,
    faulted: bool,
}

impl StatusPoller {
    /// Polls every `interval_ms` (at least 100 ms).
    pub fn new(interval_ms: u64) -> StatusPoller {
        StatusPoller {
            reader: StatusReader::new(),
            interval_ms: interval_ms.max(100),
            last: None,
            waiting: false,
            missed: 0,
            faulted: false,
        }
    }

    /// The last status the printer reported.
    pub fn last(&self) -> Option<PrinterStatus> {
        self.last
    }

    fn ask(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.reader.start();
        self.waiting = true;
        out.push(Action::Write(status_queries().to_vec()));
        out.push(Action::SetTimer(now.plus_ms(self.interval_ms)));
    }
}

impl Protocol for StatusPoller {
    fn handle_open(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.last = None;
        self.missed = 0;
        self.ask(now, out);
    }

    fn handle_bytes(&mut self, _now: Instant, bytes: &[u8], out: &mut Vec<Action>) {
        let mut refused = 0usize;
        for &b in bytes {
            match self.reader.push(b) {
                Ok(Some(status)) => {
                    self.waiting = false;
                    self.missed = 0;
                    if self.faulted {
                        self.faulted = false;
                        out.push(Action::Recovered);
                    }
                    if self.last != Some(status) {
                        self.last = Some(status);
                        out.push(Action::Emit(status.into()));
                    }
                }
                Ok(None) => {}
                Err(_) => refused += 1,
            }
        }
        if refused > 0 {
            out.push(Action::Malformed(format!(
                "{refused} byte(s) that are not DLE EOT status answers"
            )));
        }
    }

    fn handle_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.waiting {
            self.missed = self.missed.saturating_add(1);
            if self.missed >= MISSED_ROUNDS_FOR_FAULT && !self.faulted {
                self.faulted = true;
                out.push(Action::Fault(
                    "the printer does not answer status queries (DLE EOT)".into(),
                ));
            }
        }
        self.ask(now, out);
    }

    fn request_read(&mut self, now: Instant, out: &mut Vec<Action>) -> bool {
        self.ask(now, out);
        true
    }
}
