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
    /// The service user does not exist (yet): access is not judged, only
    /// whether nodes are there.
    Missing { name: String },
}

impl Who {
    pub fn access(&self, path: &Path) -> Access {
        match self {
            Who::Me => access(path),
            Who::User { uid, gids, .. } => access_as(path, *uid, gids),
            Who::Missing { .. } if path.exists() => Access::Ok,
            Who::Missing { .. } => Access::NoNode,
        }
    }

    /// Whether `dir` lets this user create files in it: `None` when that
    /// cannot be judged (no such user).
    pub fn may_write_dir(&self, dir: &Path) -> Option<bool> {
        use std::os::unix::fs::MetadataExt;
        match self {
            Who::Missing { .. } => None,
            Who::Me => {
                use std::os::unix::ffi::OsStrExt;
                let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
                // SAFETY: a valid NUL-terminated path; access(2) only reads it.
                Some(unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0)
            }
            Who::User { uid, gids, .. } => {
                let m = std::fs::metadata(dir).ok()?;
                let bits = if *uid == 0 {
                    0o7
                } else if m.uid() == *uid {
                    m.mode() >> 6
                } else if gids.contains(&m.gid()) {
                    m.mode() >> 3
                } else {
                    m.mode()
                };
                Some(bits & 0o3 == 0o3)
            }
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
            Who::User { name, .. } | Who::Missing { name } => format!(" for user {name}"),
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

/// How much a finding matters: only problems make `doctor` exit 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    /// Worth knowing, nothing to fix (a port nothing uses).
    Info,
    Problem,
}

/// One `doctor` finding.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub level: Level,
    pub what: String,
    /// One line saying how to fix it (empty unless a problem).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl Finding {
    pub fn ok(what: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            what: what.into(),
            fix: String::new(),
        }
    }
    pub fn info(what: impl Into<String>) -> Finding {
        Finding {
            level: Level::Info,
            what: what.into(),
            fix: String::new(),
        }
    }
    pub fn problem(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Problem,
            what: what.into(),
            fix: fix.into(),
        }
    }
    pub fn is_problem(&self) -> bool {
        self.level == Level::Problem
    }
}

/// What the config uses, so a node nothing uses and the catalog does not
/// know is reported as information, not as a problem.
#[derive(Default)]
pub struct Used {
    paths: Vec<PathBuf>,
    usb: Vec<(u16, u16)>,
}

impl Used {
    pub fn by(config: &crate::Config) -> Used {
        let hex = posbridge_drivers::catalog::parse_hex16;
        Used {
            paths: config
                .devices
                .iter()
                .filter_map(|d| d.path.as_deref())
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p)))
                .collect(),
            usb: config
                .devices
                .iter()
                .filter_map(|d| d.usb_match.as_ref())
                .filter_map(|m| Some((hex(&m.vid)?, hex(&m.pid)?)))
                .collect(),
        }
    }

    fn uses(&self, n: &Node) -> bool {
        let real = std::fs::canonicalize(&n.dev_path).unwrap_or_else(|_| n.dev_path.clone());
        self.paths.contains(&real)
            || n.usb
                .as_ref()
                .is_some_and(|id| self.usb.contains(&(id.vid, id.pid)))
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
    used: &Used,
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
    if matches!(who, Who::Missing { .. }) {
        return out;
    }
    for n in scan(sys, dev) {
        let known = catalog_entry(catalog, &n).is_some();
        match who.access(&n.dev_path) {
            Access::PermissionDenied if !known && !used.uses(&n) => out.push(Finding::info(format!(
                "{}: permission denied{}; no device in the config uses it and the catalog does not know it",
                n.dev_path.display(),
                who.label()
            ))),
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
        Who::User { name, .. } | Who::Missing { name } => name.as_str(),
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
    let used = config.as_ref().map(Used::by).unwrap_or_default();
    out.extend(check_files(sys, dev, rules_dirs, catalog, who, &used));
    let Some(config) = config else {
        return out;
    };
    out.push(api_finding(&config.api));
    out.extend(storage_finding(&config.storage.dir, who));
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
        out.extend(broker_findings(u));
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

/// Whether a daemon answers on `api.listen` (any HTTP answer counts).
fn api_finding(api: &crate::config::ApiConfig) -> Finding {
    // A wildcard listen address answers on loopback too.
    let mut at = api.listen;
    if at.ip().is_unspecified() {
        at.set_ip(match at {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{at}/v1/health");
    let down = |why: String| {
        Finding::problem(
            format!("no daemon answers on {}: {why}", api.listen),
            "sudo systemctl start posbridge (journalctl -u posbridge -b says why it stopped)",
        )
    };
    if api.tls {
        // This build's client speaks no TLS: the port answering is the check.
        return match std::net::TcpStream::connect_timeout(&at, API_WAIT) {
            Ok(_) => Finding::ok(format!("a daemon listens on {} (TLS)", api.listen)),
            Err(e) => down(e.to_string()),
        };
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(API_WAIT))
        .http_status_as_error(false)
        // The daemon is on this machine: never through http_proxy.
        .proxy(None)
        .build()
        .into();
    match agent.get(&url).call() {
        Ok(r) => Finding::ok(format!(
            "the daemon answers on http://{}/ (HTTP {})",
            api.listen,
            r.status().as_u16()
        )),
        Err(e) => down(e.to_string()),
    }
}

const API_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where systemd's `StateDirectory=` puts the state (and makes it the
/// service user's, at each start).
const STATE_DIRECTORY: &str = "/var/lib/posbridge";

/// Whether the service can keep its stores in `storage.dir`.
fn storage_finding(dir: &Path, who: &Who) -> Vec<Finding> {
    let shown = dir.display();
    let state = Path::new(STATE_DIRECTORY);
    let mut out = Vec::new();
    let judging_service = !matches!(who, Who::Me);
    if judging_service && !dir.starts_with(state) {
        out.push(Finding::problem(
            format!("storage.dir {shown} is outside {STATE_DIRECTORY}, the only place the unit (ProtectSystem=strict) lets the service write"),
            format!("sudo systemctl edit posbridge, and add under [Service]: ReadWritePaths={shown}"),
        ));
    }
    if !dir.exists() {
        out.push(if dir == state {
            Finding::ok(format!(
                "storage.dir {shown} is created by systemd when the service starts"
            ))
        } else {
            Finding::problem(
                format!("storage.dir {shown} does not exist"),
                format!("sudo install -d -m 0700 -o {SERVICE_USER} -g {SERVICE_USER} {shown}"),
            )
        });
        return out;
    }
    out.push(match who.may_write_dir(dir) {
        Some(true) => Finding::ok(format!("storage.dir {shown} is writable{}", who.label())),
        Some(false) => Finding::problem(
            format!("storage.dir {shown} is not writable{}", who.label()),
            format!("sudo chown -R {SERVICE_USER}: {shown} && sudo chmod 0700 {shown}"),
        ),
        None => Finding::info(format!(
            "storage.dir {shown}: not judged without the service user"
        )),
    });
    out
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

/// One finding per broker. With several (`uplink.urls`), one that cannot
/// be reached is only a problem when none can: the store fails over.
fn broker_findings(u: &crate::config::UplinkConfig) -> Vec<Finding> {
    let brokers = match u.brokers() {
        Ok(b) => b,
        Err(e) => return vec![Finding::problem(e, "fix uplink.url / uplink.urls")],
    };
    let reach: Vec<(String, Result<(), String>)> = brokers
        .iter()
        .map(|(_, b)| {
            let target = format!("{}:{}", b.host, b.port);
            let r = broker_reachable(&target);
            (target, r)
        })
        .collect();
    let any = reach.iter().any(|(_, r)| r.is_ok());
    reach
        .into_iter()
        .map(|(target, r)| match r {
            Ok(()) => Finding::ok(format!("MQTT broker {target} is reachable")),
            Err(e) if any => Finding::info(format!(
                "MQTT broker {target} cannot be reached ({e}); the store uses the others in uplink.urls"
            )),
            Err(e) => Finding::problem(
                format!("MQTT broker {target} cannot be reached: {e}"),
                "check uplink.url(s), that the broker runs and that the firewall lets this machine reach that port",
            ),
        })
        .collect()
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

/// `posbridge doctor`: prints each finding and its fix (or, with `json`,
/// one JSON object); exit 1 on any problem, 2 on a bad `--user`.
pub fn command(
    config: &Path,
    sysfs: &Path,
    dev: &Path,
    rules_dirs: Vec<PathBuf>,
    user: Option<String>,
    json: bool,
) -> ExitCode {
    let mut findings = Vec::new();
    let who = match whose_access(user, &mut findings) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("posbridge doctor: --user: {e}");
            return ExitCode::from(2);
        }
    };
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
    let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    findings.extend(doctor(config, sysfs, dev, &dirs, &who));
    let problems = findings.iter().filter(|f| f.is_problem()).count();
    if json {
        print_json(&who, &findings, problems);
    } else {
        print_text(&who, &findings, problems);
    }
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Root passes every access check; what matters is the service's user. A
/// missing service user is one finding, not a verdict on every node.
fn whose_access(user: Option<String>, findings: &mut Vec<Finding>) -> Result<Who, String> {
    match user {
        Some(u) => Who::service(&u),
        None if nix::unistd::geteuid().is_root() => Ok(match Who::service(SERVICE_USER) {
            Ok(w) => w,
            Err(e) => {
                findings.push(Finding::problem(
                    format!("the service user: {e}; device and storage access are not judged until it exists"),
                    "install the posbridge package, or: sudo systemd-sysusers systemd/posbridge.sysusers",
                ));
                Who::Missing {
                    name: SERVICE_USER.to_owned(),
                }
            }
        }),
        None => Ok(Who::Me),
    }
}

fn print_text(who: &Who, findings: &[Finding], problems: usize) {
    if let Who::User { name, .. } = who {
        println!("(device access is judged for user {name} with the service's groups)");
    }
    for f in findings {
        match f.level {
            Level::Ok => println!("ok    {}", f.what),
            Level::Info => println!("info  {}", f.what),
            Level::Problem => println!("FAIL  {}\n      fix: {}", f.what, f.fix),
        }
    }
    match problems {
        0 => println!("no problems found"),
        1 => println!("1 problem found"),
        n => println!("{n} problems found"),
    }
}

fn print_json(who: &Who, findings: &[Finding], problems: usize) {
    let user = match who {
        Who::Me => None,
        Who::User { name, .. } | Who::Missing { name } => Some(name.as_str()),
    };
    let out = serde_json::json!({
        "user": user,
        "problems": problems,
        "findings": findings,
    });
    println!("{out:#}");
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
