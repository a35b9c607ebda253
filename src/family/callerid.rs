//! The `callerid` family: caller-ID boxes, NCID servers and Whozz Calling units.

use super::{DriverSpec, HidReading, KeyError, Make, Runs, SimKind, UsbNode};
use crate::config::DeviceConfig;
use posbridge_drivers::callerid;
use posbridge_drivers::Protocol;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    name: "callerid",
    transports: &["serial", "tcp", "udp", "hid", "sim"],
    keys: &[
        "format",
        "ring_timeout_ms",
        "country",
        "address",
        "from",
        "hid_layout",
    ],
    default_baud: 9600,
    runs: Runs::Supervisor,
    sim: SimKind::Stream,
    hid: HidReading::Whole,
    usb: UsbNode::None,
    make,
};

pub fn make(d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
    let format: callerid::Format = match d.format.as_deref() {
        None => callerid::Format::Auto,
        Some(f) => serde_json::from_value(serde_json::Value::from(f)).map_err(|_| {
            (
                "format",
                format!(
                    "{f:?} is not one of auto, modem, mdmf, sdmf, etsi, dtmf, ncid, hid, whozz"
                ),
            )
        })?,
    };
    // A USB box's report layout is per model (PROTOCOLS.md §2): data, not code.
    let hid_layout = match (format, &d.hid_layout) {
        (callerid::Format::Hid, None) => {
            return Err((
                "hid_layout",
                "format \"hid\" needs the box's report layout (see config/posbridge.toml)".into(),
            ))
        }
        (callerid::Format::Hid, Some(l)) => {
            if l.report_len == 0 || l.report_len > 64 {
                return Err(("hid_layout", "report_len must be from 1 to 64".into()));
            }
            Some(l.clone())
        }
        (_, Some(_)) => return Err(("hid_layout", "only used with format = \"hid\"".into())),
        (_, None) => None,
    };
    // Whozz Calling records come one per datagram; other formats are streams.
    match (format, d.transport_name()) {
        (callerid::Format::Whozz, "udp" | "sim") | (callerid::Format::Auto, "udp") => {}
        (callerid::Format::Whozz, _) => {
            return Err((
                "format",
                "format \"whozz\" needs transport \"udp\" (or \"sim\" to replay datagrams)".into(),
            ))
        }
        (_, "udp") => {
            return Err((
                "format",
                "transport \"udp\" takes format \"whozz\" (or \"auto\")".into(),
            ))
        }
        _ => {}
    }
    if format == callerid::Format::Hid && !matches!(d.transport_name(), "hid" | "sim") {
        return Err((
            "format",
            "format \"hid\" needs transport \"hid\" (or \"sim\" to replay captured reports)".into(),
        ));
    }
    let ring_timeout_ms = d.ring_timeout_ms.unwrap_or(8000);
    if !(1000..=60_000).contains(&ring_timeout_ms) {
        return Err(("ring_timeout_ms", "must be from 1000 to 60000".into()));
    }
    let country = d.country.clone().unwrap_or_else(|| "86".into());
    if country.is_empty() || country.len() > 3 || !country.bytes().all(|b| b.is_ascii_digit()) {
        return Err((
            "country",
            format!("{country:?} is not a country calling code (86, 852, 1 …)"),
        ));
    }
    Ok(Box::new(callerid::CallerId::new(callerid::Options {
        format,
        call_id_prefix: format!("{}-{}-", d.id, ulid::Ulid::new().timestamp_ms()),
        ring_timeout_ms,
        country,
        // An NCID server or a network unit is not a modem: no AT commands to it.
        send_init: !matches!(d.transport_name(), "tcp" | "udp")
            && !matches!(
                format,
                callerid::Format::Ncid | callerid::Format::Hid | callerid::Format::Whozz
            ),
        hid_layout,
        ..callerid::Options::default()
    })))
}
