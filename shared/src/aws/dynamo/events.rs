//! Events: the one-transaction write path, point reads, and listings through the two indexes.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};

use super::{
    BY_TRIGGER, DynamoStore, HOUR_MS, Item, LIFECYCLE, SHARDS, all, counter_pk, decode, encode,
    event_group, get_s, hour_of, legacy_counter_pk, lifecycle_pk, lifecycle_pks, ms, n, pad_hour,
    pad_ms, query_until, s, sdk_error, shard_of, time_key, unavailable,
};
use crate::domain::delivery::DeliveryPlan;
use crate::domain::event::{Event, EventStatus};
use crate::domain::lifecycle::FiredWindow;
use crate::ports::{EventQuery, EventStore, NewEvent, Page, Recorded, StoreError, cursor};

/// Attempts at the write transaction when it loses a race for the hot counter item.
const TX_ATTEMPTS: u32 = 4;
/// Hours of buckets queried at most in one round of a listing: sparse windows widen the
/// round instead of paying one round trip per empty hour.
const MAX_ROUND_HOURS: i64 = 8;
/// How far ahead of the reader's clock another writer's clock may be: a listing as of `now`
/// starts at the hour of `now` plus this, so the first page is one Query except in the last
/// minute of an hour.
const CLOCK_SKEW_MS: i64 = 60_000;
const CONDITION_FAILED: &str = "ConditionalCheckFailed";

fn event_key(id: &str) -> Item {
    Item::from([("pk".into(), s(format!("EV#{id}"))), ("sk".into(), s("EV"))])
}

fn marker_key(dedupe_key: &str) -> Item {
    Item::from([
        ("pk".into(), s(format!("DK#{dedupe_key}"))),
        ("sk".into(), s("DK")),
    ])
}

fn put_new(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(unavailable)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// The optional FilterExpression of a listing (never on key attributes: AWS rejects that).
#[derive(Default)]
struct Filter {
    clauses: Vec<&'static str>,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl Filter {
    fn of(query: &EventQuery) -> Self {
        let mut f = Filter::default();
        if let Some(source) = query.source {
            f.clauses.push("#source = :source");
            f.names.push(("#source", "source"));
            f.values.push((":source", s(source.as_str())));
        }
        if let Some(is_test) = query.is_test {
            f.clauses.push("#is_test = :is_test");
            f.names.push(("#is_test", "is_test"));
            f.values.push((":is_test", AttributeValue::Bool(is_test)));
        }
        f
    }
}

/// One key range of one index partition, newest first: `lc_sk` in `[lo, hi)`.
struct Range<'a> {
    index: &'static str,
    hash_attr: &'static str,
    hash: String,
    lo: &'a str,
    hi: &'a str,
}

/// A conditional UpdateItem's answer: whether its condition held (a failed condition is an
/// answer, not an error).
fn conditional_update<T>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<UpdateItemError>>,
) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(UpdateItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(sdk_error("UpdateItem", e)),
    }
}

fn sort_key(item: &Item) -> &str {
    get_s(item, "lc_sk").unwrap_or("")
}

impl DynamoStore {
    fn expires_at_s(&self, at_ms: i64) -> i64 {
        // Rounded up, so TTL never removes an item before its exact expiry; plus the time a
        // stats snapshot move may still need to read it.
        at_ms
            .saturating_add(self.retention.num_milliseconds())
            .saturating_add(super::stats::TTL_GRACE_MS)
            .saturating_add(999)
            .div_euclid(1000)
    }

    /// The one transaction a firing costs: the event, its dedupe marker, its hour's counter.
    fn firing_items(&self, new: &NewEvent) -> Result<Vec<TransactWriteItem>, StoreError> {
        let e = &new.event;
        let body = match &new.json {
            Some(json) => json.clone(),
            None => encode(e)?,
        };
        let fired = ms(e.fired_at);
        let shard = shard_of(&e.id);
        let hour = hour_of(fired);
        let key = event_group(e.trigger_id.as_deref());
        let table = &self.tables.events;
        let mut event = event_key(&e.id);
        event.extend([
            ("body".into(), s(&body)),
            ("fired_ms".into(), n(fired)),
            ("lc_pk".into(), s(lifecycle_pk(hour))),
            ("lc_sk".into(), s(time_key(fired, &e.id))),
            ("trigger_key".into(), s(key)),
            ("source".into(), s(e.source.as_str())),
            ("is_test".into(), AttributeValue::Bool(e.is_test)),
            ("expires_at".into(), n(self.expires_at_s(fired))),
        ]);
        if let Some(plan) = &new.delivery {
            // Never in `body`, so never shown; `attempts_n` makes each attempt's write conditional.
            event.insert("delivery_plan".into(), s(encode(plan)?));
            event.insert("attempts_n".into(), n(0));
            // Present while a delivery series is under way, so a redelivery's write can be
            // conditional on there being none (two bytes: item sizes are write units).
            if e.status == EventStatus::Pending {
                event.insert("dp".into(), AttributeValue::Bool(true));
            }
        }
        let marker = new.dedupe_key.as_ref().map(|dedupe| {
            // Kept on the event too, so the sweep can delete the marker with it.
            event.insert("dedupe_key".into(), s(dedupe));
            let mut marker = marker_key(dedupe);
            marker.extend([
                ("body".into(), s(&body)),
                ("expires_at".into(), n(self.expires_at_s(fired))),
            ]);
            marker
        });
        let mut items = vec![put_new(table, event)?];
        if let Some(marker) = marker {
            items.push(put_new(table, marker)?);
        }
        // Condition-free so it can never cancel the event write. `last_fired_ms` is last-writer-
        // wins: only firings of one trigger landing in the same shard and hour and committing
        // out of `fired_at` order can leave it older than the newest (by their overlap).
        let counter = Update::builder()
            .table_name(&self.tables.stats)
            .key("pk", s(counter_pk(shard)))
            .key("sk", s(format!("{}#{key}", pad_hour(hour))))
            .update_expression("ADD #n :one SET #name = :name, #last = :fired, #exp = :exp")
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#name", "trigger_name")
            .expression_attribute_names("#last", "last_fired_ms")
            .expression_attribute_names("#exp", "expires_at")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":name", s(&e.trigger_name))
            .expression_attribute_values(":fired", n(fired))
            .expression_attribute_values(":exp", n(self.expires_at_s((hour + 1) * HOUR_MS)))
            .build()
            .map_err(unavailable)?;
        items.push(TransactWriteItem::builder().update(counter).build());
        Ok(items)
    }

    async fn record(&self, new: NewEvent) -> Result<Recorded, StoreError> {
        let e = &new.event;
        let tx = self
            .client
            .transact_write_items()
            .set_transact_items(Some(self.firing_items(&new)?));
        let mut attempt = 1;
        let recorded = loop {
            let err = match tx.clone().send().await {
                Ok(_) => break Recorded::Written(new.event.clone()),
                Err(err) => err,
            };
            let reasons = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    c.cancellation_reasons().to_vec()
                }
                _ => return Err(sdk_error("TransactWriteItems", err)),
            };
            let failed = |i: usize| {
                reasons
                    .get(i)
                    .filter(|r| r.code() == Some(CONDITION_FAILED))
            };
            if let Some(dedupe) = &new.dedupe_key
                && let Some(reason) = failed(1)
            {
                break Recorded::Duplicate(self.earlier(reason, marker_key(dedupe)).await?);
            }
            if let Some(reason) = failed(0) {
                // The same event id again: a retry of a write that did land.
                break Recorded::Duplicate(self.earlier(reason, event_key(&e.id)).await?);
            }
            let contended = reasons
                .iter()
                .any(|r| matches!(r.code(), Some("TransactionConflict" | "ThrottlingError")));
            if !contended || attempt >= TX_ATTEMPTS {
                return Err(sdk_error("TransactWriteItems", err));
            }
            tracing::warn!(event_id = %e.id, attempt, "event write contended; retrying");
            let backoff = 10 * 2u64.pow(attempt) + rand::random_range(0..10u64);
            tokio::time::sleep(Duration::from_millis(backoff)).await;
            attempt += 1;
        };
        // After the transaction, not in it: a failed condition there would cancel the event.
        // Also on a duplicate, so a redelivery finishes a firing that stopped right here.
        if let Some(c) = &new.complete {
            self.complete_trigger(&c.done.id, c.expected_version, new.event.fired_at)
                .await?;
        }
        Ok(recorded)
    }

    /// The event a failed `attribute_not_exists` collided with: from the cancellation reason
    /// when the service returns it (ALL_OLD), else read back.
    async fn earlier(&self, reason: &CancellationReason, key: Item) -> Result<Event, StoreError> {
        if let Some(item) = reason.item().filter(|i| i.contains_key("body")) {
            return decode(get_s(item, "body")?);
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.events)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        let item = out
            .item
            .ok_or_else(|| unavailable("write cancelled by an item that is now gone"))?;
        decode(get_s(&item, "body")?)
    }

    /// Up to `need` items of one range that pass `filter`, newest first.
    async fn range(
        &self,
        r: Range<'_>,
        need: usize,
        filter: &Filter,
    ) -> Result<Vec<Item>, StoreError> {
        if r.lo >= r.hi {
            return Ok(Vec::new());
        }
        let mut q = self
            .client
            .query()
            .table_name(&self.tables.events)
            .index_name(r.index)
            .key_condition_expression("#h = :h AND lc_sk BETWEEN :lo AND :hi")
            .expression_attribute_names("#h", r.hash_attr)
            .expression_attribute_values(":h", s(r.hash))
            .expression_attribute_values(":lo", s(r.lo))
            .expression_attribute_values(":hi", s(r.hi))
            .scan_index_forward(false)
            // One more than needed: BETWEEN includes `hi`, which may be the cursor's own item.
            .limit(i32::try_from(need + 1).unwrap_or(i32::MAX));
        if !filter.clauses.is_empty() {
            q = q.filter_expression(filter.clauses.join(" AND "));
            for (k, v) in &filter.names {
                q = q.expression_attribute_names(*k, *v);
            }
            for (k, v) in &filter.values {
                q = q.expression_attribute_values(*k, v.clone());
            }
        }
        query_until(q, Some(need), |item| sort_key(item) < r.hi).await
    }

    /// The newest hour at or after `from_hour` with a counter in any of `partitions` (each a
    /// table and a partition key).
    async fn newest_counter_hour(
        &self,
        partitions: Vec<(String, String)>,
        from_hour: i64,
    ) -> Result<Option<i64>, StoreError> {
        let newest = all(partitions.into_iter().map(|(table, pk)| async move {
            let out = self
                .client
                .query()
                .table_name(table)
                .key_condition_expression("pk = :pk AND sk >= :from")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":from", s(pad_hour(from_hour)))
                .scan_index_forward(false)
                .limit(1)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            Ok(out
                .items()
                .first()
                .and_then(|i| get_s(i, "sk").ok())
                .and_then(|sk| sk.get(..10))
                .and_then(|h| h.parse::<i64>().ok()))
        }))
        .await?;
        Ok(newest.into_iter().flatten().max())
    }

    /// The newest hour at or after `from_hour` holding any event, from the counters (written in
    /// the same transaction as the events): bounds a listing with no upper time limit and no
    /// `now`.
    async fn newest_hour(&self, from_hour: i64) -> Result<Option<i64>, StoreError> {
        let t = &self.tables;
        let partitions = (0..SHARDS)
            .flat_map(|shard| {
                [
                    (t.stats.clone(), counter_pk(shard)),
                    (t.events.clone(), legacy_counter_pk(shard)),
                ]
            })
            .collect();
        self.newest_counter_hour(partitions, from_hour).await
    }

    /// The last hour that may hold events written in the legacy (sharded) layout: the newest
    /// legacy counter's hour plus one, for writers of the old code still running while a
    /// deployment rolls over. Found with one Query per shard, once per process.
    pub(super) async fn legacy_last_hour(&self) -> Result<Option<i64>, StoreError> {
        self.legacy_until
            .get_or_try_init(|| async {
                let partitions = (0..SHARDS)
                    .map(|shard| (self.tables.events.clone(), legacy_counter_pk(shard)))
                    .collect();
                let newest = self.newest_counter_hour(partitions, 0).await?;
                Ok::<_, StoreError>(newest.map(|h| h + 1))
            })
            .await
            .copied()
    }

    async fn list(&self, query: &EventQuery) -> Result<Page<Event>, StoreError> {
        let limit = query.limit.max(1);
        let need = limit + 1;
        let cursor = query
            .cursor
            .as_deref()
            .map(cursor::decode_event)
            .transpose()?;
        let FiredWindow { after, until } = query.window;
        let lo_ms = ms(after) + 1;
        let lo = pad_ms(lo_ms);
        // Exclusive upper key: below the cursor's item, and at or before `until`.
        let mut hi: Option<String> = until.map(|u| pad_ms(ms(u) + 1));
        if let Some((fired, id)) = &cursor {
            let key = time_key(*fired, id);
            hi = Some(hi.map_or(key.clone(), |h| h.min(key)));
        }
        let filter = Filter::of(query);
        let mut items = match &query.trigger_id {
            Some(trigger_id) => {
                let hi = hi.unwrap_or_else(|| "~".into());
                let range = Range {
                    index: BY_TRIGGER,
                    hash_attr: "trigger_key",
                    hash: trigger_id.clone(),
                    lo: &lo,
                    hi: &hi,
                };
                self.range(range, need, &filter).await?
            }
            None => {
                let top_ms = match (until, &cursor) {
                    (Some(u), Some((c, _))) => Some(ms(u).min(*c)),
                    (Some(u), None) => Some(ms(u)),
                    (None, Some((c, _))) => Some(*c),
                    (None, None) => None,
                };
                // The newest hour and how many hours the first round reads: in the last minute
                // of an hour, the next (for writers' clocks ahead) and this one, together.
                let top = match (top_ms, query.now) {
                    (Some(t), _) => Some((hour_of(t), 1)),
                    (None, Some(now)) => {
                        let ahead = hour_of(ms(now).saturating_add(CLOCK_SKEW_MS));
                        Some((ahead, ahead - hour_of(ms(now)) + 1))
                    }
                    (None, None) => self.newest_hour(hour_of(lo_ms)).await?.map(|h| (h, 1)),
                };
                match top {
                    Some(top) => {
                        let hi = hi.unwrap_or_else(|| "~".into());
                        self.by_lifecycle(hour_of(lo_ms), top, &lo, &hi, need, &filter)
                            .await?
                    }
                    None => Vec::new(),
                }
            }
        };
        items.truncate(need);
        let mut events = items
            .iter()
            .map(|i| decode::<Event>(get_s(i, "body")?))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if events.len() > limit {
            events.truncate(limit);
            events
                .last()
                .map(|e| cursor::encode_event(ms(e.fired_at), &e.id))
        } else {
            None
        };
        Ok(Page {
            items: events,
            next_cursor,
        })
    }

    /// Walks the lifecycle index from hour `top.0` down to `bottom`, all partitions of a round
    /// at once (the first round `top.1` hours), until `need` items are found. Each partition
    /// yields its own newest `need`, so the merged newest `need` of a round are exact; every
    /// round is older than the one before.
    async fn by_lifecycle(
        &self,
        bottom: i64,
        (top, first_span): (i64, i64),
        lo: &str,
        hi: &str,
        need: usize,
        filter: &Filter,
    ) -> Result<Vec<Item>, StoreError> {
        let legacy = self.legacy_last_hour().await?;
        let mut out: Vec<Item> = Vec::new();
        let mut hour = top;
        let mut span = first_span.max(1);
        while hour >= bottom && out.len() < need {
            let first = (hour - span + 1).max(bottom);
            let buckets = (first..=hour)
                .flat_map(|h| lifecycle_pks(h, legacy).into_iter().map(move |pk| (h, pk)));
            let found = all(buckets.map(|(h, pk)| {
                let bucket_lo = pad_ms(h * HOUR_MS).max(lo.to_string());
                let bucket_hi = pad_ms((h + 1) * HOUR_MS).min(hi.to_string());
                async move {
                    let range = Range {
                        index: LIFECYCLE,
                        hash_attr: "lc_pk",
                        hash: pk,
                        lo: &bucket_lo,
                        hi: &bucket_hi,
                    };
                    self.range(range, need, filter).await
                }
            }))
            .await?;
            let mut round: Vec<Item> = found.into_iter().flatten().collect();
            round.sort_by(|a, b| sort_key(b).cmp(sort_key(a)));
            out.extend(round);
            hour = first - 1;
            span = (span * 2).min(MAX_ROUND_HOURS);
        }
        Ok(out)
    }

    /// The event's item, read consistently.
    async fn event_item(&self, id: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.events)
            .set_key(Some(event_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item)
    }

    async fn get(&self, id: &str) -> Result<Option<Event>, StoreError> {
        self.event_item(id)
            .await?
            .as_ref()
            .map(|i| decode(get_s(i, "body")?))
            .transpose()
    }

    async fn delivery(&self, id: &str) -> Result<Option<(Event, DeliveryPlan)>, StoreError> {
        let Some(item) = self.event_item(id).await? else {
            return Ok(None);
        };
        let Ok(plan) = get_s(&item, "delivery_plan") else {
            return Ok(None);
        };
        Ok(Some((decode(get_s(&item, "body")?)?, decode(plan)?)))
    }

    async fn attempted(&self, event: &Event, seen: usize) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.events)
            .set_key(Some(event_key(&event.id)))
            // The attempt is recorded: its claim ends with it, so the next attempt (a retry
            // due in seconds) can be claimed.
            .update_expression(if event.status == EventStatus::Pending {
                "SET body = :body, attempts_n = :next REMOVE claim_ms"
            } else {
                "SET body = :body, attempts_n = :next REMOVE claim_ms, dp"
            })
            .condition_expression("attempts_n = :seen")
            .expression_attribute_values(":body", s(encode(event)?))
            .expression_attribute_values(":next", n(event.attempts.len()))
            .expression_attribute_values(":seen", n(seen))
            .send()
            .await;
        match conditional_update(result)? {
            true => Ok(()),
            false => Err(StoreError::VersionConflict),
        }
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn get_delivery(
        &self,
        event_id: &str,
    ) -> Result<Option<(Event, DeliveryPlan)>, StoreError> {
        self.delivery(event_id).await
    }

    async fn record_attempt(&self, event: &Event, seen_attempts: usize) -> Result<(), StoreError> {
        self.attempted(event, seen_attempts).await
    }

    async fn claim_attempt(
        &self,
        event_id: &str,
        seen_attempts: usize,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.events)
            .set_key(Some(event_key(event_id)))
            .update_expression("SET claim_ms = :until")
            .condition_expression(
                "attempts_n = :seen AND (attribute_not_exists(claim_ms) OR claim_ms < :now)",
            )
            .expression_attribute_values(":until", n(until.timestamp_millis()))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":seen", n(seen_attempts))
            .send()
            .await;
        conditional_update(result)
    }

    async fn record_event(&self, new: NewEvent) -> Result<Recorded, StoreError> {
        self.record(new).await
    }

    async fn redeliver(
        &self,
        event: &Event,
        plan: &DeliveryPlan,
        seen_attempts: usize,
    ) -> Result<(), StoreError> {
        // Not while a series is under way (`dp`), and only from the state the caller read:
        // `attempts_n` moves with each attempt, `series_n` with each redelivery. Events
        // recorded without a plan have none of them yet.
        let previous = event.delivery_series.saturating_sub(1).max(1);
        let mut condition = String::from(
            "attribute_exists(pk) AND \
             attribute_not_exists(dp) AND ",
        );
        condition.push_str(if seen_attempts == 0 {
            "(attribute_not_exists(attempts_n) OR attempts_n = :seen)"
        } else {
            "attempts_n = :seen"
        });
        condition.push_str(if previous == 1 {
            " AND (attribute_not_exists(series_n) OR series_n = :previous)"
        } else {
            " AND series_n = :previous"
        });
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.events)
            .set_key(Some(event_key(&event.id)))
            .update_expression(
                "SET body = :body, delivery_plan = :plan, attempts_n = :seen, \
                 series_n = :series, dp = :pending REMOVE claim_ms",
            )
            .condition_expression(condition)
            .expression_attribute_values(":body", s(encode(event)?))
            .expression_attribute_values(":plan", s(encode(plan)?))
            .expression_attribute_values(":seen", n(seen_attempts))
            .expression_attribute_values(":series", n(event.delivery_series))
            .expression_attribute_values(":previous", n(previous))
            .expression_attribute_values(":pending", AttributeValue::Bool(true))
            .send()
            .await;
        match conditional_update(result)? {
            true => Ok(()),
            false => Err(StoreError::VersionConflict),
        }
    }

    async fn get_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        self.get(id).await
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Page<Event>, StoreError> {
        self.list(query).await
    }

    async fn event_stats(
        &self,
        now: DateTime<Utc>,
        active: FiredWindow,
        archived: FiredWindow,
    ) -> Result<Vec<crate::ports::TriggerStats>, StoreError> {
        self.stats(now, active, archived).await
    }

    async fn purge_events(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.purge(cutoff).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ping_table().await
    }
}
