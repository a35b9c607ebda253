//! USB HID caller-ID boxes (the AD101/AD800 "来电宝" families and clones).
//!
//! Their vendors ship DLLs, not a protocol, and the raw report layout is
//! unconfirmed — it differs by model. So the layout is data: a
//! [`HidReportLayout`] (serde, so it can sit in the device catalog TOML)
//! says where the ring / off-hook / hang-up bits are and where and how the
//! number is stored, and [`decode_report`] applies it to one captured
//! report. To support a new box, capture a few reports (`hidraw` while the
//! line rings, is picked up, hangs up) and write its layout; no code change.
//!
//! Like every hidraw device, the transport hands over exactly one report per
//! read (see [`crate::hid`]).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where one report keeps a flag.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BitFlag {
    /// Byte offset in the report (0 = the first byte the OS hands over).
    pub byte: usize,
    /// Which bits of that byte to look at.
    pub mask: u8,
    /// The flag is set when `byte & mask == value`; default `mask` (all bits set).
    #[serde(default)]
    pub value: Option<u8>,
}

impl BitFlag {
    fn is_set(&self, report: &[u8]) -> bool {
        report
            .get(self.byte)
            .is_some_and(|b| b & self.mask == self.value.unwrap_or(self.mask))
    }
}

/// How the number's digits are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DigitEncoding {
    /// One ASCII character per digit (`'0'`–`'9'`, `*`, `#`).
    #[default]
    Ascii,
    /// Two digits per byte, packed BCD; nibble `0xF` ends the number.
    Bcd,
}

/// Where one report keeps the caller's number.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NumberField {
    /// Byte offset of the first digit.
    pub offset: usize,
    /// Offset of a byte holding the number of digits. Without it the number
    /// runs to `terminator`, a NUL, or `max_digits`.
    #[serde(default)]
    pub length_at: Option<usize>,
    /// A byte (ASCII) that ends the number.
    #[serde(default)]
    pub terminator: Option<u8>,
    /// Most digits read.
    pub max_digits: usize,
    #[serde(default)]
    pub encoding: DigitEncoding,
    /// BCD only: the first digit is in the low nibble (default: high nibble first).
    #[serde(default)]
    pub low_nibble_first: bool,
}

/// One box model's input report layout.
///
/// In the device catalog (TOML) the example layout reads:
/// ```toml
/// [hid_layout]
/// model = "example-ad101"
/// report_len = 16
/// report_id = 1
/// ring = { byte = 1, mask = 0x01 }
/// off_hook = { byte = 1, mask = 0x02 }
/// hang_up = { byte = 1, mask = 0x04 }
/// number = { offset = 3, length_at = 2, max_digits = 13, encoding = "ascii" }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HidReportLayout {
    /// The model this layout was captured from (for messages).
    #[serde(default)]
    pub model: String,
    /// Bytes in one report as the OS hands it over (with the report id when
    /// the device numbers its reports). Shorter reports are rejected.
    pub report_len: usize,
    /// When set, byte 0 must be this report id; other reports are ignored.
    #[serde(default)]
    pub report_id: Option<u8>,
    /// Set while (or when) the line rings.
    #[serde(default)]
    pub ring: Option<BitFlag>,
    /// Set when a phone on the line is picked up.
    #[serde(default)]
    pub off_hook: Option<BitFlag>,
    /// Set when the call is over before anyone answered (the caller hung up).
    #[serde(default)]
    pub hang_up: Option<BitFlag>,
    /// Where the number is, for reports that carry one.
    #[serde(default)]
    pub number: Option<NumberField>,
}

/// An example layout, to copy for a real box. Unconfirmed for any model:
/// byte 0 report id 1; byte 1 bit 0 ring, bit 1 off-hook, bit 2 hang-up;
/// byte 2 the digit count; ASCII digits from byte 3; 16-byte reports.
pub fn example_layout() -> HidReportLayout {
    HidReportLayout {
        model: "example-ad101".into(),
        report_len: 16,
        report_id: Some(1),
        ring: Some(BitFlag {
            byte: 1,
            mask: 0x01,
            value: None,
        }),
        off_hook: Some(BitFlag {
            byte: 1,
            mask: 0x02,
            value: None,
        }),
        hang_up: Some(BitFlag {
            byte: 1,
            mask: 0x04,
            value: None,
        }),
        number: Some(NumberField {
            offset: 3,
            length_at: Some(2),
            terminator: None,
            max_digits: 13,
            encoding: DigitEncoding::Ascii,
            low_nibble_first: false,
        }),
    }
}

/// What one report says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HidReport {
    pub ring: bool,
    pub off_hook: bool,
    pub hang_up: bool,
    /// The digits, when the report carries a number.
    pub number: Option<String>,
}

/// Why a report was not used. Carries sizes and offsets, never digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HidError {
    /// Shorter than the layout's `report_len`.
    Short { len: usize, want: usize },
    /// A byte in the number field is not a digit.
    BadDigit { at: usize },
    /// The length byte says more digits than the field holds.
    NumberOutOfRange { digits: usize },
}

impl fmt::Display for HidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HidError::Short { len, want } => {
                write!(
                    f,
                    "caller-ID HID report of {len} bytes, layout wants {want}"
                )
            }
            HidError::BadDigit { at } => write!(f, "caller-ID HID report: byte {at} is no digit"),
            HidError::NumberOutOfRange { digits } => write!(
                f,
                "caller-ID HID report: {digits} digits do not fit the report"
            ),
        }
    }
}

/// Applies `layout` to one report. `Ok(None)` for a report with another id.
pub fn decode_report(
    layout: &HidReportLayout,
    report: &[u8],
) -> Result<Option<HidReport>, HidError> {
    if let Some(id) = layout.report_id {
        if report.first() != Some(&id) {
            return Ok(None);
        }
    }
    if report.len() < layout.report_len {
        return Err(HidError::Short {
            len: report.len(),
            want: layout.report_len,
        });
    }
    let report = report.get(..layout.report_len).unwrap_or(report);
    let flag = |f: &Option<BitFlag>| f.as_ref().is_some_and(|f| f.is_set(report));
    let number = match &layout.number {
        Some(field) => read_number(field, report)?,
        None => None,
    };
    Ok(Some(HidReport {
        ring: flag(&layout.ring),
        off_hook: flag(&layout.off_hook),
        hang_up: flag(&layout.hang_up),
        number,
    }))
}

fn read_number(field: &NumberField, report: &[u8]) -> Result<Option<String>, HidError> {
    let declared = field
        .length_at
        .map(|at| usize::from(report.get(at).copied().unwrap_or(0)));
    if let Some(n) = declared.filter(|n| *n > field.max_digits) {
        return Err(HidError::NumberOutOfRange { digits: n });
    }
    let want = declared.unwrap_or(field.max_digits);
    let mut digits = String::new();
    match field.encoding {
        DigitEncoding::Ascii => {
            for i in 0..want {
                let at = field.offset.saturating_add(i);
                let b = match report.get(at) {
                    Some(b) => *b,
                    None if declared.is_some() => {
                        return Err(HidError::NumberOutOfRange { digits: want })
                    }
                    None => break,
                };
                if declared.is_none() && (Some(b) == field.terminator || b == 0) {
                    break;
                }
                if !(b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'P' | b'O')) {
                    return Err(HidError::BadDigit { at });
                }
                digits.push(char::from(b));
            }
        }
        DigitEncoding::Bcd => {
            for i in 0..want {
                let at = field.offset.saturating_add(i / 2);
                let byte = match report.get(at) {
                    Some(b) => *b,
                    None if declared.is_some() => {
                        return Err(HidError::NumberOutOfRange { digits: want })
                    }
                    None => break,
                };
                let high_first = !field.low_nibble_first;
                let nibble = if (i % 2 == 0) == high_first {
                    byte >> 4
                } else {
                    byte & 0x0F
                };
                match nibble {
                    0..=9 => digits.push(char::from(b'0' + nibble)),
                    0xF if declared.is_none() => break,
                    _ => return Err(HidError::BadDigit { at }),
                }
            }
        }
    }
    Ok((!digits.is_empty()).then_some(digits))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A report as the example layout's box would send it.
    pub(crate) fn example_report(flags: u8, number: &str) -> Vec<u8> {
        let mut r = vec![0u8; 16];
        r[0] = 1;
        r[1] = flags;
        r[2] = number.len() as u8;
        for (i, b) in number.bytes().enumerate() {
            if let Some(slot) = r.get_mut(3 + i) {
                *slot = b;
            }
        }
        r
    }

    #[test]
    fn example_layout_decodes_captured_style_reports() {
        let l = example_layout();
        assert_eq!(
            decode_report(&l, &example_report(0x01, "13812345678")),
            Ok(Some(HidReport {
                ring: true,
                number: Some("13812345678".into()),
                ..HidReport::default()
            }))
        );
        assert_eq!(
            decode_report(&l, &example_report(0x02, "")),
            Ok(Some(HidReport {
                off_hook: true,
                ..HidReport::default()
            }))
        );
        assert_eq!(
            decode_report(&l, &example_report(0x04, "")).map(|r| r.map(|r| r.hang_up)),
            Ok(Some(true))
        );
        let mut other = example_report(0x01, "1");
        other[0] = 2;
        assert_eq!(decode_report(&l, &other), Ok(None));
        assert_eq!(
            decode_report(&l, &[1, 1, 0]),
            Err(HidError::Short { len: 3, want: 16 })
        );
        let mut bad = example_report(0x01, "138");
        bad[4] = b'x';
        assert_eq!(decode_report(&l, &bad), Err(HidError::BadDigit { at: 4 }));
        let mut long = example_report(0x01, "");
        long[2] = 200;
        assert_eq!(
            decode_report(&l, &long),
            Err(HidError::NumberOutOfRange { digits: 200 })
        );
    }

    #[test]
    fn bcd_and_terminated_layouts() {
        // Read from a catalog entry (JSON here; the TOML form has the same shape).
        let json = r#"{"model": "bcd-box", "report_len": 8,
            "ring": {"byte": 0, "mask": 240, "value": 16},
            "number": {"offset": 1, "max_digits": 14, "encoding": "bcd"}}"#;
        let l: HidReportLayout = serde_json::from_str(json).unwrap_or_else(|_| example_layout());
        assert_eq!(l.model, "bcd-box");
        let r = [0x1F, 0x13, 0x81, 0x23, 0x45, 0x67, 0x8F, 0xFF];
        assert_eq!(
            decode_report(&l, &r),
            Ok(Some(HidReport {
                ring: true,
                number: Some("13812345678".into()),
                ..HidReport::default()
            }))
        );
        let ascii = HidReportLayout {
            number: Some(NumberField {
                offset: 2,
                length_at: None,
                terminator: Some(b';'),
                max_digits: 20,
                encoding: DigitEncoding::Ascii,
                low_nibble_first: false,
            }),
            report_id: None,
            ..l
        };
        assert_eq!(
            decode_report(&ascii, b"\x10\x00075;xxxx").map(|r| r.and_then(|r| r.number)),
            Ok(Some("075".into()))
        );
        let unknown_key = r#"{"report_len": 8, "rings": {"byte": 0, "mask": 1}}"#;
        assert!(serde_json::from_str::<HidReportLayout>(unknown_key).is_err());
    }
}
