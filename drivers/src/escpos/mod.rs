//! ESC/POS receipt printers (PROTOCOLS.md §6): print documents rendered to
//! bytes, the cash drawer kick, and real-time status (`DLE EOT`).
//!
//! The command builder is written by hand rather than with the `escpos`
//! crate. Its 0.17 line (the last for this workspace's Rust 1.85; 0.18+
//! need 1.88) exposes its command encoders only through `Printer<D: Driver>`,
//! whose module always compiles TCP and file drivers and pulls in `log`; and
//! it has neither Chinese mode (`FS &`) nor wrapping by printed width, which
//! are most of the work here. The commands themselves are a handful of fixed
//! byte strings, each pinned by a test.

mod document;
pub mod image;
mod render;
mod status;
mod text;

pub(crate) use document::barcode_payload;
pub use document::{
    gs1_check_digit, picture_bytes, Align, Barcode, BarcodeType, Document, DocumentError,
    ImageLine, Line, LogoLine, TextLine, MAX_BARCODE_CHARS, MAX_DOCUMENT_CHARS, MAX_IMAGE_WIDTH,
    MAX_LINES, MAX_QR_BYTES, MAX_TEXT_CHARS,
};
pub use render::{render, RenderError};
pub use status::{
    status_queries, Paper, PrinterStatus, StatusError, StatusPoller, StatusReader,
    MISSED_ROUNDS_FOR_FAULT,
};

/// How text is encoded for the printer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// GB18030 (a superset of GBK and GB2312), printed in Chinese mode.
    #[default]
    Gb18030,
    /// 7-bit ASCII; anything else prints as `?`.
    Ascii,
}

crate::config_names!(Encoding {
    "gb18030" | "gbk" | "gb2312" => Encoding::Gb18030,
    "ascii" => Encoding::Ascii,
});

/// What `{"cut": true}` does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CutMode {
    /// Feed to the cutter and cut, leaving a hinge (`GS V 66 0`).
    #[default]
    Partial,
    /// Feed to the cutter and cut through (`GS V 65 0`).
    Full,
    /// No cutter: feed 4 lines so the receipt clears the tear bar (`ESC d 4`).
    None,
}

crate::config_names!(CutMode {
    "partial" => CutMode::Partial,
    "full" => CutMode::Full,
    "none" => CutMode::None,
});

/// Which drawer connector pin `ESC p` pulses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DrawerPin {
    /// Pin 2 (`m = 0`), where nearly every drawer is wired.
    #[default]
    Pin2,
    /// Pin 5 (`m = 1`), the second drawer.
    Pin5,
}

/// The drawer kick pulse: `ESC p m t1 t2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrawerKick {
    pub pin: DrawerPin,
    /// Pulse on-time in units of 2 ms.
    pub on: u8,
    /// Off-time after the pulse in units of 2 ms.
    pub off: u8,
}

impl Default for DrawerKick {
    /// 50 ms on, 500 ms off: what drawer makers and most POS software use.
    fn default() -> DrawerKick {
        DrawerKick {
            pin: DrawerPin::Pin2,
            on: 25,
            off: 250,
        }
    }
}

/// What the renderer needs to know about one printer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Font A characters per line: 32 on 58 mm paper, 42 or 48 on 80 mm.
    pub columns: u16,
    pub encoding: Encoding,
    /// Send `FS &` after `ESC @` when the encoding is GB18030. Off only for
    /// printers that are always in Chinese mode and misread `FS &`.
    pub chinese_mode: bool,
    pub cut: CutMode,
    pub drawer: DrawerKick,
    /// Printable width in dots: 576 on 80 mm paper, 384 on 58 mm.
    pub width_dots: u32,
    /// Largest image, in pixels, a document may carry (`print.max_image_pixels`).
    pub max_image_pixels: u64,
}

/// `print.max_image_pixels` when the config gives none: a 2000×2000 picture,
/// 16 MB decoded, far more than a 576-dot head shows.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 4_000_000;

/// The printable width of a printer with these Font A columns when the
/// config gives none: 384 dots (58 mm) up to 35 columns, else 576 (80 mm).
pub fn default_width_dots(columns: u16) -> u32 {
    if columns <= 35 {
        384
    } else {
        576
    }
}

impl Default for Profile {
    /// 80 mm paper, 48 columns, GB18030, partial cut, drawer on pin 2.
    fn default() -> Profile {
        Profile {
            columns: 48,
            encoding: Encoding::Gb18030,
            chinese_mode: true,
            cut: CutMode::Partial,
            drawer: DrawerKick::default(),
            width_dots: 576,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}

impl Profile {
    /// The default profile with these columns and encoding (the config's keys).
    pub fn new(columns: u16, encoding: Encoding) -> Profile {
        Profile {
            columns,
            encoding,
            width_dots: default_width_dots(columns),
            ..Profile::default()
        }
    }

    /// Printable width in dots (what barcodes, QR codes and images must fit).
    pub fn dots(&self) -> u32 {
        self.width_dots
    }
}

/// The bytes that open the cash drawer (`ESC p m t1 t2`), for
/// `POST /v1/drawer/open`. A document with `open_drawer` ends with the same.
pub fn drawer_kick(profile: &Profile) -> Vec<u8> {
    let m = match profile.drawer.pin {
        DrawerPin::Pin2 => 0,
        DrawerPin::Pin5 => 1,
    };
    vec![0x1b, b'p', m, profile.drawer.on, profile.drawer.off]
}

/// The drawer kick as a real-time command (`DLE DC4 1 m t`, pulse `t` × 100
/// ms), which printers carry out at once even while offline for paper or an
/// open cover, when `ESC p` would wait behind the stopped receipt.
pub fn realtime_drawer_kick(profile: &Profile) -> Vec<u8> {
    let m = match profile.drawer.pin {
        DrawerPin::Pin2 => 0,
        DrawerPin::Pin5 => 1,
    };
    // `on` is in 2 ms units; round up to whole 100 ms steps, 1 to 8.
    let t = (u16::from(profile.drawer.on) * 2).div_ceil(100).clamp(1, 8) as u8;
    vec![0x10, 0x14, 0x01, m, t]
}

#[cfg(test)]
mod image_tests;
#[cfg(test)]
mod tests;
