//! USB hotplug, sans-IO: kernel uevents in, attach/detach decisions out.
//!
//! The daemon's shell (src/device/hotplug.rs) reads uevents from a
//! `NETLINK_KOBJECT_UEVENT` socket (there may be no udevd, so the kernel's own
//! messages are what we get) and feeds them here; tests feed recorded ones.
//!
//! Why a matcher with memory: the kernel's uevent for a tty, hidraw or input
//! node carries no USB ids. Only the parent `usb_device` event has them
//! (`PRODUCT=vid/pid/bcd`, hex without leading zeros), and it comes first.
//! So the matcher remembers USB devices by `DEVPATH` and gives each child node
//! the ids of the USB device its path lies under. The serial number is not in
//! any uevent; the shell reads it from sysfs (`/sys<DEVPATH>/serial`) and
//! passes it with the `usb_device` event (see [`Matcher::handle`]).

use std::collections::BTreeMap;

/// Largest uevent accepted (the kernel's own buffer is 2048 bytes; udev's
/// messages are bigger but are not read).
pub const MAX_UEVENT: usize = 8192;

/// One parsed uevent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    pub devpath: String,
    pub subsystem: String,
    pub devtype: Option<String>,
    /// Node name under /dev (`ttyUSB0`, `input/event3`, `bus/usb/001/004`).
    pub devname: Option<String>,
    /// `PRODUCT=` of USB devices and interfaces: vid/pid/bcdDevice.
    pub product: Option<String>,
    pub seqnum: Option<u64>,
}

/// Parses a kernel uevent: `action@devpath` then `KEY=VALUE` fields, each
/// ended by NUL (as the kernel sends them) or newline (as recorded from
/// `udevadm monitor --kernel --property` or written in tests).
///
/// udevd's own messages (starting with `libudev\0`) are refused: they repeat
/// the kernel's, and their binary header is not ours to parse.
pub fn parse_uevent(bytes: &[u8]) -> Result<Uevent, String> {
    if bytes.len() > MAX_UEVENT {
        return Err(format!("uevent of {} bytes is too long", bytes.len()));
    }
    if bytes.starts_with(b"libudev\0") {
        return Err("a udevd message, not a kernel uevent".into());
    }
    let mut fields = bytes
        .split(|&b| b == 0 || b == b'\n')
        .filter(|f| !f.is_empty());
    let header = fields.next().ok_or("empty uevent")?;
    let header = std::str::from_utf8(header).map_err(|_| "uevent header is not UTF-8")?;
    let (h_action, h_devpath) = header
        .split_once('@')
        .ok_or_else(|| format!("uevent header {:?} is not action@devpath", clip(header)))?;
    let mut ev = Uevent::default();
    for f in fields {
        // A field that is not UTF-8 or has no '=' is skipped, not fatal: the
        // kernel adds driver-specific keys we never read.
        let Ok(f) = std::str::from_utf8(f) else {
            continue;
        };
        let Some((k, v)) = f.split_once('=') else {
            continue;
        };
        match k {
            "ACTION" => ev.action = v.to_owned(),
            "DEVPATH" => ev.devpath = v.to_owned(),
            "SUBSYSTEM" => ev.subsystem = v.to_owned(),
            "DEVTYPE" => ev.devtype = Some(v.to_owned()),
            "DEVNAME" => ev.devname = Some(v.to_owned()),
            "PRODUCT" => ev.product = Some(v.to_owned()),
            "SEQNUM" => ev.seqnum = v.parse().ok(),
            _ => {}
        }
    }
    if ev.action.is_empty() {
        ev.action = h_action.to_owned();
    }
    if ev.devpath.is_empty() {
        ev.devpath = h_devpath.to_owned();
    }
    if ev.action != h_action || ev.devpath != h_devpath {
        return Err(format!(
            "uevent header {:?} disagrees with ACTION/DEVPATH",
            clip(header)
        ));
    }
    if !ev.devpath.starts_with('/') || ev.devpath.contains("/../") || ev.devpath.ends_with("/..") {
        return Err(format!(
            "DEVPATH {:?} is not a sysfs path",
            clip(&ev.devpath)
        ));
    }
    if ev.subsystem.is_empty() {
        return Err("uevent without SUBSYSTEM".into());
    }
    Ok(ev)
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `PRODUCT=403/6001/600` → (0x0403, 0x6001).
pub fn parse_product(p: &str) -> Option<(u16, u16)> {
    let mut it = p.split('/');
    let v = u16::from_str_radix(it.next()?, 16).ok()?;
    let d = u16::from_str_radix(it.next()?, 16).ok()?;
    Some((v, d))
}

/// A USB device's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsbId {
    pub vid: u16,
    pub pid: u16,
    pub serial: Option<String>,
}

/// The kind of node a configured device opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    Tty,
    Hidraw,
    Input,
    Usblp,
    /// The USB device itself (presence-only dongles).
    UsbDevice,
}

impl NodeKind {
    /// Which node kind a uevent announces; `None` for nodes we never open.
    pub fn of(ev: &Uevent) -> Option<NodeKind> {
        let name = ev.devname.as_deref()?;
        match ev.subsystem.as_str() {
            "tty" => Some(NodeKind::Tty),
            "hidraw" => Some(NodeKind::Hidraw),
            // Only the evdev nodes; mouseN/jsN are not opened.
            "input" if name.starts_with("input/event") => Some(NodeKind::Input),
            "usbmisc" if name.starts_with("usb/lp") => Some(NodeKind::Usblp),
            "usb" if ev.devtype.as_deref() == Some("usb_device") => Some(NodeKind::UsbDevice),
            _ => None,
        }
    }

    /// The node kind a transport opens.
    pub fn for_transport(transport: &str) -> Option<NodeKind> {
        match transport {
            "serial" => Some(NodeKind::Tty),
            "hid" => Some(NodeKind::Hidraw),
            "evdev" => Some(NodeKind::Input),
            "usb" => Some(NodeKind::UsbDevice),
            _ => None,
        }
    }
}

/// A configured device the matcher watches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The device id (config `id`); stays the same whatever path it reappears on.
    pub device: String,
    pub kind: NodeKind,
    pub vid: u16,
    pub pid: u16,
    pub serial: Option<String>,
}

/// What the shell should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A node for this device appeared: wake its supervisor now.
    Attach {
        device: String,
        /// /dev-relative node name (`ttyUSB1`, `hidraw2`).
        node: String,
    },
    /// The node this device was using went away.
    Detach { device: String, node: String },
    /// A known (catalog) device appeared that no configured device claims;
    /// the shell logs it once so IT can add it.
    Unclaimed { vid: u16, pid: u16, node: String },
}

/// Keeps USB devices by sysfs path and claimed nodes by device.
#[derive(Debug, Default)]
pub struct Matcher {
    targets: Vec<Target>,
    usb: BTreeMap<String, UsbId>,
    /// node devpath → (device id, node name).
    claimed: BTreeMap<String, (String, String)>,
    /// VID:PIDs worth reporting when nobody claims them (the catalog's).
    known: Vec<(u16, u16)>,
}

/// Caps on remembered state, so a flood of events cannot grow memory without bound.
const MAX_USB: usize = 1024;

impl Matcher {
    pub fn new(targets: Vec<Target>, known: Vec<(u16, u16)>) -> Matcher {
        Matcher {
            targets,
            known,
            ..Matcher::default()
        }
    }

    /// The USB device (remembered) whose path `devpath` lies under.
    pub fn usb_parent(&self, devpath: &str) -> Option<&UsbId> {
        // Longest prefix wins (hubs nest devices). BTreeMap order puts a
        // parent before its children, so scan back from the path itself.
        self.usb
            .range(..=devpath.to_owned())
            .rev()
            .find(|(p, _)| {
                devpath == p.as_str()
                    || (devpath.starts_with(p.as_str())
                        && devpath.as_bytes().get(p.len()) == Some(&b'/'))
            })
            .map(|(_, id)| id)
    }

    /// Whether a USB device at this path is remembered (the shell then knows
    /// whether to look up sysfs for a child whose parent it missed).
    pub fn knows_usb(&self, devpath: &str) -> bool {
        self.usb_parent(devpath).is_some()
    }

    /// Remembers a USB device without an event (coldplug scan at start).
    pub fn add_usb(&mut self, devpath: &str, id: UsbId) {
        if self.usb.len() < MAX_USB || self.usb.contains_key(devpath) {
            self.usb.insert(devpath.to_owned(), id);
        }
    }

    /// After lost events (a netlink overflow): forgets the USB devices and
    /// claimed nodes whose sysfs path is gone, and returns the detaches that
    /// were missed. Without this a device unplugged unseen stays claimed, and
    /// its next plug-in is ignored until its own retry notices.
    pub fn retain_present(&mut self, present: impl Fn(&str) -> bool) -> Vec<Decision> {
        self.usb.retain(|p, _| present(p));
        let gone: Vec<String> = self
            .claimed
            .keys()
            .filter(|k| !present(k))
            .cloned()
            .collect();
        gone.into_iter()
            .filter_map(|k| self.claimed.remove(&k))
            .map(|(device, node)| Decision::Detach { device, node })
            .collect()
    }

    /// Handles one uevent. `serial` is the USB serial number the shell read
    /// from sysfs for a `usb_device` add (`None` when it has none or for other
    /// events).
    pub fn handle(&mut self, ev: &Uevent, serial: Option<&str>) -> Vec<Decision> {
        let mut out = Vec::new();
        let is_usb_device = ev.subsystem == "usb" && ev.devtype.as_deref() == Some("usb_device");
        match ev.action.as_str() {
            "add" | "bind" | "change" => {
                if is_usb_device {
                    if let Some((vid, pid)) = ev.product.as_deref().and_then(parse_product) {
                        self.add_usb(
                            &ev.devpath,
                            UsbId {
                                vid,
                                pid,
                                serial: serial.map(str::to_owned),
                            },
                        );
                    }
                }
                // bind/change repeat an add we already acted on, except for the
                // usb_device bind, which is when a dongle is really usable.
                if ev.action == "add" || (ev.action == "bind" && is_usb_device) {
                    self.attach(ev, &mut out);
                }
            }
            "remove" => {
                if let Some((device, node)) = self.claimed.remove(&ev.devpath) {
                    out.push(Decision::Detach { device, node });
                }
                if is_usb_device {
                    // Its children's remove events came first; drop what is left under it.
                    let prefix = format!("{}/", ev.devpath);
                    let gone: Vec<String> = self
                        .claimed
                        .keys()
                        .filter(|k| k.starts_with(&prefix))
                        .cloned()
                        .collect();
                    for k in gone {
                        if let Some((device, node)) = self.claimed.remove(&k) {
                            out.push(Decision::Detach { device, node });
                        }
                    }
                    self.usb.remove(&ev.devpath);
                }
            }
            _ => {}
        }
        out
    }

    fn attach(&mut self, ev: &Uevent, out: &mut Vec<Decision>) {
        let Some(kind) = NodeKind::of(ev) else {
            return;
        };
        let Some(node) = ev.devname.clone() else {
            return;
        };
        let Some(id) = self.usb_parent(&ev.devpath).cloned() else {
            return;
        };
        if self.claimed.contains_key(&ev.devpath) {
            return;
        }
        let busy = |d: &str| self.claimed.values().any(|(dev, _)| dev == d);
        let target = self.targets.iter().find(|t| {
            t.kind == kind
                && t.vid == id.vid
                && t.pid == id.pid
                && t.serial
                    .as_deref()
                    .is_none_or(|s| id.serial.as_deref() == Some(s))
                && !busy(&t.device)
        });
        match target {
            Some(t) => {
                self.claimed
                    .insert(ev.devpath.clone(), (t.device.clone(), node.clone()));
                out.push(Decision::Attach {
                    device: t.device.clone(),
                    node,
                });
            }
            None if self.known.contains(&(id.vid, id.pid))
                && !self
                    .targets
                    .iter()
                    .any(|t| t.vid == id.vid && t.pid == id.pid) =>
            {
                out.push(Decision::Unclaimed {
                    vid: id.vid,
                    pid: id.pid,
                    node,
                })
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USB_ADD: &[u8] = b"add@/devices/pci0000:00/0000:00:14.0/usb1/1-2\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2\0SUBSYSTEM=usb\0MAJOR=189\0MINOR=3\0DEVNAME=bus/usb/001/004\0DEVTYPE=usb_device\0PRODUCT=403/6001/600\0TYPE=0/0/0\0BUSNUM=001\0DEVNUM=004\0SEQNUM=4242\0";

    #[test]
    fn parses_a_kernel_uevent() {
        let ev = parse_uevent(USB_ADD).expect("parses");
        assert_eq!(ev.action, "add");
        assert_eq!(ev.subsystem, "usb");
        assert_eq!(ev.devtype.as_deref(), Some("usb_device"));
        assert_eq!(
            ev.product.as_deref().and_then(parse_product),
            Some((0x0403, 0x6001))
        );
        assert_eq!(ev.seqnum, Some(4242));
        assert_eq!(NodeKind::of(&ev), Some(NodeKind::UsbDevice));
    }

    #[test]
    fn refuses_what_is_not_a_uevent() {
        assert!(parse_uevent(b"").is_err());
        assert!(parse_uevent(b"libudev\0\xfe\xed").is_err());
        assert!(parse_uevent(b"hello").is_err());
        assert!(parse_uevent(b"add@/devices/x\0ACTION=remove\0SUBSYSTEM=tty\0").is_err());
        assert!(parse_uevent(b"add@/devices/../etc\0SUBSYSTEM=tty\0").is_err());
        assert!(parse_uevent(b"add@/devices/x\0").is_err());
        assert!(parse_uevent(&vec![b'a'; MAX_UEVENT + 1]).is_err());
    }

    #[test]
    fn parent_is_the_longest_prefix_on_a_path_boundary() {
        let mut m = Matcher::default();
        let id = |vid| UsbId {
            vid,
            pid: 1,
            serial: None,
        };
        m.add_usb("/devices/usb1/1-1", id(1));
        m.add_usb("/devices/usb1/1-1/1-1.2", id(2));
        m.add_usb("/devices/usb1/1-10", id(3));
        let vid = |p: &str| m.usb_parent(p).map(|u| u.vid);
        assert_eq!(
            vid("/devices/usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0"),
            Some(1)
        );
        assert_eq!(
            vid("/devices/usb1/1-1/1-1.2/1-1.2:1.0/hidraw/hidraw0"),
            Some(2)
        );
        assert_eq!(vid("/devices/usb1/1-10/1-10:1.0/x"), Some(3));
        assert_eq!(vid("/devices/usb1/1-1x/y"), None);
        assert_eq!(vid("/devices/virtual/tty/tty1"), None);
    }
}
