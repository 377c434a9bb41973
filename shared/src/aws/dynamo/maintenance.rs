//! The bounded purge sweep, batched writes, and the health probe.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
use chrono::{DateTime, Utc};

use super::{
    DynamoStore, Item, all, get_s, hour_of, legacy_lifecycle_pk, lifecycle_pk, ms, pad_hour,
    pad_ms, query_until, s, sdk_error, unavailable,
};
use crate::ports::StoreError;

/// BatchWriteItem takes at most this many requests.
const BATCH: usize = 25;
const BATCH_ATTEMPTS: u32 = 8;

impl DynamoStore {
    /// TTL removes expired items on AWS, eventually; this sweep removes them now. The counters
    /// name exactly the (hour, shard) buckets that still hold events, so no empty hour is read.
    pub(super) async fn purge(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let cut = ms(cutoff);
        let cut_hour = hour_of(cut);
        let items = self.counters("sk < :bound", pad_hour(cut_hour + 1)).await?;
        // The lifecycle partitions that still hold events, named by the counters: a counter
        // of the current layout names its hour's partition, a legacy one its hour and shard.
        let mut buckets = BTreeSet::new();
        let (mut old_counters, mut old_legacy_counters) = (Vec::new(), Vec::new());
        for item in &items {
            let (hour, _) = get_s(item, "sk")?
                .split_once('#')
                .and_then(|(h, k)| Some((h.parse::<i64>().ok()?, k)))
                .ok_or_else(|| unavailable("corrupt counter key"))?;
            let pk = get_s(item, "pk")?;
            let legacy = pk.strip_prefix("CT#");
            let bucket = match legacy {
                Some(shard) => shard
                    .parse::<u32>()
                    .map(|shard| legacy_lifecycle_pk(hour, shard))
                    .map_err(|_| unavailable("corrupt counter partition key"))?,
                None => lifecycle_pk(hour),
            };
            buckets.insert(bucket);
            if hour < cut_hour {
                match legacy {
                    Some(_) => old_legacy_counters.push(key_of(item)?),
                    None => old_counters.push(key_of(item)?),
                }
            }
        }
        let hi = pad_ms(cut + 1);
        let expired = all(buckets.into_iter().map(|pk| {
            let q = self
                .lifecycle_range(pk, pad_ms(0), hi.clone())
                .projection_expression("pk, sk, dedupe_key");
            query_until(q, None, |_| true)
        }))
        .await?;
        let mut keys = Vec::new();
        let mut purged = 0u64;
        for item in expired.iter().flatten() {
            keys.push(key_of(item)?);
            purged += 1;
            if let Ok(dedupe) = get_s(item, "dedupe_key") {
                keys.push(Item::from([
                    ("pk".into(), s(format!("DK#{dedupe}"))),
                    ("sk".into(), s("DK")),
                ]));
            }
        }
        // Events first: a sweep that stops midway keeps the counters that lead back to them.
        let deletes = |keys: Vec<Item>| -> Result<Vec<WriteRequest>, StoreError> {
            keys.into_iter().map(delete_request).collect()
        };
        let t = &self.tables;
        self.write_batches(&t.events, deletes(keys)?).await?;
        self.write_batches(&t.stats, deletes(old_counters)?).await?;
        self.write_batches(&t.events, deletes(old_legacy_counters)?)
            .await?;
        // The stats snapshot counted what is gone now (TTL never removes events it needs).
        self.forget_snapshot().await?;
        tracing::info!(purged, cutoff = %cutoff, "expired events swept");
        Ok(purged)
    }

    /// Writes (puts and deletes) to `table` in batches of 25, in parallel, retrying what is
    /// unprocessed.
    pub(super) async fn write_batches(
        &self,
        table: &str,
        writes: Vec<WriteRequest>,
    ) -> Result<(), StoreError> {
        let batches: Vec<Vec<WriteRequest>> =
            writes.chunks(BATCH).map(<[WriteRequest]>::to_vec).collect();
        all(batches.into_iter().map(|b| self.write_batch(table, b))).await?;
        Ok(())
    }

    async fn write_batch(
        &self,
        table: &str,
        mut requests: Vec<WriteRequest>,
    ) -> Result<(), StoreError> {
        for attempt in 0..BATCH_ATTEMPTS {
            let out = self
                .client
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .map_err(|e| sdk_error("BatchWriteItem", e))?;
            requests = out
                .unprocessed_items
                .and_then(|mut rest| rest.remove(table))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            // Unprocessed items mean throttling: back off before asking again.
            tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(attempt))).await;
        }
        Err(unavailable(format!(
            "BatchWriteItem left {} writes unprocessed",
            requests.len()
        )))
    }

    /// A read of a key that cannot exist: proves the table answers with only GetItem rights.
    pub(super) async fn ping_table(&self) -> Result<(), StoreError> {
        self.client
            .get_item()
            .table_name(&self.tables.triggers)
            .key("pk", s("#ping"))
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(())
    }
}

/// A batch delete of the item with this key.
pub(super) fn delete_request(key: Item) -> Result<WriteRequest, StoreError> {
    let delete = DeleteRequest::builder()
        .set_key(Some(key))
        .build()
        .map_err(unavailable)?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}

fn key_of(item: &Item) -> Result<Item, StoreError> {
    Ok(Item::from([
        ("pk".into(), s(get_s(item, "pk")?)),
        ("sk".into(), s(get_s(item, "sk")?)),
    ]))
}
