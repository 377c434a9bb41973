//! The one place that maps errors to HTTP statuses and `application/problem+json` bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::domain::api_key::Scope;
use crate::domain::validation::{FieldError, ValidationError};
use crate::ports::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// What is wrong with which field, where fields are at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// On a 403: the scope the API key would need.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    App(#[from] AppError),
    /// The request could not be read (malformed JSON, bad query string, missing body).
    #[error("{detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("unauthorized")]
    Unauthorized,
    /// The API key is valid but may not do this: it lacks `scope` (or, for `fire`, the key is
    /// limited to other triggers).
    #[error("{detail}")]
    Forbidden { scope: Scope, detail: String },
    #[error("no such route")]
    NoRoute,
    /// A path id that is not an id this API issues.
    #[error("unknown id")]
    UnknownId { id: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request, body included, took longer than the server allows.
    #[error("request timed out")]
    Timeout { limit_ms: u64 },
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::App(AppError::Validation(e))
    }
}

impl ApiError {
    /// A 403 for a key that lacks `scope`.
    pub fn lacks_scope(scope: Scope) -> Self {
        ApiError::Forbidden {
            scope,
            detail: format!("this key lacks the scope `{scope}`"),
        }
    }

    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::BadRequest {
            detail: format!("{field}: {message}"),
            errors: vec![FieldError::new(field, message)],
        }
    }

    fn problem(&self) -> (StatusCode, &'static str, String, Vec<FieldError>) {
        use StatusCode as S;
        match self {
            ApiError::App(AppError::Validation(v)) => (
                S::UNPROCESSABLE_ENTITY,
                "validation-error",
                v.detail.clone(),
                v.errors.clone(),
            ),
            ApiError::App(AppError::NotFound { what, id }) => (
                S::NOT_FOUND,
                "not-found",
                format!("no {what} with id {id:?}"),
                vec![],
            ),
            ApiError::App(AppError::Conflict(detail)) => {
                (S::CONFLICT, "conflict", detail.clone(), vec![])
            }
            ApiError::App(e @ AppError::PreconditionFailed { .. }) => (
                S::PRECONDITION_FAILED,
                "precondition-failed",
                e.to_string(),
                vec![],
            ),
            ApiError::App(AppError::Store(StoreError::VersionConflict)) => (
                S::CONFLICT,
                "conflict",
                "the resource was changed concurrently; read it again and retry".into(),
                vec![],
            ),
            ApiError::App(AppError::Store(StoreError::Corrupt(_))) => (
                S::INTERNAL_SERVER_ERROR,
                "internal-error",
                "a stored record could not be read; the failure is logged".into(),
                vec![],
            ),
            ApiError::App(AppError::Store(_) | AppError::Scheduler(_)) => (
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "a backing service is unavailable; retry shortly".into(),
                vec![],
            ),
            ApiError::App(e @ AppError::Quota { what, .. }) => (
                // Waiting test runs drain by themselves: a retry later can succeed. Stored
                // triggers stay until deleted: the collection is full.
                if *what == "triggers" {
                    S::CONFLICT
                } else {
                    S::TOO_MANY_REQUESTS
                },
                "quota-exceeded",
                format!(
                    "{e}; {}",
                    if *what == "triggers" {
                        "delete triggers first (ETP_MAX_TRIGGERS)"
                    } else {
                        "wait for one to fire, or cancel one (ETP_MAX_PENDING_TEST_RUNS)"
                    }
                ),
                vec![],
            ),
            ApiError::App(AppError::Busy) => (
                S::SERVICE_UNAVAILABLE,
                "busy",
                "every slot for schema work is taken; retry shortly".into(),
                vec![],
            ),
            ApiError::App(AppError::Internal(_)) => (
                S::INTERNAL_SERVER_ERROR,
                "internal-error",
                "the server failed unexpectedly; the failure is logged".into(),
                vec![],
            ),
            ApiError::App(e @ AppError::PayloadTooLarge { .. }) => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!("{e} (ETP_MAX_PAYLOAD_BYTES)"),
                vec![FieldError::new("payload", e.to_string())],
            ),
            ApiError::BadRequest { detail, errors } => (
                S::BAD_REQUEST,
                "bad-request",
                detail.clone(),
                errors.clone(),
            ),
            ApiError::PayloadTooLarge { limit } => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!("the request body is larger than the limit of {limit} bytes"),
                vec![],
            ),
            ApiError::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as JSON with Content-Type: application/json".into(),
                vec![],
            ),
            ApiError::Unauthorized => (
                S::UNAUTHORIZED,
                "unauthorized",
                "send a valid API token as Authorization: Bearer <token>".into(),
                vec![],
            ),
            ApiError::Forbidden { detail, .. } => {
                (S::FORBIDDEN, "forbidden", detail.clone(), vec![])
            }
            ApiError::UnknownId { id } => (
                S::NOT_FOUND,
                "not-found",
                format!("nothing has the id {id:?}: ids are 26-character ULIDs"),
                vec![],
            ),
            ApiError::NoRoute => (
                S::NOT_FOUND,
                "not-found",
                "no such route; see /openapi.json".into(),
                vec![],
            ),
            ApiError::Timeout { limit_ms } => (
                S::REQUEST_TIMEOUT,
                "request-timeout",
                format!("the request was not completed within {limit_ms} ms (ETP_REQUEST_TIMEOUT)"),
                vec![],
            ),
            ApiError::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not accept that method; see /openapi.json".into(),
                vec![],
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, detail, errors) = self.problem();
        let body = Problem {
            kind: format!("https://etp.invalid/problems/{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            errors,
            scope: match &self {
                ApiError::Forbidden { scope, .. } => Some(scope.to_string()),
                _ => None,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"etp\""),
            );
        }
        if status.is_server_error() {
            // The cause is for operators, logged once by `log_failure`; clients get a generic
            // detail.
            response
                .extensions_mut()
                .insert(FailureCause(cause_chain(&self)));
        }
        response
    }
}

/// Why a request failed with a 5xx: the error and its sources, for the log only.
#[derive(Debug, Clone)]
pub struct FailureCause(pub String);

/// `e: source: source ...`, the whole chain on one line.
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // `transparent` and `{0}` wrappers repeat their source's text.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The one place a failed request is logged (by the request's tracking, which names it):
/// method, route template (never the raw path, which may carry ids), status, and the cause its
/// error carried.
pub fn log_failure(method: &axum::http::Method, route: &str, response: &Response) {
    if let Some(FailureCause(cause)) = response.extensions().get::<FailureCause>() {
        tracing::error!(%method, %route, status = response.status().as_u16(), %cause, "request failed");
    }
}

/// The answer to a request whose handler panicked (the panic hook has logged where): a
/// problem+json 500 that says nothing of the cause.
pub fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::App(AppError::Internal("a request handler panicked".into())).into_response()
}
