//! The local HTTP/WebSocket API (contract §4): an axum router behind the
//! always-on guards, with handlers named for what they do.

mod counter;
pub mod error;
pub mod guard;
pub mod serve;
pub mod ws;

use crate::config::{Config, Scope};
use crate::device::{Devices, ReadOutcome, SimulateError, State as DevState};
use crate::event::{Backlog, Bus, Filter, Resume};
use crate::metrics::Metrics;
use axum::extract::{DefaultBodyLimit, Path, Query, State, WebSocketUpgrade};
use axum::http::{header, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use error::ApiError;
use guard::{Grant, Guard};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Config,
    pub bus: Arc<Bus>,
    pub devices: Arc<Devices>,
    pub metrics: Arc<Metrics>,
    pub outbox: Arc<crate::uplink::outbox::Outbox>,
    pub uplink: Arc<crate::uplink::Uplink>,
    pub calls: Arc<crate::calls::Calls>,
    pub printers: Arc<crate::print::Printers>,
    /// Where the QZ Tray endpoint listens (`ws://…/`), empty when `[qz]` is off.
    pub qz: Vec<String>,
    pub guard: Guard,
    pub started: std::time::Instant,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

const MAX_SIMULATE_BYTES: usize = 1024 * 1024;
/// Contract §4: a transaction body over 256 KiB gets 413.
const MAX_TRANSACTION_BYTES: usize = 256 * 1024;
const MAX_TRANSACTION_ID: usize = 128;
const MAX_POLL_MS: u64 = 60_000;
/// A print request: a raw job of `print::MAX_JOB_BYTES` in base64, and room.
const MAX_PRINT_BODY: usize = 2 * 1024 * 1024;
const DEFAULT_POLL_MS: u64 = 25_000;
const MAX_POLL_EVENTS: usize = 1000;

pub fn router(state: AppState) -> Router {
    let body_stall = Duration::from_millis(state.config.api.header_timeout_ms);
    let scoped = |scope: Scope, r: Router<AppState>| {
        let st = state.clone();
        r.route_layer(from_fn(move |req, next: Next| {
            guard::require(scope, st.clone(), req, next)
        }))
    };
    let events = scoped(
        Scope::Events,
        Router::new()
            .route("/v1/events", get(events_stream))
            .route("/v1/events/poll", get(events_poll))
            .route("/v1/devices", get(list_devices))
            .route("/metrics", get(metrics)),
    );
    let admin = scoped(
        Scope::Admin,
        Router::new()
            .route("/v1/devices/{id}/simulate", post(simulate))
            .route("/v1/devices/{id}/read", post(read_now))
            .layer(DefaultBodyLimit::max(MAX_SIMULATE_BYTES * 2 + 1024)),
    );
    let transactions = scoped(
        Scope::Transactions,
        Router::new()
            .route("/v1/transactions", post(post_transaction))
            .route("/v1/transactions/{id}", get(get_transaction))
            .route("/v1/uplink", get(get_uplink))
            .layer(DefaultBodyLimit::max(MAX_TRANSACTION_BYTES)),
    );
    let members = scoped(
        Scope::Members,
        Router::new()
            .route("/v1/members/lookup", get(lookup_member))
            .route("/v1/calls", get(list_calls)),
    );
    let print = scoped(
        Scope::Print,
        Router::new()
            .route("/v1/print", post(post_print))
            .route(
                "/v1/print/{job}",
                get(get_print_job).delete(cancel_print_job),
            )
            .route("/v1/drawer/open", post(open_drawer))
            .route("/v1/printers", get(list_printers))
            .route("/v1/display", post(counter::post_display))
            .route("/v1/devices/{id}/tare", post(counter::tare))
            .route("/v1/devices/{id}/zero", post(counter::zero))
            .route("/v1/scales/{id}", get(counter::get_scale))
            .layer(DefaultBodyLimit::max(MAX_PRINT_BODY)),
    );
    Router::new()
        .route("/", get(status_page))
        .route("/popup", get(popup_page))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/v1/health", get(health))
        .merge(events)
        .merge(admin)
        .merge(transactions)
        .merge(members)
        .merge(print)
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), guard::guard))
        .layer(from_fn(request_deadline))
        // A body that stops arriving frees its connection (slow-body attack);
        // the same patience as for headers (api.header_timeout_ms).
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_stall,
        ))
        .layer(from_fn(error::json_errors))
        .with_state(state)
}

/// Longest any request may take, except the event stream (long-poll waits
/// at most 60 s, a member lookup at most `lookup_timeout_ms` ≤ 60 s).
const REQUEST_DEADLINE: Duration = Duration::from_secs(75);

/// Bounds every request (a body dribbled just fast enough included)
/// so no client holds a connection slot for ever.
async fn request_deadline(req: axum::extract::Request, next: Next) -> Response {
    if req.uri().path() == "/v1/events" {
        return next.run(req).await;
    }
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request took longer than {REQUEST_DEADLINE:?}"),
        )
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "not_found",
        "no such endpoint; see the API in docs/DEVELOPERS.md",
    )
}

async fn status_page() -> Response {
    page(include_str!("status.html"))
}

async fn popup_page() -> Response {
    page(include_str!("popup.html"))
}

fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // The page only talks to its own origin.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline' 'self'; connect-src 'self'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The page's URL may carry ?token=; never leak it in a Referer.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(html),
    )
        .into_response()
}

async fn health(State(st): State<AppState>) -> Json<serde_json::Value> {
    let (mut connected, mut disconnected, mut errored) = (0, 0, 0);
    for d in st.devices.list() {
        match d.state() {
            DevState::Connected => connected += 1,
            DevState::Disconnected => disconnected += 1,
            DevState::Error => errored += 1,
        }
    }
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "boot": st.bus.boot(),
        "store": st.bus.store(),
        "uptime_s": st.started.elapsed().as_secs(),
        "devices": {
            "total": connected + disconnected + errored,
            "connected": connected,
            "disconnected": disconnected,
            "error": errored,
        },
        "uplink": {
            "connected": st.uplink.connected(),
            "backlog": st.outbox.backlog_len(),
            "outbox_ok": !st.outbox.stats.writer_stopped.load(std::sync::atomic::Ordering::Relaxed),
            "configured": st.config.uplink.is_some(),
        },
        "qz": {
            "enabled": !st.qz.is_empty(),
            "urls": st.qz,
        },
        "popup": { "business": st.config.popup.business },
    }))
}

async fn oldest_age_s(st: &AppState) -> u64 {
    let Ok((_, Some(oldest))) = st.outbox.backlog().await else {
        return 0;
    };
    time::OffsetDateTime::parse(&oldest, &time::format_description::well_known::Rfc3339)
        .map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0) as u64)
        .unwrap_or(0)
}

async fn list_devices(State(st): State<AppState>) -> Json<Vec<crate::device::DeviceView>> {
    Json(st.devices.list().iter().map(|d| d.view()).collect())
}

/// One Prometheus series: name, type, help, value.
type Series = (&'static str, &'static str, &'static str, u64);

async fn metrics(State(st): State<AppState>) -> Response {
    let devs: Vec<(String, &'static str, u64)> = st
        .devices
        .list()
        .iter()
        .map(|d| {
            let v = d.view();
            (v.id, v.state.name(), v.events)
        })
        .collect();
    let mut text = st.metrics.render(st.started.elapsed().as_secs(), &devs);
    let oldest = oldest_age_s(&st).await;
    let series = outbox_series(&st, oldest)
        .into_iter()
        .chain(uplink_series(&st))
        .chain(print_series(&st));
    for (name, kind, help, v) in series {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    }
    text.push_str(&printers_waiting(&st).await);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn outbox_series(st: &AppState, oldest_age_s: u64) -> [Series; 4] {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &st.outbox.stats;
    let backlog = st.outbox.backlog_len();
    [
        (
            "posbridge_outbox_backlog",
            "gauge",
            "Transactions HQ does not have yet.",
            backlog,
        ),
        (
            "posbridge_outbox_stored_total",
            "counter",
            "Transactions stored durably.",
            stats.inserted.load(Relaxed),
        ),
        (
            "posbridge_outbox_commits_total",
            "counter",
            "Disk commits (one per group of concurrent transactions).",
            stats.commits.load(Relaxed),
        ),
        (
            "posbridge_outbox_oldest_age_seconds",
            "gauge",
            "Age of the oldest transaction HQ does not have yet (0 when none).",
            oldest_age_s,
        ),
    ]
}

fn uplink_series(st: &AppState) -> [Series; 12] {
    use std::sync::atomic::Ordering::Relaxed;
    let r = &st.uplink.status;
    [
        (
            "posbridge_uplink_connected",
            "gauge",
            "1 while connected to the HQ broker.",
            u64::from(st.uplink.connected()),
        ),
        (
            "posbridge_uplink_published_total",
            "counter",
            "Transaction publishes to HQ, re-sends included.",
            r.published.load(Relaxed),
        ),
        (
            "posbridge_uplink_broker_acked_total",
            "counter",
            "PUBACKs for transaction publishes (re-sends included).",
            r.broker_acked.load(Relaxed),
        ),
        (
            "posbridge_uplink_hq_acked_total",
            "counter",
            "Transactions HQ acknowledged on tx/ack.",
            r.hq_acked.load(Relaxed),
        ),
        (
            "posbridge_uplink_acks_ignored_total",
            "counter",
            "Ids in tx/ack messages that named no sent transaction (unknown, not yet published, or acked already).",
            r.acks_ignored.load(Relaxed),
        ),
        (
            "posbridge_uplink_resent_total",
            "counter",
            "Transactions published again because HQ had not acknowledged them (ack = hq).",
            r.resent.load(Relaxed),
        ),
        (
            "posbridge_uplink_errors_total",
            "counter",
            "Failed connection attempts and broken connections.",
            r.errors.load(Relaxed),
        ),
        (
            "posbridge_uplink_connects_total",
            "counter",
            "Successful connections to the broker.",
            r.connects.load(Relaxed),
        ),
        (
            "posbridge_uplink_bad_downlink_total",
            "counter",
            "Messages from HQ that could not be used.",
            r.bad_downlink.load(Relaxed),
        ),
        (
            "posbridge_uplink_events_forwarded_total",
            "counter",
            "Device events forwarded to HQ (uplink.forward_events).",
            r.events_forwarded.load(Relaxed),
        ),
        (
            "posbridge_member_lookups_hq_total",
            "counter",
            "Member lookups sent to HQ.",
            r.lookups_hq.load(Relaxed),
        ),
        (
            "posbridge_member_lookups_timed_out_total",
            "counter",
            "Member lookups HQ did not answer in time.",
            r.lookups_timed_out.load(Relaxed),
        ),
    ]
}

fn print_series(st: &AppState) -> [Series; 2] {
    let (printed, failed) = st.printers.totals();
    [
        (
            "posbridge_print_jobs_printed_total",
            "counter",
            "Print jobs sent in full to their printer.",
            printed,
        ),
        (
            "posbridge_print_jobs_failed_total",
            "counter",
            "Print jobs given up on (cancelled ones are not counted).",
            failed,
        ),
    ]
}

/// `posbridge_print_jobs_waiting`, one line per printer.
async fn printers_waiting(st: &AppState) -> String {
    let mut text = String::from(
        "# HELP posbridge_print_jobs_waiting Jobs queued or held, per printer.\n# TYPE posbridge_print_jobs_waiting gauge\n",
    );
    for p in st.printers.iter() {
        let n = st.printers.waiting(&p.id).await.unwrap_or(0);
        text.push_str(&format!(
            "posbridge_print_jobs_waiting{{printer=\"{}\"}} {n}\n",
            p.id
        ));
    }
    text
}

#[derive(Deserialize)]
struct StreamQuery {
    types: Option<String>,
    devices: Option<String>,
    since: Option<String>,
    boot: Option<String>,
    timeout_ms: Option<u64>,
    limit: Option<usize>,
    #[allow(dead_code)]
    token: Option<String>,
}

impl StreamQuery {
    fn filter(&self) -> Result<Filter, ApiError> {
        Filter::from_query(self.types.as_deref(), self.devices.as_deref())
            .map_err(ApiError::bad_request)
    }
    fn resume(&self) -> Result<Resume, ApiError> {
        let since = match self.since.as_deref() {
            None | Some("") => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("since: {s:?} is not a sequence number"))
            })?),
        };
        Ok(Resume {
            since,
            boot: self.boot.clone().filter(|b| !b.is_empty()),
        })
    }
}

async fn events_stream(
    State(st): State<AppState>,
    Extension(grant): Extension<Grant>,
    expiry: Option<Extension<guard::TokenExpiry>>,
    Query(q): Query<StreamQuery>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let resume = q.resume()?;
    let filter = q.filter()?;
    let max = st.config.api.max_ws_message_bytes;
    // Pages send only pongs and small control messages: a 4 KiB read buffer
    // instead of tungstenite's 128 KiB saves ~124 KiB per connected client.
    let ws = ws
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4096);
    let tracker = st.tracker.clone();
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| String::from_utf8_lossy(o.as_bytes()).to_ascii_lowercase())
        .unwrap_or_default();
    let slot = match st.guard.streams.open(&origin) {
        Ok(slot) => slot,
        Err(reason) => {
            // Upgrade, then close with 1013 and the reason: a page's
            // WebSocket sees the code and reason; a failed handshake says nothing.
            st.metrics.limited();
            tracing::info!(origin = %origin, "{reason}");
            return Ok(ws
                .on_upgrade(move |socket| ws::refuse(socket, reason))
                .into_response());
        }
    };
    // Subscribe before answering, so no event published after the upgrade is missed.
    let sub = st.bus.subscribe(filter, &resume);
    let idcard = grant.has(Scope::Idcard);
    Ok(ws
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                let until = expiry.and_then(|Extension(e)| e.0);
                ws::stream(socket, sub, idcard, until, st).await;
                drop(slot);
            })
        })
        .into_response())
}

async fn events_poll(
    State(st): State<AppState>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let mut resume = q.resume()?;
    let filter = q.filter()?;
    let idcard = grant.has(Scope::Idcard);
    let limit = q.limit.unwrap_or(MAX_POLL_EVENTS).clamp(1, MAX_POLL_EVENTS);
    let wait = Duration::from_millis(q.timeout_ms.unwrap_or(DEFAULT_POLL_MS).min(MAX_POLL_MS));
    let deadline = tokio::time::Instant::now() + wait;
    let mut watch = st.bus.watch();
    if resume.since.is_none() && resume.boot.is_none() {
        // No resume point: wait for what comes next.
        resume.since = Some(*watch.borrow_and_update());
    }
    let (backlog, next) = loop {
        watch.borrow_and_update();
        let (backlog, last) = st.bus.poll(&filter, &resume, limit);
        if !backlog.is_empty() {
            let mut events = backlog.iter().filter_map(|b| match b {
                Backlog::Event(p) => Some(p.seq),
                Backlog::Notice(_) => None,
            });
            // Cut at `limit` events: resume right after the last one sent, so the
            // rest comes next time. Otherwise everything up to `last` was seen.
            let next = match (events.clone().count() >= limit, events.next_back()) {
                (true, Some(seq)) => seq,
                _ => last,
            };
            break (backlog, next);
        }
        // Nothing matched up to `last`; only newer events can.
        resume = Resume {
            since: Some(last),
            boot: None,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break (Vec::new(), last),
            _ = st.cancel.cancelled() => break (Vec::new(), last),
            r = watch.changed() => if r.is_err() { break (Vec::new(), last) },
        }
    };
    let mut body = format!(
        "{{\"boot\":{},\"next\":{},\"events\":[",
        serde_json::Value::from(st.bus.boot()),
        next
    );
    for (i, b) in backlog.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        match b {
            Backlog::Notice(n) => body.push_str(n),
            Backlog::Event(p) => body.push_str(p.json_for(idcard).as_str()),
        }
    }
    body.push_str("]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulateBody {
    data: Option<String>,
    hex: Option<String>,
}

async fn simulate(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<SimulateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("at most {MAX_SIMULATE_BYTES} bytes per call"),
        ),
        _ => ApiError::bad_request(e.body_text()),
    })?;
    let dev = st
        .devices
        .get(&id)
        .ok_or_else(|| ApiError::not_found("unknown_device", format!("no device {id:?}")))?;
    let bytes = match (body.data, body.hex) {
        (Some(d), None) => d.into_bytes(),
        (None, Some(h)) => {
            let clean: String = h.chars().filter(|c| !c.is_whitespace()).collect();
            hex::decode(&clean)
                .map_err(|e| ApiError::bad_request(format!("hex: not valid hex ({e})")))?
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of \"data\" or \"hex\"",
            ))
        }
    };
    if bytes.len() > MAX_SIMULATE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("at most {MAX_SIMULATE_BYTES} bytes per call"),
        ));
    }
    let n = bytes.len();
    dev.simulate(bytes).await.map_err(|why| match why {
        SimulateError::NotSimulated => ApiError::conflict(
            "not_simulated",
            format!(
                "device {id:?} uses transport {:?}, not \"sim\"",
                dev.cfg.transport_name()
            ),
        ),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the device is not taking input right now",
        ),
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"device": id, "bytes": n})),
    )
        .into_response())
}

async fn read_now(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let dev = st
        .devices
        .get(&id)
        .ok_or_else(|| ApiError::not_found("unknown_device", format!("no device {id:?}")))?;
    match dev.request_read().await {
        Some(ReadOutcome::Started) => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"device": id, "read": "started"})),
        )
            .into_response()),
        Some(ReadOutcome::NotSupported) => Err(ApiError::conflict(
            "not_supported",
            format!("driver {} has nothing to read on demand", dev.cfg.driver),
        )),
        None => Err(ApiError::conflict(
            "not_connected",
            format!("device {id:?} is not connected"),
        )),
    }
}

// Over 80 lines: the contract's answers for one POST in the order it states them (validation, idempotency, durability).

async fn post_transaction(
    State(st): State<AppState>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    use crate::uplink::outbox::Inserted;
    let Json(body) = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a transaction is at most {MAX_TRANSACTION_BYTES} bytes"),
        ),
        _ => ApiError::bad_request(e.body_text()),
    })?;
    let id = match body.get("id") {
        Some(serde_json::Value::String(id)) if !id.is_empty() && id.len() <= MAX_TRANSACTION_ID => {
            id.clone()
        }
        _ if !body.is_object() => {
            return Err(ApiError::bad_request("the body must be a JSON object"))
        }
        _ => {
            return Err(ApiError::bad_request(format!(
            "\"id\" must be a string of 1 to {MAX_TRANSACTION_ID} characters chosen by the client"
        )))
        }
    };
    // serde_json keeps keys sorted, so this text is canonical: the same body
    // with its keys in another order is the same transaction.
    let canonical = body.to_string();
    let outcome = st
        .outbox
        .insert(id.clone(), canonical)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", e))?;
    match outcome {
        Inserted::Queued(v) => {
            if st
                .outbox
                .stats
                .refusing
                .swap(false, std::sync::atomic::Ordering::Relaxed)
            {
                st.bus.publish(
                    None,
                    &posbridge_drivers::Event::UplinkStatus {
                        connected: st.uplink.connected(),
                        backlog: st.outbox.backlog_len(),
                        last_error: None,
                    },
                );
            }
            Ok((StatusCode::ACCEPTED, Json(v)).into_response())
        }
        Inserted::Existing(v) => Ok((StatusCode::OK, Json(v)).into_response()),
        Inserted::Conflict => Err(ApiError::conflict(
            "id_conflict",
            format!("transaction {id:?} already exists with a different body"),
        )),
        Inserted::Full { backlog } => {
            // Once per change of state: a POS retrying in a loop must not flood the ring.
            let newly = !st
                .outbox
                .stats
                .refusing
                .swap(true, std::sync::atomic::Ordering::Relaxed);
            if newly {
                st.bus.publish(
                    None,
                    &posbridge_drivers::Event::UplinkStatus {
                        connected: st.uplink.connected(),
                        backlog,
                        last_error: Some("backlog full: new transactions are refused".into()),
                    },
                );
            }
            Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "backlog_full",
                format!(
                    "{backlog} transactions are waiting for HQ (storage.max_backlog); none was dropped, this one was not stored"
                ),
            ))
        }
    }
}

async fn get_transaction(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match st.outbox.get(id.clone()).await {
        Ok(Some(v)) => Ok(Json(v).into_response()),
        Ok(None) => Err(ApiError::not_found(
            "unknown_transaction",
            format!("no transaction {id:?}"),
        )),
        Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", e)),
    }
}

async fn get_uplink(State(st): State<AppState>) -> Result<Response, ApiError> {
    let (backlog, oldest) = st
        .outbox
        .backlog()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", e))?;
    use std::sync::atomic::Ordering::Relaxed;
    let r = &st.uplink.status;
    // Off the runtime threads: a member push may hold the cache for a while.
    let members = st.uplink.members.clone();
    let members_cached = tokio::task::spawn_blocking(move || members.count())
        .await
        .unwrap_or(0);
    Ok(Json(serde_json::json!({
        "connected": st.uplink.connected(),
        "configured": st.config.uplink.is_some(),
        "ack": st.config.uplink.as_ref().map(|u| u.ack.as_str()),
        "broker": st.uplink.relay.as_ref().map(|r| r.broker_url()),
        "backlog": backlog,
        "oldest_queued_at": oldest,
        "last_error": r.last_error().or_else(|| st.outbox.start_problem.clone()),
        "stored_total": st.outbox.stats.inserted.load(Relaxed),
        "commits_total": st.outbox.stats.commits.load(Relaxed),
        "published_total": r.published.load(Relaxed),
        "broker_acked_total": r.broker_acked.load(Relaxed),
        "hq_acked_total": r.hq_acked.load(Relaxed),
        "resent_total": r.resent.load(Relaxed),
        "connects_total": r.connects.load(Relaxed),
        "errors_total": r.errors.load(Relaxed),
        "members_cached": members_cached,
        "members_paused_until": r.members_paused_until(),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct CallsQuery {
    missed: Option<bool>,
    limit: Option<usize>,
}

async fn list_calls(
    State(st): State<AppState>,
    Query(q): Query<CallsQuery>,
) -> Json<Vec<crate::calls::Call>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    Json(st.calls.recent(q.missed.unwrap_or(false), limit))
}

#[derive(Deserialize)]
struct LookupQuery {
    phone: Option<String>,
    card_type: Option<String>,
    card: Option<String>,
}

async fn lookup_member(
    State(st): State<AppState>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<LookupQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let may_ask_hq = guard::may_reach_out(&headers);
    let (member, source) = match (q.phone, q.card_type, q.card) {
        (Some(phone), None, None) => {
            if phone.trim().is_empty() || phone.len() > 64 {
                return Err(ApiError::bad_request(
                    "phone: at most 64 characters, not empty",
                ));
            }
            st.uplink.lookup_from(&phone, may_ask_hq).await
        }
        (None, Some(kind), Some(card)) => {
            let value = match kind.as_str() {
                // Asking who holds an ID number is reading ID data: the
                // same scope as the number itself.
                "idcard" if !grant.has(Scope::Idcard) => {
                    return Err(ApiError::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "insufficient_scope",
                        "card_type=idcard needs a token with scope idcard",
                    ))
                }
                // The number is hashed here and forgotten: only its HMAC is looked up.
                "idcard" => st.uplink.members.id_hmac(&card).ok_or_else(|| {
                    ApiError::bad_request("card_type=idcard needs members.id_key in the config")
                })?,
                k if crate::uplink::members::CARD_TYPES.contains(&k) => card,
                _ => {
                    return Err(ApiError::bad_request(
                        "card_type: magstripe, rfid, code or idcard",
                    ))
                }
            };
            if crate::uplink::members::card_key(&kind, &value).is_none() {
                return Err(ApiError::bad_request("card: 1 to 128 characters"));
            }
            st.uplink.lookup_card(&kind, &value, may_ask_hq).await
        }
        _ => {
            return Err(ApiError::bad_request(
                "give ?phone=, or ?card_type= and ?card=",
            ))
        }
    };
    Ok(Json(serde_json::json!({"member": member, "source": source})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrintBody {
    printer: String,
    document: Option<serde_json::Value>,
    raw: Option<String>,
    label: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrawerBody {
    printer: String,
}

fn print_body_error(e: axum::extract::rejection::JsonRejection) -> ApiError {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a print request is at most {MAX_PRINT_BODY} bytes"),
        ),
        _ => ApiError::bad_request(e.body_text()),
    }
}

fn submit_error(e: crate::print::SubmitError) -> ApiError {
    use crate::print::SubmitError;
    match e {
        SubmitError::UnknownPrinter(m) => ApiError::not_found("unknown_printer", m),
        SubmitError::Bad(m) => ApiError::bad_request(m),
        SubmitError::TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
        SubmitError::Storage(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", m),
    }
}

fn job_accepted(v: crate::print::queue::JobView) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"job": v.job, "printer": v.printer, "state": v.state})),
    )
        .into_response()
}

/// Renders (or decodes) now, so a bad document fails here; 202 once the job is on disk.
async fn post_print(
    State(st): State<AppState>,
    body: Result<Json<PrintBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    use crate::print::Payload;
    let Json(body) = body.map_err(print_body_error)?;
    let payload = match (body.document, body.raw, body.label) {
        (Some(d), None, None) => Payload::Document(d),
        (None, Some(r), None) => Payload::Raw(r),
        (None, None, Some(l)) => Payload::Label(l),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of \"document\", \"label\" or \"raw\" (base64)",
            ))
        }
    };
    let v = st
        .printers
        .print(&body.printer, payload)
        .await
        .map_err(submit_error)?;
    Ok(job_accepted(v))
}

async fn get_print_job(
    State(st): State<AppState>,
    Path(job): Path<String>,
) -> Result<Response, ApiError> {
    match st.printers.job(&job).await {
        Ok(Some(v)) => Ok(Json(v).into_response()),
        Ok(None) => Err(ApiError::not_found(
            "unknown_job",
            format!("no print job {job:?} (finished jobs are kept storage.retain_days)"),
        )),
        Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", e)),
    }
}

/// A job still queued or held is cancelled (200, `failed`, reason
/// `cancelled`): a cashier who reprints elsewhere while this printer waits
/// for paper does not get a second receipt later. One already printing or
/// finished is 409 with its state.
async fn cancel_print_job(
    State(st): State<AppState>,
    Path(job): Path<String>,
) -> Result<Response, ApiError> {
    use crate::print::queue::Cancel;
    match st.printers.cancel(&job).await {
        Ok(Cancel::Done(v)) => Ok(Json(v).into_response()),
        Ok(Cancel::TooLate(v)) => Err(ApiError::conflict(
            "not_cancellable",
            format!(
                "print job {job:?} is {}: only queued or held jobs can be cancelled",
                v.state
            ),
        )),
        Ok(Cancel::Unknown) => Err(ApiError::not_found(
            "unknown_job",
            format!("no print job {job:?} (finished jobs are kept storage.retain_days)"),
        )),
        Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", e)),
    }
}

/// Queued behind the printer's other jobs, so the drawer opens in order
/// (at once, by a real-time pulse, while they wait for paper or the cover).
async fn open_drawer(
    State(st): State<AppState>,
    body: Result<Json<DrawerBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(print_body_error)?;
    let v = st
        .printers
        .open_drawer(&body.printer)
        .await
        .map_err(submit_error)?;
    Ok(job_accepted(v))
}

async fn list_printers(State(st): State<AppState>) -> Result<Response, ApiError> {
    let mut out = Vec::new();
    for p in st.printers.iter() {
        let waiting = st
            .printers
            .waiting(&p.id)
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", e))?;
        let state = st.devices.get(&p.id).map(|d| d.state());
        out.push(serde_json::json!({
            "id": p.id,
            "transport": p.cfg.transport_name(),
            "state": state,
            "status": p.status(),
            "waiting": waiting,
            "kind": p.kind(),
            "columns": match &p.model {
                crate::print::Model::Receipt(profile) => Some(profile.columns),
                crate::print::Model::Label { .. } => None,
            },
        }));
    }
    Ok(Json(out).into_response())
}
