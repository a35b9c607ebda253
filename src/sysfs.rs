//! What the machine can see, read from sysfs: serial ports, hidraw and input
//! nodes, USB devices, and whether a node can be opened. The bottom layer:
//! transport finds a tty by USB id here, hotplug does its coldplug scan here,
//! and the `devices` and `doctor` commands list what is here. Every function
//! takes the sysfs and /dev roots, so tests point them at a fake tree in a
//! temp dir.

use posbridge_drivers::hotplug::{NodeKind, UsbId};
use std::path::{Path, PathBuf};

/// The real sysfs root.
pub const SYS: &str = "/sys";

/// One device node the machine has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    /// Under the /dev root: `ttyUSB0`, `hidraw1`, `input/event3`.
    pub name: String,
    pub dev_path: PathBuf,
    /// The USB device it belongs to, when it is on USB.
    pub usb: Option<UsbId>,
    /// Path of that USB device below the sysfs root (`/devices/…/1-2`).
    pub usb_devpath: Option<String>,
    pub product: Option<String>,
    pub access: Access,
}

/// Whether this process may open a node read-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Ok,
    PermissionDenied,
    /// The sysfs entry exists but /dev has no node (no devtmpfs, or a fake tree).
    NoNode,
}

impl Access {
    pub fn label(self) -> &'static str {
        match self {
            Access::Ok => "ok",
            Access::PermissionDenied => "permission denied",
            Access::NoNode => "no device node",
        }
    }
}

fn read_attr(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The USB device directory at or above `dir` (the first with idVendor and
/// idProduct), stopping at the sysfs root.
pub fn usb_ancestor(sys: &Path, dir: &Path) -> Option<(PathBuf, UsbId)> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if !d.starts_with(sys) || d == sys {
            return None;
        }
        if let (Some(v), Some(p)) = (read_attr(d, "idVendor"), read_attr(d, "idProduct")) {
            let parse = posbridge_drivers::catalog::parse_hex16;
            if let (Some(vid), Some(pid)) = (parse(&v), parse(&p)) {
                let id = UsbId {
                    vid,
                    pid,
                    serial: read_attr(d, "serial"),
                };
                return Some((d.to_path_buf(), id));
            }
        }
        cur = d.parent();
    }
    None
}

/// A sysfs path as the kernel writes it in uevents (`/devices/…`).
pub fn devpath(sys: &Path, dir: &Path) -> Option<String> {
    let rel = dir.strip_prefix(sys).ok()?;
    Some(format!("/{}", rel.display()))
}

/// Whether a user with `uid` and `gids` may read and write `path`, by its
/// owner, group and mode bits (what the kernel checks when ACLs are absent).
pub fn access_as(path: &Path, uid: u32, gids: &[u32]) -> Access {
    use std::os::unix::fs::MetadataExt;
    // Followed, as opening the node would.
    let Ok(m) = std::fs::metadata(path) else {
        return Access::NoNode;
    };
    if uid == 0 {
        return Access::Ok;
    }
    let mode = m.mode();
    let bits = if m.uid() == uid {
        mode >> 6
    } else if gids.contains(&m.gid()) {
        mode >> 3
    } else {
        mode
    };
    if bits & 0o6 == 0o6 {
        Access::Ok
    } else {
        Access::PermissionDenied
    }
}

/// Whether this process may read and write `path` (`access(2)`: checks our
/// uid and groups without opening it — opening a tty would toggle DTR).
pub fn access(path: &Path) -> Access {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return Access::NoNode;
    };
    if std::fs::symlink_metadata(path).is_err() {
        return Access::NoNode;
    }
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let r = unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) };
    if r == 0 {
        Access::Ok
    } else {
        Access::PermissionDenied
    }
}

/// Built-in RS-232 ports are listed only when a real port backs them: the
/// kernel creates placeholder ttyS0–31 under the `serial8250` platform device.
fn is_placeholder_serial(dir: &Path) -> bool {
    let driver = std::fs::read_link(dir.join("device/driver")).ok();
    let name = driver
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    match name {
        None => true,
        Some(n) => n == "serial8250",
    }
}

/// Every serial, hidraw, input-event and usblp node, sorted by kind and name.
pub fn scan(sys: &Path, dev: &Path) -> Vec<Node> {
    let mut out = Vec::new();
    let classes: [(&str, NodeKind, &str); 4] = [
        ("tty", NodeKind::Tty, ""),
        ("hidraw", NodeKind::Hidraw, ""),
        ("input", NodeKind::Input, "input/"),
        ("usbmisc", NodeKind::Usblp, "usb/"),
    ];
    for (class, kind, dev_prefix) in classes {
        let Ok(entries) = std::fs::read_dir(sys.join("class").join(class)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            match kind {
                NodeKind::Input if !name.starts_with("event") => continue,
                NodeKind::Usblp if !name.starts_with("lp") => continue,
                _ => {}
            }
            // Class entries are symlinks into /sys/devices; resolve to walk parents.
            let Ok(real) = std::fs::canonicalize(e.path()) else {
                continue;
            };
            let Ok(sys_real) = std::fs::canonicalize(sys) else {
                continue;
            };
            let usb = usb_ancestor(&sys_real, &real);
            if kind == NodeKind::Tty && usb.is_none() {
                // Virtual consoles and ptys have no `device`; placeholders are skipped.
                if !e.path().join("device").exists() || is_placeholder_serial(&e.path()) {
                    continue;
                }
            }
            let dev_name = format!("{dev_prefix}{name}");
            let dev_path = dev.join(&dev_name);
            let product = usb.as_ref().and_then(|(d, _)| read_attr(d, "product"));
            out.push(Node {
                kind,
                access: access(&dev_path),
                name: dev_name,
                dev_path,
                usb_devpath: usb.as_ref().and_then(|(d, _)| devpath(&sys_real, d)),
                usb: usb.map(|(_, id)| id),
                product,
            });
        }
    }
    out.sort_by(|a, b| (kind_order(a.kind), &a.name).cmp(&(kind_order(b.kind), &b.name)));
    out
}

fn kind_order(k: NodeKind) -> u8 {
    match k {
        NodeKind::Tty => 0,
        NodeKind::Hidraw => 1,
        NodeKind::Input => 2,
        NodeKind::Usblp => 3,
        NodeKind::UsbDevice => 4,
    }
}

/// USB devices (not interfaces) under /sys/bus/usb/devices, with their
/// sysfs devpath, for the coldplug scan and presence checks.
pub fn usb_devices(sys: &Path) -> Vec<(String, UsbId)> {
    let mut out = Vec::new();
    let Ok(sys_real) = std::fs::canonicalize(sys) else {
        return out;
    };
    let Ok(entries) = std::fs::read_dir(sys.join("bus/usb/devices")) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(real) = std::fs::canonicalize(e.path()) else {
            continue;
        };
        // Interfaces (1-2:1.0) have no idVendor of their own.
        if read_attr(&real, "idVendor").is_none() {
            continue;
        }
        if let Some((d, id)) = usb_ancestor(&sys_real, &real) {
            if let Some(p) = devpath(&sys_real, &d) {
                out.push((p, id));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn id_matches(id: &UsbId, vid: u16, pid: u16, serial: Option<&str>) -> bool {
    id.vid == vid && id.pid == pid && serial.is_none_or(|s| id.serial.as_deref() == Some(s))
}

/// The node of this kind that belongs to the USB device `vid:pid[/serial]`
/// (the first by name when several match).
pub fn find_node(
    sys: &Path,
    dev: &Path,
    kind: NodeKind,
    vid: u16,
    pid: u16,
    serial: Option<&str>,
) -> Option<Node> {
    scan(sys, dev)
        .into_iter()
        .filter(|n| n.kind == kind)
        .find(|n| {
            n.usb
                .as_ref()
                .is_some_and(|id| id_matches(id, vid, pid, serial))
        })
}

/// The sysfs directory of the USB device `vid:pid[/serial]`, for presence-only devices.
pub fn find_usb_device(sys: &Path, vid: u16, pid: u16, serial: Option<&str>) -> Option<PathBuf> {
    usb_devices(sys)
        .into_iter()
        .find(|(_, id)| id_matches(id, vid, pid, serial))
        .map(|(p, _)| sys.join(p.trim_start_matches('/')))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A temporary file with `mode`, its owner and group (cli::doctor's tests use it too).
    pub(crate) fn node_with(mode: u32) -> (tempfile::NamedTempFile, u32, u32) {
        let f = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).expect("chmod");
        let m = std::fs::metadata(f.path()).expect("stat");
        (f, m.uid(), m.gid())
    }

    #[test]
    fn access_is_judged_by_owner_then_group_then_other() {
        // Some uid that owns nothing, not root.
        const STRANGER: u32 = 4_000_000;
        let (f, owner, group) = node_with(0o600);
        let p = f.path();
        if owner != 0 {
            assert_eq!(access_as(p, owner, &[]), Access::Ok, "owner bits");
        }
        assert_eq!(access_as(p, 0, &[]), Access::Ok, "root passes");
        assert_eq!(access_as(p, STRANGER, &[group]), Access::PermissionDenied);
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660)).expect("chmod");
        assert_eq!(access_as(p, STRANGER, &[group]), Access::Ok, "group bits");
        assert_eq!(access_as(p, STRANGER, &[]), Access::PermissionDenied);
        // The group may only read: not enough for a device we write to.
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o646)).expect("chmod");
        assert_eq!(
            access_as(p, STRANGER, &[group]),
            Access::PermissionDenied,
            "group bits win over other"
        );
        assert_eq!(access_as(p, STRANGER, &[]), Access::Ok, "other bits");
        if owner != 0 {
            // The owner's own bits count, not other's.
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o066)).expect("chmod");
            assert_eq!(access_as(p, owner, &[group]), Access::PermissionDenied);
        }
        assert_eq!(
            access_as(Path::new("/nonexistent/ttyUSB0"), STRANGER, &[]),
            Access::NoNode
        );
    }
}
