//! Loading the config from the machine: the file is read and parsed by
//! `config`, which looks at nothing else; the checks that need the machine
//! (who may change the file) are here. `run`, `check-config`, the SIGHUP
//! reload and `doctor` all go through [`load`].

use crate::config::{Config, ConfigError, Draft, Problem};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// A config that parsed, and what is wrong around it.
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<FileWarning>,
}

/// Someone besides root and the daemon's user can change what the config
/// says: add an allowed origin or a token, or point the uplink elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWarning {
    /// What is wrong, naming the file or directory.
    pub problem: String,
    /// The command that fixes it.
    pub fix: String,
}

impl std::fmt::Display for FileWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; run: {}", self.problem, self.fix)
    }
}

/// Reads, parses and validates the config at `path` (with the process
/// environment's overrides), and checks who can change it.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let config = Config::load(path)?;
    Ok(Loaded {
        config,
        warnings: file_warnings(path),
    })
}

impl Config {
    /// Reads the file at `path` and applies the process environment's overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source: source.clone(),
            problems: vec![Problem {
                key: String::new(),
                message: format!("cannot read the config file: {e}"),
            }],
        })?;
        Self::parse(&text, std::env::vars(), &source)
    }

    /// Parses TOML text, applies `POSBRIDGE__…` overrides from `env`, and
    /// validates all of it: the text (`config`), then each device against its
    /// driver family and what must exist on the machine. Every problem of
    /// both steps is reported together.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        source: &str,
    ) -> Result<Config, ConfigError> {
        let mut draft = Config::draft(text, env, source)?;
        check_families(&mut draft);
        check_files(&mut draft);
        draft.finish()
    }
}

/// Step two for devices: `[devices] auto` adds the catalog's, each gets its
/// family's default transport, and each family checks its device's keys.
fn check_families(draft: &mut Draft) {
    fill_default_transports(draft);
    if draft.config.plug.auto {
        match crate::device::hotplug::auto_devices(&draft.config.devices) {
            Ok(extra) => {
                let first = draft.config.devices.len();
                draft.config.devices.extend(extra);
                fill_default_transports(draft);
                check_added_ids(draft, first);
            }
            Err(message) => draft.problem("devices.auto".into(), message),
        }
    }
    for n in 0..draft.config.devices.len() {
        for (k, why) in crate::family::check(&draft.config.devices[n]) {
            let key = draft.device_key(n, &k);
            draft.problem(key, why);
        }
    }
}

/// A device that names no transport gets its family's first.
fn fill_default_transports(draft: &mut Draft) {
    for d in &mut draft.config.devices {
        if d.transport.is_none() {
            d.transport =
                crate::family::find(&d.driver).and_then(|f| f.transports.first().copied());
        }
    }
}

/// The ids `[devices] auto` gave devices from `first` on: valid, and not one
/// a configured device already has (step one checked the configured ones).
fn check_added_ids(draft: &mut Draft, first: usize) {
    let mut problems = Vec::new();
    for n in first..draft.config.devices.len() {
        let id = &draft.config.devices[n].id;
        let taken = draft.config.devices[..n].iter().any(|d| &d.id == id);
        if !crate::config::is_id(id) {
            problems.push((n, "must be 1-64 characters of A-Z a-z 0-9 . _ -".to_owned()));
        } else if taken {
            problems.push((n, format!("duplicate device id {id:?}")));
        }
    }
    for (n, why) in problems {
        let key = draft.device_key(n, "id");
        draft.problem(key, why);
    }
}

/// `[qz]` beside the devices: the names pages use must each mean one
/// device, the default printer must be one, and the site certificate must
/// hold an RSA key.
fn check_qz(draft: &mut Draft) {
    let mut problems = Vec::new();
    let c = &draft.config;
    for (group, which) in [
        ("printer", crate::family::print_worker as fn(&_) -> bool),
        ("port", crate::family::takes_bytes),
    ] {
        let members: Vec<(usize, &crate::config::DeviceConfig)> = c
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| which(d))
            .collect();
        for (n, d) in &members {
            let Some(name) = crate::family::qz_name_of(d) else {
                continue;
            };
            let clash = members.iter().find(|(m, o)| {
                m != n && (o.id == name || (m < n && crate::family::qz_name_of(o) == Some(name)))
            });
            if let Some((_, o)) = clash {
                problems.push((
                    draft.device_key(*n, "qz_name"),
                    format!(
                        "{name:?} is already the name of {group} {:?} on the QZ listener",
                        o.id
                    ),
                ));
            }
        }
    }
    if let Some(want) = &c.qz.default_printer {
        let found = c
            .devices
            .iter()
            .filter(|d| crate::family::print_worker(d))
            .any(|d| d.id == *want || crate::family::qz_name_of(d) == Some(want));
        if !found {
            problems.push((
                "qz.default_printer".into(),
                format!("{want:?} is not the id or qz_name of an escpos device"),
            ));
        }
    }
    if let Some(path) = &c.qz.certificate {
        if let Err(e) = crate::qz::sign::SiteCert::load(path) {
            problems.push(("qz.certificate".into(), e));
        }
    }
    for (k, why) in problems {
        draft.problem(k, why);
    }
}

/// Step two for files the config names: they must be there.
fn check_files(draft: &mut Draft) {
    check_printer_dirs(draft);
    check_qz(draft);
    check_logos(draft);
    let Some(u) = &draft.config.uplink else {
        return;
    };
    let mut missing = Vec::new();
    for (k, p) in [("ca", &u.ca), ("cert", &u.cert), ("key", &u.key)] {
        if let Some(p) = p {
            if let Err(e) = std::fs::metadata(p) {
                missing.push((format!("uplink.{k}"), format!("{}: {e}", p.display())));
            }
        }
    }
    for (k, why) in missing {
        draft.problem(k, why);
    }
}

/// A `file` printer writes into a directory that must exist (the daemon
/// creates only `storage.dir`); without this it passed check-config and
/// failed at the first receipt.
fn check_printer_dirs(draft: &mut Draft) {
    let storage = draft.config.storage.dir.clone();
    let mut missing = Vec::new();
    for (n, d) in draft.config.devices.iter().enumerate() {
        if d.transport() != crate::config::Transport::File {
            continue;
        }
        let Some(dir) = d.path.as_deref().and_then(|p| Path::new(p).parent()) else {
            continue;
        };
        if dir.as_os_str().is_empty() || dir == storage || dir.is_dir() {
            continue;
        }
        missing.push((n, format!("the directory {} does not exist", dir.display())));
    }
    for (n, why) in missing {
        let key = draft.device_key(n, "path");
        draft.problem(key, why);
    }
}

/// Each `[[print.logo]]` file must be there and be a picture a receipt can
/// carry: refused now rather than at the first receipt that names it.
fn check_logos(draft: &mut Draft) {
    let max = draft.config.print.max_image_pixels;
    let problems: Vec<(String, String)> = draft
        .config
        .print
        .logos
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            crate::print::read_logo(&l.file, max)
                .err()
                .map(|why| (format!("print.logo[{i}].file"), why))
        })
        .collect();
    for (k, why) in problems {
        draft.problem(k, why);
    }
}

/// Symlinks followed at most; the kernel gives up at 40 too.
const MAX_LINKS: usize = 40;

/// Who besides root and this process's user could change the config at
/// `path`: the file itself (its mode and owner, through any symlinks), and
/// every directory on the way to it and to each link in between (a directory
/// others can write lets them swap the file, unless its sticky bit stops
/// them; the sticky bit means nothing on a file).
pub fn file_warnings(path: &Path) -> Vec<FileWarning> {
    let trusted = [0, nix::unistd::geteuid().as_raw()];
    let (file, dirs) = places(path);
    let mut out = Vec::new();
    if let Ok(m) = std::fs::metadata(&file) {
        let shown = file.display();
        if m.mode() & 0o022 != 0 {
            out.push(FileWarning {
                problem: format!(
                    "{shown} is writable by other users (mode {:04o}), who could add allowed origins or tokens",
                    m.mode() & 0o7777
                ),
                fix: format!("chmod go-w {shown}"),
            });
        }
        if !trusted.contains(&m.uid()) {
            out.push(FileWarning {
                problem: format!(
                    "{shown} belongs to {}, who could change it to add allowed origins or tokens",
                    user_name(m.uid())
                ),
                fix: format!("chown root {shown}"),
            });
        }
    }
    for dir in dirs {
        let Ok(m) = std::fs::metadata(&dir) else {
            continue;
        };
        let shown = dir.display();
        if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            out.push(FileWarning {
                problem: format!(
                    "{shown} (on the way to the config) is writable by other users (mode {:04o}), who could replace the config",
                    m.mode() & 0o7777
                ),
                fix: format!("chmod go-w {shown}"),
            });
        }
        if !trusted.contains(&m.uid()) {
            out.push(FileWarning {
                problem: format!(
                    "{shown} (on the way to the config) belongs to {}, who could replace the config",
                    user_name(m.uid())
                ),
                fix: format!("chown root {shown}"),
            });
        }
    }
    out
}

/// The file `path` finally names, and every directory whose entries decide
/// what that is: the ancestors of each link in the chain, as written and
/// as resolved.
fn places(path: &Path) -> (PathBuf, BTreeSet<PathBuf>) {
    let mut dirs = BTreeSet::new();
    let mut at = absolute(path);
    for _ in 0..MAX_LINKS {
        dirs.extend(at.ancestors().skip(1).map(Path::to_path_buf));
        if let Some(real) = at.parent().and_then(|p| p.canonicalize().ok()) {
            dirs.extend(real.ancestors().map(Path::to_path_buf));
            if let Some(name) = at.file_name() {
                at = real.join(name);
            }
        }
        match std::fs::read_link(&at) {
            Ok(target) => {
                let base = at.parent().map(Path::to_path_buf).unwrap_or_default();
                at = lexical(&base.join(target));
            }
            Err(_) => break,
        }
    }
    dirs.retain(|d| !d.as_os_str().is_empty());
    (at, dirs)
}

fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    lexical(&joined)
}

/// `.` and `..` taken out without touching the disk (the directories they
/// pass through are then checked as they resolve).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(u)) => format!("user {} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A private folder (0700) under the test's temporary directory.
    fn private() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().expect("tmp");
        chmod(t.path(), 0o700);
        let root = t.path().to_path_buf();
        (t, root)
    }

    fn problems(path: &Path) -> Vec<String> {
        file_warnings(path).into_iter().map(|w| w.problem).collect()
    }

    #[test]
    fn a_private_config_has_no_warning() {
        let (_t, root) = private();
        let f = root.join("c.toml");
        std::fs::write(&f, "").expect("write");
        chmod(&f, 0o640);
        assert_eq!(problems(&f), Vec::<String>::new());
    }

    #[test]
    fn a_1666_file_is_writable_the_sticky_bit_exempts_directories_only() {
        let (_t, root) = private();
        let f = root.join("c.toml");
        std::fs::write(&f, "").expect("write");
        chmod(&f, 0o1666);
        let p = problems(&f);
        assert!(p.len() == 1 && p[0].contains("mode 1666"), "{p:?}");
        // A sticky world-writable directory (like /tmp) is not a warning.
        let sticky = root.join("sticky");
        std::fs::create_dir(&sticky).expect("mkdir");
        chmod(&sticky, 0o1777);
        let g = sticky.join("c.toml");
        std::fs::write(&g, "").expect("write");
        chmod(&g, 0o600);
        assert_eq!(problems(&g), Vec::<String>::new());
    }

    #[test]
    fn a_0777_grandparent_is_found() {
        let (_t, root) = private();
        let mid = root.join("open");
        let dir = mid.join("etc");
        std::fs::create_dir_all(&dir).expect("mkdir");
        chmod(&mid, 0o777);
        let f = dir.join("c.toml");
        std::fs::write(&f, "").expect("write");
        chmod(&f, 0o600);
        let p = problems(&f);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(&format!("{} (on the way", mid.display())),
            "{p:?}"
        );
    }

    #[test]
    fn a_symlinked_config_is_judged_where_it_points_and_where_the_link_is() {
        let (_t, root) = private();
        let target_dir = root.join("real");
        std::fs::create_dir(&target_dir).expect("mkdir");
        let target = target_dir.join("c.toml");
        std::fs::write(&target, "").expect("write");
        chmod(&target, 0o600);
        let link_dir = root.join("links");
        std::fs::create_dir(&link_dir).expect("mkdir");
        let link = link_dir.join("posbridge.toml");
        std::os::unix::fs::symlink("../real/c.toml", &link).expect("symlink");
        assert_eq!(problems(&link), Vec::<String>::new());
        chmod(&target_dir, 0o777);
        let p = problems(&link);
        assert!(
            p.len() == 1 && p[0].starts_with(&target_dir.display().to_string()),
            "{p:?}"
        );
        chmod(&target_dir, 0o700);
        chmod(&link_dir, 0o777);
        let p = problems(&link);
        assert!(
            p.len() == 1 && p[0].starts_with(&link_dir.display().to_string()),
            "{p:?}"
        );
    }

    /// Root may hand a file to another user; only root can run this part.
    #[test]
    fn a_config_owned_by_another_user_is_found() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let (_t, root) = private();
        let f = root.join("c.toml");
        std::fs::write(&f, "").expect("write");
        chmod(&f, 0o644);
        // uid 65534 is nobody on Debian.
        std::os::unix::fs::chown(&f, Some(65534), None).expect("chown");
        let p = problems(&f);
        assert!(p.len() == 1 && p[0].contains("(uid 65534)"), "{p:?}");
        std::os::unix::fs::chown(&root, Some(65534), None).expect("chown");
        let p = problems(&f);
        assert_eq!(p.len(), 2, "the file and its folder: {p:?}");
    }
}
