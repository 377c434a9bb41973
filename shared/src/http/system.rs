//! The unauthenticated health route.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// `ok` when the store answers and the scheduler is alive, else `degraded`.
    pub status: &'static str,
    pub store: bool,
    pub scheduler: bool,
    /// Panics caught since the process started: each failed only the request or job that hit
    /// it (and is logged with its location). Anything but 0 is a bug to report.
    pub panics: u64,
}

/// Liveness of the store and the scheduler; 503 when either is down.
#[utoipa::path(get, path = "/health", tag = "system", operation_id = "health", security(()),
    responses(
        (status = 200, description = "Both answer", body = HealthReport),
        (status = 503, description = "The store or the scheduler does not answer", body = HealthReport),
    ))]
pub async fn health(State(app): State<Arc<App>>) -> (StatusCode, Json<HealthReport>) {
    let h = app.health().await;
    let ok = h.store && h.scheduler;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(HealthReport {
            status: if ok { "ok" } else { "degraded" },
            store: h.store,
            scheduler: h.scheduler,
            panics: crate::supervise::panics(),
        }),
    )
}
