//! The accept loop. `axum::serve` has no header read timeout (a slowloris
//! client holds its connection for ever), no connection cap and no TLS, so
//! connections are served here with hyper directly:
//!
//! - at most `api.max_connections` at once; the next gets a 503 JSON answer
//!   and is closed (under TLS, or past 64 refusals at once, it is closed
//!   unanswered), so a flood costs a bounded amount of memory and fds;
//! - a request head must arrive within `api.header_timeout_ms` (which also
//!   closes idle keep-alive connections);
//! - with `api.tls`, the TLS handshake must finish within the same time.
//!
//! Graceful shutdown as before: stop accepting, let each connection finish
//! its request, wait for them.

use crate::metrics::Metrics;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct ServeOptions {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// Kernel send buffer per connection (see `lib.rs`).
    pub send_buffer: usize,
    pub tls: Option<Arc<crate::tls::TlsState>>,
    pub metrics: Arc<Metrics>,
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
// Over 80 lines: the accept loop with its connection cap and TLS handshake; the counters it keeps are shared by every branch.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    // Refusals hold their socket up to 2 s; past this many at once a flood
    // is closed at once instead, so it cannot use up the daemon's fds.
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let stop = CancellationToken::new();
    let conns = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned_full = false;
    loop {
        let (tcp, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the
                    // listener itself is fine.
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(opts.send_buffer);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            opts.metrics.limited();
            if !warned_full {
                tracing::warn!(
                    max = opts.max_connections,
                    "api.max_connections reached; refusing new connections with 503"
                );
                warned_full = true;
            }
            // Under TLS a plaintext answer would only be garbage to the
            // client: the connection is just closed.
            if opts.tls.is_none() {
                if let Ok(p) = refusals.clone().try_acquire_owned() {
                    let max = opts.max_connections;
                    conns.spawn(async move {
                        refuse_busy(tcp, max).await;
                        drop(p);
                    });
                }
            }
            continue;
        };
        warned_full = false;
        let app = app.clone();
        let stop = stop.clone();
        let tls = opts.tls.clone();
        let header_timeout = opts.header_timeout;
        conns.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_conn(tcp, app, header_timeout, stop).await,
                Some(tls) => {
                    let acceptor = tls.acceptor();
                    match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_conn(stream, app, header_timeout, stop).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    stop.cancel();
    conns.close();
    // Graceful, but bounded: a request that never finishes must not keep the
    // daemon from stopping (systemd would SIGKILL it, skipping the clean exit).
    if tokio::time::timeout(Duration::from_secs(5), conns.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within 5 s; closing them");
    }
    Ok(())
}

async fn serve_conn<S>(io: S, app: Router, header_timeout: Duration, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Refusals in flight at once (see `refuse_busy`).
const MAX_REFUSALS: usize = 64;

/// A clear refusal for a client over the connection cap, written without
/// reading its request, then the connection is closed.
async fn refuse_busy(mut tcp: TcpStream, max: usize) {
    let body = format!(
        "{{\"error\":{{\"code\":\"too_many_connections\",\"message\":\"posbridge has {max} open connections (api.max_connections); try again shortly\"}}}}"
    );
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Bounded: a client that never reads must not keep this task alive.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = tcp.write_all(resp.as_bytes()).await;
        let _ = tcp.shutdown().await;
        // Read what the client sent (up to EOF) before closing: closing with
        // unread bytes sends a reset, and the client would lose the answer.
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}
