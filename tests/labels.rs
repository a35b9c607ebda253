//! TSPL label printers end to end: a fake network label printer captures
//! the command stream and answers `ESC ! ?` with a chosen status byte.

use crate::common::printer::*;
use crate::common::*;
use crate::print::{config, raw, submit, wait_state, wait_status};
use image::{GrayImage, ImageFormat, Luma};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

fn label_printer(id: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "[[device]]\nid = \"{id}\"\ndriver = \"label\"\ntransport = \"tcp\"\naddress = \"{addr}\"\n{extra}\n"
    )
}

fn gb(s: &str) -> Vec<u8> {
    encoding_rs::GB18030.encode(s).0.into_owned()
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// 16×2 dots: the left half of the first row black, the right half of the second.
fn picture() -> Vec<u8> {
    let img = GrayImage::from_fn(16, 2, |x, y| {
        Luma([if (y == 0) == (x < 8) { 0 } else { 255 }])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), ImageFormat::Png)
        .expect("png");
    out
}

fn price_label() -> Value {
    json!({"copies": 2, "items": [
        {"text": "会员价 ¥12.80", "x": 16, "y": 16, "size": 2},
        {"text": "苹果 \"红富士\" 500g", "x": 16, "y": 72},
        {"barcode": {"type": "EAN13", "data": "690123456789"}, "x": 16, "y": 110, "height": 60},
        {"qr": "https://shop.example/m/8888", "x": 300, "y": 110, "cell": 4},
        {"image": b64(&picture()), "x": 400, "y": 16}
    ]})
}

#[tokio::test]
async fn a_label_arrives_as_tspl_with_its_chinese_text_in_gb18030() {
    let p = FakePrinter::start_tspl(0x00).await;
    let d = Daemon::start(&config(&label_printer(
        "label-1",
        p.addr,
        "language = \"tspl\"\nwidth_mm = 60\nheight_mm = 40\ngap_mm = 2",
    )))
    .await;
    let job = submit(&d, json!({"printer": "label-1", "label": price_label()})).await;
    let v = wait_state(&d, &job, "printed").await;
    assert_eq!(v["kind"], "label", "{v}");
    let want = [
        b"SIZE 60 mm,40 mm\r\nGAP 2 mm,0 mm\r\nDIRECTION 1\r\nREFERENCE 0,0\r\nCLS\r\n".to_vec(),
        b"TEXT 16,16,\"TSS24.BF2\",0,2,2,\"".to_vec(),
        gb("会员价 ￥12.80"),
        b"\"\r\nTEXT 16,72,\"TSS24.BF2\",0,1,1,\"".to_vec(),
        gb("苹果 "),
        b"\\[\"]".to_vec(),
        gb("红富士"),
        b"\\[\"]".to_vec(),
        gb(" 500g"),
        b"\"\r\n".to_vec(),
        b"BARCODE 16,110,\"EAN13\",60,1,0,2,2,\"690123456789\"\r\n".to_vec(),
        b"QRCODE 300,110,M,4,A,0,\"https://shop.example/m/8888\"\r\n".to_vec(),
        // Two bytes a row; a 0 bit prints.
        b"BITMAP 400,16,2,2,0,".to_vec(),
        vec![0x00, 0xff, 0xff, 0x00],
        b"\r\nPRINT 1,2\r\n".to_vec(),
    ]
    .concat();
    let got = p.data();
    assert!(
        got == want,
        "got:\n{}\nwant:\n{}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    assert!(p.status_queries() >= 1, "ESC ! ? is asked before the job");
    let printers = d.get_json("/v1/printers").await;
    let me = &printers[0];
    assert_eq!(me["kind"], "label", "{printers}");
    assert_eq!(me["status"]["online"], true, "{printers}");
    assert!(me["columns"].is_null(), "{printers}");
    d.stop().await;
}

/// Sets the printer to `status`, posts a label, and checks it is held for
/// `reason` with a matching `printer.status`, then prints once the printer is ready.
async fn held_for(status: u8, reason: &str, event: impl Fn(&Value) -> bool) {
    let p = FakePrinter::start_tspl(0x00).await;
    let d = Daemon::start(&config(&label_printer(
        "label-1",
        p.addr,
        "width_mm = 40\nheight_mm = 30",
    )))
    .await;
    let mut ws = d.ws("/v1/events?types=printer.status").await;
    p.set([status, 0, 0]);
    let body = json!({"printer": "label-1", "label": {"items": [{"text": "A", "x": 0, "y": 0}]}});
    let job = submit(&d, body).await;
    let ev = wait_status(&mut ws, &event).await;
    assert_eq!(ev["device"], "label-1", "{ev}");
    let v = wait_state(&d, &job, "held").await;
    assert_eq!(v["reason"], reason, "{v}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(p.data().is_empty(), "nothing prints while held ({reason})");
    let printers = d.get_json("/v1/printers").await;
    assert_eq!(printers[0]["waiting"], 1, "{printers}");
    p.set([0x00, 0, 0]);
    wait_status(&mut ws, |s| s["online"] == true && s["paper"] == "ok").await;
    wait_state(&d, &job, "printed").await;
    assert!(p.data().ends_with(b"PRINT 1,1\r\n"));
    close(ws).await;
    d.stop().await;
}

#[tokio::test]
async fn paper_out_holds_a_label_printers_queue_until_paper_is_back() {
    held_for(0x04, "paper_out", |s| s["paper"] == "out").await;
}

#[tokio::test]
async fn ribbon_out_and_an_open_head_hold_the_queue_too() {
    held_for(0x08, "ribbon_out", |s| s["ribbon_out"] == true).await;
    held_for(0x01, "cover_open", |s| s["cover_open"] == true).await;
}

#[tokio::test]
async fn raw_tspl_passes_as_it_is_and_receipt_requests_are_refused() {
    let p = FakePrinter::start_tspl(0x00).await;
    let receipt = FakePrinter::start(NORMAL).await;
    let d = Daemon::start(&config(&format!(
        "{}{}[[device]]\nid = \"label-sim\"\ndriver = \"label\"\ntransport = \"sim\"\nwidth_mm = 40\nheight_mm = 30\n",
        label_printer("label-1", p.addr, ""),
        crate::print::printer("printer-1", receipt.addr, "")
    )))
    .await;
    let tspl = b"SIZE 40 mm,30 mm\r\nCLS\r\nTEXT 10,10,\"3\",0,1,1,\"RAW\"\r\nPRINT 1\r\n";
    let job = submit(&d, raw("label-1", tspl)).await;
    wait_state(&d, &job, "printed").await;
    assert_eq!(p.data(), tspl);
    let cases = [
        (
            json!({"printer": "label-1", "document": {"lines": [{"text": "x"}]}}),
            "label-1 is a label printer: send \"label\" or \"raw\"",
        ),
        (
            json!({"printer": "printer-1", "label": {"items": []}}),
            "printer-1 is a receipt printer: send \"document\" or \"raw\"",
        ),
        (
            json!({"printer": "label-1", "label": {"items": []}}),
            "label.width_mm: missing, and the printer has no default configured",
        ),
        (
            json!({"printer": "label-1", "label": {"width_mm": 40, "height_mm": 30, "items": [
                {"text": "a", "x": 0, "y": 0}, {"qr": "b", "x": 0, "y": 400}]}}),
            "label.items[1].y: 400 is outside the label (240 dots at 8 dots/mm)",
        ),
        (
            json!({"printer": "label-1", "label": {"width_mm": 40, "height_mm": 30, "items": [
                {"logo": "shop", "x": 0, "y": 0}]}}),
            "label.items[0].logo: no logo named \"shop\" is configured",
        ),
        (
            json!({"printer": "label-1", "label": {"items": []}, "raw": "aGk="}),
            "give exactly one of",
        ),
    ];
    for (body, want) in cases {
        let (status, v) = d.post_json("/v1/print", &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(want), "{body}: {msg}");
    }
    let (status, v) = d
        .post_json("/v1/drawer/open", &json!({"printer": "label-1"}))
        .await;
    assert_eq!(status, 400, "{v}");
    // A simulated label printer takes labels and is always ready.
    let job = submit(
        &d,
        json!({"printer": "label-sim", "label": {"items": [{"text": "模拟", "x": 8, "y": 8}]}}),
    )
    .await;
    wait_state(&d, &job, "printed").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.data(), tspl, "nothing refused reached the printer");
    assert!(receipt.data().is_empty());
    d.stop().await;
}

#[test]
fn label_printer_config_errors_name_the_key() {
    let addr = "127.0.0.1:9100".parse().expect("addr");
    let cases = [
        (
            "language = \"zpl\"",
            "device[0].language",
            "ZPL (Zebra) is not supported yet",
        ),
        ("language = \"epl\"", "device[0].language", "is not tspl"),
        ("dpi = 250", "device[0].dpi", "250 is not 203 or 300"),
        ("width_mm = 2", "device[0].width_mm", "2 is not from 5"),
        ("gap_mm = 80", "device[0].gap_mm", "80 is not from 0 to 50"),
        ("columns = 48", "device[0].columns", ""),
    ];
    for (extra, key, why) in cases {
        let text = config(&label_printer("l", addr, extra));
        let err = posbridge::Config::parse(&text, std::iter::empty(), "t")
            .expect_err(extra)
            .to_string();
        let line = err.lines().find(|l| l.contains(&format!("{key}:")));
        assert!(line.is_some_and(|l| l.contains(why)), "{extra}: {err}");
    }
    let ok = config(&label_printer(
        "l",
        addr,
        "dpi = 300\nwidth_mm = 60\nheight_mm = 40",
    ));
    posbridge::Config::parse(&ok, std::iter::empty(), "t").expect("a label printer loads");
}
