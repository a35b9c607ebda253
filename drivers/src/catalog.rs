//! The device catalog (`drivers/catalog.toml`): the USB devices posbridge
//! knows by VID:PID, the driver that fits each, and the udev rules generated
//! from it. Parsing, validation, lookup and rule text only; no I/O.

use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::OnceLock;

/// The catalog as shipped, compiled in.
pub const CATALOG_TOML: &str = include_str!("../catalog.toml");

/// Families a catalog entry may belong to.
pub const FAMILIES: &[&str] = &[
    "serial-bridge",
    "magstripe",
    "scanner",
    "idcard",
    "pcsc",
    "printer",
    "callerid",
    "dongle",
    "scale",
];

/// The node Linux gives a device, and so the udev subsystem its rule names.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    /// /dev/ttyUSB*, /dev/ttyACM* (USB-serial bridges, CDC-ACM).
    Tty,
    /// /dev/hidraw*.
    Hidraw,
    /// /dev/input/event* (keyboard wedges).
    Input,
    /// /dev/usb/lp* (printer class).
    Usblp,
    /// The raw USB device, /dev/bus/usb/BBB/DDD (vendor-class devices).
    Usb,
    /// Owned by pcscd; listed, but no rule.
    Pcsc,
}

impl Interface {
    pub fn name(self) -> &'static str {
        match self {
            Interface::Tty => "tty",
            Interface::Hidraw => "hidraw",
            Interface::Input => "input",
            Interface::Usblp => "usblp",
            Interface::Usb => "usb",
            Interface::Pcsc => "pcsc",
        }
    }
}

/// Driver parameters a model needs.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub baud: Option<u32>,
}

/// One known device model.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub vendor: String,
    pub model: String,
    pub vid: String,
    pub pid: String,
    pub family: String,
    pub interface: Interface,
    pub driver: Option<String>,
    pub transport: Option<String>,
    #[serde(default)]
    pub auto: bool,
    #[serde(default)]
    pub defaults: Defaults,
    pub quirks: Option<String>,
    pub source: String,
    pub verified: bool,
}

impl Entry {
    /// (vid, pid) as numbers; `None` only for an entry validation rejects.
    pub fn ids(&self) -> Option<(u16, u16)> {
        Some((parse_hex16(&self.vid)?, parse_hex16(&self.pid)?))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    device: Vec<Entry>,
}

/// The parsed catalog.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub entries: Vec<Entry>,
}

impl Entry {
    /// What is wrong with this entry on its own, each prefixed with `at`.
    fn problems(&self, at: &str, out: &mut Vec<String>) {
        let e = self;
        let id_ok =
            e.id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if e.id.is_empty() || !id_ok {
            out.push(format!("{at}: id must be lower-case a-z 0-9 -"));
        }
        for (k, v) in [("vid", &e.vid), ("pid", &e.pid)] {
            let ok = v.len() == 4
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !ok {
                out.push(format!("{at}: {k} {v:?} is not 4 lower-case hex digits"));
            }
        }
        if !FAMILIES.contains(&e.family.as_str()) {
            out.push(format!(
                "{at}: family {:?} is not one of {}",
                e.family,
                FAMILIES.join(", ")
            ));
        }
        for (k, v) in [
            ("vendor", &e.vendor),
            ("model", &e.model),
            ("source", &e.source),
        ] {
            if v.trim().is_empty() {
                out.push(format!("{at}: {k} must not be empty"));
            }
        }
        if e.verified && e.source.starts_with("unverified") {
            out.push(format!(
                "{at}: verified = true but the source says unverified"
            ));
        }
        e.driver_problems(at, out);
    }

    /// Whether its driver, transport and `auto` fit its interface.
    fn driver_problems(&self, at: &str, out: &mut Vec<String>) {
        let e = self;
        match (&e.driver, &e.transport) {
            (Some(_), t) => {
                let allowed = transports_for(e.interface);
                match t {
                    Some(t) if !allowed.contains(&t.as_str()) => out.push(format!(
                        "{at}: transport {t:?} cannot drive a {} interface ({})",
                        e.interface.name(),
                        allowed.join(", ")
                    )),
                    None if e.interface != Interface::Pcsc => {
                        out.push(format!("{at}: a driver needs a transport"))
                    }
                    _ => {}
                }
            }
            (None, Some(_)) => out.push(format!("{at}: transport without a driver")),
            (None, None) => {}
        }
        if e.auto {
            if e.driver.is_none() || e.transport.is_none() {
                out.push(format!("{at}: auto needs driver and transport"));
            }
            // Printers run in their own worker, found by path; PC/SC by reader name.
            if matches!(e.interface, Interface::Usblp | Interface::Pcsc) {
                out.push(format!(
                    "{at}: auto is not available for {} devices",
                    e.interface.name()
                ));
            }
        }
        if e.family == "serial-bridge" && e.driver.is_some() {
            out.push(format!(
                "{at}: a bare USB-serial bridge does not say what is behind it; no driver"
            ));
        }
    }
}

/// The transports an interface can be driven through.
fn transports_for(i: Interface) -> &'static [&'static str] {
    match i {
        Interface::Tty => &["serial"],
        Interface::Hidraw => &["hid"],
        Interface::Input => &["evdev"],
        Interface::Usblp => &["usb"],
        Interface::Usb => &["usb"],
        Interface::Pcsc => &["pcsc"],
    }
}

/// 4 hex digits, with or without `0x`, either case.
pub fn parse_hex16(s: &str) -> Option<u16> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

impl Catalog {
    /// Parses catalog text. Validation is separate ([`Catalog::problems`]) so a
    /// test can list every problem at once.
    pub fn parse(text: &str) -> Result<Catalog, String> {
        let f: File = toml::from_str(text).map_err(|e| format!("catalog.toml: {e}"))?;
        Ok(Catalog { entries: f.device })
    }

    /// The compiled-in catalog. An error only if catalog.toml is broken, which
    /// the crate's tests catch before a release.
    pub fn builtin() -> Result<&'static Catalog, &'static str> {
        static CELL: OnceLock<Result<Catalog, String>> = OnceLock::new();
        CELL.get_or_init(|| Catalog::parse(CATALOG_TOML))
            .as_ref()
            .map_err(String::as_str)
    }

    /// Every problem with the catalog, each naming the entry. Whether each
    /// driver exists and takes its transport is the daemon's to say (its
    /// family registry; tested there).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut prev: Option<(u16, u16, &str)> = None;
        let mut ids = std::collections::HashSet::new();
        for (i, e) in self.entries.iter().enumerate() {
            let at = format!("device[{i}] ({})", e.id);
            if !ids.insert(e.id.as_str()) {
                out.push(format!("{at}: duplicate id"));
            }
            if let Some((v, p)) = e.ids() {
                if let Some((pv, pp, pid)) = prev {
                    if (pv, pp) == (v, p) {
                        out.push(format!("{at}: same VID:PID as {pid}"));
                    } else if (pv, pp) > (v, p) {
                        out.push(format!("{at}: not sorted by vid, pid (comes after {pid})"));
                    }
                }
                prev = Some((v, p, e.id.as_str()));
            }
            e.problems(&at, &mut out);
        }
        out
    }

    /// The entry for a VID:PID.
    pub fn lookup(&self, vid: u16, pid: u16) -> Option<&Entry> {
        self.entries.iter().find(|e| e.ids() == Some((vid, pid)))
    }

    /// Entries `[devices] auto = true` claims.
    pub fn auto_entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.auto)
    }

    /// The text of udev/70-posbridge.rules.
    ///
    /// Shape (after libfido2's generated rules and systemd's own): `GOTO`
    /// guards per subsystem so udev skips the whole file for anything else,
    /// entries sorted by VID:PID within each block, group `dialout` for ttys
    /// and `plugdev` for the rest, mode 0660 (never world-writable) plus
    /// `TAG+="uaccess"` for the seated user, and ModemManager told to keep
    /// off every serial device listed (it probes ttys with AT commands, which
    /// confuses readers and steals caller-ID modems).
    /// The USB modaliases the udev rules grant access to (`usb:v0403p6001d*`),
    /// sorted: the package's AppStream metadata announces the hardware.
    pub fn modaliases(&self) -> Vec<String> {
        let mut m: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.interface != Interface::Pcsc)
            .map(|e| {
                format!(
                    "usb:v{}p{}d*",
                    e.vid.to_ascii_uppercase(),
                    e.pid.to_ascii_uppercase()
                )
            })
            .collect();
        m.sort();
        m.dedup();
        m
    }

    pub fn udev_rules(&self) -> String {
        let mut sorted: Vec<&Entry> = self.entries.iter().collect();
        sorted.sort_by_key(|e| e.ids());
        let mut s = String::new();
        s.push_str(
            "# udev rules for posbridge, generated from drivers/catalog.toml by\n\
             # `posbridge udev-rules`; do not edit (a test fails when they drift).\n\
             # Install: cp 70-posbridge.rules /etc/udev/rules.d/ && udevadm control --reload && udevadm trigger\n\
             # Access: group dialout (serial) or plugdev (HID, input, printers, USB), mode 0660,\n\
             # plus the seated desktop user (uaccess). Nothing here is world-writable.\n\n",
        );
        s.push_str("ACTION==\"remove\", GOTO=\"posbridge_end\"\n");
        let blocks: [(Interface, &str, &str, &str); 5] = [
            (Interface::Tty, "SUBSYSTEM==\"tty\"", "tty", "GROUP=\"dialout\", MODE=\"0660\", TAG+=\"uaccess\", ENV{ID_MM_DEVICE_IGNORE}=\"1\""),
            (Interface::Hidraw, "SUBSYSTEM==\"hidraw\"", "hidraw", "GROUP=\"plugdev\", MODE=\"0660\", TAG+=\"uaccess\""),
            (Interface::Input, "SUBSYSTEM==\"input\", KERNEL==\"event*\"", "input", "GROUP=\"plugdev\", MODE=\"0660\", TAG+=\"uaccess\""),
            (Interface::Usblp, "SUBSYSTEM==\"usbmisc\", KERNEL==\"lp*\"", "usblp", "GROUP=\"plugdev\", MODE=\"0660\", TAG+=\"uaccess\""),
            (Interface::Usb, "SUBSYSTEM==\"usb\", ENV{DEVTYPE}==\"usb_device\"", "usb", "GROUP=\"plugdev\", MODE=\"0660\", TAG+=\"uaccess\""),
        ];
        for (_, guard, label, _) in &blocks {
            let _ = writeln!(s, "{guard}, GOTO=\"posbridge_{label}\"");
        }
        s.push_str("GOTO=\"posbridge_end\"\n");
        for (iface, guard, label, access) in &blocks {
            let _ = writeln!(s, "\nLABEL=\"posbridge_{label}\"");
            // Each rule names its subsystem too: vendor and product ids mean
            // something only within one (and lintian checks rule by rule).
            let subsystem = guard.split(", ").next().unwrap_or_default();
            // The usb_device node is the device itself: its own attributes, not a parent's.
            let attr = if *iface == Interface::Usb {
                "ATTR"
            } else {
                "ATTRS"
            };
            for e in sorted.iter().filter(|e| e.interface == *iface) {
                let _ = writeln!(s, "# {} {} ({})", e.vendor, e.model, e.family);
                let _ = writeln!(
                    s,
                    "{subsystem}, {attr}{{idVendor}}==\"{}\", {attr}{{idProduct}}==\"{}\", {access}, ENV{{POSBRIDGE_CATALOG}}=\"{}\"",
                    e.vid, e.pid, e.id
                );
            }
            s.push_str("GOTO=\"posbridge_end\"\n");
        }
        let pcsc: Vec<&str> = sorted
            .iter()
            .filter(|e| e.interface == Interface::Pcsc)
            .map(|e| e.id.as_str())
            .collect();
        if !pcsc.is_empty() {
            let _ = writeln!(
                s,
                "\n# PC/SC readers ({}) are pcscd's (libccid ships their rules); none here.",
                pcsc.join(", ")
            );
        }
        s.push_str("\nLABEL=\"posbridge_end\"\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_validates() {
        let c = Catalog::builtin().expect("catalog.toml parses");
        assert!(c.entries.len() >= 15);
        let problems = c.problems();
        assert!(
            problems.is_empty(),
            "catalog.toml:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn every_family_is_represented() {
        let c = Catalog::builtin().expect("catalog");
        for f in FAMILIES {
            assert!(c.entries.iter().any(|e| e.family == *f), "no {f} entry");
        }
    }

    #[test]
    fn lookup_by_ids() {
        let c = Catalog::builtin().expect("catalog");
        assert_eq!(
            c.lookup(0x0801, 0x0002).map(|e| e.id.as_str()),
            Some("magtek-swipe-hid")
        );
        assert_eq!(
            c.lookup(0x1a86, 0x7523).map(|e| e.family.as_str()),
            Some("serial-bridge")
        );
        assert!(c.lookup(0xdead, 0xbeef).is_none());
        assert_eq!(parse_hex16("0x0C2E"), Some(0x0c2e));
        assert_eq!(parse_hex16("12345"), None);
        assert_eq!(parse_hex16(""), None);
    }

    #[test]
    fn validation_names_the_entry_and_the_problem() {
        let text = r#"
[[device]]
id = "b"
vendor = "V"
model = "M"
vid = "0801"
pid = "0002"
family = "magstripe"
interface = "hidraw"
driver = "magstripe"
transport = "serial"
source = "x"
verified = true

[[device]]
id = "a"
vendor = "V"
model = "M"
vid = "0403"
pid = "600G"
family = "serial-bridge"
interface = "tty"
driver = "barcode"
transport = "serial"
auto = true
source = "unverified: x"
verified = true
"#;
        let c = Catalog::parse(text).expect("parses");
        let p = c.problems().join("\n");
        for want in [
            "device[0] (b): transport \"serial\" cannot drive a hidraw interface",
            "device[1] (a): pid \"600G\" is not 4 lower-case hex digits",
            "device[1] (a): verified = true but the source says unverified",
            "device[1] (a): a bare USB-serial bridge",
        ] {
            assert!(p.contains(want), "missing {want:?} in:\n{p}");
        }
        assert!(Catalog::parse("[[device]]\nid = 1").is_err());
    }

    #[test]
    fn rules_are_guarded_and_never_world_writable() {
        let c = Catalog::builtin().expect("catalog");
        let r = c.udev_rules();
        assert!(r.starts_with("# udev rules for posbridge"));
        assert!(r.contains("ACTION==\"remove\", GOTO=\"posbridge_end\""));
        assert!(r.trim_end().ends_with("LABEL=\"posbridge_end\""));
        for line in r.lines().filter(|l| l.contains("MODE=")) {
            assert!(line.contains("MODE=\"0660\""), "{line}");
            assert!(line.contains("TAG+=\"uaccess\""), "{line}");
        }
        assert!(!r.contains("0666") && !r.contains("0777"));
        // Every serial entry keeps ModemManager away.
        let tty = r
            .split("LABEL=\"posbridge_tty\"")
            .nth(1)
            .and_then(|t| t.split("GOTO=\"posbridge_end\"").next())
            .expect("tty block");
        let rules: Vec<&str> = tty
            .lines()
            .filter(|l| l.contains("ATTRS{idVendor}"))
            .collect();
        assert!(rules.len() >= 5);
        for l in &rules {
            assert!(
                l.contains("GROUP=\"dialout\"") && l.contains("ID_MM_DEVICE_IGNORE"),
                "{l}"
            );
        }
        // Every rule names its subsystem itself (lintian reads rule by rule).
        for l in r.lines().filter(|l| l.contains("{idVendor}")) {
            assert!(l.starts_with("SUBSYSTEM==\""), "{l}");
        }
        // Sorted within the block.
        let mut sorted = rules.clone();
        sorted.sort();
        assert_eq!(rules, sorted);
        // pcscd's readers get no rule.
        assert!(!r.contains("ATTRS{idVendor}==\"072f\""));
        // Every label a GOTO names exists.
        for l in r.lines() {
            if let Some(rest) = l.split("GOTO=\"").nth(1) {
                let label = rest.split('"').next().unwrap_or_default();
                assert!(r.contains(&format!("LABEL=\"{label}\"")), "{label}");
            }
        }
    }
}
