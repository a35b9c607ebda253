//! The `escpos` family: receipt printers. Run by the print worker
//! (src/print), not the supervisor; here is what its config asks for.

use super::UsbNode;
use super::{bad, DriverSpec, FamilyOptions, KeyError, Make, OptionsType, Runs};
use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::escpos::{default_width_dots, CutMode, DrawerPin, Encoding, Profile};
use posbridge_drivers::Protocol;
use serde::Deserialize;
use std::time::Duration;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    runs: Runs::PrintWorker,
    usb: UsbNode::Printer,
    ..DriverSpec::new(
        "escpos",
        &[
            Transport::Tcp,
            Transport::Serial,
            Transport::Usb,
            Transport::File,
        ],
        OptionsType::of::<Options>(),
    )
};

/// A receipt printer's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// How text is encoded (default gb18030).
    encoding: Option<Encoding>,
    /// Characters per line, 32-80 (default 48).
    columns: Option<u16>,
    /// Printable width in dots, 128-2048 (default 576; 384 up to 35 columns).
    width_dots: Option<u32>,
    /// What `{"cut": true}` does (default partial).
    cut: Option<CutMode>,
    /// The drawer connector pin the kick pulses: 2 or 5 (default 2).
    drawer_pin: Option<u8>,
    /// Status poll while idle: 0 (none) or 500-600000 ms (default 5000).
    poll_ms: Option<u64>,
    /// Ask the printer's real-time status (DLE EOT) before each job (default true).
    status_query: Option<bool>,
    /// The name QZ Tray pages know this printer by (`qz.printers.find("XP-80C")`).
    qz_name: Option<String>,
    /// Print jobs HQ sends on `P/S/print` (default false: refused "not accepted").
    accept_remote: Option<bool>,
}

/// The idle status poll when the config gives none.
const DEFAULT_POLL_MS: u64 = 5000;

/// A printer's settings, from its `[[device]]` table.
#[derive(Clone, Debug)]
pub struct Settings {
    pub profile: Profile,
    /// Status poll while the queue is empty; `None` = only before jobs.
    pub poll: Option<Duration>,
    /// Ask `DLE EOT` before each job (off for printers that never answer).
    pub status_query: bool,
    /// Takes print jobs from HQ.
    pub accept_remote: bool,
}

/// A printer's settings (the print worker's), or the key that is wrong.
pub fn settings(d: &DeviceConfig) -> Result<Settings, KeyError> {
    super::options::<Options>(d)?.settings(d.transport())
}

impl Options {
    fn settings(self, transport: Transport) -> Result<Settings, KeyError> {
        let columns = self.columns.unwrap_or(48);
        if !(32..=80).contains(&columns) {
            return Err(bad(
                "columns",
                format!("{columns} is not from 32 to 80 (32 on 58 mm paper, 42 or 48 on 80 mm)"),
            ));
        }
        let width_dots = self.width_dots.unwrap_or(default_width_dots(columns));
        if !(128..=2048).contains(&width_dots) {
            return Err(bad(
                "width_dots",
                format!("{width_dots} is not from 128 to 2048 (384 on 58 mm paper, 576 on 80 mm)"),
            ));
        }
        let pin = match self.drawer_pin.unwrap_or(2) {
            2 => DrawerPin::Pin2,
            5 => DrawerPin::Pin5,
            n => return Err(bad("drawer_pin", format!("{n} is not 2 or 5"))),
        };
        let (poll, status_query) = status_keys(self.poll_ms, self.status_query, transport)?;
        self.qz_name.map(super::qz_name).transpose()?;
        let mut profile = Profile::new(columns, self.encoding.unwrap_or_default());
        profile.cut = self.cut.unwrap_or_default();
        profile.drawer.pin = pin;
        profile.width_dots = width_dots;
        Ok(Settings {
            profile,
            poll,
            status_query,
            accept_remote: self.accept_remote.unwrap_or(false),
        })
    }
}

/// A printer's `poll_ms` and `status_query` (receipt and label printers
/// alike): the idle poll, and whether to ask before each job. A printer
/// writing to a file or simulated has no status to ask.
pub(super) fn status_keys(
    poll_ms: Option<u64>,
    status_query: Option<bool>,
    transport: Transport,
) -> Result<(Option<Duration>, bool), KeyError> {
    let ms = poll_ms.unwrap_or(DEFAULT_POLL_MS);
    if ms != 0 && !(500..=600_000).contains(&ms) {
        return Err(bad(
            "poll_ms",
            "must be 0 (no polling while idle) or from 500 to 600000",
        ));
    }
    if matches!(transport, Transport::File | Transport::Sim) {
        let why = format!("a {} printer has no status; remove it", transport.name());
        if status_query.is_some() {
            return Err(bad("status_query", why));
        }
        if poll_ms.is_some() {
            return Err(bad("poll_ms", why));
        }
    }
    Ok((
        (ms > 0).then(|| Duration::from_millis(ms)),
        status_query.unwrap_or(true),
    ))
}

impl FamilyOptions for Options {
    fn make(self, d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        self.settings(d.transport())?;
        // Never run: the print worker drives printers (Runs::PrintWorker).
        Ok(Box::new(super::LinkDoesTheWork))
    }
}
