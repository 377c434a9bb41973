//! Scoped API keys on SQLite: one row per key, found by the hash of the key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, decode, encode, from_ms, ms, unavailable};
use crate::domain::api_key::ApiKey;
use crate::ports::{ApiKeyStore, StoreError};

/// A row as a key: `last_used_at` lives in its own column.
fn key_from_row(body: &str, last_used_ms: Option<i64>) -> Result<ApiKey, StoreError> {
    let mut key: ApiKey = decode(body)?;
    key.last_used_at = last_used_ms.and_then(from_ms);
    Ok(key)
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn insert_api_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError> {
        let body = encode(&ApiKey {
            last_used_at: None,
            ..key.clone()
        })?;
        let (id, hash, last_used) = (key.id.clone(), hash.to_string(), key.last_used_at.map(ms));
        self.write(move |c| {
            let inserted = c
                .prepare_cached(
                    "INSERT INTO api_keys (id, hash, body, last_used_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                )
                .and_then(|mut st| st.execute(params![id, hash, body, last_used]))
                .map_err(unavailable)?;
            if inserted == 1 {
                Ok(())
            } else {
                Err(StoreError::AlreadyExists)
            }
        })
        .await
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<(ApiKey, String)>, StoreError> {
        let row: Option<(String, Option<i64>, String)> = self.read_now(|c| {
            c.prepare_cached("SELECT body, last_used_ms, hash FROM api_keys WHERE hash = ?1")
                .and_then(|mut st| {
                    st.query_row(params![hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()
                })
                .map_err(unavailable)
        })?;
        row.map(|(body, last, hash)| Ok((key_from_row(&body, last)?, hash)))
            .transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<(String, Option<i64>)> = self.read_now(|c| {
            c.prepare_cached("SELECT body, last_used_ms FROM api_keys ORDER BY id")
                .and_then(|mut st| {
                    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(unavailable)
        })?;
        rows.iter()
            .map(|(body, last)| key_from_row(body, *last))
            .collect()
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM api_keys WHERE id = ?1", params![id])
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn touch_api_key(
        &self,
        hash: &str,
        at: DateTime<Utc>,
        unless_since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (hash, at, since) = (hash.to_string(), ms(at), ms(unless_since));
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE api_keys SET last_used_ms = ?2
                     WHERE hash = ?1 AND (last_used_ms IS NULL OR last_used_ms < ?3)",
                    params![hash, at, since],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }
}
