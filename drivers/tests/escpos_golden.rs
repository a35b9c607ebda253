//! Whole receipts rendered byte for byte against golden files.
//!
//! Each `tests/golden/NAME.json` renders to `NAME.bin`. Next to it,
//! `NAME.txt` is a listing of the `.bin` made by the small ESC/POS decoder
//! below, which knows nothing of the renderer: it reads the bytes back,
//! decodes the GB18030 text, and checks what a printer would care about
//! (every command known, text fits the line at its size, lengths in `GS k`
//! and `GS ( k` match their data, EAN check digits, no style left on at a
//! barcode, cut or the end). The listing is what a person reviews.
//!
//! `POSBRIDGE_BLESS=1 cargo test --test escpos_golden` rewrites `.bin` and
//! `.txt`, but only for output the decoder accepts.

use posbridge_drivers::escpos::{render, CutMode, Document, Encoding, Profile};
use std::fmt::Write as _;
use std::path::PathBuf;

fn cases() -> Vec<(&'static str, Profile)> {
    vec![
        ("recharge_receipt", Profile::default()),
        ("purchase_with_qr_barcode_cut_drawer", Profile::default()),
        (
            "narrow_32col",
            Profile {
                cut: CutMode::Full,
                ..Profile::new(32, Encoding::Gb18030)
            },
        ),
    ]
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn escpos_golden_receipts() {
    let bless = std::env::var_os("POSBRIDGE_BLESS").is_some_and(|v| v == "1");
    for (name, profile) in cases() {
        let json = read(&dir().join(format!("{name}.json")));
        let doc = Document::from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        let bytes = render(&doc, &profile).unwrap_or_else(|e| panic!("{name}: {e}"));
        let listing = decode(&bytes, profile.columns).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (bin, txt) = (
            dir().join(format!("{name}.bin")),
            dir().join(format!("{name}.txt")),
        );
        if bless {
            std::fs::write(&bin, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            std::fs::write(&txt, &listing).unwrap_or_else(|e| panic!("{name}: {e}"));
            continue;
        }
        let golden = read(&bin);
        let golden_listing = decode(&golden, profile.columns)
            .unwrap_or_else(|e| panic!("{name}.bin does not decode: {e}"));
        assert_eq!(
            golden_listing,
            String::from_utf8_lossy(&read(&txt)),
            "{name}.bin and {name}.txt disagree"
        );
        assert!(
            bytes == golden,
            "{name}: rendered bytes differ from {name}.bin\n--- now:\n{listing}\n--- golden:\n{golden_listing}"
        );
    }
}

#[test]
fn escpos_decoder_catches_what_it_should() {
    // Text wider than the line, a wrong EAN check digit, a QR length that lies,
    // a style left on, an unknown command.
    let bad: [(&[u8], &str); 5] = [
        (b"\x1b@\x1d!\x10abcdefghijklmnopq\n\x1d!\x00", "wider"),
        (b"\x1b@\x1dk\x43\x0d6901234567890", "check digit"),
        (b"\x1b@\x1d(k\x09\x00\x31\x50\x30ab", "length"),
        (b"\x1b@\x1bE\x01x\n", "style"),
        (b"\x1b@\x1b*\x00", "unknown"),
    ];
    for (bytes, want) in bad {
        match decode(bytes, 32) {
            Ok(l) => panic!("{bytes:x?} accepted:\n{l}"),
            Err(e) => assert!(e.contains(want), "{e}"),
        }
    }
}

/// Printer state the decoder tracks.
#[derive(Default)]
struct State {
    chinese: bool,
    align: u8,
    bold: bool,
    size: u8,
}

impl State {
    fn plain(&self) -> bool {
        self.align == 0 && !self.bold && self.size == 0
    }
}

/// Reads ESC/POS back into a listing, or says what is wrong with it.
fn decode(b: &[u8], columns: u16) -> Result<String, String> {
    let mut s = State::default();
    let mut out = String::new();
    let mut i = 0;
    let arg = |i: usize| b.get(i).copied().ok_or(format!("truncated command at {i}"));
    while i < b.len() {
        let start = i;
        match b[i] {
            0x1b => {
                let c = arg(i + 1)?;
                match c {
                    b'@' => {
                        s = State::default();
                        i += 2;
                        writeln!(out, "ESC @").ok();
                    }
                    b'a' => {
                        s.align = arg(i + 2)?;
                        if s.align > 2 {
                            return Err(format!("ESC a {} at {start}", s.align));
                        }
                        i += 3;
                        let name = ["left", "center", "right"][usize::from(s.align)];
                        writeln!(out, "ESC a {}  {name}", s.align).ok();
                    }
                    b'E' => {
                        s.bold = arg(i + 2)? == 1;
                        i += 3;
                        writeln!(out, "ESC E {}", u8::from(s.bold)).ok();
                    }
                    b'd' => {
                        writeln!(out, "ESC d {}  feed", arg(i + 2)?).ok();
                        i += 3;
                    }
                    b'p' => {
                        if !s.plain() {
                            return Err("style left on before the drawer kick".into());
                        }
                        let (m, t1, t2) = (arg(i + 2)?, arg(i + 3)?, arg(i + 4)?);
                        writeln!(
                            out,
                            "ESC p {m} {t1} {t2}  drawer pin {} {} ms on {} ms off",
                            if m == 0 { 2 } else { 5 },
                            u32::from(t1) * 2,
                            u32::from(t2) * 2
                        )
                        .ok();
                        i += 5;
                    }
                    _ => return Err(format!("unknown command ESC 0x{c:02x} at {start}")),
                }
            }
            0x1c => match arg(i + 1)? {
                b'&' => {
                    s.chinese = true;
                    i += 2;
                    writeln!(out, "FS &  Chinese mode").ok();
                }
                c => return Err(format!("unknown command FS 0x{c:02x} at {start}")),
            },
            0x1d => {
                let c = arg(i + 1)?;
                match c {
                    b'!' => {
                        s.size = arg(i + 2)?;
                        i += 3;
                        writeln!(
                            out,
                            "GS ! 0x{:02x}  size {}x{}",
                            s.size,
                            (s.size >> 4) + 1,
                            (s.size & 7) + 1
                        )
                        .ok();
                    }
                    b'V' => {
                        if !s.plain() {
                            return Err("style left on at a cut".into());
                        }
                        let (m, n) = (arg(i + 2)?, arg(i + 3)?);
                        let kind = match m {
                            65 => "full",
                            66 => "partial",
                            _ => return Err(format!("GS V {m} at {start}")),
                        };
                        writeln!(out, "GS V {m} {n}  feed and {kind} cut").ok();
                        i += 4;
                    }
                    b'H' | b'h' | b'w' => {
                        writeln!(out, "GS {} {}", c as char, arg(i + 2)?).ok();
                        i += 3;
                    }
                    b'k' => {
                        let (m, n) = (arg(i + 2)?, usize::from(arg(i + 3)?));
                        let data = b
                            .get(i + 4..i + 4 + n)
                            .ok_or(format!("GS k at {start}: data shorter than n = {n}"))?;
                        check_barcode(m, data)?;
                        writeln!(
                            out,
                            "GS k {m} {n}  barcode {:?}",
                            String::from_utf8_lossy(data)
                        )
                        .ok();
                        i += 4 + n;
                    }
                    b'(' => {
                        if arg(i + 2)? != b'k' {
                            return Err(format!("unknown GS ( command at {start}"));
                        }
                        let len = usize::from(arg(i + 3)?) + 256 * usize::from(arg(i + 4)?);
                        let p = b
                            .get(i + 5..i + 5 + len)
                            .ok_or(format!("GS ( k at {start}: length {len} past the end"))?;
                        let what = match p {
                            [0x31, 0x41, m, 0] => format!("QR model {}", m.wrapping_sub(0x30)),
                            [0x31, 0x43, n] => format!("QR module {n} dots"),
                            [0x31, 0x45, l] => format!(
                                "QR level {}",
                                ["L", "M", "Q", "H"][usize::from(l.wrapping_sub(0x30)) % 4]
                            ),
                            [0x31, 0x50, 0x30, data @ ..] => {
                                format!(
                                    "QR store {} bytes {:?}",
                                    data.len(),
                                    String::from_utf8_lossy(data)
                                )
                            }
                            [0x31, 0x51, 0x30] => "QR print".into(),
                            _ => return Err(format!("GS ( k at {start}: unexpected {p:x?}")),
                        };
                        writeln!(out, "GS ( k  {what}").ok();
                        i += 5 + len;
                    }
                    _ => return Err(format!("unknown command GS 0x{c:02x} at {start}")),
                }
            }
            0x0a => {
                writeln!(out, "LF").ok();
                i += 1;
            }
            c if c < 0x20 || c == 0x7f => {
                return Err(format!("unknown control byte 0x{c:02x} at {start}"));
            }
            _ => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c < 0x20)
                    .map_or(b.len(), |p| i + p);
                if b.get(end) != Some(&0x0a) {
                    return Err(format!("text at {start} does not end with LF"));
                }
                let text = decode_text(&b[i..end], s.chinese)?;
                let cols = text
                    .chars()
                    .map(|c| if c.is_ascii() { 1 } else { 2 })
                    .sum::<u16>();
                let line = columns / (u16::from(s.size >> 4) + 1);
                if cols > line {
                    return Err(format!(
                        "text {text:?} is {cols} columns wider than the line of {line}"
                    ));
                }
                writeln!(out, "TEXT {text:?}  ({cols}/{line})").ok();
                i = end;
            }
        }
    }
    if !s.plain() {
        return Err("style left on at the end".into());
    }
    Ok(out)
}

fn decode_text(bytes: &[u8], chinese: bool) -> Result<String, String> {
    if !chinese {
        return String::from_utf8(bytes.to_vec())
            .ok()
            .filter(|t| t.is_ascii())
            .ok_or(format!("non-ASCII text outside Chinese mode: {bytes:x?}"));
    }
    encoding_rs::GB18030
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|t| t.into_owned())
        .ok_or(format!("invalid GB18030: {bytes:x?}"))
}

fn check_barcode(m: u8, data: &[u8]) -> Result<(), String> {
    let ean = |len: usize| -> Result<(), String> {
        if data.len() != len || !data.iter().all(u8::is_ascii_digit) {
            return Err(format!("EAN/UPC data {data:x?}"));
        }
        let sum: u32 = data[..len - 1]
            .iter()
            .rev()
            .enumerate()
            .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
            .sum();
        let want = b'0' + ((10 - sum % 10) % 10) as u8;
        if data[len - 1] != want {
            return Err(format!(
                "wrong check digit in {:?}",
                String::from_utf8_lossy(data)
            ));
        }
        Ok(())
    };
    match m {
        65 => ean(12),
        67 => ean(13),
        68 => ean(8),
        69 | 70 => Ok(()),
        73 if data.starts_with(b"{B") || data.starts_with(b"{C") => Ok(()),
        _ => Err(format!("barcode type {m} with {data:x?}")),
    }
}
