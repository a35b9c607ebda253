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
    /// `P/S/print`: a print job from HQ.
    Print,
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
    /// A print job, or why it cannot be one (answered `failed`, never
    /// dropped silently: HQ waits for every job's outcome).
    Print(Result<PrintJob, BadJob>),
}

/// `P/S/print`: `{"job_id", "printer", "document" | "label" | "raw", "expire_at"?}`.
#[derive(Clone, Debug, PartialEq)]
pub struct PrintJob {
    /// HQ's id: the same id again prints nothing more.
    pub job_id: String,
    pub printer: String,
    pub what: JobBody,
    /// RFC 3339; past it the job is not printed (`expired`).
    pub expire_at: Option<String>,
}

/// What a job prints: the same three bodies as `POST /v1/print`.
#[derive(Clone, Debug, PartialEq)]
pub enum JobBody {
    Document(Value),
    Label(Value),
    /// Base64 of the printer's own bytes.
    Raw(String),
}

/// A print message that is not a job, with its `job_id` when it had one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadJob {
    pub job_id: Option<String>,
    pub why: String,
}

/// Longest `job_id` taken (it goes into the status HQ reads back).
pub const MAX_JOB_ID: usize = 128;

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
        Topic::Print => Ok(Downlink::Print(print_job(v))),
    }
}

fn print_job(v: Value) -> Result<PrintJob, BadJob> {
    let job_id = v
        .get("job_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= MAX_JOB_ID && !s.contains(char::is_control))
        .map(str::to_owned);
    let fail = |why: &str| BadJob {
        job_id: job_id.clone(),
        why: why.to_owned(),
    };
    let Value::Object(mut o) = v else {
        return Err(fail("a print job is a JSON object"));
    };
    let Some(id) = job_id.clone() else {
        return Err(fail(&format!(
            "job_id must be a string of 1 to {MAX_JOB_ID} characters without control characters"
        )));
    };
    let printer = match o.remove("printer") {
        Some(Value::String(p)) if !p.is_empty() => p,
        _ => return Err(fail("printer must be a printer's id")),
    };
    let expire_at = match o.remove("expire_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t),
        Some(_) => return Err(fail("expire_at must be an RFC 3339 time as a string")),
    };
    let mut bodies = ["document", "label", "raw"]
        .into_iter()
        .filter_map(|k| o.remove(k).map(|v| (k, v)));
    let what = match (bodies.next(), bodies.next()) {
        (Some(("document", d)), None) => JobBody::Document(d),
        (Some(("label", l)), None) => JobBody::Label(l),
        (Some((_, Value::String(r))), None) => JobBody::Raw(r),
        (Some((_, _)), None) => return Err(fail("raw must be a base64 string")),
        _ => return Err(fail("give exactly one of document, label or raw")),
    };
    o.remove("job_id");
    if let Some(k) = o.keys().next() {
        return Err(fail(&format!("unknown field {k:?}")));
    }
    Ok(PrintJob {
        job_id: id,
        printer,
        what,
        expire_at,
    })
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
    fn print_jobs_parse_and_bad_ones_keep_their_job_id() {
        let job = |p: &[u8]| match parse(Topic::Print, p) {
            Ok(Downlink::Print(j)) => j,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            job(br#"{"job_id": "j1", "printer": "p", "raw": "aGk=", "expire_at": "2030-01-01T00:00:00Z"}"#),
            Ok(PrintJob {
                job_id: "j1".into(),
                printer: "p".into(),
                what: JobBody::Raw("aGk=".into()),
                expire_at: Some("2030-01-01T00:00:00Z".into()),
            })
        );
        assert!(matches!(
            job(br#"{"job_id": "j", "printer": "p", "label": {"items": []}}"#),
            Ok(PrintJob {
                what: JobBody::Label(_),
                ..
            })
        ));
        let bad = |p: &[u8]| job(p).expect_err("refused");
        let e = bad(br#"{"job_id": "j2", "printer": "p"}"#);
        assert_eq!(
            (e.job_id.as_deref(), e.why.as_str()),
            (Some("j2"), "give exactly one of document, label or raw")
        );
        let e = bad(br#"{"job_id": "j3", "printer": "p", "raw": "x", "document": {}}"#);
        assert_eq!(e.why, "give exactly one of document, label or raw");
        assert_eq!(bad(br#"{"printer": "p", "raw": "x"}"#).job_id, None);
        assert_eq!(
            bad(br#"{"job_id": 7, "printer": "p", "raw": "x"}"#).job_id,
            None
        );
        assert!(bad(br#"{"job_id": "j", "raw": "x"}"#)
            .why
            .starts_with("printer"));
        assert!(bad(br#"{"job_id": "j", "printer": "p", "raw": 5}"#)
            .why
            .starts_with("raw must"));
        assert!(
            bad(br#"{"job_id": "j", "printer": "p", "raw": "x", "expire_at": 5}"#)
                .why
                .starts_with("expire_at")
        );
        assert!(
            bad(br#"{"job_id": "j", "printer": "p", "raw": "x", "colour": 1}"#)
                .why
                .contains("colour")
        );
        assert!(bad(br#"[1]"#).why.contains("object"));
        assert!(
            parse(Topic::Print, b"{not json").is_err(),
            "not JSON has no job_id to answer"
        );
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
