//! Schedule routes people reason with: the occurrences audit and skipping one occurrence.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiQuery, JsonBody, PathId};
use super::problem::{ApiError, Problem};
use super::triggers::{header_str, with_etag};
use crate::app::{App, OccurrenceAuditView, TriggerView};
use crate::domain::validation::{FieldError, ValidationError};

type Result<T> = std::result::Result<T, ApiError>;

fn default_occurrence_limit() -> usize {
    100
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OccurrencesQuery {
    /// Start of the window (RFC 3339; default: a day ago).
    pub from: Option<String>,
    /// End of the window, at most 31 days after `from` (default: a day after `from`).
    pub to: Option<String>,
    /// Most occurrences listed, 1 to 500 (default 100).
    #[serde(default = "default_occurrence_limit")]
    #[param(minimum = 1, maximum = 500, default = 100)]
    pub limit: usize,
}

/// The window's ends lie in the accepted range too (1970 to 9999).
fn instant(field: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    value
        .map(|v| {
            super::extract::instant(field, v)
                .and_then(|t| {
                    Some(t)
                        .filter(|t| crate::domain::time_range::contains(*t))
                        .ok_or_else(|| {
                            FieldError::new(
                                field,
                                crate::domain::time_range::out_of_range_message(),
                            )
                        })
                })
                .map_err(|e| ApiError::from(ValidationError::fields(vec![e])))
        })
        .transpose()
}

/// Every occurrence the trigger's schedule defined in a window, each joined to what happened:
/// `fired` (event id, lateness), `skipped` (why), `upcoming`, or `expired` (past the event log).
#[utoipa::path(get, path = "/triggers/{id}/occurrences", tag = "triggers", operation_id = "triggerOccurrences",
    params(("id" = String, Path, description = "The trigger's id"), OccurrencesQuery),
    responses(
        (status = 200, description = "The occurrences, oldest first", body = OccurrenceAuditView),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`from`, `to` or `limit` out of range", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<OccurrencesQuery>,
) -> Result<Json<OccurrenceAuditView>> {
    let now = app.now();
    let from = instant("from", q.from.as_deref())?
        .unwrap_or_else(|| crate::domain::time_range::sub_saturating(now, Duration::days(1)));
    let to = instant("to", q.to.as_deref())?
        .unwrap_or_else(|| crate::domain::time_range::add_saturating(from, Duration::days(1)));
    Ok(Json(app.occurrences(&id, from, to, q.limit).await?))
}

/// What `POST /triggers/{id}/skip` carries.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkipRequest {
    /// The upcoming occurrence to skip, exactly as the schedule defines it.
    #[schema(value_type = String, format = DateTime)]
    pub scheduled_for: DateTime<Utc>,
}

/// Skip one upcoming occurrence without pausing the trigger; the audit shows it as `skipped`
/// with reason `skipped_by_user`. Skipping it again changes nothing.
#[utoipa::path(post, path = "/triggers/{id}/skip", tag = "triggers", operation_id = "skipOccurrence",
    request_body(content = SkipRequest),
    params(("id" = String, Path, description = "The trigger's id")),
    responses(
        (status = 200, description = "The trigger, its `skipped_occurrences` and `next_fire_at` updated", body = TriggerView,
            headers(("ETag" = String, description = "The new version"))),
        (status = 404, description = "No such trigger", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a scheduled trigger", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`scheduled_for` is past, or not an occurrence of the schedule", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn skip(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SkipRequest>,
) -> Result<Response> {
    let if_match = header_str(&headers, "if-match")?;
    let t = app
        .skip_occurrence(&id, body.scheduled_for, if_match)
        .await?;
    Ok(with_etag(StatusCode::OK, app.view(t)))
}
