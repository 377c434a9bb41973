//! Repair routes: deliver an event again.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::extract::PathId;
use super::problem::{ApiError, Problem};
use crate::app::App;
use crate::domain::event::EventView;

/// Deliver an event again: a new series of attempts (same `webhook-id`), to its trigger's
/// current target, signed with its current secret, with the whole retry schedule.
#[utoipa::path(post, path = "/events/{id}/redeliver", tag = "events", operation_id = "redeliverEvent",
    params(("id" = String, Path, description = "The event's id")),
    responses(
        (status = 202, description = "Queued: the event, `pending`, with its new `delivery_series`", body = EventView),
        (status = 404, description = "No such event, or it has expired", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A delivery is under way, or there is nothing to deliver to (no trigger, deleted, or no target)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn redeliver_event(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let view = app.redeliver_event(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}
