//! OS I/O only: open a device's byte stream, read chunks, write bytes.
//! Protocol work happens in `posbridge-drivers`; this layer never interprets
//! bytes beyond turning keystrokes and HID reports into the text a reader
//! would have sent over serial (with the drivers crate's own decoders).

mod evdev;
mod hid;
pub mod pcsc;
mod sim;

use crate::config::DeviceConfig;
use posbridge_drivers::hid as hid_reports;
use posbridge_drivers::hotplug::NodeKind;
use posbridge_drivers::keyboard::HidKeyboard;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Why a device could not be opened: callers show the first as
/// `disconnected` and the second as `error`.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The device is not there (unplugged, or the path does not exist yet,
    /// nothing listening): the normal state of an unplugged reader.
    #[error("{0}")]
    Absent(String),
    /// Anything else (permissions, a busy port): IT has to act.
    #[error("{0}")]
    Failed(String),
}

impl OpenError {
    pub fn absent(message: String) -> OpenError {
        OpenError::Absent(message)
    }
}

impl From<String> for OpenError {
    fn from(message: String) -> OpenError {
        OpenError::Failed(message)
    }
}

/// What one read produced.
pub enum Chunk {
    Data(Vec<u8>),
    /// A transport that decodes in its own thread (PC/SC) hands over whole events.
    Event(posbridge_drivers::Event),
    /// The transport got input it could not turn into data (a bad HID report).
    Garbled(String),
}

/// How a HID device's reports reach its protocol.
pub enum HidReports {
    /// Whole reports, one per `handle_bytes` (HID-POS scanners).
    Whole,
    /// MagTek-style magstripe reports, rendered as track text.
    Magtek,
    /// Boot-keyboard reports, typed out as text (wedge readers on hidraw).
    Keyboard(HidKeyboard),
    /// Dongles: a write is a feature-report exchange whose reply is the next chunk.
    Feature,
}

impl HidReports {
    /// The bytes this mode's protocol should see from `report`, if any.
    fn take(&self, report: hid::Report) -> Option<Vec<u8>> {
        match (self, report) {
            // A dongle's own input reports (some send them unasked) would
            // otherwise be taken for the challenge's answer: licensed false.
            (HidReports::Feature, hid::Report::Input(_)) => None,
            (_, hid::Report::Input(r) | hid::Report::Feature(r)) => Some(r),
        }
    }
}

/// An open byte stream to one device.
pub enum Link<'a> {
    Serial(tokio_serial::SerialStream),
    /// A device server on the network (an NCID server, a serial-over-IP box).
    Tcp(tokio::net::TcpStream),
    /// Datagrams a network unit sends (Whozz Calling), one chunk each; with
    /// an address, only that sender's.
    Udp(tokio::net::UdpSocket, Option<std::net::IpAddr>),
    /// Bytes posted to `/v1/devices/{id}/simulate`; writes go nowhere.
    Sim(&'a mut mpsc::Receiver<Vec<u8>>),
    // Boxed: the event stream is large and links live one at a time.
    Evdev(Box<evdev::EvdevLink>),
    Pcsc(Box<pcsc::PcscLink>),
    /// A simulated ID-card reader answering the driver's requests.
    SimReader(Box<sim::SimReader<'a>>),
    Hid(hid::HidLink, HidReports),
    /// A USB device that is only watched for presence (vendor-class dongles).
    Presence(std::path::PathBuf),
    /// A plain file that writes are appended to (a display's `file` transport).
    File(std::fs::File),
}

impl Link<'_> {
    /// The device node this link opened, where the OS names one (serial).
    pub fn node(&self) -> Option<String> {
        use tokio_serial::SerialPort;
        match self {
            Link::Serial(s) => s.name(),
            _ => None,
        }
    }

    /// Reads the next chunk; `None` at end of stream (the device went away).
    pub async fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<Option<Chunk>> {
        match self {
            Link::Serial(s) => match s.read(buf).await? {
                0 => Ok(None),
                n => Ok(Some(Chunk::Data(buf[..n].to_vec()))),
            },
            Link::Tcp(s) => match s.read(buf).await? {
                0 => Ok(None),
                n => Ok(Some(Chunk::Data(buf[..n].to_vec()))),
            },
            Link::Udp(s, from) => loop {
                let (n, peer) = s.recv_from(buf).await?;
                if from.is_some_and(|f| f.to_canonical() != peer.ip().to_canonical()) {
                    tracing::debug!(%peer, "datagram from another sender ignored (see from)");
                    continue;
                }
                if n > 0 {
                    return Ok(Some(Chunk::Data(buf[..n].to_vec())));
                }
            },
            Link::Sim(rx) => Ok(rx.recv().await.map(Chunk::Data)),
            // A file sends nothing back: the session lasts until it stops.
            Link::File(_) => std::future::pending().await,
            Link::SimReader(r) => Ok(r.read_chunk().await.map(Chunk::Data)),
            Link::Pcsc(p) => match p.next().await {
                Some(pcsc::Msg::Event(e)) => Ok(Some(Chunk::Event(e))),
                Some(pcsc::Msg::Lost(why)) => Err(io::Error::other(why)),
                None => Ok(None),
            },
            Link::Evdev(e) => Ok(e.read_chunk().await?.map(Chunk::Data)),
            Link::Presence(dir) => {
                // Nothing to read: the session lasts while the device is there.
                // Hotplug wakes the supervisor; this check bounds the delay.
                while dir.join("idVendor").exists() {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Ok(None)
            }
            Link::Hid(h, reports) => loop {
                let Some(report) = h.read_report().await? else {
                    return Ok(None);
                };
                let Some(report) = reports.take(report) else {
                    continue;
                };
                return Ok(Some(match reports {
                    HidReports::Whole | HidReports::Feature => Chunk::Data(report),
                    HidReports::Magtek => match hid_reports::parse_magtek_report(&report) {
                        Ok(swipe) => Chunk::Data(hid_reports::magtek_to_text(&swipe)),
                        Err(why) => Chunk::Garbled(format!("magstripe HID report: {why}")),
                    },
                    HidReports::Keyboard(k) => {
                        let mut text = Vec::new();
                        match k.report_to_text(&report, &mut text) {
                            Ok(()) => Chunk::Data(text),
                            Err(why) => Chunk::Garbled(format!("keyboard HID report: {why}")),
                        }
                    }
                }));
            },
        }
    }

    /// "Read now" (`POST /v1/devices/{id}/read`), for links that read on
    /// their own: a PC/SC link reads every card on its readers again. `false`:
    /// the link has nothing to do, ask the protocol.
    pub fn request_read(&mut self) -> bool {
        match self {
            Link::Pcsc(p) => {
                p.reread();
                true
            }
            _ => false,
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Serial(s) => s.write_all(bytes).await,
            Link::Tcp(s) => s.write_all(bytes).await,
            Link::Sim(_) => {
                tracing::trace!(bytes = bytes.len(), "sim device: write discarded");
                Ok(())
            }
            Link::File(f) => {
                use std::io::Write;
                f.write_all(bytes)
            }
            Link::SimReader(r) => {
                r.write(bytes);
                Ok(())
            }
            Link::Hid(h, HidReports::Feature) => h.feature_exchange(bytes),
            Link::Evdev(_) | Link::Hid(..) | Link::Pcsc(_) | Link::Presence(_) | Link::Udp(..) => {
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this transport is input-only",
                ))
            }
        }
    }
}

/// A device found by USB id (`match`, no `path`) with `path` set to the
/// node it has now, which may change across replugs (ttyUSB0, lp1);
/// any other device as it is. The sysfs walk runs off the async workers.
pub async fn resolve_by_usb_id(
    cfg: &DeviceConfig,
) -> Result<std::borrow::Cow<'_, DeviceConfig>, OpenError> {
    use std::borrow::Cow;
    let kind = crate::family::node_kind(cfg);
    let (None, Some(m), Some(kind @ (NodeKind::Tty | NodeKind::Usblp))) =
        (&cfg.path, &cfg.usb_match, kind)
    else {
        return Ok(Cow::Borrowed(cfg));
    };
    let m = m.clone();
    let found = tokio::task::spawn_blocking(move || find_by_usb_id(&m, kind))
        .await
        .map_err(|e| OpenError::from(format!("device lookup task failed: {e}")))??;
    Ok(Cow::Owned(DeviceConfig {
        path: Some(found),
        ..cfg.clone()
    }))
}

/// How long a TCP connect may take before the far end counts as absent.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Connects to a network device (an NCID server, a port-9100 printer).
/// Whatever keeps it from answering — nothing listening, no route, the
/// network or the name not up yet, no answer in time — is absent, retried
/// quietly and shown `disconnected` like an unplugged device; only an
/// address that cannot be used at all is an error.
pub async fn connect_tcp(addr: &str) -> Result<tokio::net::TcpStream, OpenError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            // Small writes (a drawer kick, a status query) go at once.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(OpenError::absent(format!("{addr}: nothing listening")))
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidInput => Err(format!("{addr}: {e}").into()),
        Ok(Err(e)) => Err(OpenError::absent(format!("{addr}: {e}"))),
        Err(_) => Err(OpenError::absent(format!(
            "{addr}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Opens a serial device with its settings; one found by USB id at the tty
/// it has now (it may change across replugs).
pub async fn open_serial(cfg: &DeviceConfig) -> Result<tokio_serial::SerialStream, OpenError> {
    let cfg = &*resolve_by_usb_id(cfg).await?;
    let path = cfg.path.as_deref().unwrap_or_default();
    let builder = crate::family::serial_settings(cfg).map_err(|e| e.to_string())?;
    tokio_serial::SerialStream::open(&builder).map_err(|e| serial_error(path, e))
}

/// Opens a USB printer-class node (`/dev/usb/lpN`) for reading and writing,
/// non-blocking; one found by USB id at the node it has now (returned too).
pub async fn open_usblp(cfg: &DeviceConfig) -> Result<(std::fs::File, String), OpenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let cfg = &*resolve_by_usb_id(cfg).await?;
    let p = cfg.path.as_deref().unwrap_or_default();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(p)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OpenError::absent(format!("{p}: no such device (unplugged?)")),
            _ if e.raw_os_error() == Some(libc::ENODEV) => {
                OpenError::absent(format!("{p}: no such device (unplugged?)"))
            }
            io::ErrorKind::PermissionDenied => OpenError::from(format!(
                "{p}: permission denied; add the service user to group lp or install udev/70-posbridge.rules"
            )),
            _ => OpenError::from(format!("{p}: {e}")),
        })?;
    Ok((file, p.to_owned()))
}

/// Opens a file for appending what a device is sent (a `file` printer),
/// refusing what would let another user point it elsewhere: a symbolic link
/// anywhere on the path (`O_NOFOLLOW` at the end: writes would go to any
/// file the daemon can write), a folder on the way that belongs to another
/// user or that others can write (its sticky bit excuses a folder above, not
/// the file's own: there another user could plant the file first), or
/// something that is not a plain file (a FIFO would hang the writer). With
/// every folder on the way held by root or the daemon, nobody else can change
/// the path between these checks and the open.
pub fn open_append(p: &std::path::Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = p.display();
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("{shown}: {e}"))?
            .join(p)
    };
    let parent = abs.parent().unwrap_or(std::path::Path::new("/"));
    for dir in parent.ancestors() {
        safe_folder(dir, dir == parent).map_err(|why| format!("{shown}: {why}"))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&abs)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!(
                "{shown} is a symbolic link; a file printer writes only to a plain file (remove the link)"
            ),
            _ => format!("{shown}: {e}"),
        })?;
    let m = f.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !m.is_file() {
        return Err(format!("{shown} is not a plain file"));
    }
    Ok(f)
}

/// Whether another user could change what `dir` holds: not a link, held by
/// root or the daemon's user, and writable by nobody else (a sticky bit
/// counts, except for the folder the file itself is in).
fn safe_folder(dir: &std::path::Path, holds_the_file: bool) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let shown = dir.display();
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("folder {shown}: {e}"))?;
    if m.file_type().is_symlink() {
        return Err(format!(
            "{shown} on the way is a symbolic link; give the real path"
        ));
    }
    let (mode, uid) = (m.mode() & 0o7777, m.uid());
    if uid != 0 && uid != nix::unistd::geteuid().as_raw() {
        return Err(format!(
            "the folder {shown} belongs to uid {uid}, who could swap the file for a link; use a folder only posbridge and root can write"
        ));
    }
    let sticky_helps = mode & 0o1000 != 0 && !holds_the_file;
    if mode & 0o022 != 0 && !sticky_helps {
        return Err(format!(
            "other users can write the folder {shown} (mode {mode:04o}), so they could swap the file for a link; use a folder only posbridge and root can write"
        ));
    }
    Ok(())
}

/// Opens the transport a device is configured with.
// Over 80 lines: one match arm per transport; each arm is short.
pub async fn open<'a>(
    cfg: &DeviceConfig,
    sim: Option<&'a mut mpsc::Receiver<Vec<u8>>>,
) -> Result<Link<'a>, OpenError> {
    use crate::family::{self, HidReading, SimKind, UsbNode};
    let spec = family::spec(cfg)
        .ok_or_else(|| OpenError::from(format!("unknown driver {:?}", cfg.driver)))?;
    use crate::config::Transport as T;
    match (cfg.transport(), sim) {
        // Request/response devices need something to answer them.
        (T::Sim, Some(rx)) if spec.sim == SimKind::IdCardReader => {
            Ok(Link::SimReader(Box::new(sim::SimReader::new(rx))))
        }
        (T::Sim, Some(rx)) => Ok(Link::Sim(rx)),
        (T::Serial, _) => open_serial(cfg).await.map(Link::Serial),
        (T::File, _) => {
            let path = std::path::Path::new(cfg.path.as_deref().unwrap_or_default());
            open_append(path).map(Link::File).map_err(OpenError::from)
        }
        (T::Tcp, _) => connect_tcp(cfg.address.as_deref().unwrap_or_default())
            .await
            .map(Link::Tcp),
        (T::Udp, _) => {
            let addr = cfg.address.as_deref().unwrap_or_default();
            let from = match cfg.from.as_deref().map(str::parse::<std::net::IpAddr>) {
                None => {
                    tracing::warn!(device = %cfg.id, listen = addr, "taking datagrams from any sender: set from to the unit's address");
                    None
                }
                Some(Ok(ip)) => Some(ip),
                Some(Err(e)) => return Err(format!("from: {e}").into()),
            };
            // Not shared (no SO_REUSEADDR): on Linux any local process could
            // then bind the port too and take a unicasting unit's datagrams.
            tokio::net::UdpSocket::bind(addr)
                .await
                .map(|s| Link::Udp(s, from))
                .map_err(|e| OpenError::from(format!("{addr}: cannot listen: {e}")))
        }
        (T::Evdev, _) => Ok(Link::Evdev(Box::new(evdev::EvdevLink::open(cfg).await?))),
        (T::Usb, _) if spec.usb == UsbNode::Presence => {
            let Some(m) = &cfg.usb_match else {
                return Err(OpenError::from("dongle needs match".to_owned()));
            };
            let (vid, pid) = usb_ids(m)?;
            // A sysfs walk: off the async workers, like the other lookups.
            let serial = m.serial.clone();
            let found = tokio::task::spawn_blocking(move || {
                crate::sysfs::find_usb_device(
                    std::path::Path::new(crate::sysfs::SYS),
                    vid,
                    pid,
                    serial.as_deref(),
                )
            })
            .await
            .map_err(|e| OpenError::from(format!("device lookup task failed: {e}")))?;
            match found {
                Some(dir) => Ok(Link::Presence(dir)),
                None => Err(OpenError::absent(format!(
                    "no USB device {vid:04x}:{pid:04x}{} (unplugged?)",
                    m.serial
                        .as_deref()
                        .map(|s| format!(" serial {s}"))
                        .unwrap_or_default()
                ))),
            }
        }
        (T::Hid, _) => {
            let reports = match spec.hid {
                HidReading::Feature => HidReports::Feature,
                HidReading::Whole => HidReports::Whole,
                HidReading::Magtek => HidReports::Magtek,
                HidReading::Keyboard => HidReports::Keyboard(HidKeyboard::new()),
            };
            // hidapi enumerates and opens synchronously; keep it off the async workers.
            let cfg = cfg.clone();
            let link = tokio::task::spawn_blocking(move || hid::HidLink::open(&cfg))
                .await
                .map_err(|e| format!("HID open task failed: {e}"))??;
            Ok(Link::Hid(link, reports))
        }
        (T::Pcsc, _) => {
            // Establishing the context talks to pcscd; keep it off the async workers.
            let cfg = cfg.clone();
            let link = tokio::task::spawn_blocking(move || pcsc::PcscLink::open(&cfg))
                .await
                .map_err(|e| format!("PC/SC open task failed: {e}"))??;
            Ok(Link::Pcsc(Box::new(link)))
        }
        (t, _) => Err(format!("transport {:?} is not available in this build", t.name()).into()),
    }
}

fn usb_ids(m: &crate::config::UsbMatch) -> Result<(u16, u16), OpenError> {
    let hex = posbridge_drivers::catalog::parse_hex16;
    match (hex(&m.vid), hex(&m.pid)) {
        (Some(v), Some(p)) => Ok((v, p)),
        _ => Err(format!(
            "match: vid {:?} / pid {:?} are not 4-digit hex",
            m.vid, m.pid
        )
        .into()),
    }
}

/// The /dev node of this kind that the USB device `match` names has now
/// (a sysfs walk: call it off the async workers).
pub(crate) fn find_by_usb_id(
    m: &crate::config::UsbMatch,
    kind: NodeKind,
) -> Result<String, OpenError> {
    let (vid, pid) = usb_ids(m)?;
    let sys = std::path::Path::new(crate::sysfs::SYS);
    match crate::sysfs::find_node(
        sys,
        std::path::Path::new("/dev"),
        kind,
        vid,
        pid,
        m.serial.as_deref(),
    ) {
        Some(n) => Ok(n.dev_path.display().to_string()),
        None => Err(OpenError::absent(format!(
            "no {} on USB device {vid:04x}:{pid:04x}{} (unplugged?)",
            if kind == NodeKind::Usblp {
                "printer node (usblp)"
            } else {
                "serial port"
            },
            m.serial
                .as_deref()
                .map(|s| format!(" serial {s}"))
                .unwrap_or_default()
        ))),
    }
}

fn serial_error(path: &str, e: tokio_serial::Error) -> OpenError {
    use tokio_serial::ErrorKind;
    match e.kind() {
        ErrorKind::NoDevice | ErrorKind::Io(io::ErrorKind::NotFound) => {
            OpenError::absent(format!("{path}: no such device (unplugged, or wrong path?)"))
        }
        ErrorKind::Io(io::ErrorKind::PermissionDenied) => format!(
            "{path}: permission denied; add the service user to group dialout or install udev/70-posbridge.rules"
        )
        .into(),
        _ => format!("{path}: {e}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dongle_hears_only_feature_replies_and_readers_hear_everything() {
        let input = || hid::Report::Input(vec![0, 0xAA]);
        let reply = || hid::Report::Feature(vec![7, 1, 2]);
        // An input report arriving mid-check is not the answer.
        assert_eq!(HidReports::Feature.take(input()), None);
        assert_eq!(HidReports::Feature.take(reply()), Some(vec![7, 1, 2]));
        // Scanners and card readers speak in input reports.
        assert_eq!(HidReports::Whole.take(input()), Some(vec![0, 0xAA]));
        assert_eq!(HidReports::Magtek.take(input()), Some(vec![0, 0xAA]));
    }
}
