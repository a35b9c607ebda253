//! One text frame from a qz-tray.js page, parsed; and the exact text the
//! page signed for it.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// What a frame says.
#[derive(Debug, PartialEq)]
pub enum Message {
    /// The keep-alive text `ping`.
    Ping,
    /// `{"certificate": PEM|null, "uid"}`: the page's handshake, after
    /// `getVersion`. `pem` is `None` for an anonymous page.
    Certificate { uid: String, pem: Option<String> },
    /// A call to answer.
    Call(Call),
}

/// One call.
#[derive(Debug, PartialEq)]
pub struct Call {
    pub uid: String,
    /// `printers.find`, `print`, …
    pub name: String,
    /// `Null` when the page sent none.
    pub params: Value,
    /// Base64, when the page signed the call (an empty string when its
    /// signing gave nothing).
    pub signature: Option<String>,
    /// `SHA1`, `SHA256` or `SHA512` as the page declared; `None` is SHA1.
    pub algorithm: Option<String>,
    /// Milliseconds since the epoch, by the page's clock.
    pub timestamp: Option<f64>,
    /// What qz-tray.js hashed (SHA-256, hex) and had signed: the call,
    /// params and timestamp as JSON, in that order, as the page wrote them.
    pub signed: String,
}

/// A frame that is not a message; `uid` when the reply can still be addressed.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameError {
    pub uid: Option<String>,
    pub why: String,
}

/// The fields read from a frame; the rest (`position`, …) is ignored.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow, deserialize_with = "raw")]
    call: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    timestamp: Option<&'a RawValue>,
    uid: Option<Value>,
    signature: Option<Value>,
    #[serde(rename = "signAlgorithm")]
    sign_algorithm: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    certificate: Option<Value>,
}

/// A value's text as written, `null` included (`"params": null` is signed).
fn raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Tells `"certificate": null` (present) from no `certificate` key.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Message, FrameError> {
    if text == "ping" {
        return Ok(Message::Ping);
    }
    let w: Wire = serde_json::from_str(text).map_err(|e| FrameError {
        uid: None,
        why: format!("not a QZ message: {e}"),
    })?;
    let uid = match &w.uid {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(FrameError {
                uid: None,
                why: "not a QZ message: no uid".into(),
            })
        }
    };
    let fail = |why: String| FrameError {
        uid: Some(uid.clone()),
        why,
    };
    let Some(call) = w.call else {
        return match w.certificate {
            Some(Value::Null) => Ok(Message::Certificate { uid, pem: None }),
            Some(Value::String(pem)) => Ok(Message::Certificate {
                uid,
                pem: Some(pem),
            }),
            Some(_) => Err(fail("certificate: expected PEM text or null".into())),
            None => Err(fail(
                "not a QZ message: neither a call nor a certificate".into(),
            )),
        };
    };
    let name: String = serde_json::from_str(call.get())
        .map_err(|_| fail(format!("call: {} is not a name", call.get())))?;
    let params = match w.params {
        Some(p) => serde_json::from_str(p.get()).map_err(|e| fail(format!("params: {e}")))?,
        None => Value::Null,
    };
    let timestamp = match w.timestamp {
        Some(t) => Some(
            serde_json::from_str::<f64>(t.get())
                .map_err(|_| fail(format!("timestamp: {} is not a number", t.get())))?,
        ),
        None => None,
    };
    let text_of = |v: Option<Value>, key: &str| match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(fail(format!("{key}: {other} is not text"))),
    };
    Ok(Message::Call(Call {
        signature: text_of(w.signature, "signature")?,
        algorithm: text_of(w.sign_algorithm, "signAlgorithm")?,
        signed: signed_text(call, w.params, w.timestamp),
        uid,
        name,
        params,
        timestamp,
    }))
}

/// `JSON.stringify({call, params, timestamp})` as the page computed it: the
/// same values' text, copied from the frame, so no re-encoding can differ
/// from the browser's (a key left `undefined` is absent from both).
fn signed_text(call: &RawValue, params: Option<&RawValue>, timestamp: Option<&RawValue>) -> String {
    let mut s = String::with_capacity(64 + params.map_or(0, |p| p.get().len()));
    s.push_str("{\"call\":");
    s.push_str(call.get());
    for (key, v) in [("params", params), ("timestamp", timestamp)] {
        if let Some(v) = v {
            s.push_str(",\"");
            s.push_str(key);
            s.push_str("\":");
            s.push_str(v.get());
        }
    }
    s.push('}');
    s
}
