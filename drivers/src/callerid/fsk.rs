//! FSK caller-ID messages: Bellcore GR-30 (SDMF, MDMF) and ETSI EN 300 659
//! (MDMF call setup), as a box forwards them once demodulated.
//!
//! A message is `TYPE LEN DATA… CHK`, where CHK makes the byte sum of the
//! whole message ≡ 0 mod 256. Boxes may put the channel seizure (`0x55…`)
//! and mark bytes (`0xFF`) before it; [`super::stream`] skips those and cuts
//! messages out of the byte stream, this module reads one whole message.

use super::{clean_name, clean_number, date_mmddhhmm, CallInfo, PRIVATE, UNAVAILABLE};
use std::fmt;

/// SDMF call setup (GR-30): `MMDDHHMM` then the number, or `O` / `P`.
pub const SDMF: u8 = 0x04;
/// SDMF message waiting (GR-30).
pub const SDMF_MWI: u8 = 0x06;
/// MDMF call setup (GR-30 and ETSI).
pub const MDMF: u8 = 0x80;
/// MDMF test message (GR-30).
pub const MDMF_TEST: u8 = 0x81;
/// MDMF message waiting (GR-30 and ETSI).
pub const MDMF_MWI: u8 = 0x82;
/// ETSI advice of charge.
pub const ETSI_CHARGE: u8 = 0x86;
/// ETSI short message service.
pub const ETSI_SMS: u8 = 0x89;

/// Every message type a frame may start with.
pub const MESSAGE_TYPES: [u8; 7] = [
    SDMF,
    SDMF_MWI,
    MDMF,
    MDMF_TEST,
    MDMF_MWI,
    ETSI_CHARGE,
    ETSI_SMS,
];

/// MDMF parameter types used here (GR-30 names; ETSI shares 01–08).
pub mod param {
    /// `MMDDHHMM`.
    pub const DATE_TIME: u8 = 0x01;
    /// The calling number.
    pub const NUMBER: u8 = 0x02;
    /// GR-30: the calling number in dialable form; ETSI: the called number.
    pub const DIALABLE: u8 = 0x03;
    /// Why the number is absent: `O` unavailable, `P` private.
    pub const NUMBER_ABSENT: u8 = 0x04;
    /// The calling name.
    pub const NAME: u8 = 0x07;
    /// Why the name is absent: `O` / `P`.
    pub const NAME_ABSENT: u8 = 0x08;
    /// ETSI call type: 0x01 voice, 0x81 message waiting …
    pub const CALL_TYPE: u8 = 0x11;
    /// ETSI redirecting number.
    pub const REDIRECTING: u8 = 0x1A;
}

/// Why a message was not used. Carries sizes and codes, never the caller's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FskError {
    /// Shorter than its length byte says (or shorter than type, length and checksum).
    Truncated { len: usize },
    /// The byte sum is not 0 mod 256.
    BadChecksum { kind: u8, sum: u8 },
    /// Not one of [`MESSAGE_TYPES`].
    UnknownType(u8),
    /// An SDMF body shorter than its 8-digit date plus a number.
    ShortSdmf(usize),
    /// An MDMF parameter runs past the message's end.
    BadParameter { at: usize },
}

impl fmt::Display for FskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FskError::Truncated { len } => write!(f, "FSK message truncated at {len} bytes"),
            FskError::BadChecksum { kind, sum } => write!(
                f,
                "FSK message type 0x{kind:02X}: bad checksum (byte sum 0x{sum:02X}, want 0x00); dropped"
            ),
            FskError::UnknownType(t) => write!(f, "FSK message type 0x{t:02X} unknown; dropped"),
            FskError::ShortSdmf(n) => {
                write!(f, "SDMF body of {n} bytes is too short for date and number")
            }
            FskError::BadParameter { at } => {
                write!(f, "MDMF parameter at byte {at} runs past the message end")
            }
        }
    }
}

/// What one message meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FskMessage {
    /// Caller ID for an incoming call.
    Call(CallInfo),
    /// A valid message that is not about a call (message waiting, charge,
    /// SMS, test); carries its type.
    Other(u8),
}

/// Reads one whole message (type through checksum). Bytes after the declared
/// length are ignored.
pub fn parse_message(msg: &[u8]) -> Result<FskMessage, FskError> {
    let (kind, declared) = match msg {
        [k, l, ..] => (*k, usize::from(*l)),
        _ => return Err(FskError::Truncated { len: msg.len() }),
    };
    let whole = msg
        .get(..declared + 3)
        .ok_or(FskError::Truncated { len: msg.len() })?;
    let sum = whole.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    if sum != 0 {
        return Err(FskError::BadChecksum { kind, sum });
    }
    let body = whole.get(2..declared + 2).unwrap_or_default();
    match kind {
        SDMF => parse_sdmf(body).map(FskMessage::Call),
        MDMF => parse_mdmf(body),
        SDMF_MWI | MDMF_TEST | MDMF_MWI | ETSI_CHARGE | ETSI_SMS => Ok(FskMessage::Other(kind)),
        other => Err(FskError::UnknownType(other)),
    }
}

fn absent(value: &[u8]) -> &'static str {
    // `P` private; `O` out of area / unavailable; ETSI and some exchanges
    // also send other letters, none of which is a number.
    if value.first() == Some(&b'P') {
        PRIVATE
    } else {
        UNAVAILABLE
    }
}

fn parse_sdmf(body: &[u8]) -> Result<CallInfo, FskError> {
    let (date, number) = match (body.get(..8), body.get(8..)) {
        (Some(d), Some(n)) if !n.is_empty() => (d, n),
        _ => return Err(FskError::ShortSdmf(body.len())),
    };
    let number = match number {
        b"O" | b"P" => absent(number).to_string(),
        n => clean_number(n),
    };
    Ok(CallInfo {
        number,
        box_time: date_mmddhhmm(date),
        ..CallInfo::default()
    })
}

fn parse_mdmf(body: &[u8]) -> Result<FskMessage, FskError> {
    let mut info = CallInfo::default();
    let mut number: Option<String> = None;
    let mut i = 0;
    while i < body.len() {
        let (t, l) = match (body.get(i), body.get(i + 1)) {
            (Some(t), Some(l)) => (*t, usize::from(*l)),
            _ => return Err(FskError::BadParameter { at: i + 2 }),
        };
        let value = body
            .get(i + 2..i + 2 + l)
            .ok_or(FskError::BadParameter { at: i + 2 })?;
        match t {
            param::DATE_TIME => info.box_time = date_mmddhhmm(value),
            param::NUMBER => number = Some(clean_number(value)),
            param::NUMBER_ABSENT => {
                number.get_or_insert_with(|| absent(value).to_string());
            }
            param::NAME => info.name = clean_name(value),
            param::NAME_ABSENT => info.name = None,
            // ETSI: 0x81 is a message-waiting call, not a caller.
            param::CALL_TYPE if value.first() == Some(&0x81) => {
                return Ok(FskMessage::Other(MDMF_MWI))
            }
            // 0x03 means the calling number in GR-30 but the called number in
            // ETSI, so it is never taken as the caller; 0x1A (redirecting) and
            // the rest carry nothing the event has a field for.
            _ => {}
        }
        i += 2 + l;
    }
    info.number = number.unwrap_or_else(|| UNAVAILABLE.to_string());
    Ok(FskMessage::Call(info))
}

/// Builds a message with its checksum (for tests, fixtures and simulators).
pub fn build_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 3);
    m.push(kind);
    m.push(body.len().min(255) as u8);
    m.extend_from_slice(body.get(..255).unwrap_or(body));
    let sum = m.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    m.push(0u8.wrapping_sub(sum));
    m
}

/// Builds an MDMF body from `(type, value)` parameters.
pub fn mdmf_body(params: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (t, v) in params {
        let v = v.get(..255).unwrap_or(v);
        b.push(*t);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// ME Labs' SDMF example: September 30, 12:24, (609) 555-1212.
    pub const SDMF_EXAMPLE: [u8; 21] = [
        0x04, 0x12, 0x30, 0x39, 0x33, 0x30, 0x31, 0x32, 0x32, 0x34, 0x36, 0x30, 0x39, 0x35, 0x35,
        0x35, 0x31, 0x32, 0x31, 0x32, 0x51,
    ];
    /// The same source's blocked-call SDMF (`P`), verbatim: its checksum
    /// (0x12) leaves a byte sum of 0x04, so it is rejected.
    pub const SDMF_PRIVATE_PUBLISHED: [u8; 12] = [
        0x04, 0x09, 0x30, 0x39, 0x33, 0x30, 0x31, 0x32, 0x32, 0x34, 0x50, 0x12,
    ];
    /// ME Labs' MDMF example: March 24 09:02, JOHN DOE, 800 555 1212. The page
    /// prints checksum 0x7D, which leaves a byte sum of 0xF9; 0x84 is right.
    pub const MDMF_EXAMPLE: [u8; 35] = [
        0x80, 0x20, 0x01, 0x08, 0x30, 0x33, 0x32, 0x34, 0x30, 0x39, 0x30, 0x32, 0x07, 0x08, 0x4A,
        0x4F, 0x48, 0x4E, 0x20, 0x44, 0x4F, 0x45, 0x02, 0x0A, 0x38, 0x30, 0x30, 0x35, 0x35, 0x35,
        0x31, 0x32, 0x31, 0x32, 0x84,
    ];

    fn call(number: &str, name: Option<&str>, box_time: Option<&str>) -> FskMessage {
        FskMessage::Call(CallInfo {
            number: number.into(),
            name: name.map(Into::into),
            line: None,
            box_time: box_time.map(Into::into),
        })
    }

    #[test]
    fn published_examples_decode() {
        assert_eq!(
            parse_message(&SDMF_EXAMPLE),
            Ok(call("6095551212", None, Some("09-30 12:24")))
        );
        assert_eq!(
            parse_message(&build_message(0x04, &SDMF_PRIVATE_PUBLISHED[2..11])),
            Ok(call("private", None, Some("09-30 12:24")))
        );
        // Both published checksums that are off are caught.
        assert_eq!(
            parse_message(&SDMF_PRIVATE_PUBLISHED),
            Err(FskError::BadChecksum {
                kind: 0x04,
                sum: 0x04
            })
        );
        let mut published = MDMF_EXAMPLE;
        published[34] = 0x7D;
        assert_eq!(
            parse_message(&published),
            Err(FskError::BadChecksum {
                kind: 0x80,
                sum: 0xF9
            })
        );
        assert_eq!(
            parse_message(&MDMF_EXAMPLE),
            Ok(call("8005551212", Some("JOHN DOE"), Some("03-24 09:02")))
        );
        // The builder reproduces the published checksums.
        assert_eq!(build_message(0x04, &SDMF_EXAMPLE[2..20]), SDMF_EXAMPLE);
        assert_eq!(build_message(0x80, &MDMF_EXAMPLE[2..34]), MDMF_EXAMPLE);
    }

    #[test]
    fn absent_number_and_name() {
        let body = mdmf_body(&[(0x01, b"05111852"), (0x04, b"O"), (0x08, b"O")]);
        assert_eq!(
            parse_message(&build_message(0x80, &body)),
            Ok(call("unavailable", None, Some("05-11 18:52")))
        );
        let body = mdmf_body(&[(0x04, b"P"), (0x08, b"P")]);
        assert_eq!(
            parse_message(&build_message(0x80, &body)),
            Ok(call("private", None, None))
        );
        let sdmf_o = build_message(0x04, b"05111852O");
        assert_eq!(
            parse_message(&sdmf_o),
            Ok(call("unavailable", None, Some("05-11 18:52")))
        );
    }

    #[test]
    fn etsi_call_setup_and_other_messages() {
        let body = mdmf_body(&[
            (0x01, b"11241015"),
            (0x11, &[0x01]),
            (0x02, b"01012345678"),
            (0x03, b"075587654321"),
            (0x1A, b"02112345678"),
            (0x07, b"ZHANG SAN"),
        ]);
        assert_eq!(
            parse_message(&build_message(0x80, &body)),
            Ok(call("01012345678", Some("ZHANG SAN"), Some("11-24 10:15")))
        );
        let mwi_call = mdmf_body(&[(0x11, &[0x81]), (0x0B, &[0xFF])]);
        assert_eq!(
            parse_message(&build_message(0x80, &mwi_call)),
            Ok(FskMessage::Other(0x82))
        );
        for kind in [0x06, 0x82, 0x86, 0x89] {
            let m = build_message(kind, &[0x0B, 0x01, 0xFF]);
            assert_eq!(parse_message(&m), Ok(FskMessage::Other(kind)));
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let mut bad = MDMF_EXAMPLE;
        bad[20] ^= 0x01;
        let err = parse_message(&bad);
        assert!(matches!(err, Err(FskError::BadChecksum { kind: 0x80, .. })));
        let text = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("checksum") && !text.contains("JOHN"),
            "{text}"
        );
        assert_eq!(
            parse_message(&MDMF_EXAMPLE[..10]),
            Err(FskError::Truncated { len: 10 })
        );
        assert_eq!(parse_message(&[0x80]), Err(FskError::Truncated { len: 1 }));
        assert_eq!(
            parse_message(&build_message(0x04, b"0511")),
            Err(FskError::ShortSdmf(4))
        );
        assert_eq!(
            parse_message(&build_message(0x80, &[0x02, 0x09, b'1'])),
            Err(FskError::BadParameter { at: 2 })
        );
        assert_eq!(
            parse_message(&build_message(0x42, b"x")),
            Err(FskError::UnknownType(0x42))
        );
    }
}
