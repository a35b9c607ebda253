//! The WebSocket event stream: backlog first (gap/reset notices, then missed
//! events), then live events; pings; 4008 for a client that cannot keep up.

use super::AppState;
use crate::event::{Backlog, Published, Subscription};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};

use std::time::Duration;

/// Close code for a client too slow to keep up (contract §4).
pub const CLOSE_TOO_SLOW: u16 = 4008;
const CLOSE_GOING_AWAY: u16 = 1001;
/// "Try again later": a stream refused by `api.max_streams*`.
pub const CLOSE_TRY_AGAIN: u16 = 1013;
/// How long a close frame may take to get through to a stalled client.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Close code for a stream whose token expired while it was open.
const CLOSE_TOKEN_EXPIRED: u16 = 4001;

/// Streams events to one client until it goes, falls behind, the daemon
/// stops, or its token expires (`expires`: Unix seconds).
// Over 80 lines: one select! loop over the backlog, live events, pings, the stall timer and token expiry, which share the socket.
pub async fn stream(
    socket: WebSocket,
    mut sub: Subscription,
    idcard: bool,
    expires: Option<i64>,
    state: AppState,
) {
    // The token's expiry as a deadline on the monotonic clock.
    let expiry = expires.map(|e| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let left = u64::try_from(e.saturating_sub(now)).unwrap_or(0);
        tokio::time::Instant::now() + Duration::from_secs(left)
    });
    let stall = Duration::from_millis(state.config.events.stall_timeout_ms);
    let ping_every = Duration::from_secs(state.config.events.ping_interval_s);
    let cancel = state.cancel.clone();
    let (mut sink, mut incoming) = socket.split();

    // A refcount bump, not a copy: the bus serialized each event once for all clients.
    let frame = |p: &Published| Message::Text(p.json_for(idcard).clone());
    let backlog = std::mem::take(&mut sub.backlog);
    for b in backlog {
        let msg = match &b {
            Backlog::Notice(n) => Message::Text(Utf8Bytes::from(n.as_str())),
            Backlog::Event(p) => frame(p),
        };
        match tokio::time::timeout(stall, sink.send(msg)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                return close(
                    sink,
                    CLOSE_TOO_SLOW,
                    "client too slow; reconnect with since",
                )
                .await
            }
        }
    }

    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut last_seen = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return close(sink, CLOSE_GOING_AWAY, "posbridge is shutting down").await,
            _ = sub.overflow.cancelled() => {
                tracing::info!("stream client fell behind; closing with 4008");
                return close(sink, CLOSE_TOO_SLOW, "client too slow; reconnect with since").await;
            }
            _ = async {
                match expiry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                return close(sink, CLOSE_TOKEN_EXPIRED, "token_expired: the token has expired; reconnect with a new one").await;
            }
            next = sub.rx.recv() => {
                let Some(p) = next else { return };
                match tokio::time::timeout(stall, sink.send(frame(&p))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        tracing::info!("stream client stalled; closing with 4008");
                        state.metrics.client_cut_off();
                        return close(sink, CLOSE_TOO_SLOW, "client stalled; reconnect with since").await;
                    }
                }
            }
            msg = incoming.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // Pongs and anything else prove the client is alive; clients have nothing to say.
                Some(Ok(_)) => last_seen = tokio::time::Instant::now(),
            },
            _ = ping.tick() => {
                if last_seen.elapsed() > ping_every * 2 + stall {
                    tracing::info!("stream client stopped answering pings; dropping it");
                    return;
                }
                if tokio::time::timeout(stall, sink.send(Message::Ping(Default::default()))).await.is_err() {
                    state.metrics.client_cut_off();
                    return close(sink, CLOSE_TOO_SLOW, "client stalled; reconnect with since").await;
                }
            }
        }
    }
}

/// A stream over the limits: closed at once with 1013 and why.
pub async fn refuse(socket: WebSocket, reason: String) {
    let (sink, _) = socket.split();
    close_with(sink, CLOSE_TRY_AGAIN, Utf8Bytes::from(reason)).await;
}

async fn close(
    sink: futures_util::stream::SplitSink<WebSocket, Message>,
    code: u16,
    reason: &'static str,
) {
    close_with(sink, code, Utf8Bytes::from_static(reason)).await;
}

async fn close_with(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    code: u16,
    reason: Utf8Bytes,
) {
    let frame = Message::Close(Some(CloseFrame { code, reason }));
    // A stalled client may never drain; give the close a bounded chance, then drop.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = sink.send(frame).await;
        let _ = sink.close().await;
    })
    .await;
}
