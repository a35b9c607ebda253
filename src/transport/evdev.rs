//! Keyboard-wedge devices through evdev: the reader is grabbed exclusively
//! (so its keystrokes never reach the browser or desktop) and its key events
//! become text for the same line protocols a serial reader feeds.

use super::OpenError;
use crate::config::DeviceConfig;
use evdev::{Device, EventStream, EventType, KeyCode};
use posbridge_drivers::keyboard::KeyDecoder;
use std::io;

pub struct EvdevLink {
    stream: EventStream,
    keys: KeyDecoder,
}

impl EvdevLink {
    pub async fn open(cfg: &DeviceConfig) -> Result<EvdevLink, OpenError> {
        // Opening, and finding by USB id (a walk over every input node), block:
        // off the async workers.
        let (path, usb_match) = (cfg.path.clone(), cfg.usb_match.clone());
        let (path, mut dev) = tokio::task::spawn_blocking(move || match (&path, &usb_match) {
            (Some(p), _) => {
                let dev = Device::open(p).map_err(|e| open_error(p, e))?;
                Ok((p.clone(), dev))
            }
            (None, Some(m)) => find_by_usb_id(&m.vid, &m.pid, m.serial.as_deref()),
            (None, None) => Err(OpenError::from("evdev needs path or match".to_owned())),
        })
        .await
        .map_err(|e| OpenError::from(format!("input device open task failed: {e}")))??;
        if cfg.grab.unwrap_or(true) {
            dev.grab()
                .map_err(|e| format!("{path}: cannot grab the input device exclusively: {e}"))?;
        }
        let stream = dev
            .into_event_stream()
            .map_err(|e| format!("{path}: {e}"))?;
        Ok(EvdevLink {
            stream,
            keys: KeyDecoder::new(),
        })
    }

    /// The next run of text the keystrokes spell.
    pub async fn read_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut text = Vec::new();
        loop {
            let ev = self.stream.next_event().await?;
            if ev.event_type() == EventType::KEY {
                self.keys.feed(ev.code(), ev.value(), &mut text);
            } else if ev.event_type() == EventType::SYNCHRONIZATION && !text.is_empty() {
                // A SYN_REPORT closes one batch of key events; hand over what it spelled.
                return Ok(Some(text));
            }
        }
    }
}

fn open_error(path: &str, e: io::Error) -> OpenError {
    match e.kind() {
        io::ErrorKind::NotFound => {
            OpenError::absent(format!("{path}: no such input device (unplugged, or wrong path?)"))
        }
        io::ErrorKind::PermissionDenied => format!(
            "{path}: permission denied; install udev/70-posbridge.rules (it gives catalog readers group plugdev; group input would give every keyboard)"
        )
        .into(),
        _ => format!("{path}: {e}").into(),
    }
}

/// Finds a keyboard-like input device (one with an Enter key: a scanner's
/// keyboard node, not its consumer-control node) by USB vendor and product
/// id (hex) and, when given, the serial number (the kernel's `uniq`), so
/// two identical scanners are told apart.
fn find_by_usb_id(
    vid: &str,
    pid: &str,
    serial: Option<&str>,
) -> Result<(String, Device), OpenError> {
    let parse = |s: &str| u16::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let (Some(v), Some(p)) = (parse(vid), parse(pid)) else {
        return Err(format!("match: vid {vid:?} / pid {pid:?} are not 4-digit hex").into());
    };
    for (path, dev) in evdev::enumerate() {
        let id = dev.input_id();
        let types_keys = dev
            .supported_keys()
            .is_some_and(|k| k.contains(KeyCode::KEY_ENTER));
        let serial_ok = serial.is_none_or(|s| dev.unique_name() == Some(s));
        if id.vendor() == v && id.product() == p && types_keys && serial_ok {
            return Ok((path.display().to_string(), dev));
        }
    }
    Err(OpenError::absent(format!(
        "no input device with USB id {v:04x}:{p:04x}{} (unplugged?)",
        serial.map(|s| format!(" serial {s}")).unwrap_or_default()
    )))
}
