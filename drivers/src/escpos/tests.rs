//! Hand-checked bytes for each command (Epson ESC/POS reference) and the
//! document rules. Whole receipts are in `tests/escpos_golden.rs`.

use super::*;
use crate::{Action, Event, Instant, Protocol};

const INIT_CN: [u8; 4] = [0x1b, 0x40, 0x1c, 0x26];

fn doc(json: &str) -> Document {
    match Document::from_json(json.as_bytes()) {
        Ok(d) => d,
        Err(e) => panic!("{json}: {e}"),
    }
}

fn err(json: &str) -> String {
    match Document::from_json(json.as_bytes()) {
        Ok(d) => panic!("{json} parsed: {d:?}"),
        Err(e) => e.to_string(),
    }
}

fn bytes(json: &str, profile: &Profile) -> Vec<u8> {
    match render(&doc(json), profile) {
        Ok(b) => b,
        Err(e) => panic!("{json}: {e}"),
    }
}

/// Rendered with the default profile, without the init prefix.
fn body(json: &str) -> Vec<u8> {
    let out = bytes(json, &Profile::default());
    assert_eq!(out[..4], INIT_CN, "{json}");
    out[4..].to_vec()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn init_and_chinese_mode() {
    assert_eq!(bytes(r#"{"lines": []}"#, &Profile::default()), INIT_CN);
    assert_eq!(
        bytes("{}", &Profile::new(48, Encoding::Ascii)),
        [0x1b, 0x40]
    );
    let always_chinese = Profile {
        chinese_mode: false,
        ..Profile::default()
    };
    assert_eq!(bytes("{}", &always_chinese), [0x1b, 0x40]);
}

#[test]
fn bold_centered_line_sets_and_resets_its_style() {
    assert_eq!(
        body(r#"{"lines": [{"text": "TOTAL", "align": "center", "bold": true}, {"text": "x"}]}"#),
        cat(&[
            b"\x1ba\x01",
            b"\x1bE\x01",
            b"TOTAL\n",
            b"\x1bE\x00",
            b"\x1ba\x00",
            b"x\n"
        ])
    );
    assert_eq!(
        body(r#"{"lines": [{"text": "r", "align": "right"}]}"#),
        b"\x1ba\x02r\n\x1ba\x00"
    );
}

#[test]
fn size_is_gs_bang_with_width_in_the_high_nibble() {
    assert_eq!(
        body(r#"{"lines": [{"text": "Hi", "size": [2, 2]}]}"#),
        b"\x1d!\x11Hi\n\x1d!\x00"
    );
    assert_eq!(
        body(r#"{"lines": [{"text": "Hi", "size": [3, 1]}]}"#),
        b"\x1d!\x20Hi\n\x1d!\x00"
    );
    assert_eq!(
        body(r#"{"lines": [{"text": "Hi", "size": [8, 8]}]}"#),
        b"\x1d!\x77Hi\n\x1d!\x00"
    );
}

#[test]
fn chinese_line_is_gb18030_in_chinese_mode() {
    // 会 BBE1, 员 D4B1, 充 B3E4, 值 D6B5 (GB2312); ¥ goes out as ￥ A3A4.
    assert_eq!(
        bytes(
            r#"{"lines": [{"text": "会员充值 ¥100.00"}]}"#,
            &Profile::default()
        ),
        cat(&[
            &INIT_CN,
            b"\xbb\xe1\xd4\xb1\xb3\xe4\xd6\xb5",
            b" \xa3\xa4100.00\n"
        ])
    );
    // An ASCII printer gets no Chinese mode and `?` for what it cannot print.
    assert_eq!(
        bytes(
            r#"{"lines": [{"text": "会员 ok"}]}"#,
            &Profile::new(48, Encoding::Ascii)
        ),
        b"\x1b@?? ok\n"
    );
}

#[test]
fn thirty_cjk_characters_at_double_width_wrap_twelve_per_line() {
    // 48 columns / width 2 = 24 columns = 12 full-width characters.
    let ten = "一二三四五六七八九十";
    let json = format!(r#"{{"lines": [{{"text": "{ten}{ten}{ten}", "size": [2, 1]}}]}}"#);
    // 一 D2BB 二 B6FE 三 C8FD 四 CBC4 五 CEE5 六 C1F9 七 C6DF 八 B0CB 九 BEC5 十 CAAE
    let gb: &[u8] =
        b"\xd2\xbb\xb6\xfe\xc8\xfd\xcb\xc4\xce\xe5\xc1\xf9\xc6\xdf\xb0\xcb\xbe\xc5\xca\xae";
    let twelve = cat(&[gb, &gb[..4]]);
    let second = cat(&[&gb[4..], &gb[..8]]);
    let last = &gb[8..];
    assert_eq!(
        body(&json),
        cat(&[
            b"\x1d!\x10",
            &twelve,
            b"\n",
            &second,
            b"\n",
            last,
            b"\n",
            b"\x1d!\x00"
        ])
    );
}

#[test]
fn mixed_latin_and_cjk_wrap() {
    let p = Profile::new(16, Encoding::Gb18030);
    let out = bytes(
        r#"{"lines": [{"text": "会员 VIP-0001 积分 1234 元"}, {"text": "Thank you for shopping with us"}]}"#,
        &p,
    );
    let gb = |s: &str| encoding_rs::GB18030.encode(s).0.into_owned();
    assert_eq!(
        gb("会员积分元"),
        b"\xbb\xe1\xd4\xb1\xbb\xfd\xb7\xd6\xd4\xaa"
    );
    assert_eq!(
        out,
        cat(&[
            &INIT_CN,
            &gb("会员 VIP-0001 积"),
            b"\n",
            &gb("分 1234 元"),
            b"\n",
            b"Thank you for\nshopping with us\n"
        ])
    );
}

#[test]
fn control_characters_cannot_smuggle_commands() {
    assert_eq!(
        body(r#"{"lines": [{"text": "a\u001b@\u001dV\u0000b\tc"}]}"#),
        b"a@Vb c\n"
    );
}

#[test]
fn qr_code_bytes() {
    let data = "https://e.example/r/42";
    assert_eq!(data.len(), 22);
    let json = format!(r#"{{"lines": [{{"qr": "{data}"}}]}}"#);
    assert_eq!(
        body(&json),
        cat(&[
            b"\x1ba\x01",
            b"\x1d(k\x04\x00\x31\x41\x32\x00", // model 2
            b"\x1d(k\x03\x00\x31\x43\x06",     // module 6 dots
            b"\x1d(k\x03\x00\x31\x45\x31",     // level M
            b"\x1d(k\x19\x00\x31\x50\x30",     // store 22 + 3 bytes
            data.as_bytes(),
            b"\x1d(k\x03\x00\x31\x51\x30", // print
            b"\x1ba\x00",
        ])
    );
    // 300 bytes: pL pH = 303 = 0x012F; version 13 (77 modules with quiet
    // zones) on 384 dots gets 4-dot modules.
    let long = "A".repeat(300);
    let out = bytes(
        &format!(r#"{{"lines": [{{"qr": "{long}"}}]}}"#),
        &Profile::new(32, Encoding::Gb18030),
    );
    let store = b"\x1d(k\x2f\x01\x31\x50\x30";
    assert!(out.windows(store.len()).any(|w| w == store));
    let size = b"\x1d(k\x03\x00\x31\x43\x04";
    assert!(out.windows(size.len()).any(|w| w == size));
}

const BARCODE_HEAD: &[u8] = b"\x1ba\x01\x1dH\x02\x1dh\x64";

#[test]
fn code128_bytes() {
    assert_eq!(
        body(r#"{"lines": [{"barcode": {"type": "CODE128", "data": "ORDER-42"}}]}"#),
        cat(&[
            BARCODE_HEAD,
            b"\x1dw\x03",
            b"\x1dk\x49\x0a{BORDER-42",
            b"\x1ba\x00"
        ])
    );
    // Even-length digits use code set C, one byte per pair.
    assert_eq!(
        body(r#"{"lines": [{"barcode": {"type": "code128", "data": "20261124"}}]}"#),
        cat(&[
            BARCODE_HEAD,
            b"\x1dw\x03",
            b"\x1dk\x49\x06{C\x14\x1a\x0b\x18",
            b"\x1ba\x00"
        ])
    );
    // `{` is escaped as `{{` in code set B.
    assert_eq!(
        body(r#"{"lines": [{"barcode": {"type": "CODE128", "data": "{x}"}}]}"#),
        cat(&[
            BARCODE_HEAD,
            b"\x1dw\x03",
            b"\x1dk\x49\x06{B{{x}",
            b"\x1ba\x00"
        ])
    );
}

#[test]
fn ean_upc_check_digits() {
    assert_eq!(gs1_check_digit(b"400638133393"), b'1');
    assert_eq!(gs1_check_digit(b"690123456789"), b'2');
    assert_eq!(gs1_check_digit(b"9638507"), b'4');
    assert_eq!(gs1_check_digit(b"03600029145"), b'2');
    assert_eq!(
        body(r#"{"lines": [{"barcode": {"type": "EAN13", "data": "690123456789"}}]}"#),
        cat(&[
            BARCODE_HEAD,
            b"\x1dw\x03",
            b"\x1dk\x43\x0d6901234567892",
            b"\x1ba\x00"
        ])
    );
    assert_eq!(
        body(r#"{"lines": [{"barcode": {"type": "EAN8", "data": "96385074"}}]}"#),
        cat(&[
            BARCODE_HEAD,
            b"\x1dw\x03",
            b"\x1dk\x44\x0896385074",
            b"\x1ba\x00"
        ])
    );
    assert_eq!(
        body(r#"{"lines": [{"barcode": {"type": "UPC-A", "data": "03600029145"}}]}"#),
        cat(&[
            BARCODE_HEAD,
            b"\x1dw\x03",
            b"\x1dk\x41\x0c036000291452",
            b"\x1ba\x00"
        ])
    );
    assert!(
        err(r#"{"lines": [{"barcode": {"type": "EAN13", "data": "4006381333932"}}]}"#)
            .contains("lines[0]: EAN13 check digit should be 1, but \"4006381333932\" ends in 2"),
    );
    assert!(
        err(r#"{"lines": [{"barcode": {"type": "EAN13", "data": "12345"}}]}"#)
            .contains("EAN13 barcode data must be 12 digits, or 13 with the check digit"),
    );
}

#[test]
fn other_barcode_types_and_limits() {
    assert_eq!(
        body(r#"{"lines": [{"barcode": {"type": "CODE39", "data": "AB-12"}}]}"#),
        cat(&[
            BARCODE_HEAD,
            b"\x1dw\x03",
            b"\x1dk\x45\x05AB-12",
            b"\x1ba\x00"
        ])
    );
    assert_eq!(
        body(r#"{"lines": [{"barcode": {"type": "ITF", "data": "1234"}}]}"#),
        cat(&[
            BARCODE_HEAD,
            b"\x1dw\x03",
            b"\x1dk\x46\x041234",
            b"\x1ba\x00"
        ])
    );
    assert!(
        err(r#"{"lines": [{"barcode": {"type": "CODE39", "data": "ab"}}]}"#)
            .contains("CODE39 barcode cannot encode 'a'")
    );
    assert!(
        err(r#"{"lines": [{"barcode": {"type": "ITF", "data": "123"}}]}"#)
            .contains("even number of digits")
    );
    assert!(
        err(r#"{"lines": [{"barcode": {"type": "CODE128", "data": "价格"}}]}"#)
            .contains("printable ASCII")
    );
    assert!(
        err(r#"{"lines": [{"barcode": {"type": "QR", "data": "x"}}]}"#).contains(
            "unknown barcode type `QR`; expected CODE128, EAN13, EAN8, CODE39, UPCA or ITF"
        )
    );
    // Narrower bars when 3 dots do not fit, an error when 2 do not.
    let p = Profile::new(32, Encoding::Gb18030);
    let mid = bytes(
        r#"{"lines": [{"barcode": {"type": "CODE128", "data": "AB-1234567"}}]}"#,
        &p,
    );
    assert!(mid.windows(3).any(|w| w == b"\x1dw\x02"), "{mid:x?}");
    let long = doc(&format!(
        r#"{{"lines": [{{"text": "x"}}, {{"barcode": {{"type": "CODE128", "data": "{}"}}}}]}}"#,
        "AB-".repeat(10)
    ));
    let e = render(&long, &p);
    assert_eq!(
        e,
        Err(RenderError::BarcodeTooWide {
            line: 1,
            needed: 730,
            available: 384
        })
    );
    assert!(e.is_err_and(|e| e
        .to_string()
        .starts_with("lines[1]: the barcode needs 730 dots")));
}

#[test]
fn feed_cut_and_drawer() {
    assert_eq!(body(r#"{"lines": [{"feed": 3}]}"#), b"\x1bd\x03");
    assert_eq!(body(r#"{"lines": [{"cut": true}]}"#), b"\x1dV\x42\x00");
    assert_eq!(body(r#"{"lines": [{"cut": false}]}"#), b"");
    let full = Profile {
        cut: CutMode::Full,
        ..Profile::default()
    };
    assert_eq!(
        bytes(r#"{"lines": [{"cut": true}]}"#, &full)[4..],
        *b"\x1dV\x41\x00"
    );
    let none = Profile {
        cut: CutMode::None,
        ..Profile::default()
    };
    assert_eq!(
        bytes(r#"{"lines": [{"cut": true}]}"#, &none)[4..],
        *b"\x1bd\x04"
    );

    assert_eq!(drawer_kick(&Profile::default()), b"\x1bp\x00\x19\xfa");
    let pin5 = Profile {
        drawer: DrawerKick {
            pin: DrawerPin::Pin5,
            on: 50,
            off: 100,
        },
        ..Profile::default()
    };
    assert_eq!(drawer_kick(&pin5), b"\x1bp\x01\x32\x64");
    // Real time: 50 ms rounds up to one 100 ms step; pin 5 is m = 1.
    assert_eq!(
        realtime_drawer_kick(&Profile::default()),
        b"\x10\x14\x01\x00\x01"
    );
    assert_eq!(realtime_drawer_kick(&pin5), b"\x10\x14\x01\x01\x01");
    let long = Profile {
        drawer: DrawerKick {
            on: 255,
            ..DrawerKick::default()
        },
        ..Profile::default()
    };
    assert_eq!(realtime_drawer_kick(&long)[4], 6, "510 ms is 6 steps");
    // The kick comes last, after the cut.
    assert_eq!(
        body(r#"{"lines": [{"text": "x"}, {"cut": true}], "open_drawer": true}"#),
        b"x\n\x1dV\x42\x00\x1bp\x00\x19\xfa"
    );
    assert_eq!(body(r#"{"open_drawer": true}"#), b"\x1bp\x00\x19\xfa");
}

#[test]
fn document_errors_name_the_line() {
    let cases = [
        (
            r#"{"lines": [{"text": "a"}, {"colour": "red"}]}"#,
            "lines[1]: unknown line kind `colour`; expected text, qr, barcode, image, logo, feed or cut",
        ),
        (
            r#"{"lines": [{"text": "a", "qr": "b"}]}"#,
            "lines[0]: a line is exactly one of text, qr, barcode, image, logo, feed or cut; this one has text and qr",
        ),
        (
            r#"{"lines": [{"text": "a", "size": [9, 1]}]}"#,
            "lines[0]: size must be [w, h] with each 1 to 8, got [9, 1]",
        ),
        (
            r#"{"lines": [{"text": "a", "size": [0, 1]}]}"#,
            "lines[0]: size must be [w, h] with each 1 to 8, got [0, 1]",
        ),
        (
            r#"{"lines": [{"text": "a", "align": "middle"}]}"#,
            "lines[0]: unknown variant `middle`, expected one of `left`, `center`, `right`",
        ),
        (
            r#"{"lines": [{"text": "a", "underline": true}]}"#,
            "lines[0]: unknown field `underline`, expected one of `text`, `align`, `bold`, `size`",
        ),
        (
            r#"{"lines": [{"qr": "a", "size": 3}]}"#,
            "lines[0]: unknown field `size` in a qr line; it takes only `qr`",
        ),
        (r#"{"lines": [{"qr": ""}]}"#, "lines[0]: qr data is empty"),
        (
            r#"{"lines": [{"feed": 256}]}"#,
            "lines[0]: feed must be a whole number 0 to 255, got 256",
        ),
        (
            r#"{"lines": [{"cut": "yes"}]}"#,
            "lines[0]: cut must be true or false, got \"yes\"",
        ),
        (
            r#"{"lines": ["hello"]}"#,
            "lines[0]: expected an object such as {\"text\": \"…\"}, got a string",
        ),
        (
            r#"{"lines": [{"barcode": {"type": "EAN8", "data": "1", "x": 1}}]}"#,
            "lines[0]: barcode: unknown field `x`, expected `type` or `data`",
        ),
        (r#"{"line": []}"#, "unknown field `line`, expected `lines` or `open_drawer`"),
    ];
    for (json, want) in cases {
        let got = err(json);
        assert!(got.starts_with(want), "{json}\n got: {got}\nwant: {want}");
    }
    let qr = format!(
        r#"{{"lines": [{{"qr": "{}"}}]}}"#,
        "x".repeat(MAX_QR_BYTES + 1)
    );
    assert!(err(&qr).starts_with("lines[0]: qr data is 701 bytes (at most 700)"));
    let many = format!(
        r#"{{"lines": [{}{{"feed": 1}}]}}"#,
        r#"{"feed": 1},"#.repeat(MAX_LINES)
    );
    assert!(err(&many).starts_with("too many lines: 1001"));
    let text = format!(
        r#"{{"lines": [{{"text": "{}"}}]}}"#,
        "x".repeat(MAX_TEXT_CHARS + 1)
    );
    assert!(err(&text).starts_with("lines[0]: text is 4097 characters long"));
}

#[test]
fn the_contract_example_parses() {
    let d = doc(
        r#"{"lines": [{"text": "…", "align": "left", "bold": false, "size": [1, 1]}, {"qr": "…"},
            {"barcode": {"type": "CODE128", "data": "12345"}}, {"feed": 2}, {"cut": true}],
            "open_drawer": true}"#,
    );
    assert_eq!(
        d,
        Document {
            lines: vec![
                Line::Text(TextLine::plain("…")),
                Line::Qr("…".into()),
                Line::Barcode(Barcode {
                    kind: BarcodeType::Code128,
                    data: "12345".into()
                }),
                Line::Feed(2),
                Line::Cut,
            ],
            open_drawer: true
        }
    );
}

#[test]
fn documents_built_in_code_are_checked_too() {
    let bad = Document {
        lines: vec![Line::Text(TextLine {
            size: [0, 9],
            ..TextLine::plain("x")
        })],
        open_drawer: false,
    };
    assert!(matches!(
        render(&bad, &Profile::default()),
        Err(RenderError::Document(_))
    ));
    let zero = Profile::new(0, Encoding::Gb18030);
    assert_eq!(
        render(&Document::default(), &zero),
        Err(RenderError::Profile("columns must be at least 1"))
    );
    // One column still prints, a character a line.
    let one = Profile::new(1, Encoding::Gb18030);
    assert!(render(
        &doc(r#"{"lines": [{"text": "会员 ab", "size": [8, 8]}]}"#),
        &one
    )
    .is_ok());
}

#[test]
fn encoding_and_config_spellings() {
    assert_eq!(Encoding::parse("GB18030"), Some(Encoding::Gb18030));
    assert_eq!(Encoding::parse("gbk"), Some(Encoding::Gb18030));
    assert_eq!(Encoding::parse("ascii"), Some(Encoding::Ascii));
    assert_eq!(Encoding::parse("utf-8"), None);
    assert_eq!(Profile::default().dots(), 576);
}

// ---- status ----

#[test]
fn status_queries_are_dle_eot_1_2_4() {
    assert_eq!(
        status_queries(),
        [0x10, 0x04, 0x01, 0x10, 0x04, 0x02, 0x10, 0x04, 0x04]
    );
}

fn st(a: u8, b: u8, c: u8) -> PrinterStatus {
    match PrinterStatus::from_responses(a, b, c) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn status_bits() {
    let ok = PrinterStatus {
        online: true,
        paper: Paper::Ok,
        cover_open: false,
        ..PrinterStatus::default()
    };
    assert_eq!(st(0x12, 0x12, 0x12), ok);
    // n=1 bit 2 is the drawer sensor: not part of the contract's status.
    assert_eq!(st(0x16, 0x12, 0x12), ok);
    // n=1 bit 3: offline.
    assert!(!st(0x1a, 0x12, 0x12).online);
    // n=2 bit 2: cover open (the printer is then offline too).
    assert_eq!(
        st(0x1a, 0x16, 0x12),
        PrinterStatus {
            online: false,
            paper: Paper::Ok,
            cover_open: true,
            ..PrinterStatus::default()
        }
    );
    // n=4 bits 2/3: near end; bits 5/6: end.
    assert_eq!(st(0x12, 0x12, 0x1e).paper, Paper::Low);
    assert_eq!(st(0x12, 0x12, 0x16).paper, Paper::Low);
    assert_eq!(st(0x1a, 0x72, 0x72).paper, Paper::Out);
    assert_eq!(st(0x12, 0x12, 0x7e).paper, Paper::Out);
    assert_eq!(st(0x12, 0x12, 0x32).paper, Paper::Out);
    // n=2 bit 5: printing stopped by paper end.
    assert_eq!(st(0x1a, 0x32, 0x12).paper, Paper::Out);
}

#[test]
fn bytes_without_the_fixed_bits_are_refused() {
    for bad in [0x00, 0x01, 0x10, 0x02, 0x13, 0x92, 0xff, b'A'] {
        assert_eq!(
            PrinterStatus::from_responses(0x12, bad, 0x12),
            Err(StatusError {
                query: 2,
                byte: bad
            }),
            "{bad:#x}"
        );
    }
    assert_eq!(
        StatusError {
            query: 4,
            byte: 0x41
        }
        .to_string(),
        "byte 0x41 is not an answer to DLE EOT 4 (fixed bits 0x12 under mask 0x93)"
    );
}

#[test]
fn reader_collects_three_answers_and_skips_garbage() {
    let mut r = StatusReader::new();
    assert_eq!(r.push(0x12), Ok(None));
    assert!(r.push(0x00).is_err());
    assert_eq!(r.push(0x16), Ok(None));
    assert_eq!(
        r.push(0x1e),
        Ok(Some(PrinterStatus {
            online: true,
            paper: Paper::Low,
            cover_open: true,
            ..PrinterStatus::default()
        }))
    );
    // The next round starts over; start() drops a partial one.
    assert_eq!(r.push(0x1a), Ok(None));
    r.start();
    assert_eq!(r.push(0x12), Ok(None));
    assert_eq!(r.push(0x12), Ok(None));
    assert_eq!(r.push(0x12).map(|s| s.map(|s| s.online)), Ok(Some(true)));
}

#[test]
fn printer_status_event_wire_form() {
    let ev: Event = st(0x12, 0x12, 0x1e).into();
    assert_eq!(ev.kind(), "printer.status");
    assert_eq!(
        serde_json::to_string(&ev).unwrap_or_default(),
        r#"{"type":"printer.status","data":{"online":true,"paper":"low","cover_open":false}}"#
    );
}

#[test]
fn poller_emits_changes_and_reports_silence() {
    let mut p = StatusPoller::new(2000);
    let mut out = Vec::new();
    p.handle_open(Instant(0), &mut out);
    assert_eq!(
        out,
        [
            Action::Write(status_queries().to_vec()),
            Action::SetTimer(Instant(2000))
        ]
    );
    out.clear();
    p.handle_bytes(Instant(10), &[0x12, 0x12], &mut out);
    assert!(out.is_empty());
    p.handle_bytes(Instant(11), &[0x12], &mut out);
    assert_eq!(
        out,
        [Action::Emit(Event::PrinterStatus {
            online: true,
            paper: Paper::Ok,
            cover_open: false,
            ribbon_out: false,
            jammed: false,
        })]
    );
    out.clear();
    // Same status again: nothing; a change: one event; junk: Malformed.
    p.handle_timer(Instant(2000), &mut out);
    p.handle_bytes(Instant(2010), &[0x12, 0x12, 0x12], &mut out);
    assert_eq!(out.len(), 2, "{out:?}");
    out.clear();
    p.handle_timer(Instant(4000), &mut out);
    out.clear();
    p.handle_bytes(Instant(4010), &[0x12, 0xff, 0x12, 0x72], &mut out);
    assert_eq!(
        out,
        [
            Action::Emit(Event::PrinterStatus {
                online: true,
                paper: Paper::Out,
                cover_open: false,
                ribbon_out: false,
                jammed: false,
            }),
            Action::Malformed("1 byte(s) that are not DLE EOT status answers".into())
        ]
    );
    out.clear();
    // Three unanswered rounds: one fault; an answer: recovered.
    for t in 3..=6 {
        p.handle_timer(Instant(t * 2000), &mut out);
    }
    let faults = out.iter().filter(|a| matches!(a, Action::Fault(_))).count();
    assert_eq!(faults, 1);
    out.clear();
    p.handle_bytes(Instant(12_010), &[0x12, 0x12, 0x72], &mut out);
    assert_eq!(out, [Action::Recovered]);
    assert!(p.request_read(Instant(12_100), &mut out));
}
