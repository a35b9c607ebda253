//! The rest of the counter (contract §4): what the customer display shows
//! (`POST /v1/display`), a scale's tare and zero and its latest reading.
//! All under scope `print`: the selling page needs them.

use super::error::ApiError;
use super::AppState;
use crate::device::{AskError, Command, Device};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use posbridge_drivers::display::{Lamp, Show};
use serde::Deserialize;
use std::sync::Arc;

/// A display request: exactly one of `lines`, `amount` or `clear`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayBody {
    display: String,
    lines: Option<Vec<String>>,
    amount: Option<serde_json::Value>,
    lamp: Option<String>,
    clear: Option<bool>,
}

impl DisplayBody {
    fn show(self) -> Result<Show, ApiError> {
        let bad = |m: &str| ApiError::bad_request(m);
        match (self.lines, self.amount, self.clear.unwrap_or(false)) {
            (Some(lines), None, false) => {
                if self.lamp.is_some() {
                    return Err(bad("lamp: goes with amount, not lines"));
                }
                Ok(Show::Lines(lines))
            }
            (None, Some(amount), false) => {
                let serde_json::Value::String(amount) = amount else {
                    return Err(bad(
                        "amount: send it as a string, e.g. \"128.50\" (a JSON number can lose its cents)",
                    ));
                };
                let lamp = match self.lamp.as_deref() {
                    None => Lamp::Total,
                    Some(l) => Lamp::parse(l).ok_or_else(|| {
                        bad(&format!("lamp: {l:?} is not price, total, paid or change"))
                    })?,
                };
                Ok(Show::Amount { amount, lamp })
            }
            (None, None, true) => Ok(Show::Clear),
            _ => Err(bad(
                "send exactly one of lines, amount (with lamp) or \"clear\": true",
            )),
        }
    }
}

fn not_connected(id: &str, dev: &Device) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_connected",
        format!(
            "{id:?} is not connected ({}){}",
            dev.state().name(),
            dev.view()
                .last_error
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
    )
}

/// A device of the family that takes `what`, or 404.
fn device_for(st: &AppState, id: &str, what: &str, family: &str) -> Result<Arc<Device>, ApiError> {
    let dev = st.devices.get(id);
    match dev {
        Some(d) if d.cfg.driver == family => Ok(d),
        Some(d) => Err(ApiError::not_found(
            "unknown_device",
            format!("{id:?} is a {} device, not a {what}", d.cfg.driver),
        )),
        None => Err(ApiError::not_found(
            "unknown_device",
            format!("no {what} {id:?}"),
        )),
    }
}

pub async fn post_display(
    State(st): State<AppState>,
    body: Result<Json<DisplayBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = body.display.clone();
    let dev = device_for(&st, &id, "display", "display")?;
    let settings = crate::family::display::settings(&dev.cfg)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let show = body.show()?;
    let bytes = posbridge_drivers::display::render(&settings, &show)
        .map_err(|r| ApiError::bad_request(format!("{}: {}", r.field, r.why)))?;
    match dev.show(bytes) {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"display": id, "queued": true})),
        )
            .into_response()),
        Err(AskError::NotConnected) => Err(not_connected(&id, &dev)),
        Err(e) => Err(ApiError::conflict("not_supported", e.to_string())),
    }
}

async fn command(st: AppState, id: String, cmd: Command) -> Result<Response, ApiError> {
    let dev = device_for(&st, &id, "scale", "scale")?;
    match dev.command(cmd).await {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"device": id, "command": cmd.name(), "sent": true})),
        )
            .into_response()),
        Err(AskError::NotConnected) => Err(not_connected(&id, &dev)),
        Err(AskError::Busy) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{id:?} is busy; try again"),
        )),
        Err(AskError::NoCommand) => Err(ApiError::conflict(
            "not_supported",
            format!(
                "{id:?} has no {} command: its protocol has none; set {}_command if its manual names one",
                cmd.name(),
                cmd.name()
            ),
        )),
        Err(AskError::NotSupported) => Err(ApiError::conflict(
            "not_supported",
            format!("{id:?} does not take {}", cmd.name()),
        )),
    }
}

pub async fn tare(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    command(st, id, Command::Tare).await
}

pub async fn zero(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    command(st, id, Command::Zero).await
}

/// The latest reading and how old it is; `reading: null` before the first.
pub async fn get_scale(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let dev = device_for(&st, &id, "scale", "scale")?;
    let view = dev.view();
    let mut out = serde_json::json!({
        "scale": id,
        "state": view.state,
        "last_error": view.last_error,
        "reading": null,
    });
    if let Some(latest) = dev.latest() {
        let data = serde_json::to_value(&latest.event)
            .ok()
            .and_then(|v| v.get("data").cloned())
            .unwrap_or_default();
        out["reading"] = data;
        out["at"] = crate::clock::rfc3339_ms(latest.at).into();
        out["age_ms"] = (latest.age.as_millis() as u64).into();
    }
    Ok(Json(out).into_response())
}
