//! HID devices through hidraw (hidapi's pure-Rust backend). hidapi reads
//! block, so a thread reads whole reports and hands them to the async side;
//! each report reaches the protocol in one piece.

use super::OpenError;
use crate::config::DeviceConfig;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Largest report read; MagTek readers send 337 bytes.
const MAX_REPORT: usize = 1024;
/// How often the reader thread checks whether it should stop.
const POLL_MS: i32 = 250;

/// One report from the device, told apart by how it came.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// An input report the device sent on its own (interrupt endpoint).
    Input(Vec<u8>),
    /// The reply to a feature-report exchange this link asked for.
    Feature(Vec<u8>),
}

pub struct HidLink {
    rx: mpsc::Receiver<io::Result<Report>>,
    stop: Arc<AtomicBool>,
    /// Feature-report requests for the reader thread, which owns the device.
    features: std::sync::mpsc::Sender<Vec<u8>>,
}

impl Drop for HidLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl HidLink {
    pub fn open(cfg: &DeviceConfig) -> Result<HidLink, OpenError> {
        let api = hidapi::HidApi::new().map_err(|e| format!("hidapi: {e}"))?;
        let (what, dev) = match (&cfg.path, &cfg.usb_match) {
            (Some(p), _) => {
                let c =
                    std::ffi::CString::new(p.as_str()).map_err(|_| format!("{p:?}: bad path"))?;
                (p.clone(), api.open_path(&c))
            }
            (None, Some(m)) => {
                let parse = |s: &str| u16::from_str_radix(s.trim_start_matches("0x"), 16).ok();
                let (Some(v), Some(p)) = (parse(&m.vid), parse(&m.pid)) else {
                    return Err(format!(
                        "match: vid {:?} / pid {:?} are not 4-digit hex",
                        m.vid, m.pid
                    )
                    .into());
                };
                let what = format!("USB {v:04x}:{p:04x}");
                match &m.serial {
                    Some(sn) => (what, api.open_serial(v, p, sn)),
                    None => (what, api.open(v, p)),
                }
            }
            (None, None) => return Err(OpenError::from("hid needs path or match".to_owned())),
        };
        let dev = dev.map_err(|e| hid_error(&what, e))?;
        let (tx, rx) = mpsc::channel(64);
        let (features, feature_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::Builder::new()
            .name(format!("hid-{}", cfg.id))
            .spawn(move || read_loop(dev, tx, stop2, feature_rx))
            .map_err(|e| format!("{what}: cannot start the reader thread: {e}"))?;
        Ok(HidLink { rx, stop, features })
    }

    /// Sends `request` (report id first) as a feature report; the reply
    /// (`get_feature_report` for the same id) arrives as a [`Report::Feature`].
    pub fn feature_exchange(&self, request: &[u8]) -> io::Result<()> {
        if request.is_empty() {
            return Err(io::Error::other("a feature report needs its report id"));
        }
        self.features
            .send(request.to_vec())
            .map_err(|_| io::Error::other("HID reader thread ended (unplugged?)"))
    }

    /// The next whole report; `None` when the reader thread ended.
    pub async fn read_report(&mut self) -> io::Result<Option<Report>> {
        match self.rx.recv().await {
            Some(r) => r.map(Some),
            None => Ok(None),
        }
    }
}

fn read_loop(
    dev: hidapi::HidDevice,
    tx: mpsc::Sender<io::Result<Report>>,
    stop: Arc<AtomicBool>,
    features: std::sync::mpsc::Receiver<Vec<u8>>,
) {
    let mut buf = vec![0u8; MAX_REPORT];
    while !stop.load(Ordering::Relaxed) {
        // Requests wait at most one read timeout (POLL_MS).
        while let Ok(req) = features.try_recv() {
            let reply = dev.send_feature_report(&req).and_then(|()| {
                let mut r = vec![0u8; MAX_REPORT];
                r[0] = req[0];
                dev.get_feature_report(&mut r).map(|n| {
                    r.truncate(n);
                    Report::Feature(r)
                })
            });
            let msg = reply
                .map_err(|e| io::Error::other(format!("HID feature report exchange failed: {e}")));
            if tx.blocking_send(msg).is_err() {
                return;
            }
        }
        match dev.read_timeout(&mut buf, POLL_MS) {
            Ok(0) => continue,
            Ok(n) => {
                if tx
                    .blocking_send(Ok(Report::Input(buf[..n].to_vec())))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(io::Error::other(format!(
                    "HID read failed (unplugged?): {e}"
                ))));
                return;
            }
        }
    }
}

fn hid_error(what: &str, e: hidapi::HidError) -> OpenError {
    // hidapi's errors carry no kind; its message is all there is to go on.
    let s = e.to_string();
    if s.contains("ermission") {
        format!("{what}: permission denied; install udev/70-posbridge.rules").into()
    } else {
        OpenError::absent(format!("{what}: cannot open HID device (unplugged?): {s}"))
    }
}
