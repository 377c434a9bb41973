//! Event log routes: listings by lifecycle state, one event, and per-trigger counts.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::cursor_seal::{CursorSeal, Listing};
use super::extract::{ApiQuery, PathId};
use super::json_page::JoinedJsonPage;
use super::problem::{ApiError, Problem};
use super::{default_limit, page_limit};
use crate::app::{App, EventFilter};
use crate::domain::event::{EventSource, EventStatus, EventView};
use crate::domain::lifecycle::EventState;
use crate::ports::{Page, TriggerStats};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventListQuery {
    /// `active` (fired less than the active window ago; default) or `archived`.
    #[serde(default = "default_state")]
    #[param(inline)]
    pub state: EventState,
    /// Only events of this trigger.
    pub trigger_id: Option<String>,
    /// Only events from this source.
    #[param(inline)]
    pub source: Option<EventSource>,
    /// Only test firings (`true`) or only real ones (`false`).
    pub is_test: Option<bool>,
    /// Only events with this outcome (`success`, `failure` or `pending`). The outcome is not a
    /// key: each request reads at most 250 events of the window and keeps the matching ones,
    /// so a page may hold fewer than `limit` and still have a `next_cursor`.
    #[param(value_type = Option<EventStatus>)]
    pub status: Option<String>,
    /// Only events fired at or after this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Only events fired before this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: usize,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

fn parse_status(raw: &str) -> Result<EventStatus, ApiError> {
    serde_json::from_value(serde_json::Value::String(raw.to_string()))
        .map_err(|_| ApiError::bad_request("status", "must be one of success, failure, pending"))
}

/// A bad instant in the query string is a 400, like every other bad query parameter.
fn parse_instant(field: &str, raw: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    super::extract::instant(field, raw).map_err(|e| ApiError::bad_request(&e.field, e.message))
}

fn default_state() -> EventState {
    EventState::Active
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    pub items: Vec<TriggerStats>,
}

/// List active or archived events, newest first.
#[utoipa::path(get, path = "/events", tag = "events", operation_id = "listEvents",
    params(EventListQuery),
    responses(
        (status = 200, description = "One page; `next_cursor` is null on the last", body = Page<EventView>),
        (status = 400, description = "Unknown or bad query parameter (`status`, `since`, `until` named), or `limit` out of range", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A cursor this listing did not return, or `until` not later than `since`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(seal): Extension<CursorSeal>,
    ApiQuery(q): ApiQuery<EventListQuery>,
) -> Result<JoinedJsonPage, ApiError> {
    let cursor = q
        .cursor
        .map(|c| seal.open(Listing::Events, &c))
        .transpose()?;
    let trigger_id = q
        .trigger_id
        .map(|raw| {
            super::extract::parse_id(&raw).ok_or_else(|| {
                ApiError::bad_request("trigger_id", "is not a trigger id (a 26-character ULID)")
            })
        })
        .transpose()?;
    let status = q.status.as_deref().map(parse_status).transpose()?;
    let since = q
        .since
        .as_deref()
        .map(|v| parse_instant("since", v))
        .transpose()?;
    let until = q
        .until
        .as_deref()
        .map(|v| parse_instant("until", v))
        .transpose()?;
    let page = app
        .list_event_views_json(EventFilter {
            state: q.state,
            trigger_id,
            source: q.source,
            is_test: q.is_test,
            status,
            since,
            until,
            limit: page_limit(q.limit)?,
            cursor,
        })
        .await?;
    Ok(JoinedJsonPage {
        items: page,
        seal,
        listing: Listing::Events,
    })
}

/// Read one event; expired events are gone (404).
#[utoipa::path(get, path = "/events/{id}", tag = "events", operation_id = "getEvent",
    params(("id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The event, with its lifecycle state as of now", body = EventView),
        (status = 404, description = "No such event, or it has expired", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
) -> Result<Json<EventView>, ApiError> {
    Ok(Json(app.get_event(&id).await?))
}

/// Per trigger: active and archived event counts and the last firing (cached for a few seconds).
#[utoipa::path(get, path = "/events/stats", tag = "events", operation_id = "eventStats",
    responses((status = 200, description = "One entry per trigger with events", body = StatsResponse)))]
pub async fn stats(State(app): State<Arc<App>>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let stats = app.stats().await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        axum::body::Bytes::from_owner(stats.json()),
    )
        .into_response())
}
