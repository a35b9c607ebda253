//! The `posbridge` command line (contract §1).

use anyhow::Context;
use clap::{Parser, Subcommand};
use posbridge::config::{self, Config};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "posbridge",
    version,
    about = "Store hardware gateway for web POS pages"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Run {
        #[arg(long, env = "POSBRIDGE_CONFIG", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Validate the config; print every problem with its key; exit 1 on error.
    CheckConfig {
        #[arg(long, env = "POSBRIDGE_CONFIG", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Feed bytes into a device whose transport is "sim", through the running daemon's API.
    Simulate {
        /// The device id.
        device: String,
        /// Text to send (a line end is added unless --raw), or hex with --hex.
        payload: String,
        /// PAYLOAD is hex (e.g. "AA AA AA 96 69").
        #[arg(long)]
        hex: bool,
        /// Send the text exactly, without adding a line end.
        #[arg(long)]
        raw: bool,
        #[arg(long, env = "POSBRIDGE_CONFIG", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// API base URL (default: from the config's api.listen).
        #[arg(long)]
        url: Option<String>,
        /// A token with the admin scope, when tokens are configured.
        #[arg(long, env = "POSBRIDGE_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Install the local CA made for api.tls into the system store and the
    /// NSS databases of Chromium (~/.pki/nssdb) and Firefox, so browsers accept wss://.
    TrustCert {
        #[arg(long, env = "POSBRIDGE_CONFIG", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The CA file (default: storage.dir/tls/ca.pem).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Where update-ca-certificates looks for local CAs.
        #[arg(long, default_value = "/usr/local/share/ca-certificates")]
        system_dir: PathBuf,
        /// Leave the system store alone (e.g. when not root).
        #[arg(long)]
        no_system: bool,
        /// Install into this user's browsers, and leave their NSS files
        /// owned by them (default under sudo: the user who ran sudo).
        #[arg(long)]
        user: Option<String>,
        /// Home whose browser NSS databases get the CA (default: the user's
        /// home, else $HOME).
        #[arg(long)]
        home: Option<PathBuf>,
        /// NSS databases to use instead of the ones found under the home (repeatable).
        #[arg(long = "nss-db")]
        nss_dbs: Vec<PathBuf>,
        /// Leave the browsers' NSS databases alone.
        #[arg(long)]
        no_nss: bool,
        /// What rebuilds the system store after the copy (for tests).
        #[arg(long, default_value = "update-ca-certificates", hide = true)]
        update_command: String,
    },
    /// List the serial, hidraw, input and printer devices and PC/SC readers this
    /// machine sees, with the catalog entry and driver that would claim each.
    Devices {
        /// sysfs root (for tests and chroots).
        #[arg(long, default_value = "/sys", hide = true)]
        sysfs: PathBuf,
        /// /dev root (for tests and chroots).
        #[arg(long, default_value = "/dev", hide = true)]
        dev: PathBuf,
    },
    /// Check permissions, udev rules, pcscd, the broker and the config; say how to fix each problem.
    Doctor {
        #[arg(long, env = "POSBRIDGE_CONFIG", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        #[arg(long, default_value = "/sys", hide = true)]
        sysfs: PathBuf,
        #[arg(long, default_value = "/dev", hide = true)]
        dev: PathBuf,
        /// Where installed udev rules are looked for (repeatable).
        #[arg(long = "rules-dir", hide = true)]
        rules_dirs: Vec<PathBuf>,
        /// Judge device access for this user, with the unit's supplementary
        /// groups [default: posbridge when run as root, else yourself]
        #[arg(long)]
        user: Option<String>,
    },
    /// Print udev rules generated from the device catalog (udev/70-posbridge.rules).
    UdevRules,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run { config } => run(&config),
        Cmd::CheckConfig { config } => match posbridge::load::load(&config) {
            Ok(posbridge::load::Loaded {
                config: c,
                warnings,
            }) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: ok (store {}, {} device{})",
                    config.display(),
                    c.store.id,
                    c.devices.len(),
                    if c.devices.len() == 1 { "" } else { "s" }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Simulate {
            device,
            payload,
            hex,
            raw,
            config,
            url,
            token,
        } => match simulate(&device, &payload, hex, raw, &config, url, token) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("posbridge simulate: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::TrustCert {
            config,
            ca,
            system_dir,
            no_system,
            user,
            home,
            nss_dbs,
            no_nss,
            update_command,
        } => {
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
                    Ok(c) => posbridge::tls::ca_path(&c.storage.dir.join("tls")),
                    Err(e) => {
                        eprint!("{e}");
                        return ExitCode::FAILURE;
                    }
                },
            };
            let nss_dbs = match (no_nss, nss_dbs.is_empty(), home) {
                (true, _, _) => Vec::new(),
                (false, false, _) => nss_dbs,
                (false, true, Some(h)) => posbridge::tls::nss_dbs_in(&h),
                (false, true, None) => Vec::new(),
            };
            let targets = posbridge::tls::TrustTargets {
                system_dir: (!no_system).then_some(system_dir),
                update_command: (!no_system).then_some(update_command),
                nss_dbs,
                // Not root: certutil runs as the caller, whoever was named.
                nss_owner: for_user
                    .filter(|_| nix::unistd::geteuid().is_root())
                    .map(|u| (u.uid.as_raw(), u.gid.as_raw())),
            };
            match posbridge::tls::trust(&ca, &targets) {
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
        Cmd::Devices { sysfs, dev } => devices(&sysfs, &dev),
        Cmd::Doctor {
            config,
            sysfs,
            dev,
            rules_dirs,
            user,
        } => doctor(&config, &sysfs, &dev, rules_dirs, user),
        Cmd::UdevRules => match posbridge_drivers::catalog::Catalog::builtin() {
            Ok(c) => {
                print!("{}", c.udev_rules());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("posbridge udev-rules: the built-in catalog is broken: {e}");
                ExitCode::FAILURE
            }
        },
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

fn devices(sysfs: &std::path::Path, dev: &std::path::Path) -> ExitCode {
    let catalog = match posbridge_drivers::catalog::Catalog::builtin() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("posbridge devices: the built-in catalog is broken: {e}");
            return ExitCode::FAILURE;
        }
    };
    let nodes = posbridge::sysinfo::scan(sysfs, dev);
    if nodes.is_empty() {
        println!(
            "no serial, hidraw, input or printer devices under {}",
            sysfs.display()
        );
    }
    for line in posbridge::sysinfo::describe(&nodes, catalog) {
        println!("{line}");
    }
    match posbridge::sysinfo::pcsc_readers() {
        Ok(readers) if readers.is_empty() => println!("pcsc    (pcscd is running; no readers)"),
        Ok(readers) => {
            for r in readers {
                println!("pcsc    {r:<50} → driver pcsc (reader = \"{r}\")");
            }
        }
        Err(e) => println!("pcsc    ({e})"),
    }
    ExitCode::SUCCESS
}

fn doctor(
    config: &std::path::Path,
    sysfs: &std::path::Path,
    dev: &std::path::Path,
    rules_dirs: Vec<PathBuf>,
    user: Option<String>,
) -> ExitCode {
    use posbridge::sysinfo::{Finding, Who, SERVICE_USER};
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
    first.extend(posbridge::sysinfo::doctor(config, sysfs, dev, &dirs, &who));
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

fn init_tracing(level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let cap = tracing_subscriber::filter::filter_fn(own_or_quiet);
    // Logs go to stderr (journald captures it); colour only for a person at a terminal.
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry();
    // journald stamps lines itself; a second timestamp is noise.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        let fmt = fmt.without_time();
        registry.with(fmt.with_filter(cap).with_filter(env)).init();
    } else {
        registry.with(fmt.with_filter(cap).with_filter(env)).init();
    }
}

/// Other crates log what passes through them at debug and trace (WebSocket
/// frames, HTTP headers, MQTT packets): an ID card sent to an `idcard`
/// client, a token, a transaction. They stay at info whatever `log.level` or
/// `RUST_LOG` ask for; only posbridge's own code, which never logs payloads,
/// goes finer.
fn own_or_quiet(meta: &tracing::Metadata<'_>) -> bool {
    meta.target().starts_with("posbridge") || *meta.level() <= tracing::Level::INFO
}

fn run(path: &std::path::Path) -> ExitCode {
    let (config, warnings) = match posbridge::load::load(path) {
        Ok(l) => (l.config, l.warnings),
        Err(e) => {
            eprint!("{e}");
            eprintln!("posbridge: not starting until the config is fixed");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(&config.log.level);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("posbridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let addr = config.api.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("api.listen: cannot listen on {addr}"))?;
        // run() says READY=1 once the devices are started too.
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(reload_on_sighup(path.to_owned(), reload_tx));
        posbridge::run_reloadable(config, listener, shutdown_signal(), Some(reload_rx)).await
    });
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("posbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// SIGHUP: read the config again; a valid one is handed to the daemon, an
/// invalid one is refused with every problem named and the running config kept.
async fn reload_on_sighup(path: std::path::PathBuf, tx: tokio::sync::mpsc::Sender<Config>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; config changes need a restart");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
        let loaded = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || posbridge::load::load(&p)).await
        };
        match loaded {
            Ok(Ok(l)) => {
                for w in l.warnings {
                    tracing::warn!("{w}");
                }
                if tx.send(l.config).await.is_err() {
                    return;
                }
            }
            Ok(Err(e)) => {
                for line in e.to_string().lines().filter(|l| !l.trim().is_empty()) {
                    tracing::error!(
                        "config reload refused, the running config is kept: {}",
                        line.trim()
                    );
                }
            }
            Err(e) => tracing::error!("config reload failed: {e}"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, only a kill ends us; keep running.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

fn simulate(
    device: &str,
    payload: &str,
    hex: bool,
    raw: bool,
    config: &std::path::Path,
    url: Option<String>,
    token: Option<String>,
) -> anyhow::Result<()> {
    let base = match url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let c = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let a = c.api.listen;
            let host = if a.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else if a.is_ipv6() {
                format!("[{}]", a.ip())
            } else {
                a.ip().to_string()
            };
            format!("http://{host}:{}", a.port())
        }
    };
    let body = if hex {
        serde_json::json!({ "hex": payload })
    } else if raw || payload.ends_with('\n') || payload.ends_with('\r') {
        serde_json::json!({ "data": payload })
    } else {
        serde_json::json!({ "data": format!("{payload}\r\n") })
    };
    let endpoint = format!("{base}/v1/devices/{device}/simulate");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.post(&endpoint);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req
        .send_json(&body)
        .with_context(|| format!("cannot reach the daemon at {base} (is it running?)"))?;
    let status = resp.status();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    if status.is_success() {
        println!("{text}");
        Ok(())
    } else {
        anyhow::bail!("{status}: {text}")
    }
}
