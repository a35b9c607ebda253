//! TSPL label printers (TSC, and the Xprinter, Gprinter and HPRT label
//! models that speak it; PROTOCOLS.md §9): a page's label as JSON in, the
//! TSPL command stream out, and the one-byte answer to `ESC ! ?` decoded.
//!
//! Commands are text lines ending CR LF. Text is printed in the resident
//! Simplified Chinese font `TSS24.BF2`, whose content bytes are GB18030 (two
//! bytes a Chinese character); a `"` inside a quoted string is `\["]`.
//! Pictures go as `BITMAP` in mode 0 (overwrite), where a 0 bit prints.

use crate::escpos::image::{raster, Raster, MAX_PICTURES};
use crate::escpos::{barcode_payload, picture_bytes, Barcode, BarcodeType, Paper, PrinterStatus};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// `ESC ! ?`: the printer answers one status byte at once, even mid-job.
pub const STATUS_QUERY: [u8; 3] = [0x1b, b'!', b'?'];
/// Largest label side, in millimetres.
pub const MAX_MM: f64 = 1000.0;
/// Largest gap between labels, in millimetres.
pub const MAX_GAP_MM: f64 = 50.0;
/// Most items on one label.
pub const MAX_ITEMS: usize = 200;
/// Most characters in one text item.
pub const MAX_TEXT_CHARS: usize = 500;
/// Most bytes of QR data.
pub const MAX_QR_BYTES: usize = 700;
/// Most copies of one label.
pub const MAX_COPIES: u32 = 9999;
/// The resident Simplified Chinese font (24×24 dots; GB18030 content).
const FONT: &str = "TSS24.BF2";
/// Bar height when a barcode gives none: 10 mm at 203 dpi.
const BARCODE_HEIGHT: u32 = 80;
/// QR module size when a QR code gives none.
const QR_CELL: u8 = 4;

/// Decodes the answer to `ESC ! ?`: bit 0 head open, 1 paper jam, 2 out of
/// paper, 3 out of ribbon, 4 paused, 5 printing (not a fault), 6 cover open
/// (Gprinter), 7 another error (TSC) — TSC's TSPL/TSPL2 manual and
/// Gprinter's GP-2120T manual agree on bits 0-5.
pub fn status(byte: u8) -> PrinterStatus {
    PrinterStatus {
        online: byte & 0x90 == 0,
        paper: if byte & 0x04 != 0 {
            Paper::Out
        } else {
            Paper::Ok
        },
        cover_open: byte & 0x41 != 0,
        ribbon_out: byte & 0x08 != 0,
        jammed: byte & 0x02 != 0,
    }
}

/// The label stock loaded in a printer: what a label leaving out its size uses.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stock {
    pub width_mm: Option<f64>,
    pub height_mm: Option<f64>,
    pub gap_mm: Option<f64>,
}

/// What rendering needs to know about one printer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// 8 at 203 dpi, 12 at 300 dpi.
    pub dots_per_mm: u32,
    /// Largest picture, in pixels (`print.max_image_pixels`).
    pub max_image_pixels: u64,
}

/// A label to print (`POST /v1/print` `{"label": …}`).
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub width_mm: f64,
    pub height_mm: f64,
    pub gap_mm: f64,
    pub items: Vec<Item>,
    pub copies: u32,
}

/// One entry of `items`, placed at `x`, `y` in dots from the top left.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Text {
        text: String,
        x: u32,
        y: u32,
        /// Font multiplier, 1 to 10.
        size: u8,
    },
    Barcode {
        barcode: Barcode,
        x: u32,
        y: u32,
        height: u32,
    },
    Qr {
        data: String,
        x: u32,
        y: u32,
        cell: u8,
    },
    Image {
        data: Arc<[u8]>,
        x: u32,
        y: u32,
        width: Option<u32>,
    },
    /// A configured `[[print.logo]]`, replaced by its picture before rendering.
    Logo {
        name: String,
        x: u32,
        y: u32,
        width: Option<u32>,
    },
}

/// Why a label was refused. Displays as `items[2].x: …` or `width_mm: …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelError {
    /// Where: `items[2]`, `items[2].x`, `width_mm`; empty for the whole label.
    pub at: String,
    pub message: String,
}

impl LabelError {
    fn new(at: impl Into<String>, message: impl Into<String>) -> LabelError {
        LabelError {
            at: at.into(),
            message: message.into(),
        }
    }

    fn item(i: usize, field: &str, message: impl Into<String>) -> LabelError {
        let at = if field.is_empty() {
            format!("items[{i}]")
        } else {
            format!("items[{i}].{field}")
        };
        LabelError::new(at, message)
    }
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

impl std::error::Error for LabelError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    width_mm: Option<f64>,
    height_mm: Option<f64>,
    gap_mm: Option<f64>,
    #[serde(default)]
    items: Vec<Value>,
    copies: Option<u32>,
}

impl Label {
    /// Parses and checks a label; its size comes from `stock` where it gives none.
    pub fn from_json(bytes: &[u8], stock: &Stock) -> Result<Label, LabelError> {
        let raw: RawLabel =
            serde_json::from_slice(bytes).map_err(|e| LabelError::new("", e.to_string()))?;
        let side = |key: &str, v: Option<f64>, dflt: Option<f64>, lo: f64, hi: f64| {
            let v = v.or(dflt).ok_or_else(|| {
                LabelError::new(key, "missing, and the printer has no default configured")
            })?;
            if !(lo..=hi).contains(&v) {
                return Err(LabelError::new(
                    key,
                    format!("{v} is not from {lo} to {hi} mm"),
                ));
            }
            Ok(v)
        };
        let width_mm = side("width_mm", raw.width_mm, stock.width_mm, 5.0, MAX_MM)?;
        let height_mm = side("height_mm", raw.height_mm, stock.height_mm, 5.0, MAX_MM)?;
        let gap_mm = side(
            "gap_mm",
            raw.gap_mm,
            stock.gap_mm.or(Some(2.0)),
            0.0,
            MAX_GAP_MM,
        )?;
        let copies = raw.copies.unwrap_or(1);
        if !(1..=MAX_COPIES).contains(&copies) {
            return Err(LabelError::new(
                "copies",
                format!("{copies} is not from 1 to {MAX_COPIES}"),
            ));
        }
        if raw.items.len() > MAX_ITEMS {
            return Err(LabelError::new(
                "items",
                format!("{} items; at most {MAX_ITEMS}", raw.items.len()),
            ));
        }
        let items = raw
            .items
            .into_iter()
            .enumerate()
            .map(|(i, v)| parse_item(i, v))
            .collect::<Result<Vec<_>, _>>()?;
        let pictures = items
            .iter()
            .filter(|i| matches!(i, Item::Image { .. } | Item::Logo { .. }))
            .count();
        if pictures > MAX_PICTURES {
            return Err(LabelError::new(
                "items",
                format!("{pictures} pictures; at most {MAX_PICTURES}"),
            ));
        }
        Ok(Label {
            width_mm,
            height_mm,
            gap_mm,
            items,
            copies,
        })
    }

    /// Replaces each `logo` item by its picture from `find`, or names the
    /// item whose logo is not configured.
    pub fn resolve_logos(
        &mut self,
        find: impl Fn(&str) -> Option<Arc<[u8]>>,
    ) -> Result<(), LabelError> {
        for (i, item) in self.items.iter_mut().enumerate() {
            if let Item::Logo { name, x, y, width } = item {
                let data = find(name).ok_or_else(|| {
                    LabelError::item(
                        i,
                        "logo",
                        format!("no logo named {name:?} is configured ([[print.logo]])"),
                    )
                })?;
                *item = Item::Image {
                    data,
                    x: *x,
                    y: *y,
                    width: *width,
                };
            }
        }
        Ok(())
    }

    /// Whether rendering will decode pictures (worth a blocking thread).
    pub fn has_pictures(&self) -> bool {
        self.items.iter().any(|i| matches!(i, Item::Image { .. }))
    }
}

const KINDS: [&str; 5] = ["text", "barcode", "qr", "image", "logo"];

fn parse_item(i: usize, value: Value) -> Result<Item, LabelError> {
    let Value::Object(map) = value else {
        return Err(LabelError::item(
            i,
            "",
            "expected an object such as {\"text\": \"…\", \"x\": 0, \"y\": 0}",
        ));
    };
    let found: Vec<&str> = KINDS
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    let kind = match found.as_slice() {
        [k] => *k,
        [] => {
            return Err(LabelError::item(
                i,
                "",
                "unknown item kind; expected text, barcode, qr, image or logo",
            ))
        }
        many => {
            return Err(LabelError::item(
                i,
                "",
                format!(
                    "an item is exactly one of text, barcode, qr, image or logo; this one has {}",
                    many.join(" and ")
                ),
            ))
        }
    };
    let item = match kind {
        "text" => typed::<RawText>(map).and_then(text_item),
        "barcode" => typed::<RawBarcode>(map).and_then(barcode_item),
        "qr" => typed::<RawQr>(map).and_then(qr_item),
        "image" => typed::<RawImage>(map).and_then(|r| {
            Ok(Item::Image {
                data: picture_bytes(&r.image)?.into(),
                x: r.x,
                y: r.y,
                width: r.width,
            })
        }),
        _ => typed::<RawLogo>(map).map(|r| Item::Logo {
            name: r.logo,
            x: r.x,
            y: r.y,
            width: r.width,
        }),
    };
    item.map_err(|m| LabelError::item(i, "", m))
}

fn typed<T: serde::de::DeserializeOwned>(map: Map<String, Value>) -> Result<T, String> {
    serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawText {
    text: String,
    x: u32,
    y: u32,
    size: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBarcode {
    barcode: Barcode,
    x: u32,
    y: u32,
    height: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQr {
    qr: String,
    x: u32,
    y: u32,
    cell: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    image: String,
    x: u32,
    y: u32,
    width: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogo {
    logo: String,
    x: u32,
    y: u32,
    width: Option<u32>,
}

fn text_item(r: RawText) -> Result<Item, String> {
    let n = r.text.chars().count();
    if n == 0 || n > MAX_TEXT_CHARS {
        return Err(format!(
            "text must be 1 to {MAX_TEXT_CHARS} characters, got {n}"
        ));
    }
    gb18030_text(&r.text)?;
    let size = r.size.unwrap_or(1);
    if !(1..=10).contains(&size) {
        return Err(format!("size must be from 1 to 10, got {size}"));
    }
    Ok(Item::Text {
        text: r.text,
        x: r.x,
        y: r.y,
        size,
    })
}

fn barcode_item(r: RawBarcode) -> Result<Item, String> {
    barcode_payload(&r.barcode)?;
    if r.barcode.data.contains(|c: char| c.is_control()) {
        return Err("barcode data has a control character".into());
    }
    let height = r.height.unwrap_or(BARCODE_HEIGHT);
    if !(8..=2000).contains(&height) {
        return Err(format!("height must be from 8 to 2000 dots, got {height}"));
    }
    Ok(Item::Barcode {
        barcode: r.barcode,
        x: r.x,
        y: r.y,
        height,
    })
}

fn qr_item(r: RawQr) -> Result<Item, String> {
    if r.qr.is_empty() || r.qr.len() > MAX_QR_BYTES {
        return Err(format!(
            "qr data must be 1 to {MAX_QR_BYTES} bytes, got {}",
            r.qr.len()
        ));
    }
    // A line break would end the command line inside the quoted data.
    if r.qr.contains(|c: char| c.is_control()) {
        return Err("qr data cannot hold control characters (line breaks) in TSPL".into());
    }
    let cell = r.cell.unwrap_or(QR_CELL);
    if !(1..=10).contains(&cell) {
        return Err(format!("cell must be from 1 to 10 dots, got {cell}"));
    }
    Ok(Item::Qr {
        data: r.qr,
        x: r.x,
        y: r.y,
        cell,
    })
}

/// The text as the font's GB18030 bytes: ASCII, or two-byte characters
/// (GB18030's four-byte ones are in no printer font); `¥` as the full-width `￥`.
fn gb18030_text(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 2);
    for c in text.chars() {
        if c.is_control() {
            return Err(format!("text has the control character {c:?}"));
        }
        if c.is_ascii() {
            out.push(c as u8);
            continue;
        }
        let c = if c == '\u{a5}' { '\u{ffe5}' } else { c };
        let bytes = crate::display::two_byte_gbk(c)
            .ok_or_else(|| format!("{c:?} is not in the printer's Chinese font (GBK)"))?;
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// A quoted TSPL string: `"` is written `\["]`.
fn quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for &b in bytes {
        if b == b'"' {
            out.extend_from_slice(b"\\[\"]");
        } else {
            out.push(b);
        }
    }
    out.push(b'"');
}

/// A millimetre value as TSPL takes it: at most one decimal.
fn mm(v: f64) -> String {
    let tenths = (v * 10.0).round() as i64;
    if tenths % 10 == 0 {
        format!("{}", tenths / 10)
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

/// Renders a label (logos already resolved) to the bytes to send.
pub fn render(label: &Label, s: &Settings) -> Result<Vec<u8>, LabelError> {
    let dots = |v: f64| (v * f64::from(s.dots_per_mm)).floor() as u32;
    let (w, h) = (dots(label.width_mm), dots(label.height_mm));
    let mut out = Vec::new();
    let line = |out: &mut Vec<u8>, text: String| {
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    line(
        &mut out,
        format!("SIZE {} mm,{} mm", mm(label.width_mm), mm(label.height_mm)),
    );
    line(&mut out, format!("GAP {} mm,0 mm", mm(label.gap_mm)));
    line(&mut out, "DIRECTION 1".into());
    line(&mut out, "REFERENCE 0,0".into());
    line(&mut out, "CLS".into());
    for (i, item) in label.items.iter().enumerate() {
        let (x, y) = position(item);
        if x >= w || y >= h {
            let field = if x >= w { "x" } else { "y" };
            let (v, max) = if x >= w { (x, w) } else { (y, h) };
            return Err(LabelError::item(
                i,
                field,
                format!(
                    "{v} is outside the label ({max} dots at {} dots/mm)",
                    s.dots_per_mm
                ),
            ));
        }
        item_bytes(&mut out, i, item, (w - x, h - y), s)?;
    }
    line(&mut out, format!("PRINT 1,{}", label.copies));
    Ok(out)
}

fn position(item: &Item) -> (u32, u32) {
    match item {
        Item::Text { x, y, .. }
        | Item::Barcode { x, y, .. }
        | Item::Qr { x, y, .. }
        | Item::Image { x, y, .. }
        | Item::Logo { x, y, .. } => (*x, *y),
    }
}

/// One item's command; `room` is the label's width and height left from its position.
fn item_bytes(
    out: &mut Vec<u8>,
    i: usize,
    item: &Item,
    room: (u32, u32),
    s: &Settings,
) -> Result<(), LabelError> {
    match item {
        Item::Text { text, x, y, size } => {
            let bytes = gb18030_text(text).map_err(|m| LabelError::item(i, "text", m))?;
            out.extend_from_slice(format!("TEXT {x},{y},\"{FONT}\",0,{size},{size},").as_bytes());
            quoted(out, &bytes);
        }
        Item::Barcode {
            barcode,
            x,
            y,
            height,
        } => {
            let (kind, data) =
                tspl_barcode(barcode).map_err(|m| LabelError::item(i, "barcode", m))?;
            out.extend_from_slice(
                format!("BARCODE {x},{y},\"{kind}\",{height},1,0,2,2,").as_bytes(),
            );
            quoted(out, data.as_bytes());
        }
        Item::Qr { data, x, y, cell } => {
            out.extend_from_slice(format!("QRCODE {x},{y},M,{cell},A,0,").as_bytes());
            quoted(out, data.as_bytes());
        }
        Item::Image { data, x, y, width } => {
            let r = raster(data, *width, room.0, s.max_image_pixels)
                .map_err(|m| LabelError::item(i, "image", m))?;
            if r.height > room.1 {
                return Err(LabelError::item(
                    i,
                    "image",
                    format!(
                        "the picture is {} dots tall; from y = {y} the label has {}",
                        r.height, room.1
                    ),
                ));
            }
            bitmap(out, *x, *y, &r);
        }
        Item::Logo { name, .. } => {
            return Err(LabelError::item(
                i,
                "logo",
                format!("logo {name:?} was not resolved to its picture"),
            ))
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// TSPL's name for a symbology, and the data it takes: EAN and UPC without
/// their check digit (the printer adds it; a given one was verified).
fn tspl_barcode(b: &Barcode) -> Result<(&'static str, String), String> {
    let payload = barcode_payload(b)?;
    let digits =
        |n: usize| String::from_utf8_lossy(payload.get(..n).unwrap_or_default()).into_owned();
    Ok(match b.kind {
        BarcodeType::Code128 => ("128", b.data.clone()),
        BarcodeType::Ean13 => ("EAN13", digits(12)),
        BarcodeType::Ean8 => ("EAN8", digits(7)),
        BarcodeType::Upca => ("UPCA", digits(11)),
        BarcodeType::Code39 => ("39", b.data.clone()),
        BarcodeType::Itf => ("25", b.data.clone()),
    })
}

/// `BITMAP x,y,width_bytes,height,0,data`: mode 0 (overwrite), a 0 bit
/// prints, so the raster's bits are inverted (the unused bits at a row's
/// end become 1: paper).
fn bitmap(out: &mut Vec<u8>, x: u32, y: u32, r: &Raster) {
    out.extend_from_slice(format!("BITMAP {x},{y},{},{},0,", r.row_bytes(), r.height).as_bytes());
    let start = out.len();
    out.extend(r.bits.iter().map(|b| !b));
    defuse_immediate(&mut out[start..]);
}

/// TSPL's immediate commands (`ESC ! ?`, `ESC ! R` reset, `ESC ! .` cancel,
/// `ESC ! P` pause) are taken wherever their bytes arrive; in picture data
/// an `ESC !` pair loses one black dot instead (0x1B → 0x1F).
fn defuse_immediate(data: &mut [u8]) {
    for i in 0..data.len().saturating_sub(1) {
        if data[i] == 0x1b && data[i + 1] == b'!' {
            data[i] = 0x1f;
        }
    }
}

#[cfg(test)]
mod tests;
