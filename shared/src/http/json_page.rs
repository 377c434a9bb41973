//! A `Page` whose items are already JSON, written out without another serialization pass.

use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::ports::Page;

/// The same body `Json(Page<T>)` writes, from items that are each one JSON value already.
pub struct JsonPage(pub Page<String>);

impl IntoResponse for JsonPage {
    fn into_response(self) -> Response {
        let Page { items, next_cursor } = self.0;
        let size = items.iter().map(|i| i.len() + 1).sum::<usize>() + 64;
        let mut body = String::with_capacity(size);
        body.push_str("{\"items\":[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(item);
        }
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
}
