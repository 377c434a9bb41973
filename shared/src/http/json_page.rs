//! A page whose items are already JSON, written out without another serialization pass.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::cursor_seal::{CursorSeal, Listing};
use crate::app::JoinedPage;

/// The body `Json(Page<T>)` writes, from items that are each one JSON value already, joined by
/// commas (a page the view cache may hold, with the body it was last written as).
pub struct JoinedJsonPage {
    pub items: Arc<JoinedPage>,
    /// Seals the page's cursor for the client.
    pub seal: CursorSeal,
    pub listing: Listing,
}

fn body_of(page: &JoinedPage, next_cursor: Option<String>) -> Vec<u8> {
    let mut body =
        String::with_capacity(page.items.len() + 64 + next_cursor.as_ref().map_or(0, String::len));
    body.push_str("{\"items\":[");
    body.push_str(&page.items);
    body.push_str("],\"next_cursor\":");
    // A cursor is base64url: quoting it through serde_json keeps that an implementation detail.
    body.push_str(&serde_json::to_string(&next_cursor).unwrap_or_else(|_| "null".into()));
    body.push('}');
    body.into_bytes()
}

impl IntoResponse for JoinedJsonPage {
    fn into_response(self) -> Response {
        let page = &self.items;
        let body = page.body.get_or_init(|| {
            let sealed = page
                .next_cursor
                .as_ref()
                .map(|c| self.seal.seal(self.listing, c));
            Arc::from(body_of(page, sealed))
        });
        (
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            Bytes::from_owner(body.clone()),
        )
            .into_response()
    }
}
