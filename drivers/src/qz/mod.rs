//! QZ Tray's page protocol, as qz-tray.js 2.2 and 2.3 speak it, sans-IO:
//! text frames in, typed calls out; print and serial data in, bytes out;
//! replies and stream events as text.
//!
//! The page sends JSON text frames: `getVersion` first, then the certificate
//! message `{"certificate": PEM|null, "uid"}`, then calls
//! `{"call", "params", "uid", "timestamp", "signature"?, "signAlgorithm"?}`;
//! and the plain text `ping` to keep the connection alive. Replies are
//! `{"uid", "result"}` or `{"uid", "error"}`; streams are
//! `{"type", "event"}` with the event as JSON *text*.

pub mod der;
pub mod frame;
pub mod serial;

pub use frame::{parse, Call, FrameError, Message};

use crate::escpos::Paper;
use base64::Engine;
use serde_json::{json, Value};

/// The version `getVersion` answers: qz-tray.js parses it as semver and
/// takes 2.2 behaviour for it (2.0 and 2.1 would make it rewrite print data).
pub const VERSION: &str = "2.2.6";

/// `{"uid", "result"}`; a `null` result is left out (`{"uid"}`), as QZ
/// Tray does, and the page's promise resolves with `undefined`.
pub fn result(uid: &str, result: Value) -> String {
    if result.is_null() {
        json!({ "uid": uid }).to_string()
    } else {
        json!({ "uid": uid, "result": result }).to_string()
    }
}

/// `{"uid", "error"}`: the page's promise rejects with `new Error(message)`.
/// Without a uid the page cannot match it and closes the connection.
pub fn error(uid: Option<&str>, message: &str) -> String {
    match uid {
        Some(uid) => json!({ "uid": uid, "error": message }).to_string(),
        None => json!({ "error": message }).to_string(),
    }
}

/// A stream message (`PRINTER`, `SERIAL`): qz-tray.js parses `event` a
/// second time, so it is JSON text inside the JSON.
pub fn stream(kind: &str, event: &Value) -> String {
    json!({ "type": kind, "event": event.to_string() }).to_string()
}

/// What a `print` call asks for, once its data is turned into bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct PrintJob {
    /// The printer name the page gave (`config.getPrinter().name`).
    pub printer: String,
    /// Every data item in order, repeated `copies` times.
    pub bytes: Vec<u8>,
}

/// The most copies one call may ask for.
pub const MAX_COPIES: u64 = 100;

/// Turns `print` params into bytes: raw data only (plain strings, and
/// `{type: "raw", format: "command", flavor: plain|base64|hex}`), strings in
/// `options.encoding` (GB18030 when none). `max` bounds the result.
pub fn print_job(params: &Value, max: usize) -> Result<PrintJob, String> {
    let printer = printer_name(params.get("printer"))?;
    let options = params.get("options").unwrap_or(&Value::Null);
    let encoding = Encoding::from_options(options)?;
    let copies = match options.get("copies") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_COPIES).contains(n))
            .ok_or_else(|| {
                format!("options.copies: {v} is not a whole number from 1 to {MAX_COPIES}")
            })?,
    };
    let items = match params.get("data") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => return Err("data: expected a non-empty array of print data".into()),
    };
    let mut one = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let bytes = raw_item(item, encoding).map_err(|e| format!("data[{i}]: {e}"))?;
        one.extend_from_slice(&bytes);
        if one.len() > max {
            return Err(format!("the job is over {max} bytes"));
        }
    }
    if one.is_empty() {
        return Err("data: nothing to print".into());
    }
    let total = one.len().saturating_mul(copies as usize);
    if total > max {
        return Err(format!(
            "{copies} copies of {} bytes are over {max} bytes",
            one.len()
        ));
    }
    Ok(PrintJob {
        printer,
        bytes: one.repeat(copies as usize),
    })
}

/// `printer` as qz-tray.js sends it: `{name}` (a string is wrapped by the
/// library, but older pages send one). Files and network hosts are refused:
/// posbridge prints to its own configured printers only.
fn printer_name(p: Option<&Value>) -> Result<String, String> {
    match p {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Object(o)) => {
            if o.contains_key("file") || o.contains_key("host") {
                return Err("printer: files and network hosts are not printed to; name one of posbridge's printers (qz.printers.find())".into());
            }
            match o.get("name") {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err("printer: expected {name: \"…\"}".into()),
            }
        }
        _ => Err("printer: expected a printer name (qz.configs.create(\"name\"))".into()),
    }
}

/// The text encodings a page may name (`options.encoding`, case and
/// punctuation ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Gb18030,
    Gbk,
    Utf8,
    Ascii,
}

impl Encoding {
    /// `options.encoding`: a name, `{to: name}` or `{from, to}`, or none (GB18030).
    pub fn from_options(options: &Value) -> Result<Encoding, String> {
        let v = options.get("encoding").unwrap_or(&Value::Null);
        let name = match v {
            Value::Null => return Ok(Encoding::Gb18030),
            Value::String(s) => s.as_str(),
            Value::Object(o) => match o.get("to") {
                Some(Value::String(s)) => s.as_str(),
                None | Some(Value::Null) => return Ok(Encoding::Gb18030),
                Some(other) => return Err(format!("options.encoding.to: {other} is not a name")),
            },
            other => return Err(format!("options.encoding: {other} is not a name")),
        };
        Encoding::named(name).ok_or_else(|| {
            format!("options.encoding: {name:?} is not supported; use GB18030, GBK (CP936), UTF-8 or ASCII")
        })
    }

    pub fn named(name: &str) -> Option<Encoding> {
        let key: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match key.as_str() {
            "gb18030" => Some(Encoding::Gb18030),
            "gbk" | "cp936" | "ms936" | "windows936" | "gb2312" | "euccn" => Some(Encoding::Gbk),
            "utf8" => Some(Encoding::Utf8),
            "ascii" | "usascii" => Some(Encoding::Ascii),
            _ => None,
        }
    }

    /// The bytes of `text`; a character the encoding has not is an error
    /// naming it, not a `?` on the receipt.
    pub fn encode(self, text: &str) -> Result<Vec<u8>, String> {
        let table = match self {
            Encoding::Utf8 => return Ok(text.as_bytes().to_vec()),
            Encoding::Ascii => {
                return match text.chars().find(|c| !c.is_ascii()) {
                    Some(c) => Err(format!("{c:?} is not ASCII")),
                    None => Ok(text.as_bytes().to_vec()),
                }
            }
            Encoding::Gb18030 => encoding_rs::GB18030,
            Encoding::Gbk => encoding_rs::GBK,
        };
        let (bytes, _, unmappable) = table.encode(text);
        if unmappable {
            let bad = text
                .chars()
                .find(|c| table.encode(c.encode_utf8(&mut [0; 4])).2)
                .unwrap_or('?');
            return Err(format!("{bad:?} is not in {}", table.name()));
        }
        Ok(bytes.into_owned())
    }
}

/// One item of `data`, as bytes.
fn raw_item(item: &Value, encoding: Encoding) -> Result<Vec<u8>, String> {
    let o = match item {
        Value::String(s) => return encoding.encode(s),
        Value::Object(o) => o,
        other => {
            return Err(format!(
                "{other} is neither text nor {{type, format, flavor, data}}"
            ))
        }
    };
    let field = |k: &str| -> Result<Option<String>, String> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.to_ascii_lowercase())),
            Some(other) => Err(format!("{k}: {other} is not a name")),
        }
    };
    let kind = field("type")?.unwrap_or_else(|| "raw".into());
    let format = field("format")?.unwrap_or_else(|| "command".into());
    let mut flavor = field("flavor")?;
    if kind != "raw" {
        return Err(format!("type {kind:?} needs pixel printing, which posbridge does not do; send raw ESC/POS (type \"raw\")"));
    }
    // qz-tray 2.0 pages name the flavor as the format.
    if flavor.is_none() && ["plain", "base64", "hex"].contains(&format.as_str()) {
        flavor = Some(format.clone());
    } else if format != "command" {
        return Err(format!(
            "format {format:?} is not printed raw by posbridge; use format \"command\""
        ));
    }
    let data = match o.get("data") {
        Some(Value::String(s)) => s,
        _ => return Err("data: expected a string".into()),
    };
    match flavor.as_deref().unwrap_or("plain") {
        "plain" => encoding.encode(data),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(strip_space(data))
            .map_err(|e| format!("flavor base64: not valid base64 ({e})")),
        "hex" => hex(data),
        "file" | "xml" => Err(format!(
            "flavor {:?}: posbridge does not fetch files; send the bytes (plain, base64 or hex)",
            flavor.unwrap_or_default()
        )),
        other => Err(format!("flavor {other:?} is not plain, base64 or hex")),
    }
}

fn strip_space(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

/// Hex digits in pairs; spaces and an `x` or `0x` before a pair are allowed
/// (`"1B40"`, `"x1Bx40"`, `"0x1B 0x40"`).
pub fn hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s
        .replace("0x", "")
        .replace("0X", "")
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'x' && *b != b'X')
        .collect();
    if digits.len() % 2 != 0 {
        return Err("flavor hex: an odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16);
            match (d(p[0]), d(p[1])) {
                (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                _ => Err(format!(
                    "flavor hex: {:?} is not a hex byte",
                    String::from_utf8_lossy(p)
                )),
            }
        })
        .collect()
}

/// The bytes of `serial.sendData`'s `data`: text, `{data, type:
/// PLAIN|HEX|BASE64}`, or an array of byte values. Plain text is in the
/// port's encoding (UTF-8 unless `options.encoding` says), and QZ Tray's
/// `"0x1B"` spelling of one character is honoured.
pub fn serial_bytes(params: &Value) -> Result<Vec<u8>, String> {
    let options = params.get("options").unwrap_or(&Value::Null);
    let encoding = match options.get("encoding") {
        None | Some(Value::Null) => Encoding::Utf8,
        Some(_) => Encoding::from_options(options)?,
    };
    let plain = |s: &str| match serial::one_char(s) {
        Some(b) => Ok(b),
        None => encoding.encode(s),
    };
    let bytes = match params.get("data") {
        Some(Value::String(s)) => plain(s)?,
        Some(Value::Array(items)) => byte_values(items)?,
        Some(Value::Object(o)) => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or("plain");
            match (kind.to_ascii_lowercase().as_str(), o.get("data")) {
                ("plain", Some(Value::Array(items))) => byte_values(items)?,
                ("plain", Some(Value::String(s))) => plain(s)?,
                ("hex", Some(Value::String(s))) => hex(s)?,
                ("base64", Some(Value::String(s))) => base64::engine::general_purpose::STANDARD
                    .decode(strip_space(s))
                    .map_err(|e| format!("data: not valid base64 ({e})"))?,
                ("file" | "xml", _) => {
                    return Err(format!(
                        "data.type {kind}: posbridge does not fetch files for pages"
                    ))
                }
                ("plain" | "hex" | "base64", _) => {
                    return Err("data.data: expected a string".into())
                }
                (other, _) => {
                    return Err(format!("data.type {other:?} is not PLAIN, HEX or BASE64"))
                }
            }
        }
        _ => return Err("data: expected text or {data, type}".into()),
    };
    if bytes.is_empty() {
        return Err("data: no bytes to send".into());
    }
    if bytes.len() > MAX_SERIAL_SEND {
        return Err(format!(
            "data: {} bytes; at most {MAX_SERIAL_SEND} per call",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// The most bytes one `serial.sendData` may write: a display or scale
/// command is tens of bytes, and at 9600 baud this is already 7 s.
pub const MAX_SERIAL_SEND: usize = 8 * 1024;

/// `[27, 64]`: each a byte value.
fn byte_values(items: &[Value]) -> Result<Vec<u8>, String> {
    items
        .iter()
        .map(|v| {
            v.as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| format!("data: {v} is not a byte value (0-255)"))
        })
        .collect()
}

/// One printer condition, as QZ Tray names it on CUPS: its status text,
/// severity and the CUPS keyword it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub text: &'static str,
    pub severity: &'static str,
    pub code: &'static str,
}

const fn status(text: &'static str, severity: &'static str, code: &'static str) -> Status {
    Status {
        text,
        severity,
        code,
    }
}

const OK: Status = status("OK", "INFO", "idle");
const OFFLINE: Status = status("OFFLINE", "FATAL", "offline-report");
const PAPER_OUT: Status = status("PAPER_OUT", "WARN", "media-empty");
/// QZ Tray has no "near end": CUPS's `media-low` is its PAPER_PROBLEM.
const PAPER_LOW: Status = status("PAPER_PROBLEM", "WARN", "media-low");
const DOOR_OPEN: Status = status("DOOR_OPEN", "WARN", "cover-open");

/// What a receipt printer's `DLE EOT` status says, as QZ statuses (one
/// stream event each); `None` (it has not answered) is `OFFLINE`.
pub fn statuses(status: Option<(bool, Paper, bool)>) -> Vec<Status> {
    let Some((online, paper, cover_open)) = status else {
        return vec![OFFLINE];
    };
    let mut out = Vec::new();
    if !online {
        out.push(OFFLINE);
    }
    if cover_open {
        out.push(DOOR_OPEN);
    }
    match paper {
        Paper::Out => out.push(PAPER_OUT),
        Paper::Low => out.push(PAPER_LOW),
        Paper::Ok => {}
    }
    if out.is_empty() {
        out.push(OK);
    }
    out
}

/// A `PRINTER` stream event's object, with QZ Tray's keys and message.
pub fn status_event(printer: &str, s: Status) -> Value {
    json!({
        "printerName": printer,
        "eventType": "PRINTER",
        "statusText": s.text,
        "severity": s.severity,
        "statusCode": s.code,
        "message": format!(
            "{}: Level: {}, From: {printer}, EventType: PRINTER, Code: {}",
            s.text, s.severity, s.code
        ),
        "type": "ACTION",
    })
}

/// Which of `names` a page's printer query means, as QZ Tray matches: the
/// same name (any case), else the last that starts with it, else the last
/// that contains it.
pub fn find<'a>(names: &[&'a str], query: &str) -> Option<&'a str> {
    let q = query.to_lowercase();
    let lower: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    let pick = |f: &dyn Fn(&str) -> bool| lower.iter().rposition(|n| f(n)).map(|i| names[i]);
    lower
        .iter()
        .position(|n| *n == q)
        .map(|i| names[i])
        .or_else(|| pick(&|n| n.starts_with(&q)))
        .or_else(|| pick(&|n| n.contains(&q)))
}

/// The calls posbridge does not answer, each with the reason the page's
/// promise is rejected with; `None` for calls it does answer.
pub fn refused(call: &str) -> Option<String> {
    let family = call.split('.').next().unwrap_or(call);
    let why = match family {
        "usb" | "hid" => {
            "posbridge talks to USB and HID devices itself; configure the device in posbridge.toml"
        }
        "file" => "posbridge gives pages no file access",
        "socket" => "posbridge opens no network connections for pages",
        "networking" => "posbridge does not report the machine's network details to pages",
        _ => match call {
            "printers.clearQueue" => {
                "cancel jobs with posbridge's own API (DELETE /v1/print/{job})"
            }
            _ => "posbridge does not implement it",
        },
    };
    let answered = [
        "getVersion",
        "printers.find",
        "printers.getDefault",
        "printers.detail",
        "printers.startListening",
        "printers.stopListening",
        "printers.getStatus",
        "print",
        "serial.findPorts",
        "serial.openPort",
        "serial.sendData",
        "serial.closePort",
        "websocket.getNetworkInfo",
        "networking.device",
    ];
    if answered.contains(&call) || family == "security" || family == "api" {
        return None;
    }
    Some(format!("{call} is not supported by posbridge: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A call as qz-tray.js 2.3 writes it (key order from its sendData).
    const SIGNED_PRINT: &str = r#"{"call":"print","params":{"printer":{"name":"XP-80C"},"options":{"copies":1,"encoding":"GB18030"},"data":["会员 ¥12.50\n",{"type":"raw","format":"command","flavor":"hex","data":"1d5642"}]},"signature":"c2ln","timestamp":1733250000123,"uid":"a1b2c3","position":{"x":640,"y":360},"signAlgorithm":"SHA512"}"#;

    #[test]
    fn a_call_keeps_the_exact_text_the_page_signed() {
        let Ok(Message::Call(c)) = parse(SIGNED_PRINT) else {
            panic!("not a call");
        };
        assert_eq!((c.uid.as_str(), c.name.as_str()), ("a1b2c3", "print"));
        assert_eq!(c.signature.as_deref(), Some("c2ln"));
        assert_eq!(c.algorithm.as_deref(), Some("SHA512"));
        assert_eq!(c.timestamp, Some(1733250000123.0));
        // JSON.stringify({call, params, timestamp}) of the same values.
        assert_eq!(
            c.signed,
            r#"{"call":"print","params":{"printer":{"name":"XP-80C"},"options":{"copies":1,"encoding":"GB18030"},"data":["会员 ¥12.50\n",{"type":"raw","format":"command","flavor":"hex","data":"1d5642"}]},"timestamp":1733250000123}"#
        );
        // No params (undefined) is left out; null is kept, as JSON.stringify does.
        let Ok(Message::Call(c)) = parse(r#"{"call":"printers.detail","timestamp":5,"uid":"u"}"#)
        else {
            panic!("not a call");
        };
        assert_eq!(c.signed, r#"{"call":"printers.detail","timestamp":5}"#);
        let Ok(Message::Call(c)) =
            parse(r#"{"call":"printers.getDefault","params":null,"timestamp":5,"uid":"u"}"#)
        else {
            panic!("not a call");
        };
        assert_eq!(
            c.signed,
            r#"{"call":"printers.getDefault","params":null,"timestamp":5}"#
        );
    }

    #[test]
    fn ping_certificates_and_bad_frames() {
        assert_eq!(parse("ping"), Ok(Message::Ping));
        assert_eq!(
            parse(r#"{"certificate":null,"timestamp":1,"uid":"x","position":{}}"#),
            Ok(Message::Certificate {
                uid: "x".into(),
                pem: None
            })
        );
        assert!(matches!(
            parse(r#"{"certificate":"-----BEGIN CERTIFICATE-----","uid":"x"}"#),
            Ok(Message::Certificate { pem: Some(_), .. })
        ));
        let e = parse("hello").unwrap_err();
        assert_eq!(e.uid, None);
        assert!(e.why.starts_with("not a QZ message"), "{}", e.why);
        assert_eq!(parse(r#"{"call":"print"}"#).unwrap_err().uid, None);
        let e = parse(r#"{"call":7,"uid":"u"}"#).unwrap_err();
        assert_eq!(
            (e.uid.as_deref(), e.why.as_str()),
            (Some("u"), "call: 7 is not a name")
        );
        let e = parse(r#"{"uid":"u","timestamp":1}"#).unwrap_err();
        assert!(
            e.why.contains("neither a call nor a certificate"),
            "{}",
            e.why
        );
        assert!(parse(r#"{"call":"print","uid":"u","signature":5}"#).is_err());
    }

    #[test]
    fn replies_and_streams_have_qz_trays_shape() {
        assert_eq!(result("u", Value::Null), r#"{"uid":"u"}"#);
        let r: Value = serde_json::from_str(&result("u", json!("2.2.6"))).unwrap_or_default();
        assert_eq!(r, json!({"uid": "u", "result": "2.2.6"}));
        assert_eq!(
            error(Some("u"), "no"),
            json!({"uid": "u", "error": "no"}).to_string()
        );
        let s: Value =
            serde_json::from_str(&stream("PRINTER", &json!({"a": 1}))).unwrap_or_default();
        assert_eq!(s["type"], "PRINTER");
        assert_eq!(s["event"], r#"{"a":1}"#);
    }

    #[test]
    fn print_data_becomes_bytes_in_the_pages_encoding() {
        let Ok(Message::Call(c)) = parse(SIGNED_PRINT) else {
            panic!("not a call");
        };
        let job = print_job(&c.params, 1 << 20).expect("job");
        assert_eq!(job.printer, "XP-80C");
        let mut want = encoding_rs::GB18030.encode("会员 ¥12.50\n").0.into_owned();
        want.extend_from_slice(&[0x1d, 0x56, 0x42]);
        assert_eq!(job.bytes, want);
        let p = |data: Value, options: Value| {
            print_job(
                &json!({"printer": "P", "options": options, "data": data}),
                64,
            )
        };
        assert_eq!(
            p(
                json!(["a", {"type": "raw", "format": "base64", "data": "Gw=="}]),
                json!({"copies": 2})
            )
            .map(|j| j.bytes),
            Ok(b"a\x1ba\x1b".to_vec())
        );
        assert_eq!(
            p(
                json!([{"type": "raw", "format": "command", "flavor": "hex", "data": "x1Bx40"}]),
                Value::Null
            )
            .map(|j| j.bytes),
            Ok(vec![0x1b, 0x40])
        );
        assert_eq!(
            p(json!(["中"]), json!({"encoding": "UTF-8"})).map(|j| j.bytes),
            Ok("中".as_bytes().to_vec())
        );
        assert_eq!(
            p(
                json!(["中"]),
                json!({"encoding": {"from": "UTF-8", "to": "CP936"}})
            )
            .map(|j| j.bytes),
            Ok(vec![0xd6, 0xd0])
        );
    }

    #[test]
    fn print_data_posbridge_cannot_print_is_refused_naming_it() {
        let p = |data: Value, options: Value| {
            print_job(
                &json!({"printer": {"name": "P"}, "options": options, "data": data}),
                64,
            )
            .unwrap_err()
        };
        assert!(p(
            json!([{"type": "pixel", "format": "html", "data": "<b>"}]),
            Value::Null
        )
        .contains("data[0]: type \"pixel\""));
        assert!(p(
            json!(["a", {"type": "raw", "format": "image", "data": "x.png"}]),
            Value::Null
        )
        .starts_with("data[1]: format \"image\""));
        assert!(p(
            json!([{"type": "raw", "flavor": "file", "data": "http://x"}]),
            Value::Null
        )
        .contains("does not fetch files"));
        assert!(p(json!([{"flavor": "hex", "data": "1G"}]), Value::Null)
            .contains("\"1G\" is not a hex byte"));
        assert!(p(json!(["€"]), json!({"encoding": "ascii"})).contains("is not ASCII"));
        assert!(
            p(json!(["x"]), json!({"encoding": "Cp1252"})).contains("\"Cp1252\" is not supported")
        );
        assert!(p(json!(["x"]), json!({"copies": 0})).starts_with("options.copies"));
        assert!(p(json!([]), Value::Null).starts_with("data:"));
        assert!(p(json!(vec!["x"; 65]), Value::Null).contains("over 64 bytes"));
        assert!(p(json!(["x".repeat(40)]), json!({"copies": 2})).contains("2 copies"));
        let e = print_job(
            &json!({"printer": {"file": "/etc/passwd"}, "data": ["x"]}),
            64,
        )
        .unwrap_err();
        assert!(e.contains("files and network hosts"), "{e}");
        let e = print_job(
            &json!({"printer": {"host": "10.0.0.9", "port": 9100}, "data": ["x"]}),
            64,
        )
        .unwrap_err();
        assert!(e.contains("files and network hosts"), "{e}");
        assert!(print_job(&json!({"data": ["x"]}), 64)
            .unwrap_err()
            .starts_with("printer:"));
    }

    #[test]
    fn serial_data_shapes() {
        let s = |data: Value| serial_bytes(&json!({"port": "COM1", "data": data}));
        assert_eq!(s(json!("W\r\n")), Ok(b"W\r\n".to_vec()));
        assert_eq!(s(json!({"data": "W", "type": "PLAIN"})), Ok(b"W".to_vec()));
        assert_eq!(s(json!("0x1B")), Ok(vec![0x1b]));
        assert_eq!(
            s(json!({"data": "0c0b", "type": "hex"})),
            Ok(vec![0x0c, 0x0b])
        );
        assert_eq!(
            s(json!({"data": "DAs=", "type": "BASE64"})),
            Ok(vec![0x0c, 0x0b])
        );
        assert_eq!(s(json!([12, 11])), Ok(vec![0x0c, 0x0b]));
        assert!(s(json!([256])).is_err());
        assert!(s(json!({"data": "x", "type": "FILE"}))
            .unwrap_err()
            .contains("does not fetch"));
        assert!(s(json!("")).is_err());
        let gbk = serial_bytes(&json!({"data": "欢迎", "options": {"encoding": "GBK"}}));
        assert_eq!(gbk, Ok(encoding_rs::GBK.encode("欢迎").0.into_owned()));
    }

    #[test]
    fn statuses_follow_qz_trays_names() {
        let texts = |s| statuses(s).iter().map(|s| s.text).collect::<Vec<_>>();
        assert_eq!(texts(Some((true, Paper::Ok, false))), ["OK"]);
        assert_eq!(texts(Some((true, Paper::Out, false))), ["PAPER_OUT"]);
        assert_eq!(
            texts(Some((false, Paper::Low, true))),
            ["OFFLINE", "DOOR_OPEN", "PAPER_PROBLEM"]
        );
        assert_eq!(texts(None), ["OFFLINE"]);
        let e = status_event("XP-80C", PAPER_OUT);
        assert_eq!(
            e["message"],
            "PAPER_OUT: Level: WARN, From: XP-80C, EventType: PRINTER, Code: media-empty"
        );
        assert_eq!(
            (e["eventType"].as_str(), e["type"].as_str()),
            (Some("PRINTER"), Some("ACTION"))
        );
    }

    #[test]
    fn find_matches_as_qz_tray_does() {
        let names = ["XP-80C", "kitchen", "XP-58", "bar-xp"];
        assert_eq!(find(&names, "xp-80c"), Some("XP-80C"));
        assert_eq!(find(&names, "XP"), Some("XP-58"));
        assert_eq!(find(&names, "itch"), Some("kitchen"));
        assert_eq!(find(&names, "nothing"), None);
    }

    #[test]
    fn calls_posbridge_does_not_answer_say_so() {
        assert_eq!(refused("print"), None);
        assert_eq!(refused("security.setCertificatePromise"), None);
        let m = refused("file.read").unwrap_or_default();
        assert!(
            m.starts_with("file.read is not supported by posbridge"),
            "{m}"
        );
        assert!(refused("usb.listDevices").is_some());
        assert!(refused("socket.open").is_some());
    }
}
