//! The guard of every route that is not public ([`super::PUBLIC`]): who is calling (the
//! bootstrap token or an API key), and whether the route's scope, from the one table below,
//! allows it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use super::problem::ApiError;
use crate::app::App;
use crate::config::ApiToken;
use crate::domain::api_key::{ApiKey, Scope};

/// What a protected route needs: `Some(scope)`, or `None` for any valid key.
type Need = Option<Scope>;

/// The scope each protected route needs, by method and route template: the one place scopes
/// are checked. `admin` grants every scope. A protected route missing here needs `admin`, so a
/// route added without a thought is closed, not open. Mirrored in the README's table.
pub const SCOPES: &[(&str, &str, Need)] = &[
    ("GET", "/triggers", Some(Scope::TriggersRead)),
    ("POST", "/triggers", Some(Scope::TriggersWrite)),
    ("POST", "/triggers/test", Some(Scope::TriggersWrite)),
    ("GET", "/triggers/{id}", Some(Scope::TriggersRead)),
    ("PUT", "/triggers/{id}", Some(Scope::TriggersWrite)),
    ("DELETE", "/triggers/{id}", Some(Scope::TriggersWrite)),
    ("POST", "/triggers/{id}/pause", Some(Scope::TriggersWrite)),
    ("POST", "/triggers/{id}/resume", Some(Scope::TriggersWrite)),
    ("POST", "/triggers/{id}/fire", Some(Scope::Fire)),
    ("POST", "/triggers/{id}/test", Some(Scope::TriggersWrite)),
    ("POST", "/triggers/{id}/skip", Some(Scope::TriggersWrite)),
    (
        "GET",
        "/triggers/{id}/occurrences",
        Some(Scope::TriggersRead),
    ),
    (
        "POST",
        "/triggers/{id}/rotate-secret",
        Some(Scope::TriggersWrite),
    ),
    (
        "POST",
        "/triggers/{id}/redeliver",
        Some(Scope::TriggersWrite),
    ),
    (
        "POST",
        "/triggers/{id}/resume-delivery",
        Some(Scope::TriggersWrite),
    ),
    ("POST", "/events/{id}/redeliver", Some(Scope::TriggersWrite)),
    ("GET", "/test-runs", Some(Scope::TriggersRead)),
    ("DELETE", "/test-runs/{id}", Some(Scope::TriggersWrite)),
    ("GET", "/events", Some(Scope::EventsRead)),
    ("GET", "/events/stats", Some(Scope::EventsRead)),
    ("GET", "/events/{id}", Some(Scope::EventsRead)),
    ("GET", "/metrics", Some(Scope::MetricsRead)),
    ("GET", "/api-keys", Some(Scope::Admin)),
    ("POST", "/api-keys", Some(Scope::Admin)),
    ("DELETE", "/api-keys/{id}", Some(Scope::Admin)),
    ("GET", "/api-keys/me", None),
];

/// The route whose `fire` scope a key's `trigger_ids` limit.
const FIRE_ROUTE: &str = "/triggers/{id}/fire";

/// What `method` on `route` needs.
pub fn scope_for(method: &Method, route: &str) -> Need {
    SCOPES
        .iter()
        .find(|(m, r, _)| *m == method.as_str() && *r == route)
        .map_or(Some(Scope::Admin), |(_, _, need)| *need)
}

/// Who made the request, for handlers that need to know (`GET /api-keys/me`).
#[derive(Debug, Clone)]
pub enum Caller {
    /// `ETP_API_TOKEN`: every scope.
    Bootstrap,
    Key(ApiKey),
}

impl Caller {
    fn grants(&self, scope: Scope) -> bool {
        match self {
            Caller::Bootstrap => true,
            Caller::Key(key) => key.grants(scope),
        }
    }
}

/// The guard's state: the bootstrap token and the app (whose store holds the keys); shared, as
/// axum copies the router's edge (which holds it) for every request.
pub struct Guard {
    pub token: ApiToken,
    pub app: Arc<App>,
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
}

/// Whether `caller` may do what the request asks (`path_id`: the route's `{id}`, as stored);
/// the problem to answer otherwise.
fn authorize(caller: &Caller, parts: &Parts, path_id: Option<&str>) -> Result<(), ApiError> {
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let Some(scope) = scope_for(&parts.method, route) else {
        return Ok(());
    };
    if !caller.grants(scope) {
        return Err(ApiError::lacks_scope(scope));
    }
    if let Caller::Key(key) = caller
        && route == FIRE_ROUTE
        && !key.grants(Scope::Admin)
        && !key.trigger_ids.is_empty()
        && !path_id.is_some_and(|id| key.trigger_ids.iter().any(|t| t == id))
    {
        return Err(ApiError::Forbidden {
            scope: Scope::Fire,
            detail: "this key may fire only the triggers in its `trigger_ids`".into(),
        });
    }
    Ok(())
}

impl Guard {
    /// `req` (to a protected route) handed to `route` if its bearer token may make it; the
    /// refusal otherwise. The bootstrap token, checked without a wait, goes straight on; only
    /// an API key's lookup is boxed, with a copy of the route to call after it.
    pub fn admit<S>(self: &Arc<Self>, mut req: Request, route: &mut S) -> GuardFuture<S::Future>
    where
        S: tower::Service<Request, Error = Infallible> + Clone + Send + 'static,
        S::Response: IntoResponse,
        S::Future: Send + 'static,
    {
        let key = match bearer(&req) {
            None => return GuardFuture::refused(ApiError::Unauthorized.into_response()),
            // The bootstrap token grants every scope and every trigger: nothing to look up.
            Some(t) if self.token.matches(t) => {
                req.extensions_mut().insert(Caller::Bootstrap);
                return GuardFuture::admitted(route.call(req));
            }
            Some(t) => t.to_owned(),
        };
        // The route is called after the lookup: the copy made ready goes with it, as Tower asks.
        let fresh = route.clone();
        let mut route = std::mem::replace(route, fresh);
        let guard = self.clone();
        GuardFuture::Checking {
            checking: Box::pin(async move {
                match admit_key(&guard, &key, req).await {
                    Ok(req) => match route.call(req).await {
                        Ok(response) => response.into_response(),
                        Err(never) => match never {},
                    },
                    Err(refused) => refused,
                }
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// What [`Guard::admit`] answers: a refusal, the route's own answer, or (for an API key)
    /// the key's lookup and then the route's answer.
    #[project = GuardProjection]
    pub enum GuardFuture<F> {
        Refused { response: Option<Response> },
        Admitted { #[pin] handling: F },
        Checking { checking: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl<F> GuardFuture<F> {
    fn refused(response: Response) -> Self {
        Self::Refused {
            response: Some(response),
        }
    }

    /// The route's own answer, for a request that needs no token or has passed.
    pub fn admitted(handling: F) -> Self {
        Self::Admitted { handling }
    }
}

impl<F, R> Future for GuardFuture<F>
where
    F: Future<Output = Result<R, Infallible>>,
    R: IntoResponse,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardProjection::Refused { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| ApiError::Unauthorized.into_response()))),
            GuardProjection::Admitted { handling } => {
                handling.poll(cx).map(|answered| match answered {
                    Ok(response) => Ok(response.into_response()),
                    Err(never) => match never {},
                })
            }
            // The guard runs outside the panic layer: a panic while a key is looked up fails
            // this request alone, as a handler's does.
            GuardProjection::Checking { checking } => {
                let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    checking.as_mut().poll(cx)
                }));
                match polled {
                    Ok(answer) => answer.map(Ok),
                    Err(panic) => Poll::Ready(Ok(super::problem::panic_response(panic))),
                }
            }
        }
    }
}

/// The request from an API key `token`, with its caller, if the key exists and may do what it
/// asks; the refusal otherwise.
async fn admit_key(guard: &Guard, token: &str, req: Request) -> Result<Request, Response> {
    let caller = match guard.app.authenticate_key(token).await {
        Ok(Some(key)) => Caller::Key(key),
        Ok(None) => return Err(ApiError::Unauthorized.into_response()),
        Err(e) => return Err(ApiError::App(e).into_response()),
    };
    let (mut parts, body) = req.into_parts();
    // The router's own reading of the path, so a prefix in front of the API changes nothing.
    let id = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|params| {
            let (_, raw) = params.iter().find(|(name, _)| *name == "id")?;
            super::extract::parse_id(raw)
        });
    if let Err(e) = authorize(&caller, &parts, id.as_deref()) {
        return Err(e.into_response());
    }
    parts.extensions.insert(caller);
    Ok(Request::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_protected_route_has_a_scope() {
        let doc = super::super::openapi::document();
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                let public = op["security"].as_array().is_some_and(|r| {
                    r.iter()
                        .all(|s| s.as_object().is_some_and(|o| o.is_empty()))
                });
                if public || !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                    continue;
                }
                let upper = method.to_ascii_uppercase();
                assert!(
                    SCOPES.iter().any(|(m, r, _)| *m == upper && r == path),
                    "{upper} {path} has no entry in the scope table"
                );
            }
        }
    }

    /// An API key's lookup runs outside the panic layer: a panic there answers its own
    /// request with a problem+json 500, and the server goes on.
    #[tokio::test]
    async fn a_panicking_key_lookup_fails_its_request_alone() {
        type Route = std::future::Ready<Result<Response, Infallible>>;
        let lookup: GuardFuture<Route> = GuardFuture::Checking {
            checking: Box::pin(async {
                let keys: Vec<Response> = Vec::new();
                // A row taken for granted that is not there: the kind of bug the catch is for.
                keys.into_iter()
                    .nth(std::hint::black_box(3))
                    .expect("a stored key")
            }),
        };
        let Ok(answer) = lookup.await;
        assert_eq!(
            answer.status(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            answer.headers()[header::CONTENT_TYPE],
            super::super::problem::PROBLEM_JSON
        );
        let fine: GuardFuture<Route> =
            GuardFuture::admitted(std::future::ready(Ok(().into_response())));
        let Ok(answer) = fine.await;
        assert_eq!(answer.status(), axum::http::StatusCode::OK);
    }

    #[test]
    fn unlisted_routes_need_admin() {
        assert_eq!(scope_for(&Method::GET, "/nowhere"), Some(Scope::Admin));
        assert_eq!(scope_for(&Method::GET, "/api-keys/me"), None);
        assert_eq!(
            scope_for(&Method::POST, "/triggers/{id}/fire"),
            Some(Scope::Fire)
        );
    }
}
