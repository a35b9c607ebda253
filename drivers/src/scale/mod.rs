//! Scales (电子秤), PROTOCOLS.md §8: polled (Mettler-Toledo 8217: the host
//! asks `W`), streaming (indicators that send a frame per reading) and USB
//! HID POS scales. Every protocol turns its frames into [`Reading`]s; one
//! [`Tracker`] decides what becomes a `scale.weight` event, so they all
//! publish alike: each stable reading that differs from the last one
//! published, and unstable readings at most ten a second.

pub mod aclas;
mod frames;
mod hid;

pub use frames::{decode, Frame};
pub use hid::decode_report;

use crate::event::Weight;
use crate::line::{Line, LineFramer};
use crate::{Action, Event, Instant, Protocol};

/// Unstable readings are published at most this often (≤ 10/s).
pub const UNSTABLE_EVERY_MS: u64 = 100;
/// The longest frame any supported scale sends; longer is noise.
const MAX_FRAME: usize = 64;

/// A scale's wire protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// Mettler-Toledo 8217: `W` → `STX weight CR` or `STX ? status CR`.
    #[default]
    Toledo,
    /// A frame per reading: `ST,GS,+  1.234kg CR LF`.
    Continuous,
    /// Aclas (顶尖) OS2 protocol, active mode: 16-byte `SOH STX …` frames.
    Aclas,
    /// USB HID POS scales (usage page 0x8D): whole reports.
    Hid,
}

crate::config_names!(Kind {
    "toledo" | "toledo8217" => Kind::Toledo,
    "continuous" => Kind::Continuous,
    "aclas" | "aclas-os2" => Kind::Aclas,
    "hid" => Kind::Hid,
});

/// A weight unit a scale may report in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Milligram,
    Gram,
    Kilogram,
    Ounce,
    Pound,
}

crate::config_names!(Unit {
    "kg" => Unit::Kilogram,
    "g" => Unit::Gram,
    "lb" => Unit::Pound,
    "oz" => Unit::Ounce,
    "mg" => Unit::Milligram,
});

impl Unit {
    /// Grams per unit as a fraction (exact: a pound is 453.59237 g).
    fn grams_ratio(self) -> (i128, i128) {
        match self {
            Unit::Milligram => (1, 1000),
            Unit::Gram => (1, 1),
            Unit::Kilogram => (1000, 1),
            Unit::Ounce => (28_349_523_125, 1_000_000_000),
            Unit::Pound => (45_359_237, 100_000),
        }
    }
}

/// `mantissa × 10^exp` units in whole grams, rounded half away from zero;
/// `None` when it would not fit.
pub fn to_grams(mantissa: i64, exp: i32, unit: Unit) -> Option<i64> {
    if !(-9..=9).contains(&exp) {
        return None;
    }
    let (num, den) = unit.grams_ratio();
    let (mut num, mut den) = (i128::from(mantissa) * num, den);
    let scale = 10i128.pow(exp.unsigned_abs());
    if exp >= 0 {
        num *= scale;
    } else {
        den *= scale;
    }
    let half = den / 2;
    let q = if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    };
    i64::try_from(q).ok()
}

/// A decimal number as a scale writes it (`1.234`, `-0.05`, `  12`) as
/// mantissa and exponent; at most 12 digits.
pub fn parse_decimal(text: &str) -> Option<(i64, i32)> {
    let t = text.trim();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, t[1..].trim_start()),
        Some(b'+') => (false, t[1..].trim_start()),
        _ => (false, t),
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = whole.len() + frac.len();
    let all_digits = whole
        .bytes()
        .chain(frac.bytes())
        .all(|b| b.is_ascii_digit());
    if digits == 0 || digits > 12 || !all_digits {
        return None;
    }
    let mut m: i64 = 0;
    for b in whole.bytes().chain(frac.bytes()) {
        m = m * 10 + i64::from(b - b'0');
    }
    let exp = -(frac.len() as i32);
    Some((if neg { -m } else { m }, exp))
}

/// One reading, whatever protocol it came in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// `None` when the scale gave a state but no number (Toledo's `?` answer).
    pub grams: Option<i64>,
    pub stable: bool,
    pub net: bool,
    pub tare_grams: Option<i64>,
    pub overload: bool,
    pub negative: bool,
}

/// Decides which readings are published and keeps the latest.
#[derive(Debug, Default)]
pub struct Tracker {
    last_published: Option<Weight>,
    last_unstable_at: Option<Instant>,
    last_grams: i64,
}

impl Tracker {
    /// Takes one reading: always the device's current state
    /// (`Action::Reading`), and an event when it is news.
    pub fn push(&mut self, now: Instant, r: Reading, out: &mut Vec<Action>) {
        // A state without a number: under zero or over capacity has no weight
        // to repeat; moving keeps the last one.
        let grams = match r.grams {
            Some(g) => g,
            None if r.negative || r.overload => 0,
            None => self.last_grams,
        };
        self.last_grams = grams;
        let w = Weight {
            grams,
            stable: r.stable && r.grams.is_some() && !r.overload,
            net: r.net,
            tare_grams: r.tare_grams,
            overload: r.overload,
            negative: r.negative || grams < 0,
        };
        out.push(Action::Reading(Event::ScaleWeight(w.clone())));
        if self.last_published.as_ref() == Some(&w) {
            return;
        }
        if !w.stable {
            let recent = self
                .last_unstable_at
                .is_some_and(|t| now.0 < t.0.saturating_add(UNSTABLE_EVERY_MS));
            if recent {
                return;
            }
            self.last_unstable_at = Some(now);
        }
        self.last_published = Some(w.clone());
        out.push(Action::Emit(Event::ScaleWeight(w)));
    }

    /// Forgets what was published (a new session: the page hears the
    /// reading again).
    pub fn reset(&mut self) {
        *self = Tracker::default();
    }
}

/// A scale's settings, from its config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub kind: Kind,
    /// The unit a protocol reports in when its frames do not say (Toledo: kg).
    pub unit: Unit,
    /// How often a polled scale is asked for its weight.
    pub poll_ms: u64,
    /// Silence after which the scale counts as not answering; `None` never.
    pub silent_ms: Option<u64>,
    /// What `tare` and `zero` write (Toledo: `T`, `Z`; streaming indicators
    /// only when their manual names a command).
    pub tare_command: Option<Vec<u8>>,
    pub zero_command: Option<Vec<u8>>,
}

impl Options {
    /// The defaults of one protocol.
    pub fn new(kind: Kind) -> Options {
        let polled = kind == Kind::Toledo;
        Options {
            kind,
            unit: Unit::Kilogram,
            poll_ms: 200,
            silent_ms: (kind != Kind::Hid).then_some(if polled { 2000 } else { 3000 }),
            tare_command: polled.then(|| b"T".to_vec()),
            zero_command: polled.then(|| b"Z".to_vec()),
        }
    }
}

/// A scale's protocol state machine.
#[derive(Debug)]
pub struct Scale {
    opts: Options,
    framer: LineFramer,
    aclas: aclas::Framer,
    tracker: Tracker,
    last_heard: Instant,
    faulted: bool,
}

impl Scale {
    pub fn new(opts: Options) -> Scale {
        // Frames end at CR, LF or ETX; STX is stripped by the decoder.
        let framer = LineFramer::with_terminators(MAX_FRAME, b"\r\n\x03");
        Scale {
            opts,
            framer,
            aclas: aclas::Framer::default(),
            tracker: Tracker::default(),
            last_heard: Instant(0),
            faulted: false,
        }
    }

    fn polled(&self) -> bool {
        self.opts.kind == Kind::Toledo
    }

    /// The next tick: a poll, or a silence check for streaming scales.
    fn tick_ms(&self) -> Option<u64> {
        if self.polled() {
            return Some(self.opts.poll_ms);
        }
        self.opts.silent_ms.map(|s| (s / 2).max(50))
    }

    fn heard(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.last_heard = now;
        if self.faulted {
            self.faulted = false;
            out.push(Action::Recovered);
        }
    }

    fn frame(&mut self, now: Instant, raw: &[u8], out: &mut Vec<Action>) {
        match decode(self.opts.kind, self.opts.unit, raw) {
            Ok(Frame::Reading(r)) => {
                self.heard(now, out);
                self.tracker.push(now, r, out);
            }
            Ok(Frame::Ignored) => self.heard(now, out),
            Err(why) => out.push(Action::Malformed(format!("scale frame: {why}"))),
        }
    }

    fn command(&self, cmd: &Option<Vec<u8>>, out: &mut Vec<Action>) -> bool {
        match cmd {
            Some(bytes) => {
                out.push(Action::Write(bytes.clone()));
                true
            }
            None => false,
        }
    }
}

impl Protocol for Scale {
    fn handle_open(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.framer.reset();
        self.aclas.reset();
        self.tracker.reset();
        self.last_heard = now;
        self.faulted = false;
        if self.polled() {
            out.push(Action::Write(b"W".to_vec()));
        }
        if let Some(ms) = self.tick_ms() {
            out.push(Action::SetTimer(now.plus_ms(ms)));
        }
    }

    fn handle_bytes(&mut self, now: Instant, bytes: &[u8], out: &mut Vec<Action>) {
        if self.opts.kind == Kind::Hid {
            match decode_report(bytes) {
                Ok(Some(hid::Report::Reading(r))) => {
                    self.heard(now, out);
                    self.tracker.push(now, r, out);
                }
                Ok(Some(hid::Report::Fault(why))) => {
                    self.faulted = true;
                    out.push(Action::Fault(why));
                }
                Ok(None) => {}
                Err(why) => out.push(Action::Malformed(format!("scale report: {why}"))),
            }
            return;
        }
        if self.opts.kind == Kind::Aclas {
            let mut frames = Vec::new();
            self.aclas.push(bytes, &mut frames);
            for f in frames {
                match f {
                    Ok(r) => {
                        self.heard(now, out);
                        self.tracker.push(now, r, out);
                    }
                    Err(why) => out.push(Action::Malformed(format!("scale frame: {why}"))),
                }
            }
            return;
        }
        let mut lines = Vec::new();
        self.framer.push(bytes, &mut lines);
        for line in lines {
            match line {
                Line::Complete(raw) => self.frame(now, &raw, out),
                Line::TooLong(n) => out.push(Action::Malformed(format!(
                    "scale sent {n} bytes without a frame end; dropped"
                ))),
            }
        }
    }

    fn handle_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(tick) = self.tick_ms() else { return };
        if let Some(silent) = self.opts.silent_ms {
            let quiet = now.0.saturating_sub(self.last_heard.0);
            if quiet >= silent && !self.faulted {
                self.faulted = true;
                out.push(Action::Fault(format!(
                    "the scale does not answer (nothing for {quiet} ms; is it on and set to {}?)",
                    self.opts.kind.name()
                )));
            }
        }
        if self.polled() {
            out.push(Action::Write(b"W".to_vec()));
        }
        out.push(Action::SetTimer(now.plus_ms(tick)));
    }

    fn request_tare(&mut self, _now: Instant, out: &mut Vec<Action>) -> bool {
        self.command(&self.opts.tare_command, out)
    }

    fn request_zero(&mut self, _now: Instant, out: &mut Vec<Action>) -> bool {
        self.command(&self.opts.zero_command, out)
    }
}

#[cfg(test)]
mod tests;
