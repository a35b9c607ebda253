//! The `label` family: TSPL label printers (TSC, Xprinter, Gprinter, HPRT).
//! Run by the print worker (src/print) like receipt printers; here is what
//! its config asks for.

use super::UsbNode;
use super::{bad, DriverSpec, FamilyOptions, KeyError, Make, OptionsType, Runs};
use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::tspl::{Stock, MAX_GAP_MM, MAX_MM};
use posbridge_drivers::Protocol;
use serde::Deserialize;
use std::time::Duration;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    runs: Runs::PrintWorker,
    usb: UsbNode::Printer,
    ..DriverSpec::new(
        "label",
        &[
            Transport::Tcp,
            Transport::Serial,
            Transport::Usb,
            Transport::File,
            Transport::Sim,
        ],
        OptionsType::of::<Options>(),
    )
};

/// A label printer's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The printer's command language: `tspl` (the default and, for now, the only one).
    language: Option<String>,
    /// Print head resolution: 203 (8 dots/mm, the default) or 300 (12 dots/mm).
    dpi: Option<u16>,
    /// The loaded label stock, used when a label does not give its size.
    width_mm: Option<f64>,
    height_mm: Option<f64>,
    gap_mm: Option<f64>,
    /// Status poll while idle: 0 (none) or 500-600000 ms (default 5000).
    poll_ms: Option<u64>,
    /// Ask the printer's status (`ESC ! ?`) before each job (default true).
    status_query: Option<bool>,
    /// The name QZ Tray pages know this printer by.
    qz_name: Option<String>,
    /// Print jobs HQ sends on `P/S/print` (default false).
    accept_remote: Option<bool>,
}

/// A label printer's settings, from its `[[device]]` table.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Dots per millimetre (8 at 203 dpi, 12 at 300).
    pub dots_per_mm: u32,
    /// The configured stock: defaults for labels that leave out their size.
    pub stock: Stock,
    pub poll: Option<Duration>,
    pub status_query: bool,
    pub accept_remote: bool,
}

/// A label printer's settings (the print worker's), or the key that is wrong.
pub fn settings(d: &DeviceConfig) -> Result<Settings, KeyError> {
    super::options::<Options>(d)?.settings(d.transport())
}

fn mm(key: &'static str, v: Option<f64>, lo: f64, hi: f64) -> Result<Option<f64>, KeyError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(bad(
            key,
            format!("{x} is not from {lo} to {hi} millimetres"),
        )),
        other => Ok(other),
    }
}

impl Options {
    fn settings(self, transport: Transport) -> Result<Settings, KeyError> {
        match self
            .language
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("tspl") | Some("tspl2") => {}
            Some("zpl") => {
                return Err(bad(
                    "language",
                    "ZPL (Zebra) is not supported yet; send it as raw through an escpos or \
                     passthrough device, or use a TSPL printer",
                ))
            }
            Some(other) => return Err(bad("language", format!("{other:?} is not tspl"))),
        }
        let dots_per_mm = match self.dpi.unwrap_or(203) {
            203 => 8,
            300 => 12,
            n => return Err(bad("dpi", format!("{n} is not 203 or 300"))),
        };
        let stock = Stock {
            width_mm: mm("width_mm", self.width_mm, 5.0, MAX_MM)?,
            height_mm: mm("height_mm", self.height_mm, 5.0, MAX_MM)?,
            gap_mm: mm("gap_mm", self.gap_mm, 0.0, MAX_GAP_MM)?,
        };
        let (poll, status_query) =
            super::escpos::status_keys(self.poll_ms, self.status_query, transport)?;
        self.qz_name.map(super::qz_name).transpose()?;
        Ok(Settings {
            dots_per_mm,
            stock,
            poll,
            status_query,
            accept_remote: self.accept_remote.unwrap_or(false),
        })
    }
}

impl FamilyOptions for Options {
    fn make(self, d: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        self.settings(d.transport())?;
        // Never run: the print worker drives printers (Runs::PrintWorker).
        Ok(Box::new(super::LinkDoesTheWork))
    }
}
