//! The `escpos` family: receipt printers. Run by the print worker
//! (src/print), not the supervisor; here is what its config asks for.

use super::{DriverSpec, HidReading, KeyError, Make, Runs, SimKind, UsbNode};
use crate::config::DeviceConfig;
use posbridge_drivers::escpos::{CutMode, DrawerPin, Encoding, Profile};
use posbridge_drivers::Protocol;
use std::time::Duration;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    name: "escpos",
    transports: &["tcp", "serial", "usb", "file"],
    keys: &[
        "address",
        "encoding",
        "columns",
        "cut",
        "drawer_pin",
        "poll_ms",
        "status_query",
    ],
    default_baud: 9600,
    runs: Runs::PrintWorker,
    sim: SimKind::Stream,
    hid: HidReading::Keyboard,
    usb: UsbNode::Printer,
    make,
};

/// The idle status poll when the config gives none.
const DEFAULT_POLL_MS: u64 = 5000;

/// A printer's settings, from its `[[device]]` table.
#[derive(Clone, Debug)]
pub struct Options {
    pub profile: Profile,
    /// Status poll while the queue is empty; `None` = only before jobs.
    pub poll: Option<Duration>,
    /// Ask `DLE EOT` before each job (off for printers that never answer).
    pub status_query: bool,
}

/// Reads and checks an escpos device's keys (config validation calls this too).
pub fn options(d: &DeviceConfig) -> Result<Options, KeyError> {
    let transport = d.transport_name();
    if transport == "tcp" && d.path.is_some() {
        return Err((
            "path",
            "a tcp printer is reached at its address; remove path".into(),
        ));
    }
    if transport != "tcp" && d.address.is_some() {
        return Err((
            "address",
            format!("only applies to transport \"tcp\", not {transport:?}"),
        ));
    }
    let encoding = match d.encoding.as_deref() {
        None => Encoding::Gb18030,
        Some(e) => Encoding::parse(e).ok_or((
            "encoding",
            format!("{e:?} is not gb18030 (also gbk, gb2312) or ascii"),
        ))?,
    };
    let columns = d.columns.unwrap_or(48);
    if !(32..=80).contains(&columns) {
        return Err((
            "columns",
            format!("{columns} is not from 32 to 80 (32 on 58 mm paper, 42 or 48 on 80 mm)"),
        ));
    }
    let cut = match d.cut.as_deref().unwrap_or("partial") {
        "partial" => CutMode::Partial,
        "full" => CutMode::Full,
        "none" => CutMode::None,
        c => {
            return Err((
                "cut",
                format!("{c:?} is not partial, full or none (no cutter)"),
            ))
        }
    };
    let pin = match d.drawer_pin.unwrap_or(2) {
        2 => DrawerPin::Pin2,
        5 => DrawerPin::Pin5,
        n => return Err(("drawer_pin", format!("{n} is not 2 or 5"))),
    };
    let poll_ms = d.poll_ms.unwrap_or(DEFAULT_POLL_MS);
    if poll_ms != 0 && !(500..=600_000).contains(&poll_ms) {
        return Err((
            "poll_ms",
            "must be 0 (no polling while idle) or from 500 to 600000".into(),
        ));
    }
    if transport == "file" && (d.status_query.is_some() || d.poll_ms.is_some()) {
        let k = if d.status_query.is_some() {
            "status_query"
        } else {
            "poll_ms"
        };
        return Err((k, "a file printer has no status; remove it".into()));
    }
    let mut profile = Profile::new(columns, encoding);
    profile.cut = cut;
    profile.drawer.pin = pin;
    Ok(Options {
        profile,
        poll: (poll_ms > 0).then(|| Duration::from_millis(poll_ms)),
        status_query: d.status_query.unwrap_or(true),
    })
}

pub fn make(d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
    options(d)?;
    // Never run: the print worker drives printers (Runs::PrintWorker).
    Ok(Box::new(super::LinkDoesTheWork))
}
