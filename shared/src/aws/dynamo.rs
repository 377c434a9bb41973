//! The store port on DynamoDB: a triggers table and a single-table events design (see README).

// Every `AttributeValue` mapping lives here and in the submodules: the rest of the platform
// only sees the port types.

mod api_keys;
mod events;
mod maintenance;
mod stats;
mod tables;
mod test_runs;
mod trigger_list;
mod triggers;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::ports::StoreError;

pub use api_keys::API_KEY_CACHE_TTL;

/// The counters (base-table items, one update per firing) are spread over this many partitions.
/// Events written before the hour-partitioned layout were also split this many ways in the
/// lifecycle index; those "legacy" partitions are still read while they hold unexpired events.
pub const SHARDS: u32 = 4;

const HOUR_MS: i64 = 3_600_000;
const BY_ID: &str = "by_id";
const LIFECYCLE: &str = "lifecycle";
const BY_TRIGGER: &str = "by_trigger";
/// DynamoDB rejects empty strings in index keys, so ad-hoc test runs are keyed under this.
const AD_HOC: &str = "-";
/// Query calls one listing page may make: a page that needs more ends early with a cursor.
const MAX_LIST_QUERIES: usize = 8;
/// Queries in flight at once for one request: enough to hide latency, few enough not to throttle.
const CONCURRENCY: usize = 16;

type Item = HashMap<String, AttributeValue>;

/// Names of the three tables, as the SAM template injects them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub triggers: String,
    pub events: String,
    /// The hour counters and the stats snapshot.
    pub stats: String,
}

impl Tables {
    /// `<prefix>-triggers-<suffix>` and so on: uniquely named tables for tests and benchmarks.
    pub fn named(prefix: &str, suffix: &str) -> Self {
        Tables {
            triggers: format!("{prefix}-triggers-{suffix}"),
            events: format!("{prefix}-events-{suffix}"),
            stats: format!("{prefix}-stats-{suffix}"),
        }
    }
}

/// The store on DynamoDB. Cheap to clone: the SDK client is shared.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
    /// Sets the TTL of written items; reads never rely on it (TTL deletion lags by days).
    retention: chrono::Duration,
    /// The last hour that may hold events in the legacy layout, found once per process.
    legacy_until: std::sync::Arc<tokio::sync::OnceCell<Option<i64>>>,
    /// The stats counts this process last moved (see `stats.rs`).
    stats_memo: std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<stats::StatsMemo>>>>,
    /// API keys this process looked up lately (see `api_keys.rs`).
    key_cache: api_keys::KeyCache,
}

impl DynamoStore {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self {
            client,
            tables,
            retention: chrono::Duration::hours(48),
            legacy_until: Default::default(),
            stats_memo: Default::default(),
            key_cache: Default::default(),
        }
    }

    /// How long events are kept: their TTL is `fired_at` + this. Use the lifecycle's retention.
    pub fn with_retention(mut self, retention: chrono::Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Creates the tables (keys, indexes, TTL) as `template.yaml` declares them; for tests.
    pub async fn create_tables(client: &Client, tables: &Tables) -> Result<(), StoreError> {
        tables::create(client, tables).await
    }
}

use crate::ports::unavailable;

/// The full error chain of an SDK call, for the logs.
fn sdk_error<E, R>(op: &str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(format!("{op}: {}", DisplayErrorContext(&e)))
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
}

fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS)
}

/// Epoch milliseconds as a fixed-width string, so string order is time order.
fn pad_ms(ms: i64) -> String {
    format!("{:013}", ms.clamp(0, 9_999_999_999_999))
}

/// Hours as a fixed-width string, for the counters' sort keys.
fn pad_hour(hour: i64) -> String {
    format!("{:010}", hour.max(0))
}

/// The index sort key of an event: (fired_ms, id) in string order.
fn time_key(fired_ms: i64, id: &str) -> String {
    format!("{}#{id}", pad_ms(fired_ms))
}

/// FNV-1a: stable across Rust versions and processes, unlike `DefaultHasher`.
fn shard_of(id: &str) -> u32 {
    let hash = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % SHARDS
}

/// The lifecycle index partition of every event fired in `hour`: one per hour, so the first
/// page of a listing is one Query. One partition takes about 1,000 write units a second (about
/// 1,000 events of 1 KB a second, 86 M a day), far above the 1 M firings a day designed for.
fn lifecycle_pk(hour: i64) -> String {
    hour.to_string()
}

/// The lifecycle partition of one shard of `hour` in the layout before hour partitions.
fn legacy_lifecycle_pk(hour: i64, shard: u32) -> String {
    format!("{hour}#{shard}")
}

/// The lifecycle partitions that hold events fired in `hour`: its own, and the legacy shards
/// while `legacy_until` (the last hour with legacy counters) has not passed.
fn lifecycle_pks(hour: i64, legacy_until: Option<i64>) -> Vec<String> {
    let mut pks = vec![lifecycle_pk(hour)];
    if legacy_until.is_some_and(|last| hour <= last) {
        pks.extend((0..SHARDS).map(|shard| legacy_lifecycle_pk(hour, shard)));
    }
    pks
}

/// The partition of one shard of the per-hour counters (in the stats table).
fn counter_pk(shard: u32) -> String {
    format!("CH#{shard}")
}

/// Counters written with legacy-layout events, in the events table: where they exist, so may
/// legacy partitions.
fn legacy_counter_pk(shard: u32) -> String {
    format!("CT#{shard}")
}

fn event_group(trigger_id: Option<&str>) -> &str {
    trigger_id.unwrap_or(AD_HOC)
}

fn trigger_id_of(key: &str) -> Option<String> {
    (key != AD_HOC).then(|| key.to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(unavailable(format!(
            "stored item lacks string attribute {name}"
        ))),
    }
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| unavailable(format!("stored attribute {name} is not a number: {v}"))),
        _ => Err(unavailable(format!(
            "stored item lacks number attribute {name}"
        ))),
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("stored item: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(unavailable)
}

/// Runs `futures` with at most [`CONCURRENCY`] in flight; results in completion order.
async fn all<T, F>(futures: impl IntoIterator<Item = F>) -> Result<Vec<T>, StoreError>
where
    F: Future<Output = Result<T, StoreError>>,
{
    stream::iter(futures)
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// Runs `query` page by page until `want` items pass `keep` (all of them when `want` is None)
/// or the key range is exhausted. Filters only shrink pages, so one call may need several.
async fn query_until(
    query: QueryFluentBuilder,
    want: Option<usize>,
    keep: impl Fn(&Item) -> bool,
) -> Result<Vec<Item>, StoreError> {
    Ok(query_pages(query, want, keep, usize::MAX).await?.0)
}

/// Like [`query_until`] for one page of a listing: at most `max_calls` Query calls; when the
/// cap stops it before `want` items, the key to resume from comes back with what was found.
async fn query_capped(
    query: QueryFluentBuilder,
    want: usize,
    max_calls: usize,
) -> Result<(Vec<Item>, Option<Item>), StoreError> {
    query_pages(query, Some(want), |_| true, max_calls).await
}

async fn query_pages(
    query: QueryFluentBuilder,
    want: Option<usize>,
    keep: impl Fn(&Item) -> bool,
    max_calls: usize,
) -> Result<(Vec<Item>, Option<Item>), StoreError> {
    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    for _ in 0..max_calls {
        let page = query
            .clone()
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        out.extend(page.items.unwrap_or_default().into_iter().filter(&keep));
        if let Some(w) = want
            && out.len() >= w
        {
            out.truncate(w);
            return Ok((out, None));
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok((out, None)),
        }
    }
    Ok((out, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_time_order() {
        assert!(time_key(999, "b") < time_key(1_000, "a"));
        assert!(time_key(1_000, "a") < time_key(1_000, "b"));
        assert!(pad_ms(1_000) < time_key(1_000, "a"));
        assert_eq!(pad_hour(493_000), "0000493000");
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("01kaz"), shard_of("01kaz"));
        let ids: Vec<String> = (0..400).map(|_| crate::domain::new_id()).collect();
        for shard in 0..SHARDS {
            let hits = ids.iter().filter(|id| shard_of(id) == shard).count();
            assert!(hits > 50, "shard {shard} got {hits} of 400");
        }
    }
}
