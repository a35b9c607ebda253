//! The print document of `POST /v1/print` (CONTRACT.md §4):
//! `{"lines": [{"text": …}, {"qr": …}, {"barcode": {…}}, {"image": …}, {"logo": …},
//! {"feed": n}, {"cut": true}], "open_drawer": bool}`.
//!
//! Parsing checks everything that does not depend on the printer (sizes,
//! barcode data and check digits, limits), so a bad document is refused with
//! its line number before anything reaches the printer.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// Most lines in one document.
pub const MAX_LINES: usize = 1000;
/// Most characters in one text line.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Most characters of text in one document, over all lines.
pub const MAX_DOCUMENT_CHARS: usize = 64 * 1024;
/// Most bytes of QR data. About what a model 2 symbol at level M holds at
/// version 21, which still scans from 58 mm paper.
pub const MAX_QR_BYTES: usize = 700;
/// Most characters of barcode data (`GS k` counts bytes in one byte).
pub const MAX_BARCODE_CHARS: usize = 250;
/// Widest image a line may ask for, in dots (wider than any receipt head).
pub const MAX_IMAGE_WIDTH: u32 = 2048;

/// A receipt to print.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawDocument")]
pub struct Document {
    /// What to print, top to bottom.
    pub lines: Vec<Line>,
    /// Kick the cash drawer once the document has printed.
    pub open_drawer: bool,
}

/// One entry of `lines`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// `{"text": "…", "align": …, "bold": …, "size": [w, h]}`.
    Text(TextLine),
    /// `{"qr": "…"}`: a QR code of the UTF-8 bytes, centered.
    Qr(String),
    /// `{"barcode": {"type": "CODE128", "data": "…"}}`, centered, digits below.
    Barcode(Barcode),
    /// `{"image": "<base64 PNG or JPEG>", "align": …, "width": dots}`.
    Image(ImageLine),
    /// `{"logo": "name", "align": …, "width": dots}`: a configured image,
    /// replaced by its [`Line::Image`] before rendering ([`Document::resolve_logos`]).
    Logo(LogoLine),
    /// `{"feed": n}`: n blank lines (0 to 255).
    Feed(u8),
    /// `{"cut": true}`: cut the paper here (`{"cut": false}` is dropped when parsing).
    Cut,
}

/// A paragraph of text; `\n` starts a new printed line, long lines wrap.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextLine {
    /// The text, in Unicode; encoded for the printer when rendering.
    pub text: String,
    #[serde(default)]
    pub align: Align,
    #[serde(default)]
    pub bold: bool,
    /// Character width and height multipliers, each 1 to 8 (`[1, 1]` is normal).
    #[serde(default = "normal_size")]
    pub size: [u8; 2],
}

impl TextLine {
    /// Left-aligned, normal text.
    pub fn plain(text: impl Into<String>) -> TextLine {
        TextLine {
            text: text.into(),
            align: Align::Left,
            bold: false,
            size: normal_size(),
        }
    }
}

fn normal_size() -> [u8; 2] {
    [1, 1]
}

/// A picture: the file's bytes, decoded when rendered for a printer.
#[derive(Clone, PartialEq, Eq)]
pub struct ImageLine {
    pub data: Arc<[u8]>,
    /// Centered unless asked otherwise.
    pub align: Align,
    /// Printed width in dots; the picture's own width (at most the paper's) when absent.
    pub width: Option<u32>,
}

impl fmt::Debug for ImageLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageLine")
            .field("bytes", &self.data.len())
            .field("align", &self.align)
            .field("width", &self.width)
            .finish()
    }
}

/// A configured logo by name, placed like an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoLine {
    pub name: String,
    pub align: Align,
    pub width: Option<u32>,
}

/// Horizontal alignment of a line (`ESC a`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    #[default]
    Left,
    Center,
    Right,
}

/// A 1D barcode.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Barcode {
    /// The symbology; JSON key `type`.
    #[serde(rename = "type")]
    pub kind: BarcodeType,
    /// What to encode. EAN/UPC data may leave out the check digit.
    pub data: String,
}

/// The supported symbologies (ESC/POS `GS k` function B).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum BarcodeType {
    /// Code 128: printable ASCII; all-digit data of even length uses code set C.
    Code128,
    /// EAN-13: 12 digits (check digit added) or 13 (check digit verified).
    Ean13,
    /// EAN-8: 7 or 8 digits.
    Ean8,
    /// Code 39: digits, upper-case letters, space and `$ % + - . /`.
    Code39,
    /// UPC-A: 11 or 12 digits.
    Upca,
    /// Interleaved 2 of 5: an even number of digits.
    Itf,
}

impl BarcodeType {
    /// The contract's spelling.
    pub fn name(self) -> &'static str {
        match self {
            BarcodeType::Code128 => "CODE128",
            BarcodeType::Ean13 => "EAN13",
            BarcodeType::Ean8 => "EAN8",
            BarcodeType::Code39 => "CODE39",
            BarcodeType::Upca => "UPCA",
            BarcodeType::Itf => "ITF",
        }
    }

    /// Parses a type name; case, `-` and `_` do not matter (`ean-13`, `UPC_A`).
    pub fn parse(s: &str) -> Option<BarcodeType> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        Some(match norm.as_str() {
            "CODE128" => BarcodeType::Code128,
            "EAN13" => BarcodeType::Ean13,
            "EAN8" => BarcodeType::Ean8,
            "CODE39" => BarcodeType::Code39,
            "UPCA" => BarcodeType::Upca,
            "ITF" => BarcodeType::Itf,
            _ => return None,
        })
    }
}

impl TryFrom<String> for BarcodeType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        BarcodeType::parse(&s).ok_or_else(|| {
            format!(
                "unknown barcode type `{s}`; expected CODE128, EAN13, EAN8, CODE39, UPCA or ITF"
            )
        })
    }
}

/// Why a document was refused. Displays as `lines[3]: …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentError {
    /// Index into `lines`, when the problem is in one line.
    pub line: Option<usize>,
    /// What is wrong, in plain words.
    pub message: String,
}

impl DocumentError {
    pub(crate) fn at(line: usize, message: impl Into<String>) -> DocumentError {
        DocumentError {
            line: Some(line),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> DocumentError {
        DocumentError {
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(i) => write!(f, "lines[{i}]: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DocumentError {}

impl Document {
    /// Parses and checks a JSON document.
    pub fn from_json(bytes: &[u8]) -> Result<Document, DocumentError> {
        serde_json::from_slice(bytes).map_err(|e| {
            // Our own messages come through serde's `custom`; keep them as they are.
            let msg = e.to_string();
            DocumentError::whole(msg)
        })
    }

    /// Replaces each `logo` line by its picture from `find`, or names the
    /// line whose logo is not configured.
    pub fn resolve_logos(
        &mut self,
        find: impl Fn(&str) -> Option<Arc<[u8]>>,
    ) -> Result<(), DocumentError> {
        for (i, line) in self.lines.iter_mut().enumerate() {
            if let Line::Logo(l) = line {
                let data = find(&l.name).ok_or_else(|| {
                    DocumentError::at(
                        i,
                        format!("no logo named {:?} is configured ([[print.logo]])", l.name),
                    )
                })?;
                *line = Line::Image(ImageLine {
                    data,
                    align: l.align,
                    width: l.width,
                });
            }
        }
        Ok(())
    }

    /// Checks a document built in code the way parsing checks a JSON one.
    pub fn validate(&self) -> Result<(), DocumentError> {
        if self.lines.len() > MAX_LINES {
            return Err(DocumentError::whole(format!(
                "too many lines: {} (at most {MAX_LINES})",
                self.lines.len()
            )));
        }
        let pictures = self
            .lines
            .iter()
            .filter(|l| matches!(l, Line::Image(_) | Line::Logo(_)))
            .count();
        if pictures > super::image::MAX_PICTURES {
            return Err(DocumentError::whole(format!(
                "too many pictures: {pictures} (at most {})",
                super::image::MAX_PICTURES
            )));
        }
        let mut total = 0usize;
        for (i, line) in self.lines.iter().enumerate() {
            validate_line(line).map_err(|m| DocumentError::at(i, m))?;
            if let Line::Text(t) = line {
                total = total.saturating_add(t.text.chars().count());
            }
        }
        if total > MAX_DOCUMENT_CHARS {
            return Err(DocumentError::whole(format!(
                "too much text: {total} characters (at most {MAX_DOCUMENT_CHARS})"
            )));
        }
        Ok(())
    }
}

fn validate_line(line: &Line) -> Result<(), String> {
    match line {
        Line::Text(t) => {
            let n = t.text.chars().count();
            if n > MAX_TEXT_CHARS {
                return Err(format!(
                    "text is {n} characters long (at most {MAX_TEXT_CHARS})"
                ));
            }
            let [w, h] = t.size;
            if !(1..=8).contains(&w) || !(1..=8).contains(&h) {
                return Err(format!(
                    "size must be [w, h] with each 1 to 8, got [{w}, {h}]"
                ));
            }
            Ok(())
        }
        Line::Qr(data) => {
            if data.is_empty() {
                return Err("qr data is empty".into());
            }
            if data.len() > MAX_QR_BYTES {
                return Err(format!(
                    "qr data is {} bytes (at most {MAX_QR_BYTES})",
                    data.len()
                ));
            }
            Ok(())
        }
        Line::Barcode(b) => barcode_payload(b).map(|_| ()),
        Line::Image(img) => {
            if !super::image::looks_like_image(&img.data) {
                return Err("image is not a PNG or JPEG".into());
            }
            check_width(img.width)
        }
        Line::Logo(l) => {
            if l.name.is_empty() {
                return Err("logo name is empty".into());
            }
            check_width(l.width)
        }
        Line::Feed(_) | Line::Cut => Ok(()),
    }
}

fn check_width(width: Option<u32>) -> Result<(), String> {
    match width {
        Some(w) if !(1..=MAX_IMAGE_WIDTH).contains(&w) => Err(format!(
            "width must be from 1 to {MAX_IMAGE_WIDTH} dots, got {w}"
        )),
        _ => Ok(()),
    }
}

/// The bytes `GS k` sends for a barcode, after checking the data.
///
/// EAN/UPC always go out with their check digit, so what prints does not
/// depend on whether the printer would compute it. CODE128 gets its code set
/// prefix: `{C` and one byte per digit pair for even-length digit strings
/// (half the width, which matters on 58 mm paper), else `{B` with `{`
/// escaped as `{{`.
pub(crate) fn barcode_payload(b: &Barcode) -> Result<Vec<u8>, String> {
    let data = b.data.as_str();
    let name = b.kind.name();
    if data.is_empty() {
        return Err(format!("{name} barcode data is empty"));
    }
    let chars = data.chars().count();
    if chars > MAX_BARCODE_CHARS {
        return Err(format!(
            "{name} barcode data is {chars} characters (at most {MAX_BARCODE_CHARS})"
        ));
    }
    let all_digits = data.bytes().all(|c| c.is_ascii_digit());
    match b.kind {
        BarcodeType::Ean13 => with_check_digit(name, data, 12, all_digits),
        BarcodeType::Ean8 => with_check_digit(name, data, 7, all_digits),
        BarcodeType::Upca => with_check_digit(name, data, 11, all_digits),
        BarcodeType::Itf => {
            if !all_digits || data.len() % 2 != 0 {
                return Err(format!(
                    "ITF barcode data must be an even number of digits, got {data:?}"
                ));
            }
            Ok(data.as_bytes().to_vec())
        }
        BarcodeType::Code39 => {
            if let Some(c) = data
                .chars()
                .find(|c| !(c.is_ascii_digit() || c.is_ascii_uppercase() || " $%+-./".contains(*c)))
            {
                return Err(format!(
                    "CODE39 barcode cannot encode {c:?}; it takes digits, A-Z, space and $ % + - . /"
                ));
            }
            Ok(data.as_bytes().to_vec())
        }
        BarcodeType::Code128 => {
            if let Some(c) = data.chars().find(|c| !(' '..='~').contains(c)) {
                return Err(format!(
                    "CODE128 barcode cannot encode {c:?}; it takes printable ASCII only"
                ));
            }
            if all_digits && data.len() >= 4 && data.len() % 2 == 0 {
                let mut out = b"{C".to_vec();
                for pair in data.as_bytes().chunks(2) {
                    if let [a, b] = pair {
                        out.push((a - b'0') * 10 + (b - b'0'));
                    }
                }
                return Ok(out);
            }
            let mut out = b"{B".to_vec();
            for &c in data.as_bytes() {
                if c == b'{' {
                    out.push(b'{');
                }
                out.push(c);
            }
            if out.len() > 255 {
                return Err(format!(
                    "CODE128 barcode data is too long once encoded ({} bytes, at most 255)",
                    out.len()
                ));
            }
            Ok(out)
        }
    }
}

/// EAN/UPC: `body` digits plus a check digit, which is added when missing and
/// verified when present.
fn with_check_digit(
    name: &str,
    data: &str,
    body: usize,
    all_digits: bool,
) -> Result<Vec<u8>, String> {
    if !all_digits || (data.len() != body && data.len() != body + 1) {
        return Err(format!(
            "{name} barcode data must be {body} digits, or {} with the check digit; got {data:?}",
            body + 1
        ));
    }
    let digits = data.as_bytes();
    let check = gs1_check_digit(&digits[..body]);
    match digits.get(body) {
        Some(&given) if given != check => Err(format!(
            "{name} check digit should be {}, but {data:?} ends in {}",
            check as char, given as char
        )),
        _ => {
            let mut out = digits[..body].to_vec();
            out.push(check);
            Ok(out)
        }
    }
}

/// The GS1 mod-10 check digit (EAN-8, EAN-13, UPC-A) of ASCII digits, as an
/// ASCII digit: weights 3, 1, 3, … from the rightmost digit.
pub fn gs1_check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d.wrapping_sub(b'0') % 10) * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    b'0' + ((10 - sum % 10) % 10) as u8
}

/// The wire shape before checking: `lines` stay JSON values so each line's
/// kind can be told from its key and errors can name the line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    #[serde(default)]
    lines: Vec<Value>,
    #[serde(default)]
    open_drawer: bool,
}

impl TryFrom<RawDocument> for Document {
    type Error = DocumentError;

    fn try_from(raw: RawDocument) -> Result<Document, DocumentError> {
        if raw.lines.len() > MAX_LINES {
            return Err(DocumentError::whole(format!(
                "too many lines: {} (at most {MAX_LINES})",
                raw.lines.len()
            )));
        }
        let mut lines = Vec::with_capacity(raw.lines.len());
        for (i, value) in raw.lines.into_iter().enumerate() {
            if let Some(line) = parse_line(value).map_err(|m| DocumentError::at(i, m))? {
                validate_line(&line).map_err(|m| DocumentError::at(i, m))?;
                lines.push(line);
            }
        }
        let doc = Document {
            lines,
            open_drawer: raw.open_drawer,
        };
        // Limits over the whole document (line numbers above are the caller's).
        doc.validate()?;
        Ok(doc)
    }
}

const KINDS: [&str; 7] = ["text", "qr", "barcode", "image", "logo", "feed", "cut"];

/// How the kinds are listed in errors.
const KIND_LIST: &str = "text, qr, barcode, image, logo, feed or cut";

/// One line, or `None` for `{"cut": false}`.
fn parse_line(value: Value) -> Result<Option<Line>, String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "expected an object such as {{\"text\": \"…\"}}, got {}",
            json_type(&value)
        ));
    };
    let found: Vec<&str> = KINDS
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    match found.as_slice() {
        [] => Err(format!(
            "unknown line kind{}; expected {KIND_LIST}",
            keys_hint(&map)
        )),
        ["text"] => serde_json::from_value::<TextLine>(Value::Object(map))
            .map(|t| Some(Line::Text(t)))
            .map_err(|e| e.to_string()),
        ["image"] => picture::<RawImage>(map)
            .and_then(|r| Ok(Line::Image(ImageLine::try_from(r)?)))
            .map(Some),
        ["logo"] => picture::<RawLogo>(map)
            .map(|r| {
                Line::Logo(LogoLine {
                    name: r.logo,
                    align: r.align.unwrap_or(Align::Center),
                    width: r.width,
                })
            })
            .map(Some),
        [kind] => {
            if let Some(extra) = map.keys().find(|k| k.as_str() != *kind) {
                return Err(format!(
                    "unknown field `{extra}` in a {kind} line; it takes only `{kind}`"
                ));
            }
            let v = map.get(*kind).cloned().unwrap_or(Value::Null);
            match *kind {
                "qr" => match v {
                    Value::String(s) => Ok(Some(Line::Qr(s))),
                    other => Err(format!("qr must be a string, got {}", json_type(&other))),
                },
                "barcode" => serde_json::from_value::<Barcode>(v)
                    .map(|b| Some(Line::Barcode(b)))
                    .map_err(|e| format!("barcode: {e}")),
                "feed" => v
                    .as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .map(|n| Some(Line::Feed(n)))
                    .ok_or_else(|| format!("feed must be a whole number 0 to 255, got {v}")),
                _ => match v {
                    Value::Bool(true) => Ok(Some(Line::Cut)),
                    Value::Bool(false) => Ok(None),
                    other => Err(format!("cut must be true or false, got {other}")),
                },
            }
        }
        many => Err(format!(
            "a line is exactly one of {KIND_LIST}; this one has {}",
            many.join(" and ")
        )),
    }
}

/// An image or logo line: the picture, `align` and `width`, nothing else.
fn picture<T: serde::de::DeserializeOwned>(map: Map<String, Value>) -> Result<T, String> {
    serde_json::from_value::<T>(Value::Object(map)).map_err(|e| e.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    image: String,
    align: Option<Align>,
    width: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogo {
    logo: String,
    align: Option<Align>,
    width: Option<u32>,
}

impl TryFrom<RawImage> for ImageLine {
    type Error = String;

    fn try_from(r: RawImage) -> Result<ImageLine, String> {
        Ok(ImageLine {
            data: picture_bytes(&r.image)?.into(),
            align: r.align.unwrap_or(Align::Center),
            width: r.width,
        })
    }
}

/// A picture's bytes from base64, optionally as a data URL
/// (`data:image/png;base64,…`, what a canvas's `toDataURL()` gives).
pub fn picture_bytes(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let text = text.trim();
    let text = match text.strip_prefix("data:") {
        Some(rest) => rest
            .split_once(";base64,")
            .map(|(_, b64)| b64)
            .ok_or("image: a data URL must be base64 (data:image/png;base64,…)")?,
        None => text,
    };
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| format!("image is not valid base64 ({e})"))
}

fn keys_hint(map: &Map<String, Value>) -> String {
    match map.keys().next() {
        Some(k) => format!(" `{k}`"),
        None => String::new(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
