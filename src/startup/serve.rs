//! Serving a router on a listener with the limits a server facing the Internet needs.
//!
//! `axum::serve` has no header-read timeout, no connection cap and no body idle timeout: 1,030
//! connections that sent half their headers once exhausted the process's open files and both
//! the API and the embedded store stopped answering. Here each listener:
//!
//! - caps its open connections (`FERRY_MAX_CONNECTIONS`): past the cap a new connection is
//!   closed at once, with one warning per interval in the log;
//! - closes a connection whose request head does not arrive within `FERRY_HEADER_TIMEOUT`
//!   (hyper starts that clock whenever it waits for a head, so idle keep-alive connections are
//!   closed after it too);
//! - cuts off a request body that sends nothing for `FERRY_BODY_IDLE_TIMEOUT`
//!   ([`IdleBody`], reset on every frame, so slow but moving uploads go on);
//! - on shutdown stops accepting at once (new connections are refused) and lets the requests in
//!   flight finish, for at most the grace period (`FERRY_SHUTDOWN_GRACE`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Body as _;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::idle_body::IdleBody;

/// At most one "connection limit reached" warning per this interval, per listener.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// File descriptors kept free for the database pool, the store's files and the log.
const RESERVED_FILES: u64 = 256;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_idle_timeout: Duration,
    /// Longest wait for requests in flight once shutdown begins.
    pub shutdown_grace: Duration,
}

/// Raises the soft open-file limit to the hard limit and returns it (or `None` where the
/// platform has no such limit). Each connection costs one file descriptor.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::debug!(limit, "open-file limit");
            Some(limit)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            None
        }
    }
}

/// The connection cap each of `listeners` can really have under the open-file limit.
pub fn fit_connections(wanted: usize, listeners: u64, open_file_limit: Option<u64>) -> usize {
    let Some(limit) = open_file_limit else { return wanted };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FILES) / listeners.max(1)).unwrap_or(usize::MAX);
    if room < wanted {
        tracing::warn!(
            wanted,
            allowed = room,
            open_file_limit = limit,
            "FERRY_MAX_CONNECTIONS is above what the open-file limit allows; using the lower number"
        );
    }
    wanted.min(room).max(1)
}

/// The most a connection's read buffer holds, and the longest request head.
const READ_BUFFER: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown` completes, then drains. `name` labels the
/// log lines (`api`, `store`, `metrics`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    name: &'static str,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // hyper reads each connection into a buffer that grows with the reads up to a limit
    // (default ~400 KiB): 64 KiB keeps large uploads as fast (on loopback, measured) and holds
    // concurrent ones to a sixth of the memory. A request head must fit in it too.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(READ_BUFFER)
        .max_header_size(READ_BUFFER);
    let mut last_warning: Option<Instant> = None;
    let mut warn_once = |message: &str, detail: &dyn std::fmt::Display| {
        if last_warning.is_none_or(|at| at.elapsed() >= WARN_INTERVAL) {
            last_warning = Some(Instant::now());
            tracing::warn!(listener = name, limit = limits.max_connections, detail = %detail, "{message}");
        }
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors (or a connection reset before accept): back off
                    // briefly instead of spinning.
                    warn_once("cannot accept a connection", &e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn_once("connection limit reached: closing new connections until some end", &peer);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, idle) = (router.clone(), limits.body_idle_timeout);
        let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let has_body = !req.body().is_end_stream();
            let read_to_end = Arc::new(AtomicBool::new(false));
            let mut req = req.map(|body| {
                axum::body::Body::new(IdleBody::new(WatchEnd { inner: body, ended: read_to_end.clone() }, idle))
            });
            req.extensions_mut().insert(ConnectInfo(peer));
            let answer = router.clone().oneshot(req);
            async move {
                let mut response = answer.await?;
                // Answered before the body was read (a refusal: too large, wrong type, no
                // token...): hyper will close the connection rather than read the rest, so say
                // so, or a client reusing the connection loses its next request.
                if has_body && !read_to_end.load(Ordering::Acquire) {
                    response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection =
            graceful.watch(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(listener = name, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(listener = name, "requests still in flight after the drain timeout were cut off");
        }
    }
}

/// A request body that records when it was read to its end.
struct WatchEnd<B> {
    inner: B,
    ended: Arc<AtomicBool>,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for WatchEnd<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let frame = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_fits_under_the_open_file_limit() {
        assert_eq!(fit_connections(4096, 2, Some(1024)), (1024 - 256) / 2);
        assert_eq!(fit_connections(100, 2, Some(1_048_576)), 100);
        assert_eq!(fit_connections(100, 2, None), 100);
        assert_eq!(fit_connections(100, 2, Some(10)), 1);
    }
}
