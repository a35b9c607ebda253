//! `posbridge trust-cert`: install the local CA made for `api.tls` where the
//! cashier's browsers look (the system store, Chromium's and Firefox's NSS
//! databases), as that user.

use crate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// The command's arguments (see `posbridge trust-cert --help`).
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, env = "POSBRIDGE_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// The CA file (default: storage.dir/tls/ca.pem).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Where update-ca-certificates looks for local CAs.
    #[arg(long, default_value = "/usr/local/share/ca-certificates")]
    pub system_dir: PathBuf,
    /// Leave the system store alone (e.g. when not root).
    #[arg(long)]
    pub no_system: bool,
    /// Install into this user's browsers, and leave their NSS files
    /// owned by them (default under sudo: the user who ran sudo).
    #[arg(long)]
    pub user: Option<String>,
    /// Home whose browser NSS databases get the CA (default: the user's
    /// home, else $HOME).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// NSS databases to use instead of the ones found under the home (repeatable).
    #[arg(long = "nss-db")]
    pub nss_dbs: Vec<PathBuf>,
    /// Leave the browsers' NSS databases alone.
    #[arg(long)]
    pub no_nss: bool,
    /// What rebuilds the system store after the copy (for tests).
    #[arg(long, default_value = "update-ca-certificates", hide = true)]
    pub update_command: String,
}

pub fn command(a: Args) -> ExitCode {
    let Args {
        config,
        ca,
        system_dir,
        no_system,
        user,
        home,
        nss_dbs,
        no_nss,
        update_command,
    } = a;

    // Paths given by hand may not be the sudo user's: only a named
    // --user, or the sudo user's home found from passwd, makes certutil
    // run as them (as root, other paths run as whoever owns them).
    let user_named = user.is_some();
    let paths_given = home.is_some() || !nss_dbs.is_empty();
    let for_user = match trust_cert_user(user) {
        Ok(u) => u.filter(|_| user_named || !paths_given),
        Err(e) => {
            eprintln!("posbridge trust-cert: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(u) = &for_user {
        if !no_nss {
            println!("for user {} ({})", u.name, u.dir.display());
        }
    }
    let home = home
        .or_else(|| for_user.as_ref().map(|u| u.dir.clone()))
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from));
    let ca = match ca {
        Some(ca) => ca,
        None => match Config::load(&config) {
            Ok(c) => crate::tls::ca_path(&c.storage.dir.join("tls")),
            Err(e) => {
                eprint!("{e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let nss_dbs = match (no_nss, nss_dbs.is_empty(), home) {
        (true, _, _) => Vec::new(),
        (false, false, _) => nss_dbs,
        (false, true, Some(h)) => crate::tls::nss_dbs_in(&h),
        (false, true, None) => Vec::new(),
    };
    let targets = crate::tls::TrustTargets {
        system_dir: (!no_system).then_some(system_dir),
        update_command: (!no_system).then_some(update_command),
        nss_dbs,
        // Not root: certutil runs as the caller, whoever was named.
        nss_owner: for_user
            .filter(|_| nix::unistd::geteuid().is_root())
            .map(|u| (u.uid.as_raw(), u.gid.as_raw())),
    };
    match crate::tls::trust(&ca, &targets) {
        Ok(done) => {
            for d in done {
                println!("trusted: {d}");
            }
            println!("restart the browsers so they see the new CA");
            ExitCode::SUCCESS
        }
        Err(lines) => {
            for l in lines {
                eprintln!("posbridge trust-cert: {l}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Whose browsers `trust-cert` serves: the one named, or under sudo the
/// user who ran it (root's own NSS databases are of no use to a cashier).
fn trust_cert_user(name: Option<String>) -> Result<Option<nix::unistd::User>, String> {
    use nix::unistd::{geteuid, User};
    let root = geteuid().is_root();
    let name = match name {
        Some(n) => n,
        None => match std::env::var("SUDO_USER") {
            Ok(n) if root && !n.is_empty() && n != "root" => n,
            _ => return Ok(None),
        },
    };
    let user = User::from_name(&name)
        .map_err(|e| format!("cannot look up user {name:?}: {e}"))?
        .ok_or_else(|| format!("no user {name:?} on this machine"))?;
    if !root && user.uid != geteuid() {
        return Err(format!(
            "only root can install into {name:?}'s browsers: run it with sudo"
        ));
    }
    Ok(Some(user))
}
