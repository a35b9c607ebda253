//! The drivers this build knows, in one static list: which transports each
//! accepts, which config keys it uses, and how to make its protocol.

pub mod barcode;
pub mod callerid;
pub mod display;
pub mod dongle;
pub mod escpos;
pub mod idcard;
pub mod label;
pub mod magstripe;
pub mod passthrough;
pub mod pcsc;
pub mod rfid;
pub mod scale;

use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::hotplug::NodeKind;
use posbridge_drivers::Protocol;
use serde::de::DeserializeOwned;
use std::borrow::Cow;

/// A config problem in one device table: the key (within the table) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub struct KeyError {
    pub key: Cow<'static, str>,
    pub why: String,
}

/// A problem with the device key `key`.
pub fn bad(key: &'static str, why: impl Into<String>) -> KeyError {
    KeyError {
        key: Cow::Borrowed(key),
        why: why.into(),
    }
}

/// A `qz_name` as written, if it is one a page can send: 1-128 characters,
/// none of them control characters.
pub fn qz_name(name: String) -> Result<String, KeyError> {
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(bad(
            "qz_name",
            "must be 1-128 characters without control characters (the name QZ pages use)",
        ));
    }
    Ok(name)
}

/// The name a device goes by on the QZ listener (`qz_name`, which printers
/// and passthrough devices take), when it has one besides its id.
pub fn qz_name_of(cfg: &DeviceConfig) -> Option<&str> {
    cfg.options.get("qz_name").and_then(toml::Value::as_str)
}

/// Whether pages may write bytes to a device (QZ Tray's `serial.*`).
pub fn takes_bytes(cfg: &DeviceConfig) -> bool {
    spec(cfg).is_some_and(|s| s.requests.contains(&Request::Send))
}

/// Builds a driver's protocol from its device table.
pub type MakeProtocol = fn(&DeviceConfig, &Make) -> Result<Box<dyn Protocol>, KeyError>;

/// What building a protocol takes from the running daemon: the family code
/// reads nothing itself.
#[derive(Clone, Debug, Default)]
pub struct Make {
    /// Fresh random bytes (dongle challenges); zeros when only checking a config.
    pub seed: [u8; 16],
}

/// A family's own device keys: a serde struct with `deny_unknown_fields`
/// (the struct is the only list of them), and how they and the device's
/// common keys make the family's protocol.
pub trait FamilyOptions: DeserializeOwned + 'static {
    /// The protocol, or the key whose value does not fit the others.
    fn make(self, d: &DeviceConfig, ctx: &Make) -> Result<Box<dyn Protocol>, KeyError>;
}

/// A family's options type, as the registry holds it.
pub struct OptionsType {
    /// The keys it takes.
    pub keys: fn() -> &'static [&'static str],
    /// Every wrong key of a table, as (path, why).
    check: fn(toml::Table) -> Vec<(String, String)>,
    /// Reads the options and makes the protocol.
    pub make: MakeProtocol,
}

impl OptionsType {
    pub const fn of<T: FamilyOptions>() -> OptionsType {
        OptionsType {
            keys: crate::config::keys_of::<T>,
            check: |t| crate::config::read_each::<T>(t, &[]).1,
            make: |d, ctx| options::<T>(d)?.make(d, ctx),
        }
    }
}

/// A device's family options, or the first key that is wrong.
pub fn options<T: DeserializeOwned>(d: &DeviceConfig) -> Result<T, KeyError> {
    serde_path_to_error::deserialize(toml::Value::Table(d.options.clone())).map_err(|e| KeyError {
        key: Cow::Owned(e.path().to_string()),
        why: e.into_inner().to_string(),
    })
}

/// One driver family: everything the rest of the daemon needs to know about
/// it, so nothing outside this list compares driver names.
pub struct DriverSpec {
    pub name: &'static str,
    /// The transports it takes; the first is the default.
    pub transports: &'static [Transport],
    /// Its own keys, and how they make its protocol.
    pub options: OptionsType,
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
    /// What clients may ask its devices to do besides what they do anyway.
    pub requests: &'static [Request],
    /// Its devices are named by their USB ids (a dongle's events carry
    /// them), so `match` is used on every transport, `sim` included.
    pub named_by_match: bool,
    /// Serial data bits and parity when the config gives none (8N1 if `None`):
    /// a Toledo scale in 8217 mode speaks 7E1.
    pub serial_framing: Option<SerialFraming>,
}

/// A family's serial data bits and parity for one device.
pub type SerialFraming = fn(&DeviceConfig) -> (u8, crate::config::Parity);

/// A request a client can make of a device (typed calls on its link or
/// protocol, never bytes down the data path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read now (`POST /v1/devices/{id}/read`): a resting card again.
    Read,
    /// Write raw bytes to the device (QZ Tray's `serial.sendData`).
    Send,
    /// Show text or an amount (`POST /v1/display`): customer displays.
    Display,
    /// Tare and zero (`POST /v1/devices/{id}/tare`, `/zero`): scales.
    Tare,
    Zero,
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
    /// A family run by the supervisor that reads HID reports as keystrokes,
    /// takes no `usb` transport, no requests and 9600 baud: what a family
    /// does not say otherwise.
    pub const fn new(
        name: &'static str,
        transports: &'static [Transport],
        options: OptionsType,
    ) -> DriverSpec {
        DriverSpec {
            name,
            transports,
            options,
            default_baud: 9600,
            runs: Runs::Supervisor,
            sim: SimKind::Stream,
            hid: HidReading::Keyboard,
            usb: UsbNode::None,
            requests: &[],
            named_by_match: false,
            serial_framing: None,
        }
    }

    /// The node a device of this family on `transport` is opened at: a USB
    /// receipt printer is its usblp node, not the whole USB device (which
    /// dongles are watched as).
    pub fn node_kind(&self, transport: Transport) -> Option<NodeKind> {
        match NodeKind::for_transport(transport.name()) {
            Some(NodeKind::UsbDevice) if self.usb == UsbNode::Printer => Some(NodeKind::Usblp),
            k => k,
        }
    }

    /// Builds the protocol of a device of this family.
    pub fn make(&self, d: &DeviceConfig, ctx: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        (self.options.make)(d, ctx)
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
    spec(cfg)?.node_kind(cfg.transport())
}

/// Whether a configured device is run by the print worker, not the supervisor.
pub fn print_worker(cfg: &DeviceConfig) -> bool {
    spec(cfg).is_some_and(|s| s.runs == Runs::PrintWorker)
}

/// Where a card or code reader comes: a serial port, a keyboard wedge
/// (evdev), a USB HID device, or the simulator.
pub const READER_TRANSPORTS: &[Transport] = &[
    Transport::Serial,
    Transport::Evdev,
    Transport::Hid,
    Transport::Sim,
];

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
    &passthrough::SPEC,
    &display::SPEC,
    &scale::SPEC,
    &label::SPEC,
];

/// Drivers the contract names that later releases add; named so the error is helpful.
const PLANNED: &[&str] = &[];

pub fn find(name: &str) -> Option<&'static DriverSpec> {
    DRIVERS.iter().copied().find(|d| d.name == name)
}

/// Problems with one device table, as (key, reason): its driver and
/// transport, the keys each transport needs or refuses, keys its family does
/// not take, each wrong value, and then whatever the family's make refuses.
pub fn check(d: &DeviceConfig) -> Vec<(String, String)> {
    let Some(spec) = find(&d.driver) else {
        return vec![("driver".into(), unknown_driver(&d.driver))];
    };
    let mut out: Vec<KeyError> = Vec::new();
    let transport = d.transport();
    if !spec.transports.contains(&transport) {
        out.push(bad(
            "transport",
            format!(
                "driver {} does not support transport {:?}; use one of {}",
                spec.name,
                transport.name(),
                names(spec.transports)
            ),
        ));
    }
    out.extend(transport_needs(spec, d));
    out.extend(transport_only_keys(spec, d));
    let mut out: Vec<(String, String)> = out.into_iter().map(|e| (e.key.into(), e.why)).collect();
    let (known, unknown) = foreign_keys(spec, d);
    out.extend(unknown);
    out.extend((spec.options.check)(known));
    if out.is_empty() {
        if let Err(e) = spec.make(d, &Make::default()) {
            out.push((e.key.into(), e.why));
        }
    }
    out
}

fn names(transports: &[Transport]) -> String {
    let names: Vec<&str> = transports.iter().map(|t| t.name()).collect();
    names.join(", ")
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

/// Splits a device's own keys into those its family takes and a problem
/// for each other: a key another family takes is "not used" here, any
/// other key is unknown.
fn foreign_keys(spec: &DriverSpec, d: &DeviceConfig) -> (toml::Table, Vec<(String, String)>) {
    let ours = (spec.options.keys)();
    let mut known = toml::Table::new();
    let mut problems = Vec::new();
    for (k, v) in &d.options {
        if ours.contains(&k.as_str()) {
            known.insert(k.clone(), v.clone());
        } else if DRIVERS
            .iter()
            .any(|f| (f.options.keys)().contains(&k.as_str()))
        {
            problems.push((
                k.clone(),
                format!("not used by driver {}; remove it", spec.name),
            ));
        } else {
            let takes = if ours.is_empty() {
                "it takes no keys of its own".to_owned()
            } else {
                format!("driver {} takes {}", spec.name, ours.join(", "))
            };
            problems.push((k.clone(), format!("unknown field `{k}`; {takes}")));
        }
    }
    (known, problems)
}

/// What the transport needs: a path, an address to connect to or listen on.
fn transport_needs(spec: &DriverSpec, d: &DeviceConfig) -> Option<KeyError> {
    let no_path = d.path.as_deref().is_none_or(str::is_empty);
    let no_address = d.address.as_deref().is_none_or(str::is_empty);
    let why: &str = match d.transport() {
        Transport::Serial if d.usb_match.is_none() && no_path => "required for transport \"serial\" (e.g. /dev/serial/by-id/…), or find it by USB id with match = { vid, pid, serial? }",
        Transport::Tcp if no_address => {
            return Some(bad(
                "address",
                "required for transport \"tcp\" (host:port, e.g. 127.0.0.1:3333)",
            ))
        }
        Transport::Tcp if d.path.is_some() => "a tcp device is reached at its address; remove path",
        Transport::Udp if d
            .address
            .as_deref()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .is_none_or(|a| a.port() == 0) =>
        {
            return Some(bad(
                "address",
                format!(
                    "transport \"udp\" needs the address to listen on as ip:port (0.0.0.0:3520 hears a Whozz Calling unit's broadcasts), not {:?}",
                    d.address.as_deref().unwrap_or("")
                ),
            ))
        }
        Transport::Usb if spec.usb == UsbNode::Printer && d.usb_match.is_none() && no_path => "required for transport \"usb\" (e.g. /dev/usb/lp0), or find the printer by USB id with match = { vid, pid, serial? }",
        Transport::File if no_path => "required for transport \"file\" (the file receipts are appended to)",
        Transport::Sim if d.path.is_some() => "a sim device has no path; remove it",
        _ => return None,
    };
    Some(bad("path", why))
}

/// Keys that belong to some transports (serial framing, evdev's grab, the
/// network address, udp's from, match for the transports found by USB id),
/// and their values.
fn transport_only_keys(spec: &DriverSpec, d: &DeviceConfig) -> Vec<KeyError> {
    use Transport::{Evdev, Hid, Serial, Sim, Tcp, Udp, Usb};
    let mut out = Vec::new();
    let transport = d.transport();
    if let Some(b) = d.baud {
        if !(50..=4_000_000).contains(&b) {
            out.push(bad("baud", format!("{b} is not a serial speed")));
        }
    }
    if let Err(e) = serial_settings(d) {
        out.push(e);
    }
    let only: [(&'static str, bool, &[Transport]); 8] = [
        ("baud", d.baud.is_some(), &[Serial]),
        ("data_bits", d.data_bits.is_some(), &[Serial]),
        ("parity", d.parity.is_some(), &[Serial]),
        ("stop_bits", d.stop_bits.is_some(), &[Serial]),
        ("flow_control", d.flow_control.is_some(), &[Serial]),
        ("grab", d.grab.is_some(), &[Evdev]),
        ("from", d.from.is_some(), &[Udp]),
        ("address", d.address.is_some(), &[Tcp, Udp]),
    ];
    for (k, present, wants) in only {
        if present && !wants.contains(&transport) {
            // Only the transports this family takes (a printer has no udp),
            // unless it takes none of them.
            let ours = wants.iter().any(|t| spec.transports.contains(t));
            let wants: Vec<String> = wants
                .iter()
                .filter(|t| !ours || spec.transports.contains(t))
                .map(|t| format!("{:?}", t.name()))
                .collect();
            out.push(bad(
                k,
                format!(
                    "only applies to transport {}, not {:?}",
                    wants.join(" or "),
                    transport.name()
                ),
            ));
        }
    }
    if let Some(f) = d.from.as_deref().filter(|_| transport == Udp) {
        if f.parse::<std::net::IpAddr>().is_err() {
            out.push(bad("from", format!("{f:?} is not an IP address")));
        }
    }
    if let Some(m) = &d.usb_match {
        let hex = posbridge_drivers::catalog::parse_hex16;
        if hex(&m.vid).is_none() || hex(&m.pid).is_none() {
            out.push(bad(
                "match",
                format!(
                    "vid {:?} / pid {:?} must be 4 hex digits (as lsusb shows them)",
                    m.vid, m.pid
                ),
            ));
        }
        if transport == Sim && !spec.named_by_match {
            out.push(bad(
                "match",
                format!("not used by driver {}; remove it", spec.name),
            ));
        } else if ![Serial, Evdev, Hid, Usb, Sim].contains(&transport) {
            out.push(bad(
                "match",
                format!("transport {:?} is not found by USB id", transport.name()),
            ));
        }
    }
    out
}

/// The serial port settings a device asks for (baud, framing, flow control),
/// or the key that is wrong.
pub fn serial_settings(cfg: &DeviceConfig) -> Result<tokio_serial::SerialPortBuilder, KeyError> {
    use crate::config::{FlowControl as Flow, Parity as P};
    use tokio_serial::{DataBits, FlowControl, Parity, StopBits};
    let (bits, par) = find(&cfg.driver)
        .and_then(|d| d.serial_framing)
        .map_or((8, P::None), |f| f(cfg));
    let data_bits = match cfg.data_bits.unwrap_or(bits) {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        8 => DataBits::Eight,
        n => return Err(bad("data_bits", format!("{n} is not 5, 6, 7 or 8"))),
    };
    let parity = match cfg.parity.unwrap_or(par) {
        P::None => Parity::None,
        P::Odd => Parity::Odd,
        P::Even => Parity::Even,
    };
    let stop_bits = match cfg.stop_bits.unwrap_or(1) {
        1 => StopBits::One,
        2 => StopBits::Two,
        n => return Err(bad("stop_bits", format!("{n} is not 1 or 2"))),
    };
    let flow = match cfg.flow_control.unwrap_or(Flow::None) {
        Flow::None => FlowControl::None,
        Flow::Software => FlowControl::Software,
        Flow::Hardware => FlowControl::Hardware,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys_of;

    #[test]
    fn keys_are_read_from_the_types_that_take_them() {
        assert_eq!(
            (barcode::SPEC.options.keys)(),
            [
                "member_pattern",
                "idle_flush_ms",
                "suffix",
                "weighed_barcodes"
            ]
        );
        let common = keys_of::<DeviceConfig>();
        assert!(common.contains(&"match") && common.contains(&"parity"));
        assert!(!common.contains(&"options"), "{common:?}");
    }

    #[test]
    fn no_family_takes_a_common_key() {
        // A family key named like a common one would never reach the family.
        let common = keys_of::<DeviceConfig>();
        for f in DRIVERS {
            let keys = (f.options.keys)();
            for k in keys {
                assert!(!common.contains(k), "{} takes common key {k}", f.name);
            }
        }
    }

    #[test]
    fn read_now_is_taken_by_the_readers_that_can_read_again() {
        let takes: Vec<&str> = DRIVERS
            .iter()
            .filter(|f| f.requests.contains(&Request::Read))
            .map(|f| f.name)
            .collect();
        assert_eq!(takes, ["pcsc", "idcard-sam"]);
    }

    #[test]
    fn every_catalog_driver_is_a_family_that_takes_its_transport() {
        let catalog = posbridge_drivers::catalog::Catalog::builtin().expect("catalog");
        for e in &catalog.entries {
            let Some(driver) = &e.driver else { continue };
            let family = find(driver).unwrap_or_else(|| panic!("{}: no driver {driver}", e.id));
            if let Some(t) = &e.transport {
                let t = Transport::parse(t).unwrap_or_else(|| panic!("{}: transport {t}", e.id));
                assert!(
                    family.transports.contains(&t),
                    "{}: {driver} on {t:?}",
                    e.id
                );
            }
        }
    }

    #[test]
    fn every_family_has_a_default_transport_and_a_unique_name() {
        for (i, f) in DRIVERS.iter().enumerate() {
            assert!(!f.transports.is_empty(), "{}", f.name);
            assert!(DRIVERS[..i].iter().all(|g| g.name != f.name), "{}", f.name);
        }
    }
}
