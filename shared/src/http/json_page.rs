//! A page whose items are already JSON, written out without another serialization pass.

use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use std::sync::Arc;

use crate::app::JoinedPage;

/// The body `Json(Page<T>)` writes, from items that are each one JSON value already, joined by
/// commas (a page the view cache may hold).
pub struct JoinedJsonPage {
    pub items: Arc<JoinedPage>,
    /// The cursor as the client sees it (sealed).
    pub next_cursor: Option<String>,
}

fn page_response(
    items_len: usize,
    write_items: impl FnOnce(&mut String),
    next_cursor: Option<String>,
) -> Response {
    let mut body =
        String::with_capacity(items_len + 64 + next_cursor.as_ref().map_or(0, String::len));
    body.push_str("{\"items\":[");
    write_items(&mut body);
    body.push_str("],\"next_cursor\":");
    // A cursor is base64url: quoting it through serde_json keeps that an implementation detail.
    body.push_str(&serde_json::to_string(&next_cursor).unwrap_or_else(|_| "null".into()));
    body.push('}');
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

impl IntoResponse for JoinedJsonPage {
    fn into_response(self) -> Response {
        page_response(
            self.items.items.len(),
            |body| body.push_str(&self.items.items),
            self.next_cursor,
        )
    }
}
