//! Repair routes: deliver an event again; resume a trigger's paused delivery.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::PathId;
use super::problem::{ApiError, Problem};
use crate::app::{App, TriggerView};
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

/// Resume a trigger's delivery after it was paused (`target.pause_after_failures` events
/// failed in a row): firings are delivered again from now on. Changes nothing when not paused.
#[utoipa::path(post, path = "/triggers/{id}/resume-delivery", tag = "triggers", operation_id = "resumeDelivery",
    params(("id" = String, Path, description = "The trigger's id"),
        ("If-Match" = Option<String>, Header, description = "Only if the trigger is still at this version (`ETag`)")),
    responses(
        (status = 200, description = "Delivering again: the trigger, without `delivery_paused_at`", body = TriggerView,
            headers(("ETag" = String, description = "The new version"))),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since it was read", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resume_delivery(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let if_match = headers
        .get(header::IF_MATCH)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("If-Match", "is not visible ASCII"))
        })
        .transpose()?;
    let trigger = app.resume_delivery(&id, if_match).await?;
    let etag = HeaderValue::from_str(&trigger.etag()).ok();
    let mut response = Json(app.view(trigger)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}
