//! Scoped API keys: create (the key is shown once), list, revoke, and the caller's own key.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::extract::{JsonBody, PathId, parse_id};
use super::problem::{ApiError, Problem};
use crate::app::App;
use crate::domain::api_key::{ApiKey, Scope, check_new_key};

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// What the key is for (1 to 100 characters).
    pub name: String,
    /// At least one of `admin`, `triggers:read`, `triggers:write`, `events:read`, `fire`,
    /// `metrics:read`.
    #[schema(value_type = Vec<Scope>)]
    pub scopes: Vec<String>,
    /// With `fire`: the only triggers the key may fire (at most 100; default any).
    #[serde(default)]
    pub trigger_ids: Vec<String>,
    /// When the key stops working (must be in the future); default never.
    #[serde(default, with = "crate::domain::timestamp::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A new key: `key` appears in this response only; the server keeps its SHA-256.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub trigger_ids: Vec<String>,
    /// The key's first characters, as listings show them.
    pub prefix: String,
    #[serde(with = "crate::domain::timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::domain::timestamp::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The key: send it as `Authorization: Bearer <key>`. Shown once.
    pub key: String,
}

/// Every key (never the key itself or its hash), oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKey>,
}

/// The calling credential: an API key, or the bootstrap token (`ETP_API_TOKEN`, every scope).
#[derive(Debug, Serialize, ToSchema)]
pub struct CallerView {
    /// The key's id; absent for the bootstrap token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The key's name, or `bootstrap`.
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The key's `trigger_ids`; absent for the bootstrap token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_ids: Option<Vec<String>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "crate::domain::timestamp::option"
    )]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Create an API key with the scopes it may use (needs `admin`).
#[utoipa::path(post, path = "/api-keys", tag = "api keys", operation_id = "createApiKey",
    request_body(content = NewApiKey),
    responses(
        (status = 201, description = "Created; `key` is shown here only", body = CreatedApiKey, headers(
            ("Location" = String, description = "`/api-keys/{id}`"))),
        (status = 403, description = "The caller lacks `admin`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown scope, an `expires_at` not in the future, a bad trigger id; `errors` names each field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<Arc<App>>,
    JsonBody(new): JsonBody<NewApiKey>,
) -> Result<Response, ApiError> {
    let (scopes, trigger_ids) = check_new_key(
        &new.name,
        &new.scopes,
        &new.trigger_ids,
        new.expires_at,
        app.now(),
        parse_id,
    )?;
    let (key, text) = app
        .create_api_key(
            new.name.trim().to_string(),
            scopes,
            trigger_ids,
            new.expires_at,
        )
        .await?;
    let location = HeaderValue::from_str(&format!("/api-keys/{}", key.id)).ok();
    let body = CreatedApiKey {
        id: key.id,
        name: key.name,
        scopes: key.scopes,
        trigger_ids: key.trigger_ids,
        prefix: key.prefix,
        created_at: key.created_at,
        expires_at: key.expires_at,
        key: text,
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    let headers = response.headers_mut();
    if let Some(location) = location {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// List API keys: names, scopes, prefixes, times; never a key (needs `admin`).
#[utoipa::path(get, path = "/api-keys", tag = "api keys", operation_id = "listApiKeys",
    responses(
        (status = 200, description = "Every key, oldest first", body = ApiKeyList),
        (status = 403, description = "The caller lacks `admin`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(State(app): State<Arc<App>>) -> Result<Json<ApiKeyList>, ApiError> {
    Ok(Json(ApiKeyList {
        items: app.list_api_keys().await?,
    }))
}

/// Revoke an API key at once (needs `admin`; on AWS other containers may honour it for up to
/// 30 s).
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api keys", operation_id = "revokeApiKey",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "The caller lacks `admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    State(app): State<Arc<App>>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    app.revoke_api_key(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The calling key's own id, name and scopes (any valid key), so a client can tell what to
/// offer.
#[utoipa::path(get, path = "/api-keys/me", tag = "api keys", operation_id = "currentApiKey",
    responses((status = 200, description = "The caller's credential", body = CallerView)))]
pub async fn me(Extension(caller): Extension<Caller>) -> Json<CallerView> {
    Json(match caller {
        Caller::Bootstrap => CallerView {
            id: None,
            name: "bootstrap".into(),
            scopes: vec![Scope::Admin],
            trigger_ids: None,
            expires_at: None,
        },
        Caller::Key(key) => CallerView {
            id: Some(key.id),
            name: key.name,
            scopes: key.scopes,
            trigger_ids: Some(key.trigger_ids),
            expires_at: key.expires_at,
        },
    })
}
