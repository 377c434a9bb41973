//! Trigger routes: CRUD, pause/resume, api firing and test runs.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::cursor_seal::{CursorSeal, Listing};
use super::extract::{ApiQuery, JsonBody, OptionalJsonBody, PathId};
use super::json_page::JoinedJsonPage;
use super::problem::{ApiError, Problem};
use super::{default_limit, page_limit};
use crate::app::{App, TestRunOutcome, TriggerView};
use crate::domain::event::EventView;
use crate::domain::trigger::{TriggerDefinition, TriggerKind, TriggerStatus};
use crate::ports::{Page, TriggerQuery};

type Result<T> = std::result::Result<T, ApiError>;

const MAX_IDEMPOTENCY_KEY: usize = 255;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TriggerListQuery {
    /// Only triggers of this kind.
    #[param(inline)]
    pub kind: Option<TriggerKind>,
    /// Only triggers in this status.
    #[param(inline)]
    pub status: Option<TriggerStatus>,
    /// Page size, 1 to 200 (default 50).
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: usize,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// `If-Match`, for the documentation only: handlers read it from the headers.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct IfMatch {
    /// An `ETag` from a read (`"3"`, `W/"3"`, a list, or `*`); 412 when the trigger has changed.
    #[param(rename = "If-Match", value_type = String)]
    if_match: Option<String>,
}

/// `Idempotency-Key`, for the documentation only.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct IdempotencyKey {
    /// Same key and payload, same event: a retry does not fire twice. 1 to 255 visible ASCII
    /// characters; 422 when reused with another payload.
    #[param(rename = "Idempotency-Key", value_type = String, min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
}

/// The fire route's `Idempotency-Key`, checked, or why it is unusable; the handler decides
/// when that matters (a dry run ignores it). Only this header is read: taking the whole
/// `HeaderMap` copies every header of every firing.
pub struct KeyHeader(pub Result<Option<String>>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for KeyHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        let checked = header_str(&parts.headers, "idempotency-key").and_then(|key| match key {
            Some(k) if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY => Err(ApiError::bad_request(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY} characters"),
            )),
            key => Ok(key.map(str::to_owned)),
        });
        Ok(Self(checked))
    }
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request(name, "must be visible ASCII"))
        })
        .transpose()
}

pub(super) fn with_etag(status: StatusCode, view: TriggerView) -> Response {
    let etag = HeaderValue::from_str(&view.trigger.etag()).ok();
    let mut response = (status, Json(view)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// Create a trigger.
#[utoipa::path(post, path = "/triggers", tag = "triggers", operation_id = "createTrigger",
    request_body(content = TriggerDefinition, description = "A scheduled trigger with its `schedule`, or an api trigger with its `payload_schema`"),
    responses(
        (status = 201, description = "Created", body = TriggerView, headers(
            ("Location" = String, description = "`/triggers/{id}`"),
            ("ETag" = String, description = "The version, for `If-Match`"))),
        (status = 409, description = "`ETP_MAX_TRIGGERS` triggers are stored already (`quota-exceeded`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid definition; `errors` names each field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<Arc<App>>,
    JsonBody(def): JsonBody<TriggerDefinition>,
) -> Result<Response> {
    let trigger = app.create_trigger(def).await?;
    let location = HeaderValue::from_str(&format!("/triggers/{}", trigger.id)).ok();
    let mut response = showing_secret(with_etag(
        StatusCode::CREATED,
        app.view_with_secret(trigger),
    ));
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A response that carries a signing secret must not be kept by any cache.
fn showing_secret(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Give the trigger a new signing secret, shown in this response only. Deliveries from now on
/// (retries of earlier firings included) are signed with it.
#[utoipa::path(post, path = "/triggers/{id}/rotate-secret", tag = "triggers", operation_id = "rotateTriggerSecret",
    params(("id" = String, Path, description = "The trigger's id"), IfMatch),
    responses(
        (status = 200, description = "The trigger with its new `secret`", body = TriggerView,
            headers(("ETag" = String, description = "The new version"))),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since it was read", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_secret(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response> {
    let t = app
        .rotate_secret(&id, header_str(&headers, "if-match")?)
        .await?;
    Ok(showing_secret(with_etag(
        StatusCode::OK,
        app.view_with_secret(t),
    )))
}

/// List triggers in creation order.
#[utoipa::path(get, path = "/triggers", tag = "triggers", operation_id = "listTriggers",
    params(TriggerListQuery),
    responses(
        (status = 200, description = "One page; `next_cursor` is null on the last", body = Page<TriggerView>),
        (status = 400, description = "Unknown or bad query parameter, or `limit` out of range", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A cursor this listing did not return", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(seal): Extension<CursorSeal>,
    ApiQuery(q): ApiQuery<TriggerListQuery>,
) -> Result<JoinedJsonPage> {
    let cursor = q
        .cursor
        .map(|c| seal.open(Listing::Triggers, &c))
        .transpose()?;
    let page = app
        .list_trigger_views_json(&TriggerQuery {
            kind: q.kind,
            status: q.status,
            now: Some(app.now()),
            limit: page_limit(q.limit)?,
            cursor,
        })
        .await?;
    Ok(JoinedJsonPage {
        items: page,
        seal,
        listing: Listing::Triggers,
    })
}

/// Read one trigger; the `ETag` header carries its version.
#[utoipa::path(get, path = "/triggers/{id}", tag = "triggers", operation_id = "getTrigger",
    params(("id" = String, Path, description = "The trigger's id")),
    responses(
        (status = 200, description = "The trigger", body = TriggerView,
            headers(("ETag" = String, description = "The version, for `If-Match`"))),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(State(app): State<Arc<App>>, PathId(id): PathId) -> Result<Response> {
    let view = app.trigger_view_json(&id).await?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        axum::body::Bytes::from_owner(view.json.clone()),
    )
        .into_response();
    if let Ok(etag) = HeaderValue::from_str(&view.etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// Replace a trigger's definition; only future firings see the change. The kind cannot change.
#[utoipa::path(put, path = "/triggers/{id}", tag = "triggers", operation_id = "replaceTrigger",
    request_body(content = TriggerDefinition, description = "The whole new definition, of the same kind"),
    params(("id" = String, Path, description = "The trigger's id"), IfMatch),
    responses(
        (status = 200, description = "Replaced", body = TriggerView,
            headers(("ETag" = String, description = "The new version"))),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since it was read", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid definition, or a different kind", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replace(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
    headers: HeaderMap,
    JsonBody(def): JsonBody<TriggerDefinition>,
) -> Result<Response> {
    let if_match = header_str(&headers, "if-match")?;
    let trigger = app.replace_trigger(&id, def, if_match).await?;
    Ok(with_etag(StatusCode::OK, app.view(trigger)))
}

/// Delete a trigger; its schedule stops and its past events stay.
#[utoipa::path(delete, path = "/triggers/{id}", tag = "triggers", operation_id = "deleteTrigger",
    params(("id" = String, Path, description = "The trigger's id"), IfMatch),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since it was read", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<StatusCode> {
    app.delete_trigger(&id, header_str(&headers, "if-match")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What `POST /triggers/{id}/pause` may carry.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Resume by itself at this instant (the first occurrence from then fires). Without it the
    /// pause lasts until `resume`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

/// Pause a trigger: it does not fire until resumed, or until `until` when given. Pausing a
/// paused trigger changes nothing, except a new `until`.
#[utoipa::path(post, path = "/triggers/{id}/pause", tag = "triggers", operation_id = "pauseTrigger",
    request_body(content = Option<PauseRequest>, description = "Optional: `{\"until\": \"<instant>\"}` to resume by itself then"),
    params(("id" = String, Path, description = "The trigger's id"), IfMatch),
    responses(
        (status = 200, description = "Paused", body = TriggerView,
            headers(("ETag" = String, description = "The new version"))),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The trigger has completed", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since it was read", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`until` is not after now, or too far ahead", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pause(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
    headers: HeaderMap,
    OptionalJsonBody(body): OptionalJsonBody<Value>,
) -> Result<Response> {
    // No body, or `null`, pauses until resumed.
    let until = match body {
        None | Some(Value::Null) => None,
        Some(v) => {
            let bytes = serde_json::to_vec(&v).unwrap_or_default();
            super::extract::parse_json::<PauseRequest>(&bytes)?.until
        }
    };
    let t = app
        .set_paused(&id, Some(until), header_str(&headers, "if-match")?)
        .await?;
    Ok(with_etag(StatusCode::OK, app.view(t)))
}

/// Resume a paused trigger; it fires at its next occurrence from now.
#[utoipa::path(post, path = "/triggers/{id}/resume", tag = "triggers", operation_id = "resumeTrigger",
    params(("id" = String, Path, description = "The trigger's id"), IfMatch),
    responses(
        (status = 200, description = "Active", body = TriggerView,
            headers(("ETag" = String, description = "The new version"))),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The trigger has completed", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since it was read", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resume(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response> {
    let t = app
        .set_paused(&id, None, header_str(&headers, "if-match")?)
        .await?;
    Ok(with_etag(StatusCode::OK, app.view(t)))
}

/// The 202 of a firing; `event_json`: the event's JSON, when the firing made it already.
fn accepted(event: EventView, replayed: bool, event_json: Option<&str>) -> Response {
    let location = HeaderValue::from_str(&format!("/events/{}", event.event.id)).ok();
    let json = match event_json {
        Some(made) => event.to_json_from(made),
        None => event.to_json(),
    };
    let mut response = match json {
        Ok(body) => (
            StatusCode::ACCEPTED,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            ApiError::from(crate::app::AppError::from(crate::ports::unavailable(e))).into_response()
        }
    };
    let headers = response.headers_mut();
    if let Some(location) = location {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FireQuery {
    /// Check the payload and return the would-be event (200) without storing or delivering it.
    #[serde(default)]
    pub dry_run: bool,
}

/// Fire an api trigger; the body is the payload and must match the trigger's schema.
#[utoipa::path(post, path = "/triggers/{id}/fire", tag = "triggers", operation_id = "fireTrigger",
    request_body(content = Value, description = "The payload: any JSON the trigger's `payload_schema` accepts"),
    params(("id" = String, Path, description = "The trigger's id"), IdempotencyKey, FireQuery),
    responses(
        (status = 200, description = "`dry_run=true`: the event a firing would record; nothing was stored", body = EventView),
        (status = 202, description = "Fired", body = EventView, headers(
            ("Location" = String, description = "`/events/{id}`"),
            ("Idempotent-Replayed" = String, description = "`true` when the key matched an earlier firing: no new event"))),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Paused, completed, or not an api trigger", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The payload breaks the schema (each `errors[].field` is a JSON pointer into it), or the key was used with another payload", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn fire(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<FireQuery>,
    KeyHeader(key): KeyHeader,
    JsonBody(payload): JsonBody<Value>,
) -> Result<Response> {
    if q.dry_run {
        return Ok((StatusCode::OK, Json(app.fire_dry_run(&id, payload).await?)).into_response());
    }
    let fired = app.fire(&id, payload, key?.as_deref()).await?;
    Ok(accepted(
        fired.event,
        fired.replayed,
        fired.event_json.as_deref(),
    ))
}

/// Fire a stored trigger once, now, as a test (`source` = `manual_test`, `is_test` = true).
#[utoipa::path(post, path = "/triggers/{id}/test", tag = "triggers", operation_id = "testTrigger",
    request_body(content = Option<Value>, description = "Api triggers: the payload (default `{}`). Scheduled triggers: no body; they fire with their own payload"),
    params(("id" = String, Path, description = "The trigger's id")),
    responses(
        (status = 202, description = "Fired as a test", body = EventView,
            headers(("Location" = String, description = "`/events/{id}`"))),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The stored payload schema is unusable", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The payload breaks the schema, or a body for a scheduled trigger", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn test_stored(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
    OptionalJsonBody(payload): OptionalJsonBody<Value>,
) -> Result<Response> {
    let event = app.test_trigger(&id, payload).await?;
    Ok(accepted(event, false, None))
}

/// Test-run a definition without storing a trigger: api definitions fire now (with `payload`),
/// scheduled ones once at their first occurrence.
#[utoipa::path(post, path = "/triggers/test", tag = "triggers", operation_id = "testDefinition",
    request_body(content = TriggerDefinition, description = "A definition as for create; api definitions may carry the test `payload`"),
    responses(
        (status = 202, description = "Fired now (`fired`) or scheduled once (`scheduled`)", body = TestRunOutcome),
        (status = 422, description = "Invalid definition or test payload, or a first occurrence more than `ETP_TEST_RUN_MAX_LEAD` ahead", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`ETP_MAX_PENDING_TEST_RUNS` scheduled test runs wait already (`quota-exceeded`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn test_definition(
    State(app): State<Arc<App>>,
    JsonBody(def): JsonBody<TriggerDefinition>,
) -> Result<(StatusCode, Json<TestRunOutcome>)> {
    Ok((StatusCode::ACCEPTED, Json(app.test_definition(def).await?)))
}
