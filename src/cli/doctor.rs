//! `posbridge doctor` and `devices`: what stands between the config and
//! working devices on this machine (permissions as the service user, udev
//! rules, devices present, pcscd, the broker, the config itself), each
//! problem with one fix line.

use crate::config::Transport;
use crate::sysfs::{access, access_as, find_node, find_usb_device, scan, Access, Node};
use posbridge_drivers::catalog::{Catalog, Entry};
use posbridge_drivers::hotplug::NodeKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The user the systemd unit runs the daemon as, and the unit's
/// `SupplementaryGroups=` (systemd/posbridge.service; a test keeps them equal).
pub const SERVICE_USER: &str = "posbridge";
pub const SERVICE_GROUPS: &[&str] = &["dialout", "plugdev"];

/// Whose access `doctor` judges. Run as root it must not judge root, which
/// passes every check, but the user the service runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// This process, by `access(2)`.
    Me,
    /// A user with these ids, by each node's owner, group and mode bits.
    /// ACLs are not read: udev's `uaccess` ACLs are for the seated desktop
    /// user, never for a system service.
    User {
        name: String,
        uid: u32,
        gids: Vec<u32>,
    },
}

impl Who {
    pub fn access(&self, path: &Path) -> Access {
        match self {
            Who::Me => access(path),
            Who::User { uid, gids, .. } => access_as(path, *uid, gids),
        }
    }

    /// `user` as the service runs: its own groups plus the unit's
    /// supplementary groups. `Err` when there is no such user.
    pub fn service(user: &str) -> Result<Who, String> {
        use nix::unistd::{getgrouplist, User};
        let u = User::from_name(user)
            .map_err(|e| format!("cannot look up user {user}: {e}"))?
            .ok_or_else(|| format!("user {user} does not exist"))?;
        let mut gids: Vec<u32> = std::ffi::CString::new(user)
            .ok()
            .and_then(|c| getgrouplist(&c, u.gid).ok())
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_else(|| vec![u.gid.as_raw()]);
        gids.extend(service_gids());
        gids.sort_unstable();
        gids.dedup();
        Ok(Who::User {
            name: user.to_owned(),
            uid: u.uid.as_raw(),
            gids,
        })
    }

    /// The service user before it exists (the package creates it): only the
    /// unit's supplementary groups count.
    pub fn service_to_be(user: &str) -> Who {
        Who::User {
            name: user.to_owned(),
            // An id that owns no node.
            uid: u32::MAX - 1,
            gids: service_gids(),
        }
    }

    fn label(&self) -> String {
        match self {
            Who::Me => String::new(),
            Who::User { name, .. } => format!(" for user {name}"),
        }
    }
}

fn service_gids() -> Vec<u32> {
    SERVICE_GROUPS
        .iter()
        .filter_map(|g| nix::unistd::Group::from_name(g).ok().flatten())
        .map(|g| g.gid.as_raw())
        .collect()
}

/// The catalog entry for a node's USB ids.
pub fn catalog_entry<'c>(catalog: &'c Catalog, node: &Node) -> Option<&'c Entry> {
    let id = node.usb.as_ref()?;
    catalog.lookup(id.vid, id.pid)
}

/// One `doctor` finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub what: String,
    /// One line saying how to fix it (empty when ok).
    pub fix: String,
}

impl Finding {
    pub fn ok(what: impl Into<String>) -> Finding {
        Finding {
            ok: true,
            what: what.into(),
            fix: String::new(),
        }
    }
    pub fn problem(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            ok: false,
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// Filesystem checks of `doctor`: device permissions and the udev rules.
/// `rules_dirs` are where installed rules may live (/etc/udev/rules.d,
/// /usr/lib/udev/rules.d, /lib/udev/rules.d).
pub fn check_files(
    sys: &Path,
    dev: &Path,
    rules_dirs: &[&Path],
    catalog: &Catalog,
    who: &Who,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let expected = catalog.udev_rules();
    let installed = rules_dirs
        .iter()
        .map(|d| d.join("70-posbridge.rules"))
        .find(|p| p.exists());
    match installed {
        None => out.push(Finding::problem(
            "udev rules are not installed",
            "posbridge udev-rules | sudo tee /etc/udev/rules.d/70-posbridge.rules && sudo udevadm control --reload && sudo udevadm trigger",
        )),
        Some(p) => match std::fs::read_to_string(&p) {
            Ok(text) if text == expected => {
                out.push(Finding::ok(format!("udev rules installed ({})", p.display())))
            }
            Ok(_) => out.push(Finding::problem(
                format!("{} differs from this build's catalog", p.display()),
                format!(
                    "posbridge udev-rules | sudo tee {} && sudo udevadm control --reload && sudo udevadm trigger",
                    p.display()
                ),
            )),
            Err(e) => out.push(Finding::problem(
                format!("{}: cannot read: {e}", p.display()),
                format!("sudo chmod 644 {}", p.display()),
            )),
        },
    }
    for n in scan(sys, dev) {
        let known = catalog_entry(catalog, &n).is_some();
        match who.access(&n.dev_path) {
            Access::PermissionDenied => {
                let fix = permission_fix(&n.dev_path, Some(n.kind), known, who);
                out.push(Finding::problem(
                    format!("{}: permission denied{}", n.dev_path.display(), who.label()),
                    fix,
                ))
            }
            Access::Ok if known => out.push(Finding::ok(format!(
                "{}: readable and writable{}",
                n.dev_path.display(),
                who.label()
            ))),
            _ => {}
        }
    }
    out
}

/// Groups it is safe to tell IT to add the service user to: each grants
/// one kind of peripheral. (`input`, `tty`, `disk`, `video` and the like
/// would hand the service every keyboard, terminal or disk.)
const NARROW_GROUPS: &[&str] = &["dialout", "plugdev", "lp", "uucp", "scanner"];

/// How to give the service a node it cannot open, from the node's group
/// and mode: joining a group helps only when that group may read and write,
/// and is suggested only for narrow groups.
pub fn permission_fix(path: &Path, kind: Option<NodeKind>, known: bool, who: &Who) -> String {
    use std::os::unix::fs::MetadataExt;
    let user = match who {
        Who::User { name, .. } => name.as_str(),
        Who::Me => SERVICE_USER,
    };
    let ours = if kind == Some(NodeKind::Tty) {
        "dialout"
    } else {
        "plugdev"
    };
    let group = std::fs::metadata(path)
        .ok()
        .filter(|m| m.mode() & 0o060 == 0o060)
        .and_then(|m| {
            nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid()))
                .ok()
                .flatten()
        })
        .map(|g| g.name)
        .filter(|g| NARROW_GROUPS.contains(&g.as_str()));
    match (group, known) {
        (Some(g), true) => format!("sudo usermod -aG {g} {user}, or install the udev rules (above)"),
        (Some(g), false) => format!("sudo usermod -aG {g} {user}"),
        (None, true) => {
            format!("install the udev rules (above): they give it group {ours}, mode 0660")
        }
        (None, false) => format!(
            "add a udev rule for it with GROUP=\"{ours}\", MODE=\"0660\" (or add the device to drivers/catalog.toml and install the rules)"
        ),
    }
}

/// PC/SC reader names, from pcscd.
pub fn pcsc_readers() -> Result<Vec<String>, String> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User)
        .map_err(|e| format!("cannot reach pcscd: {e}"))?;
    match ctx.list_readers_owned() {
        Ok(names) => Ok(names
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(format!("pcscd: {e}")),
    }
}

/// Everything `posbridge doctor` checks, in order. `config_path` is the file
/// checked; the roots are parameters so tests can use fake trees.
pub fn doctor(
    config_path: &Path,
    sys: &Path,
    dev: &Path,
    rules_dirs: &[&Path],
    who: &Who,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let catalog = match Catalog::builtin() {
        Ok(c) => c,
        Err(e) => {
            out.push(Finding::problem(
                format!("the built-in device catalog is broken: {e}"),
                "reinstall posbridge (this build is damaged)",
            ));
            return out;
        }
    };
    let config = load_config(config_path, &mut out);
    for w in crate::load::file_warnings(config_path) {
        out.push(Finding::problem(w.problem, w.fix));
    }
    out.extend(check_files(sys, dev, rules_dirs, catalog, who));
    let Some(config) = config else {
        return out;
    };
    for (i, d) in config.devices.iter().enumerate() {
        let label = format!("device {} ({} over {})", d.id, d.driver, d.transport_name());
        match device_present(i, d, sys, dev, catalog, who) {
            None => {}
            Some(Ok(n)) => out.push(Finding::ok(format!("{label}: found at {n}"))),
            // Auto devices are all the catalog could claim; absent is normal.
            Some(Err(_)) if d.id.starts_with(crate::device::hotplug::AUTO_PREFIX) => {}
            Some(Err((why, fix))) => out.push(Finding::problem(format!("{label}: {why}"), fix)),
        }
    }
    if config
        .devices
        .iter()
        .any(|d| d.transport() == Transport::Pcsc)
    {
        out.push(pcscd_finding());
    }
    if let Some(u) = &config.uplink {
        out.push(broker_finding(u));
    }
    out
}

/// The config, with a finding either way.
fn load_config(path: &Path, out: &mut Vec<Finding>) -> Option<crate::Config> {
    match crate::Config::load(path) {
        Ok(c) => {
            out.push(Finding::ok(format!("config {} is valid", path.display())));
            Some(c)
        }
        Err(e) => {
            let first = e
                .problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            out.push(Finding::problem(
                format!(
                    "config {}: {} problem(s), first: {first}",
                    path.display(),
                    e.problems.len()
                ),
                format!(
                    "run posbridge check-config --config {} and fix each key it names",
                    path.display()
                ),
            ));
            None
        }
    }
}

/// Whether configured device `i` is there and usable: `Ok(where)`, or
/// `Err((what is wrong, the fix))`; `None` for devices without a node
/// (sim, network, file, PC/SC) or without a way to find one.
fn device_present(
    i: usize,
    d: &crate::config::DeviceConfig,
    sys: &Path,
    dev: &Path,
    catalog: &Catalog,
    who: &Who,
) -> Option<Result<String, (String, String)>> {
    use Transport::{File, Pcsc, Sim, Tcp, Udp};
    let t = d.transport();
    let missing = |why: String| {
        Err((
            why,
            format!("plug it in, or correct device[{i}].path / match (posbridge devices lists what is there)"),
        ))
    };
    let denied = |path: &Path, kind: Option<NodeKind>, known: bool| {
        Err((
            format!("{}: permission denied{}", path.display(), who.label()),
            permission_fix(path, kind, known, who),
        ))
    };
    Some(match (&d.path, &d.usb_match, t) {
        (_, _, Sim | Tcp | Udp | File | Pcsc) | (None, None, _) => return None,
        (Some(p), _, _) => match who.access(Path::new(p)) {
            Access::Ok => Ok(p.clone()),
            // Found by path: the catalog cannot vouch for it.
            Access::PermissionDenied => {
                denied(Path::new(p), NodeKind::for_transport(t.name()), false)
            }
            Access::NoNode => missing(format!("{p} does not exist")),
        },
        (None, Some(m), _) => {
            let hex = posbridge_drivers::catalog::parse_hex16;
            let (v, p) = (hex(&m.vid)?, hex(&m.pid)?);
            let absent = || format!("no USB device {v:04x}:{p:04x} is plugged in");
            match crate::family::node_kind(d) {
                Some(NodeKind::UsbDevice) => {
                    match find_usb_device(sys, v, p, m.serial.as_deref()) {
                        Some(_) => Ok(format!("USB {v:04x}:{p:04x}")),
                        None => missing(absent()),
                    }
                }
                Some(k) => match find_node(sys, dev, k, v, p, m.serial.as_deref()) {
                    Some(n) if who.access(&n.dev_path) == Access::PermissionDenied => {
                        denied(&n.dev_path, Some(k), catalog.lookup(v, p).is_some())
                    }
                    Some(n) => Ok(n.dev_path.display().to_string()),
                    None => missing(absent()),
                },
                None => missing(absent()),
            }
        }
    })
}

fn pcscd_finding() -> Finding {
    match pcsc_readers() {
        Ok(r) => Finding::ok(format!("pcscd is running ({} reader(s))", r.len())),
        Err(e) => Finding::problem(
            format!("pcscd is needed by a pcsc device but {e}"),
            "sudo apt install pcscd && sudo systemctl enable --now pcscd.socket",
        ),
    }
}

fn broker_finding(u: &crate::config::UplinkConfig) -> Finding {
    let b = match u.broker() {
        Ok(b) => b,
        Err(e) => return Finding::problem(format!("uplink.url: {e}"), "fix uplink.url"),
    };
    let target = format!("{}:{}", b.host, b.port);
    match broker_reachable(&target) {
        Ok(()) => Finding::ok(format!("MQTT broker {target} is reachable")),
        Err(e) => Finding::problem(
            format!("MQTT broker {target} cannot be reached: {e}"),
            "check uplink.url, that the broker runs and that the firewall lets this machine reach that port",
        ),
    }
}

/// A TCP connection to the broker within 3 s (name resolution included).
fn broker_reachable(target: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let mut last = String::from("no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}

/// `posbridge doctor`: prints each finding and its fix; exit 1 on any problem.
pub fn command(
    config: &std::path::Path,
    sysfs: &std::path::Path,
    dev: &std::path::Path,
    rules_dirs: Vec<PathBuf>,
    user: Option<String>,
) -> ExitCode {
    // Root passes every access check; what matters is the service's user.
    let mut first = Vec::new();
    let who = match user {
        Some(u) => match Who::service(&u) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("posbridge doctor: --user: {e}");
                return ExitCode::from(2);
            }
        },
        None if nix::unistd::geteuid().is_root() => match Who::service(SERVICE_USER) {
            Ok(w) => w,
            Err(e) => {
                first.push(Finding::problem(
                    format!("the service user: {e}"),
                    "install the posbridge package, or: sudo systemd-sysusers systemd/posbridge.sysusers",
                ));
                Who::service_to_be(SERVICE_USER)
            }
        },
        None => Who::Me,
    };
    if let Who::User { name, .. } = &who {
        println!("(device access is judged for user {name} with the service's groups)");
    }
    let dirs: Vec<PathBuf> = if rules_dirs.is_empty() {
        [
            "/etc/udev/rules.d",
            "/usr/lib/udev/rules.d",
            "/lib/udev/rules.d",
        ]
        .iter()
        .map(PathBuf::from)
        .collect()
    } else {
        rules_dirs
    };
    let dirs: Vec<&std::path::Path> = dirs.iter().map(PathBuf::as_path).collect();
    first.extend(doctor(config, sysfs, dev, &dirs, &who));
    let findings = first;
    let mut problems = 0;
    for f in &findings {
        if f.ok {
            println!("ok    {}", f.what);
        } else {
            problems += 1;
            println!("FAIL  {}\n      fix: {}", f.what, f.fix);
        }
    }
    if problems == 0 {
        println!("no problems found");
        ExitCode::SUCCESS
    } else {
        println!(
            "{problems} problem{} found",
            if problems == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::tests::node_with;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn fixes_suggest_narrow_groups_only() {
        let who = Who::service_to_be("posbridge");
        // Group 0 (root) may read and write: joining root is never the fix.
        let (f, _, gid) = node_with(0o660);
        let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten()
            .map(|g| g.name)
            .unwrap_or_default();
        let fix = permission_fix(f.path(), Some(NodeKind::Tty), true, &who);
        if NARROW_GROUPS.contains(&group.as_str()) {
            assert!(
                fix.starts_with(&format!("sudo usermod -aG {group} posbridge")),
                "{fix}"
            );
        } else {
            assert_eq!(
                fix,
                "install the udev rules (above): they give it group dialout, mode 0660"
            );
        }
        let fix = permission_fix(f.path(), Some(NodeKind::Hidraw), false, &who);
        if !NARROW_GROUPS.contains(&group.as_str()) {
            assert!(
                fix.starts_with("add a udev rule for it with GROUP=\"plugdev\""),
                "{fix}"
            );
        }
        // Only the group's bits matter: 0600 is never fixed by a group.
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let fix = permission_fix(f.path(), Some(NodeKind::Tty), true, &who);
        assert_eq!(
            fix,
            "install the udev rules (above): they give it group dialout, mode 0660"
        );
    }
}
