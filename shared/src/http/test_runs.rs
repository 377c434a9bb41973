//! Scheduled test runs: list the waiting ones, cancel one.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::cursor_seal::{CursorSeal, Listing};
use super::extract::{ApiQuery, PathId};
use super::problem::{ApiError, Problem};
use super::{default_limit, page_limit};
use crate::app::App;
use crate::domain::test_run::TestRunView;
use crate::ports::Page;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TestRunListQuery {
    /// Page size, 1 to 200 (default 50).
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: usize,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// Scheduled test runs still waiting for their time (at most `ETP_MAX_PENDING_TEST_RUNS`),
/// oldest first. A run is gone once it has fired or been cancelled.
#[utoipa::path(get, path = "/test-runs", tag = "test runs", operation_id = "listTestRuns",
    params(TestRunListQuery),
    responses(
        (status = 200, description = "One page; `next_cursor` is null on the last", body = Page<TestRunView>),
        (status = 400, description = "Unknown or bad query parameter, or `limit` out of range", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A cursor this listing did not return", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(seal): Extension<CursorSeal>,
    ApiQuery(q): ApiQuery<TestRunListQuery>,
) -> Result<axum::Json<Page<TestRunView>>, ApiError> {
    let cursor = q
        .cursor
        .map(|c| seal.open(Listing::TestRuns, &c))
        .transpose()?;
    let page = app
        .list_test_runs(page_limit(q.limit)?, cursor.as_deref())
        .await?;
    Ok(axum::Json(Page {
        items: page.items.into_iter().map(TestRunView::from).collect(),
        next_cursor: page.next_cursor.map(|c| seal.seal(Listing::TestRuns, &c)),
    }))
}

/// Cancel a waiting test run: it never fires.
#[utoipa::path(delete, path = "/test-runs/{id}", tag = "test runs", operation_id = "cancelTestRun",
    params(("id" = String, Path, description = "The run's id (`run_id` of the test-run response)")),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 404, description = "No such waiting test run (it may have fired)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    app.cancel_test_run(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
