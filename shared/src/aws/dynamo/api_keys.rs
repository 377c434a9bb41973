//! Scoped API keys on DynamoDB: an item each in the triggers table (`AK#<hash>`), read by
//! GetItem, listed through `by_id` under their own key; lookups are cached per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use chrono::{DateTime, Utc};

use super::{
    BY_ID, DynamoStore, Item, decode, encode, from_ms, get_s, n, query_until, s, sdk_error,
};
use crate::domain::api_key::ApiKey;
use crate::ports::{ApiKeyStore, StoreError};

/// The `by_id` hash key under which keys are listed (triggers and test runs use their own).
const API_KEY_LIST: &str = "api-key";
/// How long a process trusts a key it looked up: a key revoked by another process (another
/// Lambda container) is honoured here for at most this long. The README states it.
pub const API_KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// Cached keys at most; a full cache starts over (each entry is a few hundred bytes).
const CACHE_CAPACITY: usize = 1024;

fn key_pk(hash: &str) -> String {
    format!("AK#{hash}")
}

/// Keys this process looked up recently, by hash, with when they were read.
#[derive(Debug, Default, Clone)]
pub(super) struct KeyCache(Arc<Mutex<HashMap<String, (Instant, ApiKey)>>>);

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, ApiKey)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, hash: &str) -> Option<ApiKey> {
        let map = self.lock();
        map.get(hash)
            .filter(|(read, _)| read.elapsed() < API_KEY_CACHE_TTL)
            .map(|(_, key)| key.clone())
    }

    fn put(&self, hash: &str, key: ApiKey) {
        let mut map = self.lock();
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(hash.to_string(), (Instant::now(), key));
    }

    fn remove_id(&self, id: &str) {
        self.lock().retain(|_, (_, key)| key.id != id);
    }

    fn set_last_used(&self, hash: &str, at: DateTime<Utc>) {
        if let Some((_, key)) = self.lock().get_mut(hash) {
            key.last_used_at = Some(at);
        }
    }
}

fn key_of(item: &Item) -> Result<(ApiKey, String), StoreError> {
    let mut key: ApiKey = decode(get_s(item, "body")?)?;
    key.last_used_at = match item.get("last_used_ms") {
        Some(aws_sdk_dynamodb::types::AttributeValue::N(v)) => {
            v.parse::<i64>().ok().and_then(from_ms)
        }
        _ => None,
    };
    let hash = get_s(item, "pk")?
        .strip_prefix("AK#")
        .unwrap_or_default()
        .to_string();
    Ok((key, hash))
}

impl DynamoStore {
    /// Every key item (a Query of the `by_id` index under the keys' own list key).
    async fn api_key_items(&self) -> Result<Vec<Item>, StoreError> {
        let q = self
            .client
            .query()
            .table_name(&self.tables.triggers)
            .index_name(BY_ID)
            .key_condition_expression("list_pk = :list")
            .expression_attribute_values(":list", s(API_KEY_LIST));
        query_until(q, None, |_| true).await
    }
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    async fn insert_api_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError> {
        let mut item = Item::from([
            ("pk".into(), s(key_pk(hash))),
            ("list_pk".into(), s(API_KEY_LIST)),
            (
                "body".into(),
                s(encode(&ApiKey {
                    last_used_at: None,
                    ..key.clone()
                })?),
            ),
        ]);
        if let Some(at) = key.last_used_at {
            item.insert("last_used_ms".into(), n(at.timestamp_millis()));
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.triggers)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)");
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => {
                    Err(StoreError::AlreadyExists)
                }
                _ => Err(sdk_error("PutItem", e)),
            },
        }
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<(ApiKey, String)>, StoreError> {
        if let Some(key) = self.key_cache.get(hash) {
            return Ok(Some((key, hash.to_string())));
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.triggers)
            .key("pk", s(key_pk(hash)))
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        // Unknown keys are not cached: a key made by another process works at once.
        let Some(item) = out.item else {
            return Ok(None);
        };
        let (key, stored_hash) = key_of(&item)?;
        self.key_cache.put(&stored_hash, key.clone());
        Ok(Some((key, stored_hash)))
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let mut keys = self
            .api_key_items()
            .await?
            .iter()
            .map(|item| key_of(item).map(|(key, _)| key))
            .collect::<Result<Vec<_>, _>>()?;
        // Listed in hash order; ids are creation order.
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(keys)
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool, StoreError> {
        self.key_cache.remove_id(id);
        let items = self.api_key_items().await?;
        let Some(pk) = items
            .iter()
            .filter_map(|item| key_of(item).ok())
            .find(|(key, _)| key.id == id)
            .map(|(_, hash)| key_pk(&hash))
        else {
            return Ok(false);
        };
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.triggers)
            .key("pk", s(pk))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn touch_api_key(
        &self,
        hash: &str,
        at: DateTime<Utc>,
        unless_since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.triggers)
            .key("pk", s(key_pk(hash)))
            .update_expression("SET last_used_ms = :at")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(last_used_ms) OR last_used_ms < :since)",
            )
            .expression_attribute_values(":at", n(at.timestamp_millis()))
            .expression_attribute_values(":since", n(unless_since.timestamp_millis()))
            .send()
            .await;
        match result {
            Ok(_) => {
                self.key_cache.set_last_used(hash, at);
                Ok(true)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> ApiKey {
        ApiKey {
            id: id.into(),
            name: "k".into(),
            scopes: vec![crate::domain::api_key::Scope::Fire],
            trigger_ids: vec![],
            prefix: "etp_abcd".into(),
            created_at: DateTime::UNIX_EPOCH,
            expires_at: None,
            last_used_at: None,
        }
    }

    #[test]
    fn the_cache_forgets_after_its_ttl_and_on_revocation() {
        let cache = KeyCache::default();
        cache.put("h1", key("a"));
        assert_eq!(cache.get("h1").map(|k| k.id), Some("a".into()));
        let at = DateTime::UNIX_EPOCH + chrono::Duration::days(1);
        cache.set_last_used("h1", at);
        assert_eq!(cache.get("h1").and_then(|k| k.last_used_at), Some(at));
        cache.remove_id("a");
        assert!(cache.get("h1").is_none(), "revoked here: forgotten at once");

        // An entry read a TTL ago is not trusted any more.
        let old = Instant::now().checked_sub(API_KEY_CACHE_TTL);
        if let Some(old) = old {
            cache.lock().insert("h2".into(), (old, key("b")));
            assert!(cache.get("h2").is_none());
        }
    }
}
