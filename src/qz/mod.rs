//! The QZ Tray listener (`[qz]`): pages written for qz-tray.js connect to
//! `ws://localhost:8182` (and `wss://…:8181` with `api.tls`) and print
//! through posbridge's printers, behind the API's guards.
//!
//! Each connection is a [`session`]; the protocol itself (frames, print and
//! serial data, statuses) is sans-IO in `drivers::qz`. What differs from QZ
//! Tray on purpose: loopback only; Host must be a loopback name with the
//! port (so `localhost.qz.io` is refused); Origin must be in
//! `api.allowed_origins`; with API tokens, only `qz.allowed_origins` may
//! print; with `qz.certificate`, a call without a valid signature is refused
//! (QZ Tray only shows a dialog); files, network hosts, USB and HID are not
//! reachable from pages.

mod session;
pub mod sign;

use crate::api::guard::Guard;
use crate::config::Config;
use crate::device::Devices;
use crate::event::Bus;
use crate::print::Printers;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The largest frame a page may send: a 1 MiB job as base64, with room.
const MAX_FRAME: usize = 2 * 1024 * 1024;

/// What every QZ session shares.
pub(crate) struct Shared {
    guard: Guard,
    /// The `wss://` listener's guard (its own port), when there is one.
    secure_guard: Option<Guard>,
    tokens: bool,
    allowed: Vec<String>,
    pub(crate) site: Option<sign::SiteCert>,
    pub(crate) printers: Arc<Printers>,
    pub(crate) devices: Arc<Devices>,
    pub(crate) bus: Arc<Bus>,
    pub(crate) default_printer: Option<String>,
    pub(crate) cancel: CancellationToken,
}

/// What the QZ endpoint serves from: the daemon's own parts.
pub struct Parts {
    pub printers: Arc<Printers>,
    pub devices: Arc<Devices>,
    pub bus: Arc<Bus>,
    /// The API's localhost certificate, for `wss://` (with `api.tls`).
    pub tls: Option<Arc<crate::tls::TlsState>>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Binds the QZ listener(s) and serves them until `cancel`; returns the
/// URLs they listen on (for `/v1/health`), empty when `[qz]` is off.
pub async fn start(
    config: &Config,
    parts: Parts,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<String>> {
    let Parts {
        printers,
        devices,
        bus,
        tls,
        metrics,
    } = parts;
    let qz = &config.qz;
    if !qz.enabled {
        return Ok(Vec::new());
    }
    let plain = bind(qz.listen, "qz.listen").await?;
    let secure = match &tls {
        Some(_) => Some(bind(qz.secure_listen, "qz.secure_listen").await?),
        None => None,
    };
    let site = qz
        .certificate
        .as_deref()
        .map(sign::SiteCert::load)
        .transpose()
        .map_err(|e| anyhow::anyhow!("qz.certificate: {e}"))?;
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).unwrap_or(0);
    let shared = Arc::new(Shared {
        guard: Guard::new(&config.api, port(&plain)),
        secure_guard: secure.as_ref().map(|l| Guard::new(&config.api, port(l))),
        tokens: !config.api.tokens.is_empty(),
        allowed: qz
            .allowed_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect(),
        site,
        printers,
        devices,
        bus,
        default_printer: qz.default_printer.clone(),
        cancel: cancel.clone(),
    });
    let mut urls = Vec::new();
    for (listener, tls, scheme) in [(Some(plain), None, "ws"), (secure, tls, "wss")] {
        let Some(listener) = listener else { continue };
        let addr = listener.local_addr()?;
        urls.push(format!("{scheme}://{addr}/"));
        tracing::info!(listen = %addr, "QZ Tray endpoint listening ({scheme}://)");
        let app = Router::new()
            .fallback(connect)
            .with_state((shared.clone(), tls.is_some()));
        let opts = crate::api::serve::ServeOptions {
            max_connections: config.api.max_connections,
            header_timeout: Duration::from_millis(config.api.header_timeout_ms),
            send_buffer: 128 * 1024,
            tls,
            metrics: metrics.clone(),
        };
        let stop = cancel.clone();
        tracker.spawn(async move {
            if let Err(e) =
                crate::api::serve::serve(listener, app, opts, async move { stop.cancelled().await })
                    .await
            {
                tracing::error!(error = %e, "QZ Tray endpoint stopped");
            }
        });
    }
    Ok(urls)
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{key}: cannot listen on {addr}: {e}"))
}

/// Any path: qz-tray.js connects to `/`. The API's Host and Origin checks
/// run before the upgrade, so a refused page gets a 403 and nothing else.
async fn connect(
    State((shared, secure)): State<(Arc<Shared>, bool)>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let guard = match (secure, &shared.secure_guard) {
        (true, Some(g)) => g,
        _ => &shared.guard,
    };
    if !guard.host_ok(&headers) {
        tracing::debug!("QZ: refused a Host that is not a loopback name with the port");
        return refuse("Host must be localhost or 127.0.0.1 with this port (DNS names such as localhost.qz.io are refused)");
    }
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| String::from_utf8_lossy(o.as_bytes()).to_ascii_lowercase());
    if let Some(o) = &origin {
        if !guard.origin_ok(o) {
            tracing::info!(origin = %o, "QZ: refused an origin not in api.allowed_origins");
            return refuse("this page's origin is not in api.allowed_origins");
        }
    }
    let Ok(ws) = ws else {
        return (
            StatusCode::OK,
            "posbridge answers QZ Tray pages here (qz-tray.js over WebSocket)\n",
        )
            .into_response();
    };
    let may_print = !shared.tokens || origin.as_ref().is_some_and(|o| shared.allowed.contains(o));
    let slot = match guard.streams.open(origin.as_deref().unwrap_or("")) {
        Ok(slot) => slot,
        Err(why) => return (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    };
    let who = session::Who {
        origin: origin.unwrap_or_default(),
        may_print,
    };
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            session::run(socket, who, shared).await;
        })
}

fn refuse(why: &'static str) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
}
