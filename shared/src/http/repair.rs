//! Repair routes: deliver an event again, or a trigger's failed events in bulk; resume a
//! trigger's paused delivery.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::ToSchema;

use super::cursor_seal::{CursorSeal, Listing};
use super::extract::{OptionalJsonBody, PathId};
use super::problem::{ApiError, Problem};
use crate::app::{App, BulkRedelivery, RedeliverFilter, TriggerView};
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

/// Which of a trigger's events to deliver again.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverRequest {
    /// `failure` (default) or `success`.
    #[schema(value_type = Option<String>, example = "failure")]
    pub status: Option<String>,
    /// Only events fired at or after this instant (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Only events fired before this instant (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// `next_cursor` from the previous call.
    pub cursor: Option<String>,
}

fn instant(field: &str, raw: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    super::extract::instant(field, raw)
        .map_err(|e| crate::domain::validation::ValidationError::fields(vec![e]).into())
}

/// Deliver a trigger's failed (or delivered) events again, newest first, each as a new series
/// to the current target with the current secret. Bounded per call: at most 250 events are
/// read and 100 re-queued; call again with `next_cursor` until it is `null`.
#[utoipa::path(post, path = "/triggers/{id}/redeliver", tag = "triggers", operation_id = "redeliverTrigger",
    params(("id" = String, Path, description = "The trigger's id")),
    request_body(content = Option<RedeliverRequest>, content_type = "application/json"),
    responses(
        (status = 202, description = "How many were queued, and the cursor to go on", body = BulkRedelivery),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The trigger has no target", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `status`, `since`, `until` or `cursor`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn redeliver_trigger(
    State(app): State<Arc<App>>,
    Extension(seal): Extension<CursorSeal>,
    PathId(id): PathId,
    OptionalJsonBody(body): OptionalJsonBody<RedeliverRequest>,
) -> Result<Response, ApiError> {
    let body = body.unwrap_or_default();
    let status = match body.status.as_deref() {
        None | Some("failure") => crate::domain::event::EventStatus::Failure,
        Some("success") => crate::domain::event::EventStatus::Success,
        Some(_) => {
            return Err(crate::domain::validation::ValidationError::field(
                "status",
                "must be failure or success",
            )
            .into());
        }
    };
    let filter = RedeliverFilter {
        status,
        since: body
            .since
            .as_deref()
            .map(|v| instant("since", v))
            .transpose()?,
        until: body
            .until
            .as_deref()
            .map(|v| instant("until", v))
            .transpose()?,
        cursor: body
            .cursor
            .map(|c| seal.open(Listing::Events, &c))
            .transpose()?,
    };
    let mut done = app.redeliver_trigger(&id, filter).await?;
    done.next_cursor = done.next_cursor.map(|c| seal.seal(Listing::Events, &c));
    Ok((StatusCode::ACCEPTED, Json(done)).into_response())
}
