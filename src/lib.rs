//! posbridge: a per-store hardware gateway. Devices in, normalized events out
//! to web POS pages over a guarded local API.
//!
//! Tests and `main` both start the daemon through [`run`].

pub mod api;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod config;
pub mod device;
pub mod event;
pub mod family;
pub mod fleet;
pub mod identify;
pub mod load;
pub mod metrics;
pub mod print;
pub mod qz;
pub mod storage;
pub mod sysfs;
pub mod tls;
pub mod transport;
pub mod uplink;

pub use config::Config;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for device tasks and streams to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Kernel send buffer per API connection: enough for hundreds of events, small
/// enough that a stalled client is noticed quickly and costs little memory.
const SEND_BUFFER: usize = 128 * 1024;

/// Runs the daemon on an already-bound listener until `shutdown` completes.
///
/// The listener's port is the one the Host guard accepts, so tests can bind
/// `127.0.0.1:0`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_reloadable(config, listener, shutdown, None).await
}

/// Where the running daemon's config file is, and the reload path (SIGHUP
/// and HQ's `config.apply` both send on `tx`).
pub struct ReloadHost {
    pub config_path: std::path::PathBuf,
    pub tx: tokio::sync::mpsc::Sender<fleet::commands::Reload>,
    pub rx: tokio::sync::mpsc::Receiver<fleet::commands::Reload>,
}

/// [`run`], taking new configs (already validated; `main` sends one per
/// SIGHUP) and applying what can change live.
// Over 80 lines: the daemon's start and stop in order, one call per part; the order is the point.
pub async fn run_reloadable(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reload: Option<ReloadHost>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let metrics = Arc::new(metrics::Metrics::default());
    let bus = event::Bus::new(
        &config.store.id,
        config.events.buffer,
        config.events.client_queue,
        metrics.clone(),
    );
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    if let Some(told) = storage::private_dir(&config.storage.dir)
        .map_err(|e| anyhow::anyhow!("storage.dir: {e}"))?
    {
        tracing::warn!("{told}");
    }
    // First: a certificate problem stops the start before any device is opened.
    let tls = start_tls(&config, &tracker, &cancel)?;
    let uplink = start_uplink(&config, &bus)?;
    let outbox = uplink.outbox.clone();
    // Before the devices, so the first call is already watched.
    let calls = calls::Calls::start(&config.storage.dir, &bus, &uplink, &tracker, &cancel);
    identify::start(&config, &bus, &uplink, &tracker, &cancel);
    let devices = device::Devices::start(&config.devices, &bus, &metrics, &tracker, &cancel)?;
    // After the devices, whose list holds the printers' /v1/devices entries;
    // nothing is served before both are up.
    let printers = print::Printers::start(&config, &devices, &bus, &tracker, &cancel)?;
    // HQ's `restart` stops the daemon the way SIGTERM does.
    let restart = CancellationToken::new();
    let (host, reload_rx) = match reload {
        Some(r) => (
            Some(fleet::commands::Host {
                config_path: r.config_path,
                reload: r.tx,
            }),
            Some(r.rx),
        ),
        None => (None, None),
    };
    let mut fleet = None;
    if let Some(relay) = &uplink.relay {
        relay.attach_printers(printers.clone());
        let parts = FleetParts {
            devices: &devices,
            printers: &printers,
            uplink: &uplink,
            boot: bus.boot(),
            stop: &restart,
        };
        let f = start_fleet(&config, host, parts)?;
        relay.attach_fleet(f.clone());
        fleet = Some(f);
        tracker.spawn(relay.clone().run(cancel.clone()));
    }
    let parts = qz::Parts {
        printers: printers.clone(),
        devices: devices.clone(),
        bus: bus.clone(),
        tls: tls.clone(),
        metrics: metrics.clone(),
    };
    let qz = qz::start(&config, parts, &tracker, &cancel).await?;
    let watched = devices.clone();
    if let Some(rx) = reload_rx {
        tracker.spawn(apply_reloads(
            rx,
            config.clone(),
            devices.clone(),
            fleet,
            cancel.clone(),
        ));
    }
    let api_cfg = config.api.clone();
    let call_log = calls.clone();
    let serve_metrics = metrics.clone();
    let watched_bus = bus.clone();
    tracing::info!(
        listen = %local,
        store = %config.store.id,
        boot = %bus.boot(),
        devices = config.devices.len(),
        tokens = config.api.tokens.len(),
        "posbridge started"
    );
    let state = api::AppState::new(api::Shared {
        guard: api::guard::Guard::new(&config.api, local.port()),
        config,
        bus,
        devices,
        metrics,
        outbox: uplink.outbox.clone(),
        uplink,
        calls,
        printers,
        qz,
        started: std::time::Instant::now(),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
    });
    let app = api::router(state);
    let stop = cancel.clone();
    // The listener is bound and every device task started: systemd
    // (Type=notify) may start what depends on us. No-op outside systemd.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    spawn_watchdog(watched_bus, watched, &tracker, &cancel);
    // Limits and TLS: see api/serve.rs.
    let opts = api::serve::ServeOptions {
        max_connections: api_cfg.max_connections,
        header_timeout: Duration::from_millis(api_cfg.header_timeout_ms),
        send_buffer: SEND_BUFFER,
        tls,
        metrics: serve_metrics,
    };
    let served = api::serve::serve(listener, app, opts, async move {
        tokio::select! {
            _ = shutdown => {}
            _ = restart.cancelled() => {}
        }
        tracing::info!("shutting down");
        stop.cancel();
    })
    .await;
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "some tasks did not stop within {:?}; exiting anyway",
            SHUTDOWN_GRACE
        );
    }
    call_log.flush().await;
    // PUBACKs the relay queued before it stopped are on disk before exit,
    // and the WAL is folded in before the process is gone.
    if let Err(e) = outbox.close().await {
        tracing::warn!(error = %e, "could not close the outbox cleanly; unrecorded PUBACKs send those transactions again");
    }
    served?;
    tracing::info!("posbridge stopped");
    Ok(())
}

/// With `api.tls`: the certificate (created or renewed now) and a daily
/// renewal check.
fn start_tls(
    config: &Config,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<Arc<tls::TlsState>>> {
    if !config.api.tls {
        return Ok(None);
    }
    let dir = config.storage.dir.join("tls");
    let state = tls::TlsState::open(&dir, config.api.tls_renew_days)
        .map_err(|e| anyhow::anyhow!("api.tls: {e}"))?;
    let renew = state.clone();
    let cancel = cancel.clone();
    tracker.spawn(async move {
        let day = Duration::from_secs(86_400);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + day, day);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let r = renew.clone();
            match tokio::task::spawn_blocking(move || r.renew_if_due()).await {
                Ok(Ok(true)) => tracing::info!("renewed the localhost certificate"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!("api.tls: renewing the certificate failed: {e}"),
                Err(e) => tracing::error!("api.tls: renewal task failed: {e}"),
            }
        }
    });
    Ok(Some(state))
}

/// Opens the outbox and member cache and, with `[uplink]`, makes the relay
/// (started once the printers are up, so it can take HQ's print jobs).
fn start_uplink(config: &Config, bus: &Arc<event::Bus>) -> anyhow::Result<Arc<uplink::Uplink>> {
    use uplink::outbox::{AckMode, Outbox};
    let dir = &config.storage.dir;
    let mode = match &config.uplink {
        Some(u) if u.ack == "hq" => AckMode::Hq,
        _ => AckMode::Broker,
    };
    let retain = Duration::from_secs(config.storage.retain_days.saturating_mul(86_400));
    let outbox = Outbox::open(dir, config.storage.max_backlog, mode, retain)
        .map_err(|e| anyhow::anyhow!("storage.dir: {e}"))?;
    let members = Arc::new(
        uplink::members::Members::open(dir, config.members.id_key.as_deref())
            .map_err(|e| anyhow::anyhow!("storage.dir: {e}"))?,
    );
    let status = Arc::new(uplink::RelayStatus::default());
    let relay = match &config.uplink {
        Some(u) => {
            let relay = uplink::mqtt::Relay::new(
                u,
                &config.store.id,
                bus.clone(),
                outbox.clone(),
                members.clone(),
                status.clone(),
            )
            .map_err(|e| anyhow::anyhow!(e))?;
            // Runs once the printers are attached (`run_reloadable`).
            Some(relay)
        }
        None => None,
    };
    Ok(Arc::new(uplink::Uplink {
        outbox,
        members,
        status,
        relay,
    }))
}

/// Pings systemd's watchdog (`WatchdogSec=`) at half its period, but only
/// while the bus answers and every device supervisor is still running: a
/// wedged daemon is restarted instead of lingering half-alive.
fn spawn_watchdog(
    bus: Arc<event::Bus>,
    devices: Arc<device::Devices>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let cancel = cancel.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(period / 2);
        let mut complained = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Taking the bus lock proves publishing is not stuck.
            let _ = bus.latest_seq();
            match devices.list().into_iter().find(|d| !d.supervised()) {
                None => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    complained = false;
                }
                Some(d) if !complained => {
                    tracing::error!(device = %d.cfg.id, "a device task has stopped; no more watchdog pings, systemd will restart the daemon");
                    complained = true;
                }
                Some(_) => {}
            }
        }
    });
}

/// What the fleet (inventory and HQ's commands) is built from.
struct FleetParts<'a> {
    devices: &'a Arc<device::Devices>,
    printers: &'a Arc<print::Printers>,
    uplink: &'a Arc<uplink::Uplink>,
    boot: &'a str,
    stop: &'a CancellationToken,
}

fn start_fleet(
    config: &Config,
    host: Option<fleet::commands::Host>,
    p: FleetParts<'_>,
) -> anyhow::Result<Arc<fleet::Fleet>> {
    let inventory = fleet::inventory::Sources {
        devices: p.devices.clone(),
        printers: p.printers.clone(),
        outbox: p.uplink.outbox.clone(),
        storage_dir: config.storage.dir.clone(),
        boot: p.boot.to_owned(),
        started: std::time::Instant::now(),
        config_hash: std::sync::Mutex::new(fleet::inventory::config_hash(config)),
        tls_expires: fleet::inventory::tls_expires(config),
    };
    let commands = fleet::commands::Commands::open(fleet::commands::Parts {
        config: config.clone(),
        host,
        devices: p.devices.clone(),
        printers: p.printers.clone(),
        status: p.uplink.status.clone(),
        stop: p.stop.clone(),
    })
    .map_err(|e| anyhow::anyhow!("storage.dir: {e}"))?;
    Ok(Arc::new(fleet::Fleet {
        inventory,
        commands,
    }))
}

/// Applies each reloaded config: the device list live (streams, the outbox
/// and every unchanged device carry on); for everything else it says what
/// needs a restart instead of applying half of it. Whoever sent it hears
/// what was done.
async fn apply_reloads(
    mut rx: tokio::sync::mpsc::Receiver<fleet::commands::Reload>,
    mut current: Config,
    devices: Arc<device::Devices>,
    fleet: Option<Arc<fleet::Fleet>>,
    cancel: CancellationToken,
) {
    loop {
        let fleet::commands::Reload {
            config: new,
            report,
        } = tokio::select! {
            _ = cancel.cancelled() => return,
            c = rx.recv() => match c { Some(c) => c, None => return },
        };
        let mut done = fleet::commands::Reloaded::default();
        let mut restart = Vec::new();
        // Compared by their Debug text: the sections are plain data.
        let differs =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        for (name, changed) in [
            ("store", differs(&current.store, &new.store)),
            ("api", differs(&current.api, &new.api)),
            ("storage", differs(&current.storage, &new.storage)),
            ("events", differs(&current.events, &new.events)),
            ("log", differs(&current.log, &new.log)),
            // Serialized, not Debug: Debug hides the password and most keys.
            (
                "uplink",
                toml::to_string(&current.uplink).ok() != toml::to_string(&new.uplink).ok(),
            ),
            ("qz", differs(&current.qz, &new.qz)),
            ("print", differs(&current.print, &new.print)),
            ("members", current.members.id_key != new.members.id_key),
            ("popup", differs(&current.popup, &new.popup)),
            (
                "member identification (card readers' identify)",
                identify::readers(&current) != identify::readers(&new),
            ),
        ] {
            if changed {
                restart.push(name);
            }
        }
        match devices.reload(&new.devices).await {
            Ok(r) => {
                tracing::info!(
                    added = ?r.added,
                    removed = ?r.removed,
                    changed = ?r.changed,
                    "config reloaded: devices applied"
                );
                if !r.kept.is_empty() {
                    tracing::warn!(printers = ?r.kept, "printer changes need a restart (systemctl restart posbridge); kept as they were");
                }
                (done.added, done.removed, done.changed) = (r.added, r.removed, r.changed);
                done.kept = r.kept;
            }
            Err(e) => {
                tracing::error!("config reload: devices not applied: {e:#}");
                done.error = Some(format!("devices not applied: {e:#}"));
            }
        }
        if !restart.is_empty() {
            tracing::warn!(sections = ?restart, "these sections changed and apply only after a restart (systemctl restart posbridge)");
        }
        done.restart_needed = restart.iter().map(|s| s.to_string()).collect();
        if let Some(f) = &fleet {
            let hash = fleet::inventory::config_hash(&new);
            *f.inventory
                .config_hash
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = hash;
        }
        if let Some(report) = report {
            let _ = report.send(done);
        }
        current = new;
    }
}
