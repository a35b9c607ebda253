//! The drivers this build knows, in one static list: which transports each
//! accepts, which config keys it uses, and how to make its protocol.

pub mod escpos;
pub mod pcsc;

use crate::config::DeviceConfig;
use posbridge_drivers::hotplug::NodeKind;
use posbridge_drivers::{barcode, callerid, dongle, hid, idcard, magstripe, rfid, Protocol};

/// A config problem as (key within the device table, reason).
pub type KeyError = (&'static str, String);

/// Builds a driver's protocol from its device table.
pub type MakeProtocol = fn(&DeviceConfig) -> Result<Box<dyn Protocol>, KeyError>;

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

/// Every driver in this build.
pub static DRIVERS: &[DriverSpec] = &[
    DriverSpec {
        name: "barcode",
        transports: &["serial", "evdev", "hid", "sim"],
        keys: &["member_pattern", "idle_flush_ms", "suffix"],
        default_baud: 9600,
        runs: Runs::Supervisor,
        sim: SimKind::Stream,
        hid: HidReading::Whole,
        usb: UsbNode::None,
        make: make_barcode,
    },
    DriverSpec {
        name: "magstripe",
        transports: &["serial", "evdev", "hid", "sim"],
        keys: &["lrc", "idle_flush_ms"],
        default_baud: 9600,
        runs: Runs::Supervisor,
        sim: SimKind::Stream,
        hid: HidReading::Magtek,
        usb: UsbNode::None,
        make: make_magstripe,
    },
    DriverSpec {
        name: "rfid-wedge",
        transports: &["serial", "evdev", "hid", "sim"],
        keys: &["format", "idle_flush_ms"],
        default_baud: 9600,
        runs: Runs::Supervisor,
        sim: SimKind::Stream,
        hid: HidReading::Keyboard,
        usb: UsbNode::None,
        make: make_rfid,
    },
    DriverSpec {
        name: "pcsc",
        transports: &["pcsc"],
        keys: &["reader", "blocks", "key", "key_type"],
        default_baud: 9600,
        runs: Runs::Supervisor,
        sim: SimKind::Stream,
        hid: HidReading::Keyboard,
        usb: UsbNode::None,
        make: make_pcsc,
    },
    DriverSpec {
        name: "idcard-sam",
        transports: &["serial", "sim"],
        keys: &["poll_ms"],
        default_baud: 115_200,
        runs: Runs::Supervisor,
        sim: SimKind::IdCardReader,
        hid: HidReading::Keyboard,
        usb: UsbNode::None,
        make: make_idcard,
    },
    DriverSpec {
        name: "callerid",
        transports: &["serial", "tcp", "udp", "hid", "sim"],
        keys: &[
            "format",
            "ring_timeout_ms",
            "country",
            "address",
            "from",
            "hid_layout",
        ],
        default_baud: 9600,
        runs: Runs::Supervisor,
        sim: SimKind::Stream,
        hid: HidReading::Whole,
        usb: UsbNode::None,
        make: make_callerid,
    },
    DriverSpec {
        name: "escpos",
        transports: &["tcp", "serial", "usb", "file"],
        keys: &[
            "address",
            "encoding",
            "columns",
            "cut",
            "drawer_pin",
            "poll_ms",
            "status_query",
        ],
        default_baud: 9600,
        runs: Runs::PrintWorker,
        sim: SimKind::Stream,
        hid: HidReading::Keyboard,
        usb: UsbNode::Printer,
        make: make_escpos,
    },
    DriverSpec {
        name: "dongle",
        // hid: presence plus the optional feature-report check; usb: presence
        // only (vendor-class dongles such as Sentinel HASP); sim: replay.
        transports: &["hid", "usb", "sim"],
        keys: &["check", "match"],
        default_baud: 9600,
        runs: Runs::Supervisor,
        sim: SimKind::Stream,
        hid: HidReading::Feature,
        usb: UsbNode::Presence,
        make: make_dongle,
    },
];

/// Drivers the contract names that later releases add; named so the error is helpful.
const PLANNED: &[&str] = &[];

fn member_pattern(d: &DeviceConfig) -> Result<Option<regex::Regex>, KeyError> {
    d.member_pattern
        .as_deref()
        .map(|p| {
            regex::Regex::new(p).map_err(|e| ("member_pattern", format!("not a valid regex: {e}")))
        })
        .transpose()
}

fn make_barcode(d: &DeviceConfig) -> Result<Box<dyn Protocol>, KeyError> {
    let member_pattern = member_pattern(d)?;
    if d.transport_name() == "hid" {
        // HID-POS scanners deliver whole reports, not lines.
        if d.suffix.is_some() {
            return Err((
                "suffix",
                "HID-POS scanners send no suffix; remove it".into(),
            ));
        }
        return Ok(Box::new(hid::HidPosScanner::new(hid::Options {
            member_pattern,
            ..hid::Options::default()
        })));
    }
    let suffix = match d.suffix.as_deref() {
        None => barcode::Suffix::Auto,
        Some(s) => barcode::Suffix::parse(s).ok_or((
            "suffix",
            format!("{s:?} is not one of auto, cr, lf, crlf, tab, none"),
        ))?,
    };
    let idle_flush_ms = Some(d.idle_flush_ms.unwrap_or(300)).filter(|&ms| ms > 0);
    if suffix == barcode::Suffix::None && idle_flush_ms.is_none() {
        return Err((
            "idle_flush_ms",
            "with suffix = \"none\" only the idle timeout can end a code; it must be above 0"
                .into(),
        ));
    }
    Ok(Box::new(barcode::Barcode::new(barcode::Options {
        member_pattern,
        idle_flush_ms,
        suffix,
    })))
}

fn make_magstripe(d: &DeviceConfig) -> Result<Box<dyn Protocol>, KeyError> {
    let mut opts = magstripe::Options::default();
    if let Some(ms) = d.idle_flush_ms {
        if !(10..=5000).contains(&ms) {
            return Err((
                "idle_flush_ms",
                "must be between 10 and 5000 for a magstripe reader".into(),
            ));
        }
        opts.idle_ms = ms;
    }
    if let Some(lrc) = d.lrc {
        if lrc && matches!(d.transport_name(), "evdev" | "hid") {
            return Err((
                "lrc",
                "keyboard-wedge and HID readers never send an LRC".into(),
            ));
        }
        opts.lrc = lrc;
    }
    Ok(Box::new(magstripe::Magstripe::new(opts)))
}

fn make_callerid(d: &DeviceConfig) -> Result<Box<dyn Protocol>, KeyError> {
    let format: callerid::Format = match d.format.as_deref() {
        None => callerid::Format::Auto,
        Some(f) => serde_json::from_value(serde_json::Value::from(f)).map_err(|_| {
            (
                "format",
                format!(
                    "{f:?} is not one of auto, modem, mdmf, sdmf, etsi, dtmf, ncid, hid, whozz"
                ),
            )
        })?,
    };
    // A USB box's report layout is per model (PROTOCOLS.md §2): data, not code.
    let hid_layout = match (format, &d.hid_layout) {
        (callerid::Format::Hid, None) => {
            return Err((
                "hid_layout",
                "format \"hid\" needs the box's report layout (see config/posbridge.toml)".into(),
            ))
        }
        (callerid::Format::Hid, Some(l)) => {
            if l.report_len == 0 || l.report_len > 64 {
                return Err(("hid_layout", "report_len must be from 1 to 64".into()));
            }
            Some(l.clone())
        }
        (_, Some(_)) => return Err(("hid_layout", "only used with format = \"hid\"".into())),
        (_, None) => None,
    };
    // Whozz Calling records come one per datagram; other formats are streams.
    match (format, d.transport_name()) {
        (callerid::Format::Whozz, "udp" | "sim") | (callerid::Format::Auto, "udp") => {}
        (callerid::Format::Whozz, _) => {
            return Err((
                "format",
                "format \"whozz\" needs transport \"udp\" (or \"sim\" to replay datagrams)".into(),
            ))
        }
        (_, "udp") => {
            return Err((
                "format",
                "transport \"udp\" takes format \"whozz\" (or \"auto\")".into(),
            ))
        }
        _ => {}
    }
    if format == callerid::Format::Hid && !matches!(d.transport_name(), "hid" | "sim") {
        return Err((
            "format",
            "format \"hid\" needs transport \"hid\" (or \"sim\" to replay captured reports)".into(),
        ));
    }
    let ring_timeout_ms = d.ring_timeout_ms.unwrap_or(8000);
    if !(1000..=60_000).contains(&ring_timeout_ms) {
        return Err(("ring_timeout_ms", "must be from 1000 to 60000".into()));
    }
    let country = d.country.clone().unwrap_or_else(|| "86".into());
    if country.is_empty() || country.len() > 3 || !country.bytes().all(|b| b.is_ascii_digit()) {
        return Err((
            "country",
            format!("{country:?} is not a country calling code (86, 852, 1 …)"),
        ));
    }
    Ok(Box::new(callerid::CallerId::new(callerid::Options {
        format,
        call_id_prefix: format!("{}-{}-", d.id, ulid::Ulid::new().timestamp_ms()),
        ring_timeout_ms,
        country,
        // An NCID server or a network unit is not a modem: no AT commands to it.
        send_init: !matches!(d.transport_name(), "tcp" | "udp")
            && !matches!(
                format,
                callerid::Format::Ncid | callerid::Format::Hid | callerid::Format::Whozz
            ),
        hid_layout,
        ..callerid::Options::default()
    })))
}

fn make_rfid(d: &DeviceConfig) -> Result<Box<dyn Protocol>, KeyError> {
    let format = match d.format.as_deref().unwrap_or("auto") {
        "auto" => rfid::RfidFormat::Auto,
        "decimal10" => rfid::RfidFormat::Decimal10,
        "hex8" => rfid::RfidFormat::Hex8,
        "hex10" => rfid::RfidFormat::Hex10,
        "wiegand26" => rfid::RfidFormat::Wiegand26,
        f => {
            return Err((
                "format",
                format!("{f:?} is not one of auto, decimal10, hex8, hex10, wiegand26"),
            ))
        }
    };
    Ok(Box::new(rfid::Rfid::new(rfid::Options {
        format,
        idle_flush_ms: Some(d.idle_flush_ms.unwrap_or(300)).filter(|&ms| ms > 0),
    })))
}

/// The pcsc link does the card work in its own thread, and takes "read now"
/// itself ([`crate::transport::Link::request_read`]): no protocol on top.
struct PcscCommands;

impl Protocol for PcscCommands {
    fn handle_bytes(
        &mut self,
        _now: posbridge_drivers::Instant,
        _bytes: &[u8],
        _out: &mut Vec<posbridge_drivers::Action>,
    ) {
    }
}

fn make_pcsc(d: &DeviceConfig) -> Result<Box<dyn Protocol>, KeyError> {
    pcsc::check(d)?;
    Ok(Box::new(PcscCommands))
}

/// Never run: the print worker drives escpos devices ([`Runs::PrintWorker`]).
struct Unsupervised;

impl Protocol for Unsupervised {
    fn handle_bytes(
        &mut self,
        _now: posbridge_drivers::Instant,
        _bytes: &[u8],
        _out: &mut Vec<posbridge_drivers::Action>,
    ) {
    }
}

fn make_escpos(d: &DeviceConfig) -> Result<Box<dyn Protocol>, KeyError> {
    escpos::options(d)?;
    Ok(Box::new(Unsupervised))
}

fn make_idcard(d: &DeviceConfig) -> Result<Box<dyn Protocol>, KeyError> {
    let mut opts = idcard::Options::default();
    if let Some(ms) = d.poll_ms {
        if !(50..=10_000).contains(&ms) {
            return Err(("poll_ms", "must be between 50 and 10000".into()));
        }
        opts.poll_ms = ms;
    }
    Ok(Box::new(idcard::IdCardReader::new(opts)))
}

fn make_dongle(d: &DeviceConfig) -> Result<Box<dyn Protocol>, KeyError> {
    let Some(m) = &d.usb_match else {
        return Err((
            "match",
            "required for driver dongle: { vid, pid, serial? } name the dongle in its events"
                .into(),
        ));
    };
    let hex4 = |s: &str| posbridge_drivers::catalog::parse_hex16(s).map(|v| format!("{v:04x}"));
    let (Some(vid), Some(pid)) = (hex4(&m.vid), hex4(&m.pid)) else {
        return Err(("match", "vid and pid must be 4 hex digits".into()));
    };
    let mut opts = dongle::Options {
        vid,
        pid,
        serial: m.serial.clone(),
        seed: random_seed(),
        ..dongle::Options::default()
    };
    if let Some(c) = &d.check {
        if d.transport_name() == "usb" {
            return Err((
                "check",
                "a challenge-response needs transport \"hid\"; transport \"usb\" reports presence only".into(),
            ));
        }
        let bytes = |k: &'static str, s: &str| -> Result<Vec<u8>, KeyError> {
            let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            match hex::decode(&s) {
                Ok(b) if !b.is_empty() => Ok(b),
                _ => Err(("check", format!("{k} must be hex bytes"))),
            }
        };
        opts.report_id = c.report_id;
        opts.report_len = c.report_len.unwrap_or(32);
        if !(1..=dongle::MAX_REPORT).contains(&opts.report_len) {
            return Err((
                "check",
                format!("report_len must be from 1 to {}", dongle::MAX_REPORT),
            ));
        }
        opts.timeout_ms = c.timeout_ms.unwrap_or(2000);
        if !(100..=60_000).contains(&opts.timeout_ms) {
            return Err(("check", "timeout_ms must be from 100 to 60000".into()));
        }
        let check = match (&c.challenge, &c.response, &c.hmac_key) {
            (Some(ch), Some(r), None) => {
                if c.challenge_len.is_some() || c.response_len.is_some() {
                    return Err((
                        "check",
                        "challenge_len/response_len only go with hmac_key".into(),
                    ));
                }
                dongle::Check::Recorded {
                    challenge: bytes("challenge", ch)?,
                    response: bytes("response", r)?,
                }
            }
            (None, None, Some(k)) => {
                let challenge_len = c.challenge_len.unwrap_or(16);
                let response_len = c.response_len.unwrap_or(16);
                if challenge_len == 0 || challenge_len > opts.report_len {
                    return Err(("check", "challenge_len must be from 1 to report_len".into()));
                }
                if !(1..=32).contains(&response_len) {
                    return Err(("check", "response_len must be from 1 to 32".into()));
                }
                dongle::Check::Hmac {
                    key: bytes("hmac_key", k)?,
                    challenge_len,
                    response_len,
                }
            }
            _ => {
                return Err((
                    "check",
                    "give either challenge and response (a recorded exchange) or hmac_key".into(),
                ))
            }
        };
        if let dongle::Check::Recorded { challenge, .. } = &check {
            if challenge.len() > opts.report_len {
                return Err(("check", "challenge is longer than report_len".into()));
            }
        }
        opts.check = Some(check);
    }
    Ok(Box::new(dongle::Dongle::new(opts)))
}

/// Fresh bytes for dongle challenges, from the kernel's CSPRNG (a predictable
/// challenge could be answered in advance by borrowing a genuine dongle).
fn random_seed() -> [u8; 16] {
    use std::io::Read;
    let mut seed = [0u8; 16];
    let got = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
    if got.is_err() {
        // No /dev/urandom (a broken chroot): still unique per start, if guessable.
        seed[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
        seed[8..].copy_from_slice(&(ulid::Ulid::new().0 as u64).to_le_bytes());
    }
    seed
}

pub fn find(name: &str) -> Option<&'static DriverSpec> {
    DRIVERS.iter().find(|d| d.name == name)
}

/// Problems with one device table, as (key, reason).
pub fn check(d: &DeviceConfig) -> Vec<KeyError> {
    let mut out = Vec::new();
    let Some(spec) = find(&d.driver) else {
        let known: Vec<&str> = DRIVERS.iter().map(|s| s.name).collect();
        let why = if PLANNED.contains(&d.driver.as_str()) {
            format!(
                "driver {:?} is not in this build yet; available: {}",
                d.driver,
                known.join(", ")
            )
        } else {
            format!(
                "unknown driver {:?}; available: {}",
                d.driver,
                known.join(", ")
            )
        };
        out.push(("driver", why));
        return out;
    };
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
    match transport {
        "serial" if d.usb_match.is_none() && d.path.as_deref().is_none_or(str::is_empty) => out.push((
            "path",
            "required for transport \"serial\" (e.g. /dev/serial/by-id/…), or find it by USB id with match = { vid, pid, serial? }".into(),
        )),
        "tcp" if d.address.as_deref().is_none_or(str::is_empty) => out.push((
            "address",
            "required for transport \"tcp\" (host:port, e.g. 127.0.0.1:3333)".into(),
        )),
        "udp" if d
            .address
            .as_deref()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .is_none_or(|a| a.port() == 0) =>
        {
            out.push((
                "address",
                format!(
                    "transport \"udp\" needs the address to listen on as ip:port (0.0.0.0:3520 hears a Whozz Calling unit's broadcasts), not {:?}",
                    d.address.as_deref().unwrap_or("")
                ),
            ))
        }
        "usb" if spec.usb == UsbNode::Printer
            && d.usb_match.is_none()
            && d.path.as_deref().is_none_or(str::is_empty) => out.push((
            "path",
            "required for transport \"usb\" (e.g. /dev/usb/lp0), or find the printer by USB id with match = { vid, pid, serial? }".into(),
        )),
        "file" if d.path.as_deref().is_none_or(str::is_empty) => out.push((
            "path",
            "required for transport \"file\" (the file receipts are appended to)".into(),
        )),
        "sim" if d.path.is_some() => {
            out.push(("path", "a sim device has no path; remove it".into()))
        }
        _ => {}
    }
    if let Some(b) = d.baud {
        if !(50..=4_000_000).contains(&b) {
            out.push(("baud", format!("{b} is not a serial speed")));
        }
    }
    if let Err((k, why)) = serial_settings(d) {
        out.push((k, why));
    }
    let serial_keys = [
        ("baud", d.baud.is_some()),
        ("data_bits", d.data_bits.is_some()),
        ("parity", d.parity.is_some()),
        ("stop_bits", d.stop_bits.is_some()),
        ("flow_control", d.flow_control.is_some()),
    ];
    for (k, present) in serial_keys {
        if present && transport != "serial" {
            out.push((
                k,
                format!("only applies to transport \"serial\", not {transport:?}"),
            ));
        }
    }
    if d.grab.is_some() && transport != "evdev" {
        out.push((
            "grab",
            format!("only applies to transport \"evdev\", not {transport:?}"),
        ));
    }
    if let Some(f) = &d.from {
        if transport != "udp" {
            out.push((
                "from",
                format!("only applies to transport \"udp\", not {transport:?}"),
            ));
        } else if f.parse::<std::net::IpAddr>().is_err() {
            out.push(("from", format!("{f:?} is not an IP address")));
        }
    }
    let used = |k: &str| spec.keys.contains(&k);
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
    for (k, present) in set {
        if present && !used(k) {
            out.push((k, format!("not used by driver {}; remove it", spec.name)));
        }
    }
    if out.is_empty() {
        if let Err((k, why)) = (spec.make)(d) {
            out.push((k, why));
        }
    }
    out
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
