//! USB hotplug: the thin I/O shell around `posbridge_drivers::hotplug`.
//!
//! Reads kernel uevents from a `NETLINK_KOBJECT_UEVENT` socket (kernel
//! multicast group 1, so no udevd is needed), reads the USB serial number
//! from sysfs for each new USB device, and feeds both to the sans-IO
//! [`Matcher`]. When a node appears that a configured device matches
//! (`match = { vid, pid, serial? }`), that device's supervisor is woken at
//! once instead of waiting out its backoff; the device keeps its id whatever
//! path the node gets. Removal is noticed by the link itself (EOF/EIO).

use super::Devices;
use crate::config::DeviceConfig;
use crate::sysfs::SYS;
use posbridge_drivers::catalog::Catalog;
use posbridge_drivers::hotplug::{parse_uevent, Decision, Matcher, NodeKind, Target, MAX_UEVENT};
use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Prefix of the ids `[devices] auto = true` gives catalog devices.
pub const AUTO_PREFIX: &str = "auto-";

/// The targets a device list gives the matcher: every device found by USB id.
pub fn targets(configs: &[DeviceConfig]) -> Vec<Target> {
    let parse = posbridge_drivers::catalog::parse_hex16;
    configs
        .iter()
        .filter_map(|c| {
            let m = c.usb_match.as_ref()?;
            let kind = crate::family::node_kind(c)?;
            Some(Target {
                device: c.id.clone(),
                kind,
                vid: parse(&m.vid)?,
                pid: parse(&m.pid)?,
                serial: m.serial.clone(),
            })
        })
        .collect()
}

/// Devices `[devices] auto = true` adds: one per catalog entry marked `auto`
/// whose VID:PID no configured device already matches, with id
/// `auto-<catalog id>`, the catalog's driver, transport and defaults. They are
/// built through the same deserializer as a `[[device]]` table, so they are
/// validated like one.
pub fn auto_devices(configured: &[DeviceConfig]) -> Result<Vec<DeviceConfig>, String> {
    let catalog = Catalog::builtin().map_err(|e| format!("the built-in catalog: {e}"))?;
    let taken: HashSet<(u16, u16)> = targets(configured)
        .into_iter()
        .map(|t| (t.vid, t.pid))
        .collect();
    let mut out = Vec::new();
    for e in catalog.auto_entries() {
        let (Some(ids), Some(driver), Some(transport)) = (e.ids(), &e.driver, &e.transport) else {
            continue;
        };
        if taken.contains(&ids) {
            continue;
        }
        let mut t = toml::Table::new();
        t.insert("id".into(), format!("{AUTO_PREFIX}{}", e.id).into());
        t.insert("driver".into(), driver.clone().into());
        t.insert("transport".into(), transport.clone().into());
        let mut m = toml::Table::new();
        m.insert("vid".into(), e.vid.clone().into());
        m.insert("pid".into(), e.pid.clone().into());
        t.insert("match".into(), m.into());
        if let Some(b) = e.defaults.baud {
            t.insert("baud".into(), i64::from(b).into());
        }
        let d: DeviceConfig = toml::Value::Table(t)
            .try_into()
            .map_err(|err| format!("catalog entry {}: {err}", e.id))?;
        out.push(d);
    }
    Ok(out)
}

/// Starts the monitor when any device is found by USB id. Failing to open
/// the socket is logged, not fatal: devices still reattach by their backoff.
/// Targets are the devices configured at start; devices a reload adds that
/// are found by `match` retry by backoff (at most every 5 s) instead.
pub fn start(devices: &Arc<Devices>, tracker: &TaskTracker, cancel: &CancellationToken) {
    let configs: Vec<DeviceConfig> = devices.list().iter().map(|d| d.cfg.clone()).collect();
    let targets = targets(&configs);
    if targets.is_empty() {
        return;
    }
    let sock = match open_socket() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "USB hotplug: cannot listen for kernel uevents ({e}); devices found by match retry every 5 s instead"
            );
            return;
        }
    };
    let known = Catalog::builtin()
        .map(|c| c.entries.iter().filter_map(|e| e.ids()).collect())
        .unwrap_or_default();
    let mut matcher = Matcher::new(targets, known);
    // Coldplug: remember what is already plugged in, so a child event for it
    // (a rebind) finds its USB ids.
    for (path, id) in crate::sysfs::usb_devices(Path::new(SYS)) {
        matcher.add_usb(&path, id);
    }
    let devices = devices.clone();
    let cancel = cancel.clone();
    tracker.spawn(async move {
        let mut buf = vec![0u8; MAX_UEVENT];
        let mut told: HashSet<(u16, u16)> = HashSet::new();
        loop {
            let n = tokio::select! {
                _ = cancel.cancelled() => return,
                r = recv(&sock, &mut buf) => match r {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        // A burst overflowed the socket: some events are lost.
                        // Re-read sysfs for what went away unseen, and wake every
                        // matched device so none waits out its backoff.
                        tracing::warn!("USB hotplug: uevents were lost (burst); rechecking every device");
                        for d in resync(&mut matcher, Path::new(SYS)) {
                            act(&d, &devices, &mut told);
                        }
                        for d in devices.list() {
                            if d.cfg.usb_match.is_some() {
                                d.wake();
                            }
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!("USB hotplug: reading uevents failed ({e}); monitor stopped, devices retry by backoff");
                        return;
                    }
                },
            };
            let Some(bytes) = buf.get(..n) else { continue };
            let ev = match parse_uevent(bytes) {
                Ok(ev) => ev,
                Err(why) => {
                    tracing::trace!("USB hotplug: ignored message: {why}");
                    continue;
                }
            };
            let serial = feed_prerequisites(&mut matcher, &ev, Path::new(SYS));
            for d in matcher.handle(&ev, serial.as_deref()) {
                act(&d, &devices, &mut told);
            }
        }
    });
}

/// After lost uevents: forgets what sysfs no longer has (returning the
/// detaches that were missed) and remembers USB devices plugged in unseen.
pub fn resync(matcher: &mut Matcher, sys: &Path) -> Vec<Decision> {
    let gone = matcher.retain_present(|p| sys.join(p.trim_start_matches('/')).exists());
    for (path, id) in crate::sysfs::usb_devices(sys) {
        matcher.add_usb(&path, id);
    }
    gone
}

/// What the matcher needs besides the event: the serial number of a new USB
/// device (only sysfs has it), and the USB ids of a node whose parent's add
/// event we never saw (started after it was plugged, or events were lost).
pub fn feed_prerequisites(
    matcher: &mut Matcher,
    ev: &posbridge_drivers::hotplug::Uevent,
    sys: &Path,
) -> Option<String> {
    let dir: PathBuf = sys.join(ev.devpath.trim_start_matches('/'));
    // `change` too: udevadm trigger re-announces devices, and the matcher
    // would otherwise forget their serial numbers.
    if !matches!(ev.action.as_str(), "add" | "bind" | "change") {
        return None;
    }
    if NodeKind::of(ev) == Some(NodeKind::UsbDevice) {
        return std::fs::read_to_string(dir.join("serial"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
    }
    if NodeKind::of(ev).is_some() && !matcher.knows_usb(&ev.devpath) {
        if let Ok(sys_real) = std::fs::canonicalize(sys) {
            if let Some((d, id)) = crate::sysfs::usb_ancestor(&sys_real, &dir) {
                if let Some(p) = crate::sysfs::devpath(&sys_real, &d) {
                    matcher.add_usb(&p, id);
                }
            }
        }
    }
    None
}

fn act(d: &Decision, devices: &Devices, told: &mut HashSet<(u16, u16)>) {
    match d {
        Decision::Attach { device, node } => {
            tracing::info!(device = %device, node = %format!("/dev/{node}"), "USB hotplug: device plugged in");
            if let Some(dev) = devices.get(device) {
                dev.wake();
            }
        }
        Decision::Detach { device, node } => {
            tracing::info!(device = %device, node = %format!("/dev/{node}"), "USB hotplug: device unplugged");
            if let Some(dev) = devices.get(device) {
                // A presence-only link notices at its next check; wake it now.
                dev.wake();
            }
        }
        Decision::Unclaimed { vid, pid, node } => {
            if told.insert((*vid, *pid)) {
                let model = Catalog::builtin()
                    .ok()
                    .and_then(|c| c.lookup(*vid, *pid))
                    .map(|e| format!("{} {}", e.vendor, e.model))
                    .unwrap_or_default();
                tracing::info!(
                    "USB hotplug: {model} ({vid:04x}:{pid:04x}) at /dev/{node} is not configured; add a [[device]] with match = {{ vid = \"{vid:04x}\", pid = \"{pid:04x}\" }} or set [devices] auto = true"
                );
            }
        }
    }
}

/// A non-blocking netlink socket bound to the kernel's uevent group.
fn open_socket() -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::NETLINK_KOBJECT_UEVENT,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Room for a hub's worth of events in one burst.
    let size: libc::c_int = 1 << 20;
    // SAFETY: size is a valid c_int for the call's duration. Failure only
    // leaves the default buffer, which ENOBUFS handling covers.
    unsafe {
        libc::setsockopt(
            owned.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    // SAFETY: an all-zero sockaddr_nl is valid; the fields we need are set below.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = 1; // the kernel's own uevents (udevd re-sends on group 2)
                        // SAFETY: addr is a valid sockaddr_nl of the size given.
    let r = unsafe {
        libc::bind(
            owned.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the OwnedFd lives inside the AsyncFd until it is dropped;
    // nothing else closes or replaces the descriptor.
    unsafe { AsyncFd::register(owned) }.map_err(|e| e.into_parts().1)
}

async fn recv(sock: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut guard = sock.readable().await?;
        let r = guard.try_io(|fd| {
            // SAFETY: buf is valid for buf.len() bytes for the call's duration.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match r {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

/// Receives one uevent from a fresh socket, for the test that proves the
/// socket path against the real kernel (writing `change` to a sysfs
/// `uevent` file makes the kernel send one).
pub async fn receive_one_for_test(
    timeout: std::time::Duration,
    trigger: impl FnOnce(),
) -> std::io::Result<Option<posbridge_drivers::hotplug::Uevent>> {
    let sock = open_socket()?;
    trigger();
    let mut buf = vec![0u8; MAX_UEVENT];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = match tokio::time::timeout_at(deadline, recv(&sock, &mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(None),
        };
        if let Some(Ok(ev)) = buf.get(..n).map(parse_uevent) {
            return Ok(Some(ev));
        }
    }
}
