//! Stats from the per-hour counters, the bounded purge sweep, and the health probe.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
use chrono::{DateTime, Utc};

use super::{
    DynamoStore, HOUR_MS, Item, LIFECYCLE, SHARDS, all, counter_pk, from_ms, get_n, get_s, hour_of,
    lifecycle_pk, ms, pad_hour, pad_ms, query_until, s, sdk_error, trigger_id_of, unavailable,
};
use crate::domain::lifecycle::FiredWindow;
use crate::ports::{StoreError, TriggerStats};

/// BatchWriteItem takes at most this many requests.
const BATCH: usize = 25;
const BATCH_ATTEMPTS: u32 = 8;

/// One per-hour counter: events of one trigger in one shard and hour.
struct Counter {
    hour: i64,
    key: String,
    n: u64,
    last_fired_ms: i64,
    name: String,
}

fn counter(item: &Item) -> Result<Counter, StoreError> {
    let sk = get_s(item, "sk")?;
    let (hour, key) = sk
        .split_once('#')
        .and_then(|(h, k)| Some((h.parse().ok()?, k.to_string())))
        .ok_or_else(|| unavailable(format!("corrupt counter key {sk}")))?;
    Ok(Counter {
        hour,
        key,
        n: get_n(item, "n")?,
        last_fired_ms: get_n(item, "last_fired_ms")?,
        name: get_s(item, "trigger_name")?.to_string(),
    })
}

impl DynamoStore {
    /// Every counter item of every shard whose sort key satisfies `condition` against `:bound`.
    async fn counters(&self, condition: &str, bound: String) -> Result<Vec<Item>, StoreError> {
        let shards = all((0..SHARDS).map(|shard| {
            let q = self
                .client
                .query()
                .table_name(&self.tables.events)
                .key_condition_expression(format!("pk = :pk AND {condition}"))
                .expression_attribute_values(":pk", s(counter_pk(shard)))
                .expression_attribute_values(":bound", s(bound.clone()));
            query_until(q, None, |_| true)
        }))
        .await?;
        Ok(shards.into_iter().flatten().collect())
    }

    /// Exact counts per trigger key of events fired after `cut` within `cut`'s own hour: the
    /// partial hour the counters cannot split, read from the index (one hour of events at most).
    async fn edge_counts(&self, cut: i64) -> Result<HashMap<String, u64>, StoreError> {
        let edge = hour_of(cut);
        let lo = pad_ms(cut + 1);
        let hi = pad_ms((edge + 1) * HOUR_MS);
        let shards = all((0..SHARDS).map(|shard| {
            let q = self
                .client
                .query()
                .table_name(&self.tables.events)
                .index_name(LIFECYCLE)
                .key_condition_expression("lc_pk = :pk AND lc_sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(lifecycle_pk(edge, shard)))
                .expression_attribute_values(":lo", s(lo.clone()))
                .expression_attribute_values(":hi", s(hi.clone()))
                .projection_expression("trigger_key");
            query_until(q, None, |_| true)
        }))
        .await?;
        let mut out = HashMap::new();
        for item in shards.iter().flatten() {
            *out.entry(get_s(item, "trigger_key")?.to_string())
                .or_insert(0) += 1;
        }
        Ok(out)
    }

    pub(super) async fn stats(
        &self,
        active: FiredWindow,
        archived: FiredWindow,
    ) -> Result<Vec<TriggerStats>, StoreError> {
        let (active_cut, retain_cut) = (ms(active.after), ms(archived.after));
        let (items, active_edge, retain_edge) = tokio::try_join!(
            self.counters("sk >= :bound", pad_hour(hour_of(retain_cut))),
            self.edge_counts(active_cut),
            self.edge_counts(retain_cut),
        )?;
        let counters = items.iter().map(counter).collect::<Result<Vec<_>, _>>()?;
        // Whole hours after the edge hour from the counters, plus the exact partial edge hour.
        let after = |cut: i64, edge: HashMap<String, u64>| {
            let mut totals = edge;
            for c in counters.iter().filter(|c| c.hour > hour_of(cut)) {
                *totals.entry(c.key.clone()).or_insert(0) += c.n;
            }
            totals
        };
        let after_active = after(active_cut, active_edge);
        let after_retain = after(retain_cut, retain_edge);
        // Per trigger: the name written with its newest firing, like the SQLite adapter.
        let mut newest: BTreeMap<Option<String>, (&Counter, &str)> = BTreeMap::new();
        for c in &counters {
            let entry = newest.entry(trigger_id_of(&c.key)).or_insert((c, &c.key));
            if c.last_fired_ms > entry.0.last_fired_ms {
                entry.0 = c;
            }
        }
        Ok(newest
            .into_iter()
            .filter_map(|(trigger_id, (c, key))| {
                let total = after_retain.get(key).copied().unwrap_or(0);
                let act = after_active.get(key).copied().unwrap_or(0);
                (total > 0).then(|| TriggerStats {
                    trigger_id,
                    trigger_name: c.name.clone(),
                    active: act,
                    archived: total.saturating_sub(act),
                    last_fired_at: from_ms(c.last_fired_ms),
                })
            })
            .collect())
    }

    /// TTL removes expired items on AWS, eventually; this sweep removes them now. The counters
    /// name exactly the (hour, shard) buckets that still hold events, so no empty hour is read.
    pub(super) async fn purge(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let cut = ms(cutoff);
        let cut_hour = hour_of(cut);
        let items = self.counters("sk < :bound", pad_hour(cut_hour + 1)).await?;
        let mut buckets = BTreeSet::new();
        let mut old_counters = Vec::new();
        for item in &items {
            let c = counter(item)?;
            let shard = get_s(item, "pk")?
                .strip_prefix("CT#")
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| unavailable("corrupt counter partition key"))?;
            buckets.insert((c.hour, shard));
            if c.hour < cut_hour {
                old_counters.push(key_of(item)?);
            }
        }
        let hi = pad_ms(cut + 1);
        let expired = all(buckets.into_iter().map(|(hour, shard)| {
            let q = self
                .client
                .query()
                .table_name(&self.tables.events)
                .index_name(LIFECYCLE)
                .key_condition_expression("lc_pk = :pk AND lc_sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(lifecycle_pk(hour, shard)))
                .expression_attribute_values(":lo", s(pad_ms(0)))
                .expression_attribute_values(":hi", s(hi.clone()))
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
        self.delete_all(keys).await?;
        self.delete_all(old_counters).await?;
        tracing::info!(purged, cutoff = %cutoff, "expired events swept");
        Ok(purged)
    }

    async fn delete_all(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        let batches: Vec<Vec<Item>> = keys.chunks(BATCH).map(<[Item]>::to_vec).collect();
        all(batches.into_iter().map(|b| self.delete_batch(b))).await?;
        Ok(())
    }

    async fn delete_batch(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        let mut requests = keys
            .into_iter()
            .map(|key| {
                let delete = DeleteRequest::builder()
                    .set_key(Some(key))
                    .build()
                    .map_err(unavailable)?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        for attempt in 0..BATCH_ATTEMPTS {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.tables.events, requests)
                .send()
                .await
                .map_err(|e| sdk_error("BatchWriteItem", e))?;
            requests = out
                .unprocessed_items
                .and_then(|mut rest| rest.remove(&self.tables.events))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            // Unprocessed items mean throttling: back off before asking again.
            tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(attempt))).await;
        }
        Err(unavailable(format!(
            "BatchWriteItem left {} deletes unprocessed",
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

fn key_of(item: &Item) -> Result<Item, StoreError> {
    Ok(Item::from([
        ("pk".into(), s(get_s(item, "pk")?)),
        ("sk".into(), s(get_s(item, "sk")?)),
    ]))
}
