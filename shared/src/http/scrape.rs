//! `GET /metrics`: every metric family as Prometheus text, behind the token on the API router,
//! or without it on the separate address `ETP_METRICS_LISTEN` names (local server only).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::problem::ApiError;
use crate::app::App;

/// The Prometheus text exposition format's content type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metrics in Prometheus text; 404 where this process writes them as EMF instead (Lambda).
#[utoipa::path(get, path = "/metrics", tag = "system", operation_id = "metrics",
    responses(
        (status = 200, description = "Every metric family in the Prometheus text format \
            (`etp_firings_total`, `etp_fire_lateness_seconds`, `etp_deliveries_total`, ...)",
            content_type = "text/plain", body = String),
        (status = 404, description = "This runtime writes its metrics another way (CloudWatch EMF on AWS)",
            content_type = "application/problem+json", body = super::problem::Problem),
    ))]
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    match app.render_metrics().await {
        Some(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response(),
        None => ApiError::NoRoute.into_response(),
    }
}

/// `GET /metrics` alone, without the token: for `ETP_METRICS_LISTEN`, an address only the
/// scraper reaches.
pub fn metrics_only(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(app)
        .fallback(|| async { ApiError::NoRoute })
}
