//! Scoped API keys: create (the key shown once), list, revoke, and recognise a presented key.

use chrono::{DateTime, Duration, Utc};

use super::{App, AppError, AppResult};
use crate::domain::api_key::{self, ApiKey, Scope};

/// How often a key's `last_used_at` is written at most: it is to the minute, not per request.
pub const LAST_USED_EVERY: Duration = Duration::seconds(60);

impl App {
    /// Stores a new key (already checked) and returns it with its text, which is never kept.
    pub async fn create_api_key(
        &self,
        name: String,
        scopes: Vec<Scope>,
        trigger_ids: Vec<String>,
        expires_at: Option<DateTime<Utc>>,
    ) -> AppResult<(ApiKey, String)> {
        let text = api_key::generate_key();
        let key = ApiKey {
            id: crate::domain::new_id(),
            name,
            scopes,
            trigger_ids,
            prefix: api_key::shown_prefix(&text),
            created_at: self.now(),
            expires_at,
            last_used_at: None,
        };
        self.store
            .insert_api_key(&key, &api_key::hash_key(&text))
            .await?;
        tracing::info!(key_id = %key.id, prefix = %key.prefix, "API key created");
        Ok((key, text))
    }

    pub async fn list_api_keys(&self) -> AppResult<Vec<ApiKey>> {
        Ok(self.store.list_api_keys().await?)
    }

    /// Revokes the key: refused from the next request on (on AWS, by other containers within
    /// the key cache's TTL).
    pub async fn revoke_api_key(&self, id: &str) -> AppResult<()> {
        if !self.store.delete_api_key(id).await? {
            return Err(AppError::NotFound {
                what: "API key",
                id: id.to_string(),
            });
        }
        tracing::info!(key_id = id, "API key revoked");
        Ok(())
    }

    /// The stored key `presented` is, if it is one and has not expired; marks it used (at most
    /// once a minute).
    pub async fn authenticate_key(&self, presented: &str) -> AppResult<Option<ApiKey>> {
        if !presented.starts_with(api_key::KEY_PREFIX) {
            return Ok(None);
        }
        let hash = api_key::hash_key(presented);
        let Some((mut key, stored)) = self.store.api_key_by_hash(&hash).await? else {
            return Ok(None);
        };
        let now = self.now();
        if !api_key::hashes_match(&hash, &stored) || key.expired(now) {
            return Ok(None);
        }
        let since = now - LAST_USED_EVERY;
        if key.last_used_at.is_none_or(|t| t < since) {
            // A failed write costs the request nothing: the key is valid either way.
            match self.store.touch_api_key(&hash, now, since).await {
                Ok(true) => key.last_used_at = Some(now),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(key_id = %key.id, error = %e, "could not mark API key used")
                }
            }
        }
        Ok(Some(key))
    }
}
