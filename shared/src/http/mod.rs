//! The HTTP API: one axum router served by the local server and by the Lambda functions alike.

pub mod api_keys;
pub mod auth;
pub mod cursor_seal;
pub mod docs;
pub mod events;
pub mod extract;
mod json_page;
pub mod occurrences;
pub mod openapi;
pub mod problem;
pub mod repair;
pub mod scrape;
pub mod system;
pub mod test_runs;
pub mod triggers;
pub mod ui;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

use crate::app::App;
use crate::config::ApiToken;
use crate::telemetry::http::{Tracked, Tracking};
use extract::BodyLimit;
use problem::ApiError;

pub const MAX_PAGE: usize = 200;

pub(crate) fn default_limit() -> usize {
    50
}

pub(crate) fn page_limit(limit: usize) -> Result<usize, ApiError> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ))
    }
}

/// Routes that need the bearer token.
fn protected(app: Arc<App>) -> Router {
    Router::new()
        .route("/triggers", post(triggers::create).get(triggers::list))
        .route("/triggers/test", post(triggers::test_definition))
        .route(
            "/triggers/{id}",
            get(triggers::get)
                .put(triggers::replace)
                .delete(triggers::delete),
        )
        .route("/triggers/{id}/pause", post(triggers::pause))
        .route("/triggers/{id}/resume", post(triggers::resume))
        .route("/triggers/{id}/fire", post(triggers::fire))
        .route("/triggers/{id}/skip", post(occurrences::skip))
        .route("/triggers/{id}/occurrences", get(occurrences::list))
        .route("/triggers/{id}/test", post(triggers::test_stored))
        .route(
            "/triggers/{id}/rotate-secret",
            post(triggers::rotate_secret),
        )
        .route("/test-runs", get(test_runs::list))
        .route("/test-runs/{id}", axum::routing::delete(test_runs::cancel))
        .route("/events", get(events::list))
        .route("/events/stats", get(events::stats))
        .route("/events/{id}", get(events::get))
        .route("/api-keys", post(api_keys::create).get(api_keys::list))
        .route("/api-keys/me", get(api_keys::me))
        .route("/api-keys/{id}", axum::routing::delete(api_keys::revoke))
        .route("/metrics", get(scrape::metrics))
        .route("/events/{id}/redeliver", post(repair::redeliver_event))
        .route(
            "/triggers/{id}/resume-delivery",
            post(repair::resume_delivery),
        )
        .route("/triggers/{id}/redeliver", post(repair::redeliver_trigger))
        .with_state(app)
}

/// The routes anyone may call, by template: the health check, the API's description, and the
/// pages, which hold no data (they ask for the token and send it with each API call). Every
/// other route a request matches needs the bearer token or an API key, so a route added
/// without a thought is closed, not open. A request no route matches gets its 404 unasked.
pub const PUBLIC: [&str; 7] = [
    "/health",
    "/openapi.json",
    "/",
    "/ui/{file}",
    "/docs",
    "/docs/",
    "/docs/{file}",
];

/// The whole API.
pub fn router(app: Arc<App>, token: ApiToken) -> Router {
    let limit = app.settings.max_body_bytes;
    let seal = cursor_seal::CursorSeal::from_token(&token);
    let public = Router::new()
        .route("/health", get(system::health))
        .route("/openapi.json", get(openapi::openapi))
        .with_state(app.clone())
        .merge(ui::routes())
        .merge(docs::routes());
    let edge = Edge {
        limit: BodyLimit(limit),
        seal,
        guard: Arc::new(auth::Guard {
            token,
            app: app.clone(),
        }),
    };
    // One stack, added once, the bearer guard in it: each `Router::layer` or `route_layer`
    // call boxes every route again, and a request then passes through one more boxed service
    // (cloned for the request, with everything under it) and one more boxed future.
    public
        .merge(protected(app))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(
            ServiceBuilder::new()
                .layer(edge)
                .layer(panic_layer())
                .layer(DefaultBodyLimit::max(limit)),
        )
}

/// What every request carries to its handler (the body limit, which a 413 names, and the key
/// that seals listing cursors) and the guard of the routes that are not [`PUBLIC`].
#[derive(Clone)]
struct Edge {
    limit: BodyLimit,
    seal: cursor_seal::CursorSeal,
    guard: Arc<auth::Guard>,
}

impl<S> tower::Layer<S> for Edge {
    type Service = AtEdge<S>;

    fn layer(&self, inner: S) -> AtEdge<S> {
        AtEdge {
            inner,
            edge: self.clone(),
        }
    }
}

/// The outermost step of every request: its extensions, its span, access log, metrics and
/// failure log ([`crate::telemetry::http::Tracked`]), then the bearer guard
/// ([`auth::Guard::admit`]). A service of its own rather than `from_fn` layers, which boxed the
/// rest of the stack and a future again for every request.
#[derive(Clone)]
struct AtEdge<S> {
    inner: S,
    edge: Edge,
}

impl<S> tower::Service<Request> for AtEdge<S>
where
    S: tower::Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Tracked<auth::GuardFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let extensions = req.extensions_mut();
        extensions.insert(self.edge.limit);
        extensions.insert(self.edge.seal.clone());
        let tracking = Tracking::start(&req);
        let guarded = req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|route| !PUBLIC.contains(&route.as_str()));
        let answer = if guarded {
            self.edge.guard.admit(req, &mut self.inner)
        } else {
            auth::GuardFuture::admitted(self.inner.call(req))
        };
        tracking.around(answer)
    }
}

/// A panic in any handler fails that request alone, as a problem+json 500 (the panic hook
/// logs where it happened).
fn panic_layer() -> CatchPanicLayer<fn(Box<dyn std::any::Any + Send + 'static>) -> Response> {
    CatchPanicLayer::custom(problem::panic_response)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    fn boom() -> &'static str {
        let items: Vec<&str> = Vec::new();
        // An out-of-bounds index: the kind of bug the layer is there for.
        items[std::hint::black_box(3)]
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_its_request_alone() {
        let router = Router::new()
            .route("/boom", get(|| async { boom() }))
            .route("/fine", get(|| async { "fine" }))
            .layer(panic_layer());
        let boom = router
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(boom.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(boom.headers()["content-type"], problem::PROBLEM_JSON);
        let fine = router
            .oneshot(Request::get("/fine").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(fine.status(), StatusCode::OK);
    }
}
