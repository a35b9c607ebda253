//! The `dongle` family: license dongles, present or answering a challenge.

use super::{DriverSpec, HidReading, KeyError, Make, Runs, SimKind, UsbNode};
use crate::config::DeviceConfig;
use posbridge_drivers::dongle;
use posbridge_drivers::Protocol;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    name: "dongle",
    // hid: presence plus the optional feature-report check; usb: presence
    // only (vendor-class dongles such as Sentinel HASP); sim: replay.
    transports: &["hid", "usb", "sim"],
    keys: &["check", "match"],
    default_baud: 9600,
    runs: Runs::Supervisor,
    sim: SimKind::Stream,
    hid: HidReading::Feature,
    usb: UsbNode::Presence,
    make,
};

// Over 80 lines: the dongle check's options are read and checked together: which keys go together depends on which check it is.

pub fn make(d: &DeviceConfig, ctx: &Make) -> Result<Box<dyn Protocol>, KeyError> {
    let Some(m) = &d.usb_match else {
        return Err((
            "match",
            "required for driver dongle: { vid, pid, serial? } name the dongle in its events"
                .into(),
        ));
    };
    let hex4 = |s: &str| posbridge_drivers::catalog::parse_hex16(s).map(|v| format!("{v:04x}"));
    let (Some(vid), Some(pid)) = (hex4(&m.vid), hex4(&m.pid)) else {
        return Err(("match", "vid and pid must be 4 hex digits".into()));
    };
    let mut opts = dongle::Options {
        vid,
        pid,
        serial: m.serial.clone(),
        seed: ctx.seed,
        ..dongle::Options::default()
    };
    if let Some(c) = &d.check {
        if d.transport_name() == "usb" {
            return Err((
                "check",
                "a challenge-response needs transport \"hid\"; transport \"usb\" reports presence only".into(),
            ));
        }
        let bytes = |k: &'static str, s: &str| -> Result<Vec<u8>, KeyError> {
            let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            match hex::decode(&s) {
                Ok(b) if !b.is_empty() => Ok(b),
                _ => Err(("check", format!("{k} must be hex bytes"))),
            }
        };
        opts.report_id = c.report_id;
        opts.report_len = c.report_len.unwrap_or(32);
        if !(1..=dongle::MAX_REPORT).contains(&opts.report_len) {
            return Err((
                "check",
                format!("report_len must be from 1 to {}", dongle::MAX_REPORT),
            ));
        }
        opts.timeout_ms = c.timeout_ms.unwrap_or(2000);
        if !(100..=60_000).contains(&opts.timeout_ms) {
            return Err(("check", "timeout_ms must be from 100 to 60000".into()));
        }
        let check = match (&c.challenge, &c.response, &c.hmac_key) {
            (Some(ch), Some(r), None) => {
                if c.challenge_len.is_some() || c.response_len.is_some() {
                    return Err((
                        "check",
                        "challenge_len/response_len only go with hmac_key".into(),
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
                    return Err(("check", "challenge_len must be from 1 to report_len".into()));
                }
                if !(1..=32).contains(&response_len) {
                    return Err(("check", "response_len must be from 1 to 32".into()));
                }
                dongle::Check::Hmac {
                    key: bytes("hmac_key", k)?,
                    challenge_len,
                    response_len,
                }
            }
            _ => {
                return Err((
                    "check",
                    "give either challenge and response (a recorded exchange) or hmac_key".into(),
                ))
            }
        };
        if let dongle::Check::Recorded { challenge, .. } = &check {
            if challenge.len() > opts.report_len {
                return Err(("check", "challenge is longer than report_len".into()));
            }
        }
        opts.check = Some(check);
    }
    Ok(Box::new(dongle::Dongle::new(opts)))
}
