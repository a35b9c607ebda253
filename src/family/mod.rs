//! The drivers this build knows, in one static list: which transports each
//! accepts, which config keys it uses, and how to make its protocol.

pub mod barcode;
pub mod callerid;
pub mod dongle;
pub mod escpos;
pub mod idcard;
pub mod magstripe;
pub mod pcsc;
pub mod rfid;

use crate::config::DeviceConfig;
use posbridge_drivers::hotplug::NodeKind;
use posbridge_drivers::Protocol;

/// A config problem as (key within the device table, reason).
pub type KeyError = (&'static str, String);

/// Builds a driver's protocol from its device table.
pub type MakeProtocol = fn(&DeviceConfig, &Make) -> Result<Box<dyn Protocol>, KeyError>;

/// What building a protocol takes from the running daemon: the family code
/// reads nothing itself.
#[derive(Clone, Debug, Default)]
pub struct Make {
    /// Fresh random bytes (dongle challenges); zeros when only checking a config.
    pub seed: [u8; 16],
}

/// One driver family: everything the rest of the daemon needs to know about
/// it, so nothing outside this list compares driver names.
pub struct DriverSpec {
    pub name: &'static str,
    pub transports: &'static [&'static str],
    /// Device keys (beyond id, driver, transport, path) this driver reads.
    pub keys: &'static [&'static str],
    /// Serial speed when the config gives none.
    pub default_baud: u32,
    /// Who runs its devices.
    pub runs: Runs,
    /// What a `sim` device of this family is.
    pub sim: SimKind,
    /// How its HID reports reach the protocol (`transport = "hid"`).
    pub hid: HidReading,
    /// What `transport = "usb"` opens for it.
    pub usb: UsbNode,
    pub make: MakeProtocol,
}

/// Who runs a family's devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// The generic supervisor opens the link and feeds the protocol.
    Supervisor,
    /// Its own worker owns the link (src/print: a receipt printer's status
    /// queries must never land inside a job's bytes).
    PrintWorker,
}

/// What a `sim` device of a family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimKind {
    /// Bytes posted to `simulate` are the device's output.
    Stream,
    /// A request/response reader: the simulated ID-card reader answers the
    /// driver's frames, and `simulate` places or lifts its card.
    IdCardReader,
}

/// How a HID device's reports reach its family's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HidReading {
    /// Whole reports, one per `handle_bytes` (HID-POS scanners, caller-ID boxes).
    Whole,
    /// MagTek-style magstripe reports, rendered as track text.
    Magtek,
    /// Boot-keyboard reports, typed out as text (wedge readers on hidraw).
    Keyboard,
    /// Feature-report exchanges (dongles).
    Feature,
}

/// What `transport = "usb"` is for a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsbNode {
    /// The family takes no `usb` transport.
    None,
    /// The kernel's printer-class node (`/dev/usb/lpN`).
    Printer,
    /// Only the USB device's presence (vendor-class dongles).
    Presence,
}

impl DriverSpec {
    /// The node a device of this family on `transport` is opened at: a USB
    /// receipt printer is its usblp node, not the whole USB device (which
    /// dongles are watched as).
    pub fn node_kind(&self, transport: &str) -> Option<NodeKind> {
        match NodeKind::for_transport(transport) {
            Some(NodeKind::UsbDevice) if self.usb == UsbNode::Printer => Some(NodeKind::Usblp),
            k => k,
        }
    }
}

/// The protocol of a family whose link or worker does the device's work
/// (PC/SC reads cards in its link's thread; the print worker drives
/// printers): bytes never reach it.
pub(crate) struct LinkDoesTheWork;

impl Protocol for LinkDoesTheWork {
    fn handle_bytes(
        &mut self,
        _now: posbridge_drivers::Instant,
        _bytes: &[u8],
        _out: &mut Vec<posbridge_drivers::Action>,
    ) {
    }
}

/// The family of a configured device (validated configs always have one).
pub fn spec(cfg: &DeviceConfig) -> Option<&'static DriverSpec> {
    find(&cfg.driver)
}

/// The node a configured device is opened at, if it is a device node.
pub fn node_kind(cfg: &DeviceConfig) -> Option<NodeKind> {
    spec(cfg)?.node_kind(cfg.transport_name())
}

/// Whether a configured device is run by the print worker, not the supervisor.
pub fn print_worker(cfg: &DeviceConfig) -> bool {
    spec(cfg).is_some_and(|s| s.runs == Runs::PrintWorker)
}

/// Every driver family in this build: adding one is its module here and a line.
pub static DRIVERS: &[&DriverSpec] = &[
    &barcode::SPEC,
    &magstripe::SPEC,
    &rfid::SPEC,
    &pcsc::SPEC,
    &idcard::SPEC,
    &callerid::SPEC,
    &escpos::SPEC,
    &dongle::SPEC,
];

/// Drivers the contract names that later releases add; named so the error is helpful.
const PLANNED: &[&str] = &[];

pub fn find(name: &str) -> Option<&'static DriverSpec> {
    DRIVERS.iter().copied().find(|d| d.name == name)
}

/// Problems with one device table, as (key, reason): its driver and
/// transport, the keys each transport needs or refuses, keys its family does
/// not use, and then whatever the family's own make refuses.
pub fn check(d: &DeviceConfig) -> Vec<KeyError> {
    let spec = match find(&d.driver) {
        Some(spec) => spec,
        None => return vec![("driver", unknown_driver(&d.driver))],
    };
    let mut out = Vec::new();
    let transport = d.transport_name();
    if !spec.transports.contains(&transport) {
        out.push((
            "transport",
            format!(
                "driver {} does not support transport {:?}; use one of {}",
                spec.name,
                transport,
                spec.transports.join(", ")
            ),
        ));
    }
    out.extend(transport_needs(spec, d));
    out.extend(transport_only_keys(d));
    out.extend(unused_keys(spec, d));
    if out.is_empty() {
        if let Err((k, why)) = (spec.make)(d, &Make::default()) {
            out.push((k, why));
        }
    }
    out
}

fn unknown_driver(driver: &str) -> String {
    let known: Vec<&str> = DRIVERS.iter().map(|s| s.name).collect();
    let known = known.join(", ");
    if PLANNED.contains(&driver) {
        format!("driver {driver:?} is not in this build yet; available: {known}")
    } else {
        format!("unknown driver {driver:?}; available: {known}")
    }
}

/// What the transport needs: a path, an address to connect to or listen on.
fn transport_needs(spec: &DriverSpec, d: &DeviceConfig) -> Option<KeyError> {
    let no_path = d.path.as_deref().is_none_or(str::is_empty);
    let why: &str = match d.transport_name() {
        "serial" if d.usb_match.is_none() && no_path => "required for transport \"serial\" (e.g. /dev/serial/by-id/…), or find it by USB id with match = { vid, pid, serial? }",
        "tcp" if d.address.as_deref().is_none_or(str::is_empty) => {
            return Some((
                "address",
                "required for transport \"tcp\" (host:port, e.g. 127.0.0.1:3333)".into(),
            ))
        }
        "udp" if d
            .address
            .as_deref()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .is_none_or(|a| a.port() == 0) =>
        {
            return Some((
                "address",
                format!(
                    "transport \"udp\" needs the address to listen on as ip:port (0.0.0.0:3520 hears a Whozz Calling unit's broadcasts), not {:?}",
                    d.address.as_deref().unwrap_or("")
                ),
            ))
        }
        "usb" if spec.usb == UsbNode::Printer && d.usb_match.is_none() && no_path => "required for transport \"usb\" (e.g. /dev/usb/lp0), or find the printer by USB id with match = { vid, pid, serial? }",
        "file" if no_path => "required for transport \"file\" (the file receipts are appended to)",
        "sim" if d.path.is_some() => "a sim device has no path; remove it",
        _ => return None,
    };
    Some(("path", why.into()))
}

/// Keys that belong to one transport (serial framing, evdev's grab, udp's
/// from, match for the transports found by USB id), and their values.
fn transport_only_keys(d: &DeviceConfig) -> Vec<KeyError> {
    let mut out = Vec::new();
    let transport = d.transport_name();
    if let Some(b) = d.baud {
        if !(50..=4_000_000).contains(&b) {
            out.push(("baud", format!("{b} is not a serial speed")));
        }
    }
    if let Err(e) = serial_settings(d) {
        out.push(e);
    }
    let only = [
        ("baud", d.baud.is_some(), "serial"),
        ("data_bits", d.data_bits.is_some(), "serial"),
        ("parity", d.parity.is_some(), "serial"),
        ("stop_bits", d.stop_bits.is_some(), "serial"),
        ("flow_control", d.flow_control.is_some(), "serial"),
        ("grab", d.grab.is_some(), "evdev"),
        ("from", d.from.is_some(), "udp"),
    ];
    for (k, present, wants) in only {
        if present && transport != wants {
            out.push((
                k,
                format!("only applies to transport \"{wants}\", not {transport:?}"),
            ));
        }
    }
    if let Some(f) = d.from.as_deref().filter(|_| transport == "udp") {
        if f.parse::<std::net::IpAddr>().is_err() {
            out.push(("from", format!("{f:?} is not an IP address")));
        }
    }
    if let Some(m) = &d.usb_match {
        let hex = posbridge_drivers::catalog::parse_hex16;
        if hex(&m.vid).is_none() || hex(&m.pid).is_none() {
            out.push((
                "match",
                format!(
                    "vid {:?} / pid {:?} must be 4 hex digits (as lsusb shows them)",
                    m.vid, m.pid
                ),
            ));
        }
        if !matches!(transport, "serial" | "evdev" | "hid" | "usb" | "sim") {
            out.push((
                "match",
                format!("transport {transport:?} is not found by USB id"),
            ));
        }
    }
    out
}

/// Family keys present in the table that this family does not read.
fn unused_keys(spec: &DriverSpec, d: &DeviceConfig) -> Vec<KeyError> {
    let transport = d.transport_name();
    let set: [(&'static str, bool); 22] = [
        ("hid_layout", d.hid_layout.is_some()),
        ("from", d.from.is_some() && transport == "udp"),
        ("ring_timeout_ms", d.ring_timeout_ms.is_some()),
        ("country", d.country.is_some()),
        ("match", d.usb_match.is_some() && transport == "sim"),
        ("poll_ms", d.poll_ms.is_some()),
        ("format", d.format.is_some()),
        ("reader", d.reader.is_some()),
        ("address", d.address.is_some()),
        ("encoding", d.encoding.is_some()),
        ("columns", d.columns.is_some()),
        ("member_pattern", d.member_pattern.is_some()),
        ("idle_flush_ms", d.idle_flush_ms.is_some()),
        ("suffix", d.suffix.is_some()),
        ("lrc", d.lrc.is_some()),
        ("blocks", d.blocks.is_some()),
        ("key", d.key.is_some()),
        ("key_type", d.key_type.is_some()),
        ("cut", d.cut.is_some()),
        ("drawer_pin", d.drawer_pin.is_some()),
        ("status_query", d.status_query.is_some()),
        ("check", d.check.is_some()),
    ];
    set.into_iter()
        .filter(|(k, present)| *present && !spec.keys.contains(k))
        .map(|(k, _)| (k, format!("not used by driver {}; remove it", spec.name)))
        .collect()
}

/// The serial port settings a device asks for (baud, framing, flow control),
/// or the key that is wrong.
pub fn serial_settings(cfg: &DeviceConfig) -> Result<tokio_serial::SerialPortBuilder, KeyError> {
    use tokio_serial::{DataBits, FlowControl, Parity, StopBits};
    let data_bits = match cfg.data_bits.unwrap_or(8) {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        8 => DataBits::Eight,
        n => return Err(("data_bits", format!("{n} is not 5, 6, 7 or 8"))),
    };
    let parity = match cfg.parity.as_deref().unwrap_or("none") {
        "none" => Parity::None,
        "odd" => Parity::Odd,
        "even" => Parity::Even,
        p => return Err(("parity", format!("{p:?} is not none, odd or even"))),
    };
    let stop_bits = match cfg.stop_bits.unwrap_or(1) {
        1 => StopBits::One,
        2 => StopBits::Two,
        n => return Err(("stop_bits", format!("{n} is not 1 or 2"))),
    };
    let flow = match cfg.flow_control.as_deref().unwrap_or("none") {
        "none" => FlowControl::None,
        "software" => FlowControl::Software,
        "hardware" => FlowControl::Hardware,
        f => {
            return Err((
                "flow_control",
                format!("{f:?} is not none, software or hardware"),
            ))
        }
    };
    let default_baud = find(&cfg.driver).map_or(9600, |d| d.default_baud);
    Ok(tokio_serial::new(
        cfg.path.as_deref().unwrap_or_default(),
        cfg.baud.unwrap_or(default_baud),
    )
    .data_bits(data_bits)
    .parity(parity)
    .stop_bits(stop_bits)
    .flow_control(flow))
}
