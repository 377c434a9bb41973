//! The accept loop: HTTP/1.1 with a header-read timeout, a per-request timeout and a cap on
//! open connections, so slow or half-open clients cannot starve the others (`/health` keeps
//! answering with hundreds of them connected).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;

use crate::config::ServerLimits;
use crate::deadlines::Deadlines;

/// After an accept error (e.g. out of file descriptors), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long in-flight requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// The router with a deadline on each request, body upload included. Wrapped around the whole
/// router rather than added as a layer: `Router::layer` boxes every route once more, and each
/// request then pays for one more boxed service and future.
#[derive(Clone)]
struct Within {
    router: Router,
    limit: Duration,
    deadlines: Deadlines,
}

impl Service<hyper::Request<Incoming>> for Within {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<Incoming>) -> Self::Future {
        let answer = self.router.call(req);
        let limit = self.limit;
        let deadline = self.deadlines.after(limit);
        Box::pin(async move {
            Ok(tokio::select! {
                biased;
                answered = answer => match answered {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                () = deadline => etp::http::problem::ApiError::Timeout {
                    limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                }
                .into_response(),
            })
        })
    }
}

/// Raises the soft limit on open files to the hard one, so the connection cap, not the
/// descriptor limit, decides how many clients are served.
fn raise_fd_limit() {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    raise_fd_limit();
    let deadlines = Deadlines::default();
    let sweeper = tokio::spawn(deadlines.clone().sweep());
    let router = Within {
        router,
        limit: limits.request_timeout,
        deadlines: deadlines.clone(),
    };
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(deadlines)
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Client errors (resets, header timeouts) end only their own connection.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open after the drain"),
    }
    sweeper.abort();
}
