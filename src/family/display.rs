//! The `display` family: customer displays (客显) facing the shopper. Pages
//! send what to show (`POST /v1/display`); the request is rendered here,
//! before it is accepted, and the newest one wins the link (device::show).

use super::{bad, DriverSpec, FamilyOptions, KeyError, Make, OptionsType, Request};
use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::display::{Charset, Display, Model, Settings};
use posbridge_drivers::Protocol;
use serde::Deserialize;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    requests: &[Request::Display],
    ..DriverSpec::new(
        "display",
        &[
            Transport::Serial,
            Transport::Tcp,
            Transport::File,
            Transport::Sim,
        ],
        OptionsType::of::<Options>(),
    )
};

/// A display's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Its command set: cd5220 (default), escpos-vfd or led8.
    protocol: Option<Model>,
    /// What its font holds: ascii (default) or gb18030.
    charset: Option<Charset>,
    /// Columns per line (two-line displays, default 20) or digits (led8, default 8).
    columns: Option<u16>,
    /// A too-long upper line scrolls instead of being cut (cd5220 only).
    scroll: Option<bool>,
    /// Brightness 1-4, set when the link opens (cd5220 and escpos-vfd).
    brightness: Option<u8>,
}

impl Options {
    fn settings(self) -> Result<Settings, KeyError> {
        let model = self.protocol.unwrap_or_default();
        let mut s = Settings::new(model);
        let led = model == Model::Led8;
        if let Some(c) = self.columns {
            let range = if led { 4..=16 } else { 8..=40 };
            if !range.contains(&c) {
                return Err(bad(
                    "columns",
                    format!("{c} is not from {} to {}", range.start(), range.end()),
                ));
            }
            s.columns = usize::from(c);
        }
        if let Some(cs) = self.charset {
            if led {
                return Err(bad(
                    "charset",
                    "an LED display shows digits only; remove it",
                ));
            }
            s.charset = cs;
        }
        if let Some(scroll) = self.scroll {
            if model != Model::Cd5220 {
                return Err(bad(
                    "scroll",
                    "only cd5220 displays scroll a line by themselves",
                ));
            }
            s.scroll = scroll;
        }
        if let Some(b) = self.brightness {
            if led || !(1..=4).contains(&b) {
                return Err(bad(
                    "brightness",
                    "is 1 to 4, on cd5220 and escpos-vfd displays",
                ));
            }
            s.brightness = Some(b);
        }
        Ok(s)
    }
}

/// A display's settings, or the key that is wrong.
pub fn settings(d: &DeviceConfig) -> Result<Settings, KeyError> {
    super::options::<Options>(d)?.settings()
}

impl FamilyOptions for Options {
    fn make(self, _: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        Ok(Box::new(Display::new(self.settings()?)))
    }
}
