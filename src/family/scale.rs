//! The `scale` family: scales (电子秤) on serial, TCP, HID or the simulator.

use super::{bad, DriverSpec, FamilyOptions, HidReading, KeyError, Make, OptionsType, Request};
use crate::config::{DeviceConfig, Parity, Transport};
use posbridge_drivers::scale::{Kind, Options as ScaleOptions, Scale, Unit};
use posbridge_drivers::Protocol;
use serde::Deserialize;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    hid: HidReading::Whole,
    requests: &[Request::Tare, Request::Zero],
    serial_framing: Some(framing),
    ..DriverSpec::new(
        "scale",
        &[
            Transport::Serial,
            Transport::Tcp,
            Transport::Hid,
            Transport::Sim,
        ],
        OptionsType::of::<Options>(),
    )
};

/// A scale's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// toledo (default on serial, tcp, sim), continuous, aclas, hid (on hid).
    protocol: Option<Kind>,
    /// The unit a toledo scale is set to: kg (default) or lb.
    unit: Option<Unit>,
    /// How often a toledo scale is asked for its weight, 100-5000 ms (default 200).
    poll_ms: Option<u64>,
    /// Silence after which the scale is an error, 500-60000 ms, or 0 for never
    /// (default 2000 polled, 3000 streaming; never on hid).
    silent_ms: Option<u64>,
    /// What tare and zero send (toledo: "T" and "Z"; others: none unless set).
    tare_command: Option<String>,
    zero_command: Option<String>,
}

/// The serial framing a protocol's scales default to: 8217 mode is 7E1.
fn framing(d: &DeviceConfig) -> (u8, Parity) {
    match kind(d) {
        Kind::Toledo => (7, Parity::Even),
        _ => (8, Parity::None),
    }
}

fn kind(d: &DeviceConfig) -> Kind {
    let given = d
        .options
        .get("protocol")
        .and_then(toml::Value::as_str)
        .and_then(Kind::parse);
    given.unwrap_or(if d.transport() == Transport::Hid {
        Kind::Hid
    } else {
        Kind::Toledo
    })
}

impl Options {
    fn scale(self, d: &DeviceConfig) -> Result<ScaleOptions, KeyError> {
        let k = self.protocol.unwrap_or_else(|| kind(d));
        if (k == Kind::Hid) != (d.transport() == Transport::Hid) {
            return Err(bad(
                "protocol",
                "protocol \"hid\" goes with transport \"hid\", and only it",
            ));
        }
        let mut o = ScaleOptions::new(k);
        if let Some(u) = self.unit {
            if k != Kind::Toledo || !matches!(u, Unit::Kilogram | Unit::Pound) {
                return Err(bad(
                    "unit",
                    "only a toledo scale needs it: kg or lb (its frames do not say)",
                ));
            }
            o.unit = u;
        }
        if let Some(ms) = self.poll_ms {
            if k != Kind::Toledo || !(100..=5000).contains(&ms) {
                return Err(bad(
                    "poll_ms",
                    "is 100 to 5000, for a toledo scale (others send by themselves)",
                ));
            }
            o.poll_ms = ms;
        }
        if let Some(ms) = self.silent_ms {
            if k == Kind::Hid {
                return Err(bad(
                    "silent_ms",
                    "a HID scale reports only when its weight changes; remove it",
                ));
            }
            if ms != 0 && !(500..=60_000).contains(&ms) {
                return Err(bad("silent_ms", "is 0 (never an error) or 500 to 60000"));
            }
            o.silent_ms = (ms > 0).then_some(ms);
        }
        // Two polls unanswered before it counts as silent, or it flaps every poll.
        if let (Kind::Toledo, Some(ms)) = (k, o.silent_ms) {
            if ms < 2 * o.poll_ms {
                return Err(bad(
                    "silent_ms",
                    format!(
                        "{ms} is under two polls (poll_ms {}); make it at least {}",
                        o.poll_ms,
                        2 * o.poll_ms
                    ),
                ));
            }
        }
        o.tare_command = command("tare_command", self.tare_command, k)?.or(o.tare_command);
        o.zero_command = command("zero_command", self.zero_command, k)?.or(o.zero_command);
        Ok(o)
    }
}

fn command(key: &'static str, c: Option<String>, k: Kind) -> Result<Option<Vec<u8>>, KeyError> {
    match c {
        None => Ok(None),
        Some(_) if k == Kind::Hid => Err(bad(key, "a HID scale takes no serial commands")),
        Some(c) if c.is_empty() || c.len() > 32 => Err(bad(key, "is 1 to 32 bytes")),
        Some(c) => Ok(Some(c.into_bytes())),
    }
}

impl FamilyOptions for Options {
    fn make(self, d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        Ok(Box::new(Scale::new(self.scale(d)?)))
    }
}
