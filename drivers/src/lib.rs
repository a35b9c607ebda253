//! Sans-IO protocol code for posbridge.
//!
//! Every device family is a [`Protocol`]: the daemon feeds it the bytes a
//! transport read and the (caller-supplied) current time, and the protocol
//! answers with [`Action`]s — events to publish, bytes to write, a timer to
//! arm. Nothing here does I/O, reads a clock or spawns anything, so every
//! decoder is testable with byte fixtures and a simulated clock, and every
//! parser of outside bytes can be fuzzed.
//!
//! No function in this crate may panic on any input.

#![forbid(unsafe_code)]

pub mod barcode;
pub mod callerid;
pub mod catalog;
pub mod command;
pub mod display;
pub mod dongle;
pub mod downlink;
pub mod escpos;
pub mod event;
pub mod hid;
pub mod hotplug;
pub mod idcard;
pub mod keyboard;
pub mod line;
pub mod magstripe;
pub mod names;
pub mod passthrough;
pub mod pcsc;
pub mod qz;
pub mod rfid;
pub mod scale;
pub mod tspl;
pub mod weighed;

#[doc(hidden)]
pub use serde as __serde;

pub use event::{
    CardType, CodeKind, Event, IdCard, IdCardType, RejectReason, Tracks, Weighed, Weight, KINDS,
};

/// Monotonic time, in milliseconds since an origin the caller picks.
///
/// Protocols never read a clock; they only compare instants they are given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    /// This instant plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: u64) -> Instant {
        Instant(self.0.saturating_add(ms))
    }
}

/// What a protocol asks its driver shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Publish this event on the bus.
    Emit(Event),
    /// Write these bytes to the device.
    Write(Vec<u8>),
    /// Call [`Protocol::handle_timer`] at this instant (replaces any earlier timer).
    SetTimer(Instant),
    /// The device sent something the protocol could not use. Logged and counted;
    /// never fatal, and never contains raw card data.
    Malformed(String),
    /// The device stopped answering or reports a fault (a silent reader, a SAM
    /// self-test failure). The shell shows it as `error` with this reason and
    /// publishes `device.error`, until [`Action::Recovered`].
    Fault(String),
    /// The device answers properly again after a [`Action::Fault`].
    Recovered,
    /// The device's current reading (a scale's weight), kept by the shell
    /// for `GET` with the time it came; not published.
    Reading(Event),
}

/// One live device's protocol state machine.
pub trait Protocol: Send {
    /// The transport just opened (or reopened): reset framing state, send any
    /// start-up commands.
    fn handle_open(&mut self, _now: Instant, _out: &mut Vec<Action>) {}

    /// Bytes arrived from the device. Reads may split or merge frames arbitrarily.
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8], out: &mut Vec<Action>);

    /// The timer set by the last [`Action::SetTimer`] fired.
    fn handle_timer(&mut self, _now: Instant, _out: &mut Vec<Action>) {}

    /// A client asked for a read now (`POST /v1/devices/{id}/read`).
    /// Returns false when the protocol has nothing to do on demand.
    fn request_read(&mut self, _now: Instant, _out: &mut Vec<Action>) -> bool {
        false
    }

    /// A client asked to tare (`POST /v1/devices/{id}/tare`). Returns false
    /// when the device has no such command.
    fn request_tare(&mut self, _now: Instant, _out: &mut Vec<Action>) -> bool {
        false
    }

    /// A client asked to zero (`POST /v1/devices/{id}/zero`).
    fn request_zero(&mut self, _now: Instant, _out: &mut Vec<Action>) -> bool {
        false
    }

    /// The link closed (unplugged, EOF, shutdown). Only `Emit` actions are
    /// honoured: a device that announces itself (a dongle) announces its going.
    fn handle_close(&mut self, _now: Instant, _out: &mut Vec<Action>) {}
}
