//! Triggers: one item each, versioned by a condition on `version`, listed through `by_id`.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use futures_util::{StreamExt, TryStreamExt, stream};

use super::trigger_list::{self, ShardPage};
use super::{
    BY_ID, CONCURRENCY, DynamoStore, Item, MAX_LIST_QUERIES, decode, encode, get_n, get_s, n,
    query_capped, s, sdk_error, unavailable,
};
use crate::domain::target::{RetiringSecret, Secret};
use crate::domain::trigger::{Trigger, TriggerKind, TriggerStatus};
use crate::ports::{Page, StoreError, TriggerQuery, TriggerStore, cursor};

/// `status`, `version` and `updated_at` live beside `body` and win over it: completing a one-time
/// trigger must be a single UpdateItem on the hot path, which cannot rewrite the JSON inside.
fn item(t: &Trigger) -> Result<Item, StoreError> {
    let mut item = Item::from([
        ("pk".into(), s(&t.id)),
        ("list_pk".into(), s(trigger_list::list_key(&t.id))),
        ("body".into(), s(encode(t)?)),
        ("kind".into(), s(t.kind.as_str())),
        ("status".into(), s(t.status.as_str())),
        ("version".into(), n(t.version)),
        ("updated_at".into(), s(time_text(t.updated_at)?)),
    ]);
    // Never part of the trigger's JSON: the signing secrets and the target's header values.
    if let Some(secret) = &t.secret {
        item.insert("secret".into(), s(secret.expose()));
    }
    if let Some(r) = &t.retiring_secret {
        item.insert("retiring_secret".into(), s(r.secret.expose()));
        item.insert("retiring_until_ms".into(), n(r.until.timestamp_millis()));
    }
    if let Some(target) = t.target.as_ref().filter(|t| !t.headers.is_empty()) {
        item.insert("target_headers".into(), s(encode(&target.headers)?));
    }
    // Beside the body, so a listing by status can tell a pause that has ended.
    if let Some(until) = t.paused_until {
        item.insert("paused_until_ms".into(), n(until.timestamp_millis()));
    }
    Ok(item)
}

/// The serde form of a time, so it decodes to exactly the value that was encoded.
pub(super) fn time_text(t: DateTime<Utc>) -> Result<String, StoreError> {
    match serde_json::to_value(t).map_err(unavailable)? {
        serde_json::Value::String(text) => Ok(text),
        other => Err(unavailable(format!("time encoded as {other}"))),
    }
}

fn from_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|e| StoreError::Corrupt(format!("stored trigger attribute: {e}")))
}

/// The trigger an item holds; an item that cannot be read becomes [`Trigger::unreadable`]
/// (logged), so one damaged item never fails a listing or hides the trigger from its owner.
fn from_item(item: &Item) -> Result<Trigger, StoreError> {
    let id = get_s(item, "pk")?;
    match read_item(item) {
        Ok(t) => Ok(t),
        Err(e) => {
            tracing::error!(trigger_id = id, error = %e, "stored trigger is unreadable; shown as broken");
            let kind = get_s(item, "kind")
                .ok()
                .and_then(|k| from_text::<TriggerKind>(k).ok())
                .unwrap_or(TriggerKind::Scheduled);
            Ok(Trigger::unreadable(
                id,
                kind,
                get_n(item, "version").unwrap_or(0),
                "its stored definition could not be read; PUT a new definition or DELETE it".into(),
            ))
        }
    }
}

fn read_item(item: &Item) -> Result<Trigger, StoreError> {
    let mut t: Trigger = decode(get_s(item, "body")?)?;
    t.status = from_text::<TriggerStatus>(get_s(item, "status")?)?;
    t.version = get_n(item, "version")?;
    t.updated_at = from_text(get_s(item, "updated_at")?)?;
    t.secret = get_s(item, "secret")
        .ok()
        .map(|v| Secret::from_stored(v.to_string()));
    if let (Ok(secret), Ok(until)) = (
        get_s(item, "retiring_secret"),
        get_n::<i64>(item, "retiring_until_ms"),
    ) {
        t.retiring_secret = DateTime::from_timestamp_millis(until).map(|until| RetiringSecret {
            secret: Secret::from_stored(secret.to_string()),
            until,
        });
    }
    if let (Some(target), Ok(headers)) = (t.target.as_mut(), get_s(item, "target_headers")) {
        target.headers = decode(headers)?;
    }
    Ok(t)
}

impl DynamoStore {
    /// Marks a one-time trigger completed if it is still active at `version`. A failed condition
    /// means it changed meanwhile (edited, paused, deleted): that change wins, quietly.
    pub(super) async fn complete_trigger(
        &self,
        id: &str,
        version: u64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.triggers)
            .key("pk", s(id))
            .update_expression("SET #status = :done, #version = :next, updated_at = :at")
            .condition_expression("#version = :v AND #status = :active")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":done", s(TriggerStatus::Completed.as_str()))
            .expression_attribute_values(":active", s(TriggerStatus::Active.as_str()))
            .expression_attribute_values(":v", n(version))
            .expression_attribute_values(":next", n(version + 1))
            .expression_attribute_values(":at", s(time_text(at)?))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                tracing::debug!(trigger_id = %id, version, "trigger changed before completion");
                Ok(())
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    async fn put_trigger(
        &self,
        trigger: &Trigger,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.triggers)
            .set_item(Some(item(trigger)?));
        let put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(v)),
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) => match (e.as_service_error(), expected) {
                (Some(PutItemError::ConditionalCheckFailedException(_)), None) => {
                    Err(StoreError::AlreadyExists)
                }
                (Some(PutItemError::ConditionalCheckFailedException(_)), Some(_)) => {
                    Err(StoreError::VersionConflict)
                }
                _ => Err(sdk_error("PutItem", e)),
            },
        }
    }
}

#[async_trait]
impl TriggerStore for DynamoStore {
    /// One transaction: the trigger (if its id is new) and the trigger count (if below the
    /// quota), so a full quota writes nothing.
    async fn insert_trigger(&self, trigger: &Trigger, max_triggers: u64) -> Result<(), StoreError> {
        self.insert_counted(item(trigger)?, TRIGGER_COUNT, ("triggers", max_triggers))
            .await
    }

    async fn get_trigger(&self, id: &str) -> Result<Option<Trigger>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.triggers)
            .key("pk", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.as_ref().map(from_item).transpose()
    }

    async fn list_triggers(&self, query: &TriggerQuery) -> Result<Page<Trigger>, StoreError> {
        let limit = query.limit.max(1);
        let after = query.cursor.as_deref().map(cursor::decode).transpose()?;
        let keys = trigger_list::list_keys();
        // The page's call budget is shared by the shards, at least one call each. A filter
        // that matches little would read a whole shard: a shard out of calls ends the page
        // early, with a cursor to go on from.
        let calls = (MAX_LIST_QUERIES / keys.len()).max(1);
        let shards: Vec<ShardPage> = stream::iter(keys)
            .map(|list| {
                let q = self.list_query(&list, after.as_deref(), query, limit + 1);
                async move {
                    let (items, resume) = query_capped(q, limit + 1, calls).await?;
                    Ok::<_, StoreError>(ShardPage {
                        full: items.len() > limit,
                        items,
                        resume,
                    })
                }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let (rows, next) = trigger_list::merge(shards, limit);
        let items = rows
            .iter()
            .map(|i| {
                from_item(i).map(|t| Trigger {
                    secret: None,
                    retiring_secret: None,
                    ..t
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            next_cursor: next.map(|id| cursor::encode(&id)),
        })
    }

    async fn replace_trigger(
        &self,
        trigger: &Trigger,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.put_trigger(trigger, Some(expected_version)).await
    }

    /// One transaction: the trigger (if it exists) and the trigger count.
    async fn delete_trigger(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_counted(id, TRIGGER_COUNT).await
    }
}

impl DynamoStore {
    /// One listing shard's query: ids after `after`, `want` at a time, with the filters.
    fn list_query(
        &self,
        list: &str,
        after: Option<&str>,
        query: &TriggerQuery,
        want: usize,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let mut key = "list_pk = :list".to_string();
        let mut filters = Vec::new();
        let mut q = self
            .client
            .query()
            .table_name(&self.tables.triggers)
            .index_name(BY_ID)
            .expression_attribute_values(":list", s(list))
            .limit(i32::try_from(want).unwrap_or(i32::MAX));
        if let Some(after) = after {
            key.push_str(" AND pk > :after");
            q = q.expression_attribute_values(":after", s(after));
        }
        if let Some(kind) = query.kind {
            filters.push("#kind = :kind");
            q = q
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_values(":kind", s(kind.as_str()));
        }
        if let Some(status) = query.status {
            // A pause whose end has passed is over, though the stored status says `paused`.
            filters.push(match (status, query.now) {
                (TriggerStatus::Active, Some(_)) => {
                    "(#status = :status OR (#status = :paused AND paused_until_ms <= :now))"
                }
                (TriggerStatus::Paused, Some(_)) => {
                    "(#status = :status AND (attribute_not_exists(paused_until_ms) OR paused_until_ms > :now))"
                }
                _ => "#status = :status",
            });
            q = q
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(status.as_str()));
            if let (TriggerStatus::Active | TriggerStatus::Paused, Some(now)) = (status, query.now)
            {
                q = q.expression_attribute_values(":now", n(now.timestamp_millis()));
                if status == TriggerStatus::Active {
                    q = q.expression_attribute_values(":paused", s(TriggerStatus::Paused.as_str()));
                }
            }
        }
        q = q.key_condition_expression(key);
        if !filters.is_empty() {
            q = q.filter_expression(filters.join(" AND "));
        }
        q
    }
}

/// The item counting stored triggers (for `ETP_MAX_TRIGGERS`); outside every index.
pub(super) const TRIGGER_COUNT: &str = "COUNT#triggers";

impl DynamoStore {
    /// Puts `item` (a new key) and counts it under `counter` in one transaction, while the
    /// count is below the quota `(what, limit)`; a full quota writes nothing.
    pub(super) async fn insert_counted(
        &self,
        item: Item,
        counter: &str,
        quota: (&'static str, u64),
    ) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(&self.tables.triggers)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        self.counted_write(
            TransactWriteItem::builder().put(put).build(),
            counter,
            1,
            Some(quota),
        )
        .await
        .map_err(|e| match e {
            StoreError::VersionConflict => StoreError::AlreadyExists,
            other => other,
        })
    }

    /// Deletes the item at `pk` and uncounts it from `counter` in one transaction; false when
    /// there was none.
    pub(super) async fn delete_counted(&self, pk: &str, counter: &str) -> Result<bool, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.tables.triggers)
            .key("pk", s(pk))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(unavailable)?;
        match self
            .counted_write(
                TransactWriteItem::builder().delete(delete).build(),
                counter,
                -1,
                None,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::VersionConflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes `write` and moves counter item `counter` by `by` in one transaction; with a
    /// quota `(what, limit)`, only while the counter is below it. A failed condition on `write`
    /// is `VersionConflict` (the caller says what it means); on the counter, `QuotaExceeded`.
    pub(super) async fn counted_write(
        &self,
        write: TransactWriteItem,
        counter: &str,
        by: i64,
        quota: Option<(&'static str, u64)>,
    ) -> Result<(), StoreError> {
        let mut update = Update::builder()
            .table_name(&self.tables.triggers)
            .key("pk", s(counter))
            .update_expression("ADD #n :by")
            .expression_attribute_names("#n", "n")
            .expression_attribute_values(":by", n(by));
        if let Some((_, limit)) = quota {
            update = update
                .condition_expression("attribute_not_exists(#n) OR #n < :limit")
                .expression_attribute_values(":limit", n(limit));
        }
        let update = update.build().map_err(unavailable)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(write)
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        let Err(err) = sent else { return Ok(()) };
        let reasons = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                c.cancellation_reasons().to_vec()
            }
            _ => return Err(sdk_error("TransactWriteItems", err)),
        };
        let failed = |i: usize| {
            reasons
                .get(i)
                .is_some_and(|r| r.code() == Some("ConditionalCheckFailed"))
        };
        if failed(0) {
            return Err(StoreError::VersionConflict);
        }
        match quota {
            Some((what, limit)) if failed(1) => Err(StoreError::QuotaExceeded { what, limit }),
            _ => Err(sdk_error("TransactWriteItems", err)),
        }
    }
}
