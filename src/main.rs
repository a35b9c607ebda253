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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run { config } => run(&config),
        Cmd::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                if let Some(w) = Config::permission_warning(&config) {
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
    }
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Logs go to stderr (journald captures it); colour only for a person at a terminal.
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // journald stamps lines itself; a second timestamp is noise.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        fmt.without_time().init();
    } else {
        fmt.init();
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            eprintln!("posbridge: not starting until the config is fixed");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(&config.log.level);
    if let Some(w) = Config::permission_warning(path) {
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
        posbridge::run(config, listener, shutdown_signal()).await
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
