//! The `callerid` family: caller-ID boxes, NCID servers and Whozz Calling units.

use super::{bad, DriverSpec, FamilyOptions, HidReading, KeyError, Make, OptionsType};
use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::callerid::{self, hid::HidReportLayout, Format};
use posbridge_drivers::Protocol;
use serde::Deserialize;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    hid: HidReading::Whole,
    ..DriverSpec::new(
        "callerid",
        &[
            Transport::Serial,
            Transport::Tcp,
            Transport::Udp,
            Transport::Hid,
            Transport::Sim,
        ],
        OptionsType::of::<Options>(),
    )
};

/// A caller-ID box's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// What the box delivers (default auto).
    format: Option<Format>,
    /// Silence after the last ring that ends a call, 1000-60000 ms (default 8000).
    ring_timeout_ms: Option<u64>,
    /// The country calling code numbers are normalized with (default 86).
    country: Option<String>,
    /// `format = "hid"`: where a USB box's report keeps ring, hook and number.
    hid_layout: Option<HidReportLayout>,
}

impl FamilyOptions for Options {
    fn make(self, d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        let format = self.format.unwrap_or_default();
        let hid_layout = hid_layout(format, self.hid_layout)?;
        check_transport(format, d.transport())?;
        let ring_timeout_ms = self.ring_timeout_ms.unwrap_or(8000);
        if !(1000..=60_000).contains(&ring_timeout_ms) {
            return Err(bad("ring_timeout_ms", "must be from 1000 to 60000"));
        }
        let country = self.country.unwrap_or_else(|| "86".into());
        if country.is_empty() || country.len() > 3 || !country.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                "country",
                format!("{country:?} is not a country calling code (86, 852, 1 …)"),
            ));
        }
        let network = matches!(d.transport(), Transport::Tcp | Transport::Udp);
        Ok(Box::new(callerid::CallerId::new(callerid::Options {
            format,
            call_id_prefix: format!("{}-{}-", d.id, ulid::Ulid::new().timestamp_ms()),
            ring_timeout_ms,
            country,
            // An NCID server or a network unit is not a modem: no AT commands to it.
            send_init: !network && !matches!(format, Format::Ncid | Format::Hid | Format::Whozz),
            hid_layout,
            ..callerid::Options::default()
        })))
    }
}

/// A USB box's report layout is per model (PROTOCOLS.md §2): data, not code.
fn hid_layout(
    format: Format,
    layout: Option<HidReportLayout>,
) -> Result<Option<HidReportLayout>, KeyError> {
    match (format, layout) {
        (Format::Hid, None) => Err(bad(
            "hid_layout",
            "format \"hid\" needs the box's report layout (see config/posbridge.toml)",
        )),
        (Format::Hid, Some(l)) if l.report_len == 0 || l.report_len > 64 => {
            Err(bad("hid_layout", "report_len must be from 1 to 64"))
        }
        (Format::Hid, Some(l)) => Ok(Some(l)),
        (_, Some(_)) => Err(bad("hid_layout", "only used with format = \"hid\"")),
        (_, None) => Ok(None),
    }
}

/// Whozz Calling records come one per datagram; other formats are streams,
/// and HID reports come only from a HID box.
fn check_transport(format: Format, transport: Transport) -> Result<(), KeyError> {
    match (format, transport) {
        (Format::Whozz, Transport::Udp | Transport::Sim) | (Format::Auto, Transport::Udp) => Ok(()),
        (Format::Whozz, _) => Err(bad(
            "format",
            "format \"whozz\" needs transport \"udp\" (or \"sim\" to replay datagrams)",
        )),
        (_, Transport::Udp) => Err(bad(
            "format",
            "transport \"udp\" takes format \"whozz\" (or \"auto\")",
        )),
        (Format::Hid, t) if !matches!(t, Transport::Hid | Transport::Sim) => Err(bad(
            "format",
            "format \"hid\" needs transport \"hid\" (or \"sim\" to replay captured reports)",
        )),
        _ => Ok(()),
    }
}
