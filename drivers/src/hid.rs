//! HID devices read through `hidraw`: HID-POS barcode scanners (usage page
//! 0x8C) and MagTek HID swipe readers (VID 0801 PID 0002).
//!
//! hidraw hands over one whole input report per read, so unlike the serial
//! protocols these take *one report per call*: the transport must call
//! [`HidPosScanner::handle_bytes`] (and [`parse_magtek_report`]) once per
//! report read, never with several reports joined or one report split.

use crate::barcode::{code_text, split_aim, MAX_CODE_LEN};
use crate::{Action, Instant, Protocol};
use regex::Regex;
use std::fmt;

/// Report id of the HID-POS scanned-data input report.
pub const SCAN_REPORT_ID: u8 = 0x02;
/// Most data bytes one scanned-data report carries.
pub const SCAN_REPORT_MAX_DATA: usize = 56;

/// Settings a HID-POS scanner takes from its config.
#[derive(Clone, Debug)]
pub struct Options {
    /// As [`crate::barcode::Options::member_pattern`].
    pub member_pattern: Option<Regex>,
    /// As [`crate::barcode::Options::weighed`].
    pub weighed: Vec<crate::weighed::Template>,
    /// A code split over several reports whose last report has not come
    /// this long after the previous one is dropped.
    pub continuation_timeout_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            member_pattern: None,
            weighed: Vec::new(),
            // Scanners send a code's reports back to back, a few ms apart.
            continuation_timeout_ms: 500,
        }
    }
}

/// A HID-POS barcode scanner (usage page 0x8C, scanned-data report id 0x02).
///
/// Report layout (PROTOCOLS.md §5, and Honeywell's HID POS output):
/// byte 0 report id 0x02, byte 1 data length (≤ 56), then either
/// - bytes 2–4 an AIM symbology id (`]` letter modifier, or three NULs when
///   the scanner sends none) and the data from byte 5 (Honeywell: the length
///   does not count the AIM id), or
/// - the data from byte 2;
///
/// byte 62 a vendor symbology byte (0 = none), byte 63 bit 0 set = more
/// reports follow for the same code. Reports shorter than 64 bytes are read
/// as far as they go.
#[derive(Debug)]
pub struct HidPosScanner {
    opts: Options,
    pending: Vec<u8>,
    aim: Option<String>,
    vendor_symbology: Option<u8>,
    /// When a continued code is given up; `Some` while one is pending.
    deadline: Option<Instant>,
    /// The pending code outgrew [`MAX_CODE_LEN`]; drop it at its last report.
    overflowed: bool,
}

/// One parsed scanned-data report.
struct ScanReport<'a> {
    data: &'a [u8],
    aim: Option<String>,
    vendor_symbology: Option<u8>,
    more: bool,
}

/// Why a report was not used. Carries sizes and ids, never data.
enum BadReport {
    Empty,
    OtherId(u8),
    Truncated { declared: u8, len: usize },
}

impl BadReport {
    fn describe(&self) -> String {
        match self {
            BadReport::Empty => "HID-POS scanner sent a report too short for a length byte".to_owned(),
            BadReport::OtherId(id) => format!(
                "HID-POS scanner sent report id {id:#04x}, not a scanned-data report; ignored"
            ),
            BadReport::Truncated { declared, len } => format!(
                "HID-POS report declares {declared} data bytes but is only {len} bytes long; dropped"
            ),
        }
    }
}

/// The symbology name of a valid AIM id triple.
fn aim_name(triple: &[u8]) -> Option<String> {
    match triple {
        [b']', c, m] if c.is_ascii_alphabetic() && m.is_ascii_alphanumeric() => {
            std::str::from_utf8(triple)
                .ok()
                .and_then(|s| split_aim(s).0)
        }
        _ => None,
    }
}

fn parse_scan_report(r: &[u8]) -> Result<ScanReport<'_>, BadReport> {
    let (&id, _) = r.split_first().ok_or(BadReport::Empty)?;
    if id != SCAN_REPORT_ID {
        return Err(BadReport::OtherId(id));
    }
    let declared = *r.get(1).ok_or(BadReport::Empty)?;
    let truncated = BadReport::Truncated {
        declared,
        len: r.len(),
    };
    let len = usize::from(declared).min(SCAN_REPORT_MAX_DATA);
    let triple = r.get(2..5);
    let aim = triple.and_then(aim_name);
    let blank = triple == Some(&[0u8, 0, 0][..]);
    // A data area that starts with NULs or an AIM id, and a report long
    // enough for the data after it, is the symbology-id layout. A
    // data-at-byte-2 report whose code itself starts with an AIM id reads the
    // same way except for 3 trailing padding bytes, which are NULs and
    // stripped below.
    let (start, aim) = if (aim.is_some() || blank) && r.len() >= 5 + len {
        (5, aim)
    } else {
        (2, None)
    };
    let data = r.get(start..start + len).ok_or(truncated)?;
    let data = match data.iter().rposition(|&b| b != 0) {
        Some(last) => data.get(..=last).unwrap_or(data),
        None => &[],
    };
    Ok(ScanReport {
        data,
        aim,
        vendor_symbology: r.get(62).copied().filter(|&b| b != 0),
        more: r.get(63).is_some_and(|&b| b & 0x01 != 0),
    })
}

impl HidPosScanner {
    pub fn new(opts: Options) -> Self {
        HidPosScanner {
            opts,
            pending: Vec::new(),
            aim: None,
            vendor_symbology: None,
            deadline: None,
            overflowed: false,
        }
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.aim = None;
        self.vendor_symbology = None;
        self.deadline = None;
        self.overflowed = false;
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        if !self.overflowed {
            let raw = std::mem::take(&mut self.pending);
            self.emit(&raw, out);
        }
        self.reset();
    }

    fn emit(&self, raw: &[u8], out: &mut Vec<Action>) {
        // Trailing NUL/CR/LF are padding or a configured suffix, and leading
        // controls an STX: the same clean-up the serial scanner gets.
        let Some((text_aim, text)) = code_text(raw, "HID-POS scanner", out) else {
            return;
        };
        let vendor = self.vendor_symbology.map(|b| format!("hidpos_{b:02x}"));
        out.push(Action::Emit(crate::barcode::scanned(
            text,
            self.aim.clone().or(text_aim).or(vendor),
            self.opts.member_pattern.as_ref(),
            &self.opts.weighed,
        )));
    }
}

impl Protocol for HidPosScanner {
    fn handle_open(&mut self, _now: Instant, _out: &mut Vec<Action>) {
        self.reset();
    }

    /// `bytes` is exactly one input report, report id first.
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8], out: &mut Vec<Action>) {
        let report = match parse_scan_report(bytes) {
            Ok(r) => r,
            Err(bad) => {
                out.push(Action::Malformed(bad.describe()));
                // A broken piece of a continued code would leave a wrong code
                // (a payment code cut short can look like a member code).
                if matches!(bad, BadReport::Truncated { .. }) && self.deadline.is_some() {
                    self.reset();
                }
                return;
            }
        };
        self.aim = self.aim.take().or(report.aim);
        self.vendor_symbology = self.vendor_symbology.or(report.vendor_symbology);
        if !self.overflowed {
            if self.pending.len() + report.data.len() > MAX_CODE_LEN {
                out.push(Action::Malformed(format!(
                    "HID-POS code longer than {MAX_CODE_LEN} bytes; dropped"
                )));
                self.pending.clear();
                self.overflowed = true;
            } else {
                self.pending.extend_from_slice(report.data);
            }
        }
        if report.more {
            let deadline = now.plus_ms(self.opts.continuation_timeout_ms);
            self.deadline = Some(deadline);
            out.push(Action::SetTimer(deadline));
        } else {
            self.finish(out);
        }
    }

    fn handle_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.deadline {
            Some(deadline) if now >= deadline => {
                // Dropped, not emitted: a code missing its tail is a wrong code.
                out.push(Action::Malformed(format!(
                    "HID-POS code's last report never came; dropped {} bytes",
                    self.pending.len()
                )));
                self.reset();
            }
            Some(deadline) => out.push(Action::SetTimer(deadline)),
            None => {}
        }
    }
}

/// Length of a MagTek HID swipe reader's input report.
pub const MAGTEK_REPORT_LEN: usize = 337;
/// Bytes reserved for each track in the report.
pub const MAGTEK_TRACK_LEN: usize = 110;

/// One swipe from a MagTek HID reader. Holds card data: `Debug` shows only
/// sizes, and nothing here is `Serialize`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MagtekSwipe {
    /// Tracks 1–3 as the reader sent them (with sentinels if it sent them),
    /// for tracks that decoded and are printable ASCII; `None` otherwise.
    pub tracks: [Option<String>; 3],
    /// Per track: the reader reported a decode error, or the data was
    /// unusable (length over 110, not printable ASCII, stray sentinels).
    pub errors: [bool; 3],
    /// Card encoding (byte 6): 0 ISO/ABA, 1 AAMVA, 2 CADL, 3 blank, 4 other,
    /// 5 undetermined, 6 none.
    pub encoding: u8,
}

/// Shows a track's size, never its contents.
struct Redacted<'a>(&'a Option<String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(t) => write!(f, "Some(<{} chars>)", t.len()),
            None => f.write_str("None"),
        }
    }
}

impl fmt::Debug for MagtekSwipe {
    // By hand: a payment card's tracks must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [t1, t2, t3] = &self.tracks;
        f.debug_struct("MagtekSwipe")
            .field("tracks", &[Redacted(t1), Redacted(t2), Redacted(t3)])
            .field("errors", &self.errors)
            .field("encoding", &self.encoding)
            .finish()
    }
}

impl MagtekSwipe {
    /// The encoding byte's name, for logs.
    pub fn encoding_name(&self) -> &'static str {
        match self.encoding {
            0 => "iso_aba",
            1 => "aamva",
            2 => "cadl",
            3 => "blank",
            4 => "other",
            5 => "undetermined",
            6 => "none",
            _ => "unknown",
        }
    }
}

/// A track's data between its sentinels: start sentinel optional, and
/// anything after the end sentinel (an LRC) ignored. `None` when the body is
/// not printable ASCII or holds a sentinel, which would let it pose as
/// another track once rendered as text.
fn track_body(track: usize, data: &str) -> Option<&str> {
    let starts: &[char] = match track {
        0 => &['%'],
        1 => &[';'],
        _ => &[';', '+'],
    };
    let data = data.strip_prefix(starts).unwrap_or(data);
    let body = data.split('?').next().unwrap_or("");
    let printable = body.bytes().all(|b| (0x20..=0x7E).contains(&b));
    (printable && !body.contains(['%', ';'])).then_some(body)
}

/// Parses one 337-byte MagTek HID swipe report: bytes 0–2 decode status per
/// track (0 ok), 3–5 track lengths, 6 card encoding, then tracks 1–3 at
/// 7, 117 and 227, 110 bytes each. Errors name the problem, never the data.
pub fn parse_magtek_report(report: &[u8]) -> Result<MagtekSwipe, &'static str> {
    if report.len() != MAGTEK_REPORT_LEN {
        return Err("MagTek report is not 337 bytes");
    }
    let mut swipe = MagtekSwipe {
        encoding: report.get(6).copied().unwrap_or(0),
        ..MagtekSwipe::default()
    };
    for t in 0..3 {
        let status = report.get(t).copied().unwrap_or(1);
        let len = usize::from(report.get(3 + t).copied().unwrap_or(0));
        let start = 7 + t * MAGTEK_TRACK_LEN;
        let data = if len <= MAGTEK_TRACK_LEN {
            report.get(start..start + len)
        } else {
            None
        };
        let (track, error) = match (status, data) {
            (0, Some([])) => (None, false),
            (0, Some(bytes)) => match std::str::from_utf8(bytes) {
                Ok(s) => match track_body(t, s) {
                    Some("") => (None, false),
                    Some(_) => (Some(s.to_owned()), false),
                    None => (None, true),
                },
                Err(_) => (None, true),
            },
            _ => (None, true),
        };
        if let (Some(slot), Some(flag)) = (swipe.tracks.get_mut(t), swipe.errors.get_mut(t)) {
            *slot = track;
            *flag = error;
        }
    }
    Ok(swipe)
}

/// Renders a swipe as the text a keyboard-wedge reader types, for the
/// magstripe decoder (so its payment-card guard applies unchanged):
/// `%<t1>?;<t2>?;<t3>?` + CR, sentinels added where the reader left them
/// off, `E` for a failed track (`;E?`), absent tracks left out.
///
/// Track 3 uses the `;` sentinel after a track 2, and `+` when there is no
/// track 2, so it is never taken for track 2. A swipe with nothing on any
/// track renders as a failed track 2, so the swipe is still heard of.
pub fn magtek_to_text(swipe: &MagtekSwipe) -> Vec<u8> {
    let mut text = String::new();
    for t in 0..3 {
        let sentinel = match t {
            0 => '%',
            1 => ';',
            _ if text.contains(';') => ';',
            _ => '+',
        };
        let data = swipe.tracks.get(t).and_then(Option::as_deref);
        let failed = swipe.errors.get(t).copied().unwrap_or(false);
        let body = match data.map(|d| track_body(t, d)) {
            Some(Some(body)) if !failed => body,
            // Failed, or data that cannot be rendered safely.
            Some(_) => "E",
            None if failed => "E",
            None => continue,
        };
        text.push(sentinel);
        text.push_str(body);
        text.push('?');
    }
    if text.is_empty() {
        text.push_str(";E?");
    }
    text.push('\r');
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CodeKind, Event};

    /// A 64-byte report with the data from byte 2 (PROTOCOLS.md §5 layout).
    fn plain_report(data: &[u8], symbology: u8, more: bool) -> Vec<u8> {
        let mut r = vec![0u8; 64];
        r[0] = SCAN_REPORT_ID;
        r[1] = data.len() as u8;
        r[2..2 + data.len()].copy_from_slice(data);
        r[62] = symbology;
        r[63] = u8::from(more);
        r
    }

    /// A 64-byte report as Honeywell scanners send it: AIM id at 2–4, data from 5.
    fn aim_report(aim: &[u8; 3], data: &[u8], more: bool) -> Vec<u8> {
        let mut r = vec![0u8; 64];
        r[0] = SCAN_REPORT_ID;
        r[1] = data.len() as u8;
        r[2..5].copy_from_slice(aim);
        r[5..5 + data.len()].copy_from_slice(data);
        r[63] = u8::from(more);
        r
    }

    fn scanned(text: &str, kind: CodeKind, symbology: Option<&str>) -> Action {
        Action::Emit(Event::CodeScanned {
            text: text.into(),
            kind,
            symbology: symbology.map(Into::into),
            weighed: None,
        })
    }

    fn feed(p: &mut HidPosScanner, now: u64, reports: &[Vec<u8>]) -> Vec<Action> {
        let mut out = Vec::new();
        for r in reports {
            p.handle_bytes(Instant(now), r, &mut out);
        }
        out
    }

    #[test]
    fn weighed_labels_are_read_from_hid_pos_scanners_too() {
        let tpl = crate::weighed::Template::parse("22PPPPPWWWWWC").expect("template");
        let mut p = HidPosScanner::new(Options {
            weighed: vec![tpl],
            ..Options::default()
        });
        let out = feed(&mut p, 0, &[plain_report(b"2201234012342", 0, false)]);
        let [Action::Emit(Event::CodeScanned { kind, weighed, .. })] = &out[..] else {
            panic!("{out:?}");
        };
        assert_eq!(*kind, CodeKind::Weighed);
        assert_eq!(weighed.as_ref().map(|w| w.grams), Some(Some(1234)));
    }

    #[test]
    fn one_report_one_code() {
        let mut p = HidPosScanner::new(Options::default());
        let out = feed(&mut p, 0, &[plain_report(b"6901234567892\r\n", 0, false)]);
        assert_eq!(out, vec![scanned("6901234567892", CodeKind::Member, None)]);
        // A wechat code is a payment code here too: same classification.
        let out = feed(&mut p, 0, &[plain_report(b"134567890123456789", 0, false)]);
        assert_eq!(
            out,
            vec![scanned("134567890123456789", CodeKind::PaymentWechat, None)]
        );
    }

    #[test]
    fn continued_reports_join_into_one_code() {
        let url = format!("https://pos.example.com/m/{}", "7".repeat(60));
        let (a, b) = url.as_bytes().split_at(SCAN_REPORT_MAX_DATA);
        let re = Regex::new("^M").ok();
        let mut p = HidPosScanner::new(Options {
            member_pattern: re,
            ..Options::default()
        });
        let out = feed(&mut p, 100, &[plain_report(a, 0x73, true)]);
        assert_eq!(out, vec![Action::SetTimer(Instant(600))]);
        let out = feed(&mut p, 110, &[plain_report(b, 0x73, false)]);
        assert_eq!(out, vec![scanned(&url, CodeKind::Url, Some("hidpos_73"))]);
        // The late timer finds nothing pending.
        let mut out = Vec::new();
        p.handle_timer(Instant(600), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn honeywell_layout_with_aim_ids_in_every_report() {
        let code: Vec<u8> = (0..70u8).map(|i| b'A' + i % 26).collect();
        let (a, b) = code.split_at(SCAN_REPORT_MAX_DATA);
        let mut p = HidPosScanner::new(Options::default());
        let out = feed(
            &mut p,
            0,
            &[aim_report(b"]Q1", a, true), aim_report(b"]Q1", b, false)],
        );
        let text = String::from_utf8_lossy(&code);
        assert_eq!(
            out,
            vec![
                Action::SetTimer(Instant(500)),
                scanned(&text, CodeKind::Member, Some("qr"))
            ]
        );
        // No symbology configured: three NULs, data still from byte 5.
        let out = feed(&mut p, 0, &[aim_report(&[0, 0, 0], b"M0001", false)]);
        assert_eq!(out, vec![scanned("M0001", CodeKind::Member, None)]);
    }

    #[test]
    fn aim_prefix_inside_the_data_is_stripped() {
        let mut p = HidPosScanner::new(Options::default());
        let out = feed(&mut p, 0, &[plain_report(b"]E06901234567892", 0x64, false)]);
        assert_eq!(
            out,
            vec![scanned("6901234567892", CodeKind::Member, Some("ean_upc"))]
        );
    }

    #[test]
    fn bad_reports_are_reported_without_their_data() {
        let mut p = HidPosScanner::new(Options::default());
        let mut other = plain_report(b"SECRET", 0, false);
        other[0] = 0x04;
        let short = vec![SCAN_REPORT_ID, 40, b'S', b'E', b'C', b'R', b'E', b'T'];
        let out = feed(&mut p, 0, &[vec![], vec![SCAN_REPORT_ID], other, short]);
        assert_eq!(out.len(), 4);
        for a in &out {
            assert!(matches!(a, Action::Malformed(m) if !m.contains("SECRET")));
        }
        // An over-long length byte is clamped to 56.
        let mut long = plain_report(b"12345", 0, false);
        long[1] = 200;
        let out = feed(&mut p, 0, &[long]);
        assert_eq!(out, vec![scanned("12345", CodeKind::Member, None)]);
    }

    #[test]
    fn an_unfinished_code_is_dropped_after_the_timeout() {
        let mut p = HidPosScanner::new(Options {
            continuation_timeout_ms: 50,
            ..Options::default()
        });
        let out = feed(&mut p, 1000, &[plain_report(b"281234567890", 0, true)]);
        assert_eq!(out, vec![Action::SetTimer(Instant(1050))]);
        let mut out = Vec::new();
        p.handle_timer(Instant(1020), &mut out); // early: re-armed
        assert_eq!(out, vec![Action::SetTimer(Instant(1050))]);
        out.clear();
        p.handle_timer(Instant(1050), &mut out);
        assert!(matches!(&out[..], [Action::Malformed(m)] if !m.contains("2812")));
        // The next code starts clean.
        let out = feed(&mut p, 2000, &[plain_report(b"M7", 0, false)]);
        assert_eq!(out, vec![scanned("M7", CodeKind::Member, None)]);
        // A truncated piece drops the code it belonged to.
        let out = feed(
            &mut p,
            3000,
            &[
                plain_report(b"2812", 0, true),
                vec![SCAN_REPORT_ID, 9, b'1'],
                plain_report(b"34", 0, false),
            ],
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[2], scanned("34", CodeKind::Member, None));
    }

    /// A MagTek report built byte by byte: status, lengths, encoding, tracks.
    fn magtek(tracks: [(u8, &[u8]); 3]) -> Vec<u8> {
        let mut r = vec![0u8; MAGTEK_REPORT_LEN];
        for (t, (status, data)) in tracks.iter().enumerate() {
            r[t] = *status;
            r[3 + t] = data.len() as u8;
            let start = 7 + t * MAGTEK_TRACK_LEN;
            r[start..start + data.len()].copy_from_slice(data);
        }
        r
    }

    #[test]
    fn membership_card_report() {
        let report = magtek([(0, b""), (0, b";6012345678?"), (0, b"")]);
        let swipe = parse_magtek_report(&report);
        assert_eq!(
            swipe,
            Ok(MagtekSwipe {
                tracks: [None, Some(";6012345678?".into()), None],
                errors: [false; 3],
                encoding: 0,
            })
        );
        let swipe = swipe.unwrap_or_default();
        assert_eq!(magtek_to_text(&swipe), b";6012345678?\r".to_vec());
        assert_eq!(swipe.encoding_name(), "iso_aba");
    }

    #[test]
    fn failed_track_one_and_missing_sentinels() {
        let report = magtek([(1, b"%B4111111"), (0, b"6012345678"), (0, b"1234=99")]);
        let swipe = parse_magtek_report(&report).unwrap_or_default();
        assert_eq!(swipe.tracks[0], None);
        assert_eq!(swipe.errors, [true, false, false]);
        assert_eq!(
            magtek_to_text(&swipe),
            b"%E?;6012345678?;1234=99?\r".to_vec()
        );
        // Track 3 alone takes `+`, so it is not read as track 2.
        let report = magtek([(0, b""), (2, b""), (0, b";777?")]);
        let swipe = parse_magtek_report(&report).unwrap_or_default();
        assert_eq!(magtek_to_text(&swipe), b";E?;777?\r".to_vec());
        let report = magtek([(0, b""), (0, b""), (0, b";777?")]);
        let swipe = parse_magtek_report(&report).unwrap_or_default();
        assert_eq!(magtek_to_text(&swipe), b"+777?\r".to_vec());
        // Nothing at all still tells the page a card went through.
        let swipe = parse_magtek_report(&magtek([(0, b""), (0, b""), (0, b"")]));
        assert_eq!(
            magtek_to_text(&swipe.unwrap_or_default()),
            b";E?\r".to_vec()
        );
    }

    #[test]
    fn payment_card_tracks_pass_through_for_the_guard_but_never_debug() {
        let t1 = b"%B4111111111111111^DOE/JOHN^25121010000000000000?";
        let t2 = b";4111111111111111=25121010000000000000?";
        let swipe = parse_magtek_report(&magtek([(0, t1), (0, t2), (0, b"")])).unwrap_or_default();
        let mut want = t1.to_vec();
        want.extend_from_slice(t2);
        want.push(b'\r');
        assert_eq!(magtek_to_text(&swipe), want);
        let dbg = format!("{swipe:?}");
        assert!(!dbg.contains("4111"), "{dbg}");
        assert!(
            dbg.contains(&format!("Some(<{} chars>)", t1.len())),
            "{dbg}"
        );
    }

    #[test]
    fn magtek_text_goes_through_the_magstripe_guard() {
        use crate::magstripe::{Magstripe, Options as MsrOptions};
        use crate::{RejectReason, Tracks};
        let decode = |report: Vec<u8>| {
            let swipe = parse_magtek_report(&report).unwrap_or_default();
            let mut msr = Magstripe::new(MsrOptions::default());
            let mut out = Vec::new();
            msr.handle_bytes(Instant(0), &magtek_to_text(&swipe), &mut out);
            msr.handle_timer(Instant(10_000), &mut out);
            out.into_iter()
                .filter_map(|a| match a {
                    Action::Emit(e) => Some(e),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let payment = decode(magtek([
            (0, b"%B4111111111111111^DOE/JOHN^25121010000000000000?"),
            (0, b";4111111111111111=25121010000000000000?"),
            (0, b""),
        ]));
        assert!(matches!(
            &payment[..],
            [Event::CardRejected {
                reason: RejectReason::PaymentCard,
                ..
            }]
        ));
        let member = decode(magtek([(1, b""), (0, b"6012345678"), (0, b"")]));
        assert_eq!(
            member,
            vec![Event::CardSwiped {
                card_no: "6012345678".into(),
                tracks: Tracks {
                    t2: Some("6012345678".into()),
                    ..Tracks::default()
                },
            }]
        );
    }

    #[test]
    fn unusable_magtek_reports_and_tracks() {
        assert!(parse_magtek_report(&[0u8; 336]).is_err());
        assert!(parse_magtek_report(&[0u8; 338]).is_err());
        let mut r = magtek([(0, b"%1?"), (0, b";12;%B41?"), (0, b"\x01\x02")]);
        r[5] = 111; // track 3 longer than its field
        let swipe = parse_magtek_report(&r).unwrap_or_default();
        assert_eq!(swipe.tracks, [Some("%1?".into()), None, None]);
        assert_eq!(swipe.errors, [false, true, true]);
        assert_eq!(magtek_to_text(&swipe), b"%1?;E?;E?\r".to_vec());
    }

    #[test]
    fn no_panic_on_arbitrary_reports() {
        // A small deterministic generator stands in for the fuzzer in unit tests.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut p = HidPosScanner::new(Options {
            continuation_timeout_ms: 5,
            ..Options::default()
        });
        let mut out = Vec::new();
        for i in 0..3000u64 {
            let r = next();
            let len = match r % 4 {
                0 => 64,
                1 => MAGTEK_REPORT_LEN,
                _ => (r >> 8) as usize % 80,
            };
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if r % 3 == 0 {
                if let Some(b) = bytes.first_mut() {
                    *b = SCAN_REPORT_ID;
                }
            }
            p.handle_bytes(Instant(i), &bytes, &mut out);
            if i % 7 == 0 {
                p.handle_timer(Instant(i), &mut out);
            }
            if let Ok(swipe) = parse_magtek_report(&bytes) {
                let text = magtek_to_text(&swipe);
                assert_eq!(text.last(), Some(&b'\r'));
            }
            out.clear();
        }
    }
}
