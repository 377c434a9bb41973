//! Request tracing and HTTP metrics: one span per request (method, route template, status,
//! latency), an access log line at `info`, and the request counter and duration histogram.
//! Routes are the router's templates (`/triggers/{id}`), never raw paths, so ids stay out of
//! labels; no header is ever logged, so neither is the bearer token.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::{HTTP_DURATION, HTTP_REQUESTS};

/// The label for a request no route matched (a 404 from the fallback).
pub const UNMATCHED: &str = "unmatched";

/// Wraps one request: its span, access log line and metrics.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let span = tracing::info_span!("request", %method, route = %route,
        status = tracing::field::Empty, latency_ms = tracing::field::Empty);
    let response = next.run(req).instrument(span.clone()).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    // Whole microseconds, so the log shows 0.227 rather than 0.22730499999999998.
    let latency_ms = took.as_micros() as f64 / 1000.0;
    span.record("status", status);
    span.record("latency_ms", latency_ms);
    // Outside the span, which carries the same fields: one line, each field once.
    tracing::info!(%method, route = %route, status, latency_ms, "request");
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(took.as_secs_f64());
    response
}
