//! Unauthenticated routes: health and the OpenAPI document.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::app::App;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// `ok` when the store answers and the scheduler is alive, else `degraded`.
    pub status: &'static str,
    pub store: bool,
    pub scheduler: bool,
}

/// Liveness of the store and the scheduler; 503 when either is down.
#[utoipa::path(get, path = "/health", tag = "system", security(()),
    responses((status = 200, body = HealthReport), (status = 503, body = HealthReport)))]
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
        }),
    )
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", security(()),
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::openapi::ApiDoc::openapi())
}
