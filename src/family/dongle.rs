//! The `dongle` family: license dongles, present or answering a challenge.

use super::UsbNode;
use super::{bad, DriverSpec, FamilyOptions, HidReading, KeyError, Make, OptionsType};
use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::dongle;
use posbridge_drivers::Protocol;
use serde::Deserialize;

/// What the rest of the daemon needs to know about this family.
// hid: presence plus the optional feature-report check; usb: presence
// only (vendor-class dongles such as Sentinel HASP); sim: replay.
pub static SPEC: DriverSpec = DriverSpec {
    hid: HidReading::Feature,
    usb: UsbNode::Presence,
    named_by_match: true,
    ..DriverSpec::new(
        "dongle",
        &[Transport::Hid, Transport::Usb, Transport::Sim],
        OptionsType::of::<Options>(),
    )
};

/// A dongle's own keys (`match`, a common key, names it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The challenge-response check behind `licensed`.
    check: Option<DongleCheck>,
}

/// `check`: the challenge-response behind `licensed`. Either `challenge` +
/// `response` (a recorded exchange) or `hmac_key`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DongleCheck {
    /// Feature report id used both ways (default 0).
    #[serde(default)]
    pub report_id: u8,
    /// Request reports are zero-padded to this many bytes after the id (default 32).
    pub report_len: Option<usize>,
    /// Hex: the challenge sent, with `response` the answer a genuine dongle gave.
    pub challenge: Option<String>,
    /// Hex: the expected answer to `challenge`.
    pub response: Option<String>,
    /// Hex: a key shared with the dongle; the answer must be HMAC-SHA256(key, challenge).
    pub hmac_key: Option<String>,
    /// HMAC mode: random challenge bytes per plug-in (default 16).
    pub challenge_len: Option<usize>,
    /// HMAC mode: bytes of the HMAC the dongle returns (default 16, at most 32).
    pub response_len: Option<usize>,
    /// No answer within this long is `licensed: false` (default 2000).
    pub timeout_ms: Option<u64>,
}

impl FamilyOptions for Options {
    fn make(self, d: &DeviceConfig, ctx: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        make(d, self.check.as_ref(), ctx)
    }
}

// Over 80 lines: the dongle check's options are read and checked together: which keys go together depends on which check it is.
fn make(
    d: &DeviceConfig,
    check: Option<&DongleCheck>,
    ctx: &Make,
) -> Result<Box<dyn Protocol>, KeyError> {
    let Some(m) = &d.usb_match else {
        return Err(bad(
            "match",
            "required for driver dongle: { vid, pid, serial? } name the dongle in its events",
        ));
    };
    let hex4 = |s: &str| posbridge_drivers::catalog::parse_hex16(s).map(|v| format!("{v:04x}"));
    let (Some(vid), Some(pid)) = (hex4(&m.vid), hex4(&m.pid)) else {
        return Err(bad("match", "vid and pid must be 4 hex digits"));
    };
    let mut opts = dongle::Options {
        vid,
        pid,
        serial: m.serial.clone(),
        seed: ctx.seed,
        ..dongle::Options::default()
    };
    if let Some(c) = check {
        if d.transport() == Transport::Usb {
            return Err(bad("check", "a challenge-response needs transport \"hid\"; transport \"usb\" reports presence only"));
        }
        let bytes = |k: &'static str, s: &str| -> Result<Vec<u8>, KeyError> {
            let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            match hex::decode(&s) {
                Ok(b) if !b.is_empty() => Ok(b),
                _ => Err(bad("check", format!("{k} must be hex bytes"))),
            }
        };
        opts.report_id = c.report_id;
        opts.report_len = c.report_len.unwrap_or(32);
        if !(1..=dongle::MAX_REPORT).contains(&opts.report_len) {
            return Err(bad(
                "check",
                format!("report_len must be from 1 to {}", dongle::MAX_REPORT),
            ));
        }
        opts.timeout_ms = c.timeout_ms.unwrap_or(2000);
        if !(100..=60_000).contains(&opts.timeout_ms) {
            return Err(bad("check", "timeout_ms must be from 100 to 60000"));
        }
        let check = match (&c.challenge, &c.response, &c.hmac_key) {
            (Some(ch), Some(r), None) => {
                if c.challenge_len.is_some() || c.response_len.is_some() {
                    return Err(bad(
                        "check",
                        "challenge_len/response_len only go with hmac_key",
                    ));
                }
                dongle::Check::Recorded {
                    challenge: bytes("challenge", ch)?,
                    response: bytes("response", r)?,
                }
            }
            (None, None, Some(k)) => {
                let challenge_len = c.challenge_len.unwrap_or(16);
                let response_len = c.response_len.unwrap_or(16);
                if challenge_len == 0 || challenge_len > opts.report_len {
                    return Err(bad("check", "challenge_len must be from 1 to report_len"));
                }
                if !(1..=32).contains(&response_len) {
                    return Err(bad("check", "response_len must be from 1 to 32"));
                }
                dongle::Check::Hmac {
                    key: bytes("hmac_key", k)?,
                    challenge_len,
                    response_len,
                }
            }
            _ => {
                return Err(bad(
                    "check",
                    "give either challenge and response (a recorded exchange) or hmac_key",
                ))
            }
        };
        if let dongle::Check::Recorded { challenge, .. } = &check {
            if challenge.len() > opts.report_len {
                return Err(bad("check", "challenge is longer than report_len"));
            }
        }
        opts.check = Some(check);
    }
    Ok(Box::new(dongle::Dongle::new(opts)))
}
