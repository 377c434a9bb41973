//! Request extractors that turn every unreadable input into a precise problem response.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use crate::domain::validation::{FieldError, ValidationError};

/// A JSON request body, parsed strictly (unknown fields, wrong types and missing fields are
/// named by path).
pub struct JsonBody<T>(pub T);

/// Like [`JsonBody`], but an empty body is `None`.
pub struct OptionalJsonBody<T>(pub Option<T>);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| is_json(v.to_str().unwrap_or("")));
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(usize::MAX, |l| l.0);
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|rejection: BytesRejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::bad_request("body", "could not be read")
            }
        })?;
    if !bytes.is_empty() && declared != Some(true) {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(bytes)
}

/// The body limit in force, put in request extensions by the router so 413s can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The field a serde error points at, e.g. `schedule.every_seconds`.
fn field_of(path: &str, message: &str) -> String {
    let parent = if path == "." { "" } else { path };
    // The path of an unknown field already ends in its name; a missing one's is the parent.
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (parent, named) {
        ("", Some(name)) => name.to_string(),
        (p, Some(name)) => format!("{p}.{name}"),
        ("", None) => "body".to_string(),
        (p, None) => p.to_string(),
    }
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn message_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn malformed(e: &serde_json::Error) -> ApiError {
    let message = message_of(e);
    ApiError::BadRequest {
        detail: format!(
            "malformed JSON at line {} column {}: {message}",
            e.line(),
            e.column()
        ),
        errors: vec![FieldError::new("body", message)],
    }
}

/// Whether `T` is an untyped JSON document, which any body is.
fn is_value<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<serde_json::Value>()
}

/// Parses a whole JSON document into `T`: syntax errors are 400, shape errors 422.
pub fn parse_json<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, ApiError> {
    use serde_json::error::Category;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    // Any document is a `Value`: only its syntax can fail, so there is no path to track (the
    // tracker copies every key it passes, and a payload is read on every firing).
    if is_value::<T>() {
        let value = T::deserialize(&mut de).map_err(|e| malformed(&e))?;
        de.end().map_err(|e| malformed(&e))?;
        return Ok(value);
    }
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        match inner.classify() {
            Category::Data => {
                let message = message_of(inner);
                let field = field_of(&e.path().to_string(), &message);
                ApiError::from(ValidationError::fields(vec![FieldError::new(
                    field, message,
                )]))
            }
            _ => malformed(inner),
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// Typed bodies are JSON objects; serde alone would also accept an array for a struct.
fn check_shape<T: 'static>(bytes: &[u8]) -> Result<(), ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if !is_value::<T>() && first != Some(&b'{') {
        return Err(ValidationError::field("body", "must be a JSON object").into());
    }
    Ok(())
}

impl<S: Send + Sync, T: DeserializeOwned + 'static> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "body",
                "is required: send a JSON document",
            ));
        }
        check_shape::<T>(&bytes)?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + 'static> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        check_shape::<T>(&bytes)?;
        parse_json(&bytes).map(|v| OptionalJsonBody(Some(v)))
    }
}

/// An id from the path, checked before any store call: ids are ULIDs (26 characters of
/// Crockford base32, any case), so anything else names nothing and is a 404 at once, however
/// long or strange (no store sees it, no key limit is met).
pub struct PathId(pub String);

/// An RFC 3339 instant from a query or body field, or the error that names `field`; each route
/// decides whether that is a 400 or a 422.
pub fn instant(field: &str, raw: &str) -> Result<chrono::DateTime<chrono::Utc>, FieldError> {
    crate::domain::timestamp::parse(raw).map_err(|_| {
        FieldError::new(
            field,
            "is not an RFC 3339 instant, e.g. 2026-11-24T10:00:00Z",
        )
    })
}

/// Parses `raw` as an id this API issues, normalized to the lowercase form it stores.
pub fn parse_id(raw: &str) -> Option<String> {
    let mut buf = [0; ulid::ULID_LEN];
    let id = ulid::Ulid::from_string(raw).ok()?.array_to_str(&mut buf);
    // The decoder wraps an over-large first character instead of refusing it.
    id.eq_ignore_ascii_case(raw).then(|| {
        id.make_ascii_lowercase();
        id.to_owned()
    })
}

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NoRoute)?;
        parse_id(&raw).map(PathId).ok_or_else(|| {
            let shown: String = raw.chars().take(40).collect();
            ApiError::UnknownId {
                id: if shown.len() < raw.len() {
                    format!("{shown}...")
                } else {
                    shown
                },
            }
        })
    }
}

/// A query string parsed strictly into `T`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let message = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_string();
                ApiError::bad_request("query", message)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ulids_in_any_case() {
        let id = crate::domain::new_id();
        assert_eq!(parse_id(&id), Some(id.clone()));
        assert_eq!(parse_id(&id.to_ascii_uppercase()), Some(id));
        for bad in [
            "",
            "x",
            "../etc/passwd",
            &"a".repeat(2048),
            "01KAW3ZZZZZZZZZZZZZZZZZZZ!",
            "81kaw3zzzzzzzzzzzzzzzzzzzz",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn fields_are_named_by_path() {
        assert_eq!(field_of(".", "missing field `kind`"), "kind");
        assert_eq!(
            field_of("schedule.every", "unknown field `every`, expected"),
            "schedule.every"
        );
        assert_eq!(field_of("schedule", "missing field `at`"), "schedule.at");
        assert_eq!(
            field_of("schedule.every_seconds", "invalid type"),
            "schedule.every_seconds"
        );
        assert_eq!(field_of(".", "invalid type: string"), "body");
    }
}
