//! Commands from HQ (`P/S/cmd`), checked without I/O so the relay only runs
//! what is well-formed and signed, and the checker can be fuzzed.
//!
//! A command is `{"id", "store", "cmd", "args", "expires_at", "sig"}`; `store`
//! names the one store it is for, so a command signed for one store cannot
//! be replayed at another. `sig` is an
//! Ed25519 signature, base64, over the command without `sig` as canonical
//! JSON (RFC 8785 for these messages: object keys sorted by their UTF-16
//! code units, no whitespace, strings escaped as JSON does, integers as
//! integers; commands carry no fractional numbers, whose text a parse may
//! not keep exactly). One of the store's `uplink.command_keys` must have
//! made it.
//! Expiry and replays need a clock and storage: the daemon checks them.

use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{Map, Value};
use std::fmt;

/// Longest command id kept (ids are stored to refuse replays).
pub const MAX_ID: usize = 128;

/// A command whose signature checked out.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub id: String,
    /// The `store.id` it is for; the daemon refuses another's.
    pub store: String,
    pub cmd: String,
    /// An object (empty when the command has no `args`).
    pub args: Map<String, Value>,
    /// RFC 3339 UTC, as sent; the daemon parses and compares it.
    pub expires_at: String,
}

/// Why a command is refused. The `id` is kept when it could be read, so the
/// refusal can be answered on `P/S/cmd/result`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub id: Option<String>,
    pub why: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

/// A public key from `uplink.command_keys`: base64 of the raw 32 bytes.
pub fn parse_key(b64: &str) -> Result<VerifyingKey, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|r: Vec<u8>| format!("{} bytes; an Ed25519 public key is 32", r.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// Checks one `P/S/cmd` payload against the store's keys.
pub fn verify(payload: &[u8], keys: &[VerifyingKey]) -> Result<Command, Refused> {
    let refuse = |id: Option<&str>, why: String| Refused {
        id: id.map(str::to_owned),
        why,
    };
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| refuse(None, format!("not JSON: {e}")))?;
    let Value::Object(mut obj) = v else {
        return Err(refuse(None, "not a JSON object".into()));
    };
    let id_text = match obj.get("id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID => s.clone(),
        _ => return Err(refuse(None, format!("id: a string of 1 to {MAX_ID} bytes"))),
    };
    let id = Some(id_text.as_str());
    if keys.is_empty() {
        return Err(refuse(
            id,
            "no uplink.command_keys configured: this store takes no commands".into(),
        ));
    }
    let sig = match obj.remove("sig") {
        Some(Value::String(s)) => s,
        _ => return Err(refuse(id, "sig: missing".into())),
    };
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig.trim())
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| refuse(id, "sig: not a base64 Ed25519 signature".into()))?;
    let signed = canonical(&Value::Object(obj.clone()));
    if !keys
        .iter()
        .any(|k| k.verify(signed.as_bytes(), &sig).is_ok())
    {
        return Err(refuse(
            id,
            "sig: no configured command key signed this command".into(),
        ));
    }
    let text = |k: &str| match obj.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(refuse(id, format!("{k}: a non-empty string"))),
    };
    let store = text("store")?;
    let cmd = text("cmd")?;
    let expires_at = text("expires_at")?;
    let args = match obj.remove("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(refuse(id, "args: an object".into())),
    };
    Ok(Command {
        id: id_text.clone(),
        store,
        cmd,
        args,
        expires_at,
    })
}

/// RFC 8785 canonical JSON for the values commands carry: keys sorted by
/// UTF-16 code units, no whitespace, serde_json's string escapes (which
/// match RFC 8785's), integers as written. Floats are written as
/// serde_json writes them, which RFC 8785 agrees with for the usual ones.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(k) {
                    write(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn signed(k: &SigningKey, mut cmd: Value) -> Vec<u8> {
        let sig = k.sign(canonical(&cmd).as_bytes());
        cmd["sig"] = base64::engine::general_purpose::STANDARD
            .encode(sig.to_bytes())
            .into();
        cmd.to_string().into_bytes()
    }

    fn cmd() -> Value {
        json!({"id": "c-1", "store": "s", "cmd": "log.tail", "args": {"lines": 50},
               "expires_at": "2026-12-04T10:00:00Z"})
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v: Value = serde_json::from_str(
            r#"{ "b": [1, {"z": true, "a": null}], "a": "é\n", "€": 1, "aa": 2 }"#,
        )
        .unwrap_or_default();
        assert_eq!(
            canonical(&v),
            r#"{"a":"é\n","aa":2,"b":[1,{"a":null,"z":true}],"€":1}"#
        );
        // Sorted by UTF-16 code units, as RFC 8785 says (not by UTF-8 bytes).
        let v = json!({"\u{E000}": 1, "\u{1F600}": 2});
        assert_eq!(canonical(&v), "{\"\u{1F600}\":2,\"\u{E000}\":1}");
    }

    #[test]
    fn a_signed_command_verifies_with_its_key_only() {
        let (k, other) = (key(7), key(9));
        let keys = [other.verifying_key(), k.verifying_key()];
        let c = verify(&signed(&k, cmd()), &keys).expect("verifies");
        assert_eq!(
            (c.id.as_str(), c.store.as_str(), c.cmd.as_str()),
            ("c-1", "s", "log.tail")
        );
        assert_eq!(c.args.get("lines"), Some(&json!(50)));
        // Another key's signature, or no keys at all.
        let e = verify(&signed(&k, cmd()), &[other.verifying_key()]).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("c-1"));
        assert!(e.why.contains("no configured command key"), "{e}");
        let e = verify(&signed(&k, cmd()), &[]).unwrap_err();
        assert!(e.why.contains("takes no commands"), "{e}");
    }

    #[test]
    fn any_change_after_signing_is_refused() {
        let k = key(7);
        let keys = [k.verifying_key()];
        let good: Value = serde_json::from_slice(&signed(&k, cmd())).unwrap_or_default();
        for (field, value) in [
            ("cmd", json!("restart")),
            ("expires_at", json!("2099-01-01T00:00:00Z")),
            ("args", json!({"lines": 5000})),
            ("id", json!("c-2")),
            ("extra", json!(1)),
        ] {
            let mut forged = good.clone();
            forged[field] = value;
            let e = verify(forged.to_string().as_bytes(), &keys).unwrap_err();
            assert!(e.why.starts_with("sig:"), "{field}: {e}");
        }
        // Reordered keys and whitespace are the same command.
        let spaced = serde_json::to_string_pretty(&good).unwrap_or_default();
        assert!(verify(spaced.as_bytes(), &keys).is_ok());
    }

    #[test]
    fn malformed_commands_say_what_is_wrong() {
        let k = key(7);
        let keys = [k.verifying_key()];
        for (payload, want) in [
            (b"nope".to_vec(), "not JSON"),
            (b"[1]".to_vec(), "not a JSON object"),
            (b"{\"cmd\":\"x\"}".to_vec(), "id:"),
            (b"{\"id\":\"a\"}".to_vec(), "sig: missing"),
            (
                b"{\"id\":\"a\",\"sig\":\"AAAA\"}".to_vec(),
                "sig: not a base64",
            ),
            (
                signed(&k, json!({"id": "a", "cmd": "x", "expires_at": "t"})),
                "store:",
            ),
            (
                signed(&k, json!({"id": "a", "store": "s", "expires_at": "x"})),
                "cmd:",
            ),
            (
                signed(&k, json!({"id": "a", "store": "s", "cmd": "x"})),
                "expires_at:",
            ),
            (
                signed(
                    &k,
                    json!({"id": "a", "store": "s", "cmd": "x", "expires_at": "t", "args": 3}),
                ),
                "args:",
            ),
        ] {
            let e = verify(&payload, &keys).unwrap_err();
            assert!(e.why.contains(want), "{want}: {e}");
        }
        let long = "x".repeat(MAX_ID + 1);
        let e = verify(json!({"id": long}).to_string().as_bytes(), &keys).unwrap_err();
        assert_eq!(e.id, None);
    }

    /// Signed by `openssl pkeyutl -sign -rawin` over Python's
    /// `json.dumps(sort_keys=True, separators=(",", ":"))` (as README shows HQ).
    #[test]
    fn a_command_signed_by_openssl_verifies() {
        // `openssl pkey -pubout -outform DER | tail -c 32 | base64` of that key.
        let from_openssl = parse_key("6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=");
        assert_eq!(from_openssl, Ok(key(7).verifying_key()));
        let keys = [key(7).verifying_key()];
        for seed in [
            &include_bytes!("../fuzz/corpus/command/log_tail")[..],
            include_bytes!("../fuzz/corpus/command/config_apply"),
            include_bytes!("../fuzz/corpus/command/unicode_keys"),
        ] {
            assert!(
                verify(seed, &keys).is_ok(),
                "{}",
                String::from_utf8_lossy(seed)
            );
        }
        let forged = include_bytes!("../fuzz/corpus/command/forged");
        assert!(verify(forged, &keys).is_err());
    }

    #[test]
    fn keys_are_32_raw_bytes_in_base64() {
        let k = key(7).verifying_key();
        let b64 = base64::engine::general_purpose::STANDARD.encode(k.to_bytes());
        assert_eq!(parse_key(&b64), Ok(k));
        assert!(parse_key("AAAA").unwrap_err().contains("3 bytes"));
        assert!(parse_key("%%").unwrap_err().contains("base64"));
    }
}
