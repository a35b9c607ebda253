//! The `posbridge` command line (contract §1).

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use posbridge::cli;
use posbridge::config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "posbridge",
    version,
    // `posbridge COMMAND --help` and the manual pages say the same.
    disable_help_subcommand = true,
    about = "Store hardware gateway for web POS pages",
    long_about = "posbridge reads a store counter's devices (card readers, scanners, ID-card \
readers, caller-ID boxes, dongles), serves their events to web POS pages on 127.0.0.1 over \
WebSocket and HTTP, prints receipts, keeps the pages' transactions durably and relays them \
to HQ over MQTT.",
    after_long_help = "Files: /etc/posbridge/posbridge.toml (the config), /var/lib/posbridge \
(the stores), /lib/udev/rules.d/70-posbridge.rules. Environment: POSBRIDGE_CONFIG names the \
config file; POSBRIDGE__SECTION__KEY overrides one value; RUST_LOG overrides log.level. \
Documentation: /usr/share/doc/posbridge (README for store IT, DEVELOPERS for POS developers, \
CONTRACT)."
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
        /// When valid, print the config in effect (file plus environment,
        /// defaults filled in, secrets redacted).
        #[arg(long)]
        print: bool,
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
    TrustCert(cli::trust_cert::Args),
    /// List the serial, hidraw, input and printer devices and PC/SC readers this
    /// machine sees, with the catalog entry and driver that would claim each.
    Devices {
        /// sysfs root (for tests and chroots).
        #[arg(long, default_value = "/sys", hide = true)]
        sysfs: PathBuf,
        /// /dev root (for tests and chroots).
        #[arg(long, default_value = "/dev", hide = true)]
        dev: PathBuf,
        /// One JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Check the config, permissions, udev rules, the running daemon, storage.dir, pcscd and the broker; say how to fix each problem.
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
        /// One JSON object ({user, problems, findings: [{level, what, fix}]}) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print udev rules generated from the device catalog (udev/70-posbridge.rules).
    UdevRules,
    /// Write the manual pages (man/) and shell completions (completions/)
    /// into DIR, made from this command line's own definition.
    #[command(hide = true)]
    Generate { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run { config } => run(&config),
        Cmd::CheckConfig { config, print } => cli::check_config(&config, print),
        Cmd::Simulate {
            device,
            payload,
            hex,
            raw,
            config,
            url,
            token,
        } => match cli::simulate::send(&device, &payload, hex, raw, &config, url, token) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("posbridge simulate: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::TrustCert(args) => cli::trust_cert::command(args),
        Cmd::Devices { sysfs, dev, json } => cli::devices::command(&sysfs, &dev, json),
        Cmd::Doctor {
            config,
            sysfs,
            dev,
            rules_dirs,
            user,
            json,
        } => cli::doctor::command(&config, &sysfs, &dev, rules_dirs, user, json),
        Cmd::UdevRules => cli::udev_rules(),
        Cmd::Generate { dir } => match generate(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("posbridge generate: {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// AppStream metadata announcing the USB devices the udev rules open up
/// (software centres and `appstreamcli what-provides modalias` read it).
fn metainfo() -> String {
    let provides: String = posbridge_drivers::catalog::Catalog::builtin()
        .map(|c| c.modaliases())
        .unwrap_or_default()
        .iter()
        .map(|m| format!("    <modalias>{m}</modalias>\n"))
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<component type="service">
  <id>io.github.posbridge.posbridge</id>
  <metadata_license>MIT</metadata_license>
  <project_license>MIT OR Apache-2.0</project_license>
  <name>posbridge</name>
  <summary>Store hardware gateway for web POS pages</summary>
  <description>
    <p>Reads a store counter's card readers, scanners, ID-card readers, caller-ID boxes and dongles, and serves their events to web POS pages on 127.0.0.1.</p>
  </description>
  <url type="homepage">https://github.com/posbridge/posbridge</url>
  <launchable type="service">posbridge.service</launchable>
  <provides>
{provides}  </provides>
</component>
"#
    )
}

/// posbridge(8) and a page per command (posbridge-run(8), …), and the bash,
/// zsh and fish completions; the package installs them.
fn generate(dir: &std::path::Path) -> std::io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = Cli::command();
    let page = |cmd: clap::Command, name: &str| -> std::io::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd)
            .title(name.to_uppercase())
            .section("8")
            .manual("posbridge")
            .source(format!("posbridge {}", env!("CARGO_PKG_VERSION")))
            .render(&mut out)?;
        std::fs::write(man.join(format!("{name}.8")), out)
    };
    page(cmd.clone(), "posbridge")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("posbridge-{}", sub.get_name());
        let bin = format!("posbridge {}", sub.get_name());
        page(sub.clone().display_name(name.clone()).bin_name(bin), &name)?;
    }
    let meta = dir.join("metainfo");
    std::fs::create_dir_all(&meta)?;
    std::fs::write(
        meta.join("io.github.posbridge.posbridge.metainfo.xml"),
        metainfo(),
    )?;
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "posbridge"),
        (Shell::Zsh, "_posbridge"),
        (Shell::Fish, "posbridge.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "posbridge", &mut out);
        std::fs::write(completions.join(file), out)?;
    }
    Ok(())
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
    // The same lines, kept in memory for HQ's `log.tail` (UTC times, no colour).
    let ring = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(false)
        .with_writer(posbridge::fleet::log::MakeRing)
        .with_filter(tracing_subscriber::filter::filter_fn(own_or_quiet))
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    let registry = tracing_subscriber::registry().with(ring);
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
    // First, so a log read from its top says what runs, from where, and where to reach it.
    let scheme = if config.api.tls { "https" } else { "http" };
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        api = %format!("{scheme}://{}/", config.api.listen),
        "posbridge starting"
    );
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
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(reload_on_sighup(path.to_owned(), tx.clone()));
        let host = posbridge::ReloadHost {
            config_path: path.to_owned(),
            tx,
            rx,
        };
        posbridge::run_reloadable(config, listener, shutdown_signal(), Some(host)).await
    });
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    match result {
        // HQ asked for a restart: systemd starts the daemon again.
        Ok(()) if posbridge::fleet::restart_requested() => {
            ExitCode::from(posbridge::fleet::RESTART_EXIT)
        }
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
async fn reload_on_sighup(
    path: std::path::PathBuf,
    tx: tokio::sync::mpsc::Sender<posbridge::fleet::commands::Reload>,
) {
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
                let reload = posbridge::fleet::commands::Reload {
                    config: l.config,
                    report: None,
                };
                if tx.send(reload).await.is_err() {
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
