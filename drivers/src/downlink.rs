//! Messages from HQ (contract §2 downlink), parsed without I/O so the MQTT
//! relay only applies typed values and the parser can be fuzzed.
//!
//! Every payload is untrusted: bad JSON, wrong types and absurd nesting are
//! errors that say what was wrong; nothing here panics. Nesting is bounded by
//! serde_json's recursion limit (128), so a deep payload is an error, not a
//! stack overflow.

use serde_json::Value;
use std::fmt;

/// Which downlink topic a message came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    /// `P/S/tx/ack`: `{"ids": [...]}`.
    TxAck,
    /// `P/S/members` and `P/_all/members`: upsert or delete.
    Members,
    /// `P/S/members/lookup/response`: `{"corr", "member"}`.
    LookupResponse,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Downlink {
    /// Transactions HQ has; ids that are not strings are dropped.
    TxAck { ids: Vec<String> },
    /// Members to store, as HQ sent them; the cache skips (and reports)
    /// those without a string `id`.
    Upsert { members: Vec<Value> },
    /// Member ids to forget; ids that are not strings are dropped.
    Delete { ids: Vec<String> },
    /// HQ's answer to a lookup; `member` is `None` unless it is an object.
    Lookup { corr: String, member: Option<Value> },
}

/// Why a message cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownlinkError(pub String);

impl fmt::Display for DownlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DownlinkError {}

fn bad(why: impl Into<String>) -> DownlinkError {
    DownlinkError(why.into())
}

fn strings(v: &[Value]) -> Vec<String> {
    v.iter()
        .filter_map(|i| i.as_str().map(str::to_owned))
        .collect()
}

/// Parses one message from `topic`.
pub fn parse(topic: Topic, payload: &[u8]) -> Result<Downlink, DownlinkError> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| bad(format!("not JSON: {e}")))?;
    match topic {
        Topic::TxAck => {
            let ids = v
                .get("ids")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("expected {\"ids\": [...]}"))?;
            Ok(Downlink::TxAck { ids: strings(ids) })
        }
        Topic::Members => match v.get("op").and_then(Value::as_str).unwrap_or("") {
            "upsert" => {
                let Value::Object(mut o) = v else {
                    return Err(bad("upsert needs \"members\": [...]"));
                };
                match o.remove("members") {
                    Some(Value::Array(members)) => Ok(Downlink::Upsert { members }),
                    _ => Err(bad("upsert needs \"members\": [...]")),
                }
            }
            "delete" => {
                let ids = v
                    .get("ids")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("delete needs \"ids\": [...]"))?;
                Ok(Downlink::Delete { ids: strings(ids) })
            }
            other => Err(bad(format!(
                "unknown op {other:?}; expected upsert or delete"
            ))),
        },
        Topic::LookupResponse => {
            let corr = v
                .get("corr")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a lookup response needs \"corr\""))?
                .to_owned();
            let member = v.get("member").filter(|m| m.is_object()).cloned();
            Ok(Downlink::Lookup { corr, member })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn well_formed_messages_become_typed_values() {
        assert_eq!(
            parse(Topic::TxAck, br#"{"ids": ["a", 7, "b"]}"#),
            Ok(Downlink::TxAck {
                ids: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(
            parse(
                Topic::Members,
                br#"{"op": "upsert", "members": [{"id": "m"}]}"#
            ),
            Ok(Downlink::Upsert {
                members: vec![json!({"id": "m"})]
            })
        );
        assert_eq!(
            parse(Topic::Members, br#"{"op": "delete", "ids": ["m"]}"#),
            Ok(Downlink::Delete {
                ids: vec!["m".into()]
            })
        );
        assert_eq!(
            parse(
                Topic::LookupResponse,
                br#"{"corr": "c", "member": {"id": "m"}}"#
            ),
            Ok(Downlink::Lookup {
                corr: "c".into(),
                member: Some(json!({"id": "m"}))
            })
        );
        assert_eq!(
            parse(Topic::LookupResponse, br#"{"corr": "c", "member": 5}"#),
            Ok(Downlink::Lookup {
                corr: "c".into(),
                member: None
            })
        );
    }

    #[test]
    fn malformed_messages_are_errors_that_say_why() {
        let err = |t, p: &[u8]| parse(t, p).expect_err("must be refused").0;
        assert!(err(Topic::Members, b"{not json").starts_with("not JSON"));
        assert!(err(Topic::Members, br#"{"op": "upsert", "members": "all"}"#).contains("members"));
        assert!(err(Topic::Members, br#"{"op": "delete", "ids": 42}"#).contains("ids"));
        assert!(err(Topic::Members, b"[1, 2, 3]").contains("unknown op"));
        assert!(err(Topic::Members, br#"{"op": 1}"#).contains("unknown op"));
        assert!(err(Topic::TxAck, br#"{"ids": {}}"#).contains("ids"));
        assert!(err(Topic::LookupResponse, br#"{"corr": 1}"#).contains("corr"));
        assert!(err(Topic::TxAck, b"").starts_with("not JSON"));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        for depth in [129usize, 10_000, 1_000_000] {
            let mut p = br#"{"op": "upsert", "members": [{"id": "x", "extra": "#.to_vec();
            p.extend(std::iter::repeat_n(b'[', depth));
            p.extend(std::iter::repeat_n(b']', depth));
            p.extend(b"}]}");
            let e = parse(Topic::Members, &p).expect_err("too deep");
            assert!(e.0.contains("recursion limit"), "{e}");
        }
        // Just under the limit is fine.
        let mut p = br#"{"op": "upsert", "members": [{"id": "x", "extra": "#.to_vec();
        p.extend(std::iter::repeat_n(b'[', 100));
        p.extend(std::iter::repeat_n(b']', 100));
        p.extend(b"}]}");
        assert!(parse(Topic::Members, &p).is_ok());
    }
}
