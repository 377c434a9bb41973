//! Request tracing and HTTP metrics: one span per request (method, route template, status,
//! latency), an access log line at `info`, and the request counter and duration histogram.
//! Routes are the router's templates (`/triggers/{id}`), never raw paths, so ids stay out of
//! labels; no header is ever logged, so neither is the bearer token.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::SharedString;
use tracing::Instrument;

use super::{HTTP_DURATION, HTTP_REQUESTS};

/// The label for a request no route matched (a 404 from the fallback).
pub const UNMATCHED: &str = "unmatched";

/// Wraps one request: its span, access log line and metrics.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
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
    crate::http::problem::log_failure(&method, &route, &response);
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status_label(status))
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(took.as_secs_f64());
    response
}

/// Route templates seen so far, shared: a label is then a reference count, not a new string per
/// request. The router's templates are a small fixed set (never raw paths).
static ROUTES: LazyLock<RwLock<HashSet<Arc<str>>>> = LazyLock::new(Default::default);

/// The `route` label: the matched template, or [`UNMATCHED`].
fn route_label(matched: Option<&str>) -> SharedString {
    let Some(path) = matched else {
        return SharedString::const_str(UNMATCHED);
    };
    // A poisoned lock only means another request panicked while holding it; the set is whole.
    if let Some(known) = ROUTES.read().unwrap_or_else(|e| e.into_inner()).get(path) {
        return known.clone().into();
    }
    let mut routes = ROUTES.write().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = routes.get(path) {
        return known.clone().into();
    }
    let known: Arc<str> = Arc::from(path);
    routes.insert(known.clone());
    known.into()
}

/// The `status` label; the statuses the API answers with need no new string.
fn status_label(status: u16) -> SharedString {
    const KNOWN: [(u16, &str); 20] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (412, "412"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (428, "428"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
    ];
    match KNOWN.iter().find(|(code, _)| *code == status) {
        Some((_, label)) => SharedString::const_str(label),
        None => SharedString::from_owned(status.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_template_and_the_code() {
        assert_eq!(&*route_label(None), UNMATCHED);
        assert_eq!(&*route_label(Some("/triggers/{id}")), "/triggers/{id}");
        assert_eq!(&*route_label(Some("/triggers/{id}")), "/triggers/{id}");
        for code in [200, 202, 418, 422, 599] {
            assert_eq!(&*status_label(code), code.to_string());
        }
    }
}
