//! Stats on DynamoDB: a compressed snapshot of per-trigger counts, moved to the reader's
//! instant by the events that crossed a window edge since it was taken, rebuilt from the hour
//! counters only when it is missing, too old, or due for its periodic check.

// Why a snapshot: every per-(shard, hour, trigger) counter of 48 hours is millions of items at
// a million firings a day. A snapshot is one small Query however long the log; what moved
// since it was taken is read event by event, exactly, so the answer is exact at read time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};

use super::{
    DynamoStore, HOUR_MS, Item, LIFECYCLE, SHARDS, all, counter_pk, get_n, get_s, hour_of,
    legacy_counter_pk, lifecycle_pks, ms, n, pad_hour, pad_ms, query_until, s, sdk_error,
    unavailable,
};
use crate::domain::lifecycle::FiredWindow;

mod counts;
use crate::ports::{StoreError, TriggerStats};
use counts::{Counts, Crossing, Cuts, Named, Row, swept};

/// How long after its `fired_at` an event may still commit (a fire function's timeout with
/// margin): a snapshot counts events up to this long before it was taken, so none lands late.
pub const SETTLE_MS: i64 = 60_000;
/// A reader that moved its counts this far keeps the moved ones for the next read.
const REFRESH_MS: i64 = 60_000;
/// How often a reader stores its moved counts for processes that start later.
const SAVE_EVERY_MS: i64 = 10 * 60_000;
/// The farthest a snapshot is moved; an older one is rebuilt. Events and counters are kept
/// this much (plus the settle time) past their expiry, so every event a move reads is there.
pub const MAX_MOVE_MS: i64 = 30 * 60_000;
/// A snapshot that has only been moved for this long is rebuilt from the counters, so any
/// drift (an event committed later than [`SETTLE_MS`]) lives at most this long.
const REBUILD_EVERY_MS: i64 = 6 * HOUR_MS;
/// How far ahead of the reader's clock a writer's clock may be.
const CLOCK_SKEW_MS: i64 = 60_000;
/// Bytes of compressed snapshot per item (DynamoDB's limit is 400 KB).
const CHUNK_BYTES: usize = 300_000;
const SNAPSHOT_PK: &str = "ST";

/// TTL time added to every event and counter so a snapshot move still finds them.
pub const TTL_GRACE_MS: i64 = MAX_MOVE_MS + SETTLE_MS + 5 * 60_000;

/// One per-hour counter: events of one trigger in one shard and hour.
struct Counter {
    hour: i64,
    key: String,
    n: i64,
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
    /// Every counter item of every shard, in both layouts (the stats table's and the legacy
    /// ones in the events table), whose sort key satisfies `condition` against `:bound`.
    pub(super) async fn counters(
        &self,
        condition: &str,
        bound: String,
    ) -> Result<Vec<Item>, StoreError> {
        let t = &self.tables;
        let partitions = (0..SHARDS).flat_map(|shard| {
            [
                (t.stats.clone(), counter_pk(shard)),
                (t.events.clone(), legacy_counter_pk(shard)),
            ]
        });
        let shards = all(partitions.map(|(table, pk)| {
            let q = self
                .client
                .query()
                .table_name(table)
                .key_condition_expression(format!("pk = :pk AND {condition}"))
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":bound", s(bound.clone()));
            query_until(q, None, |_| true)
        }))
        .await?;
        Ok(shards.into_iter().flatten().collect())
    }

    /// A Query of one lifecycle partition for `lc_sk` between `lo` and `hi`.
    pub(super) fn lifecycle_range(
        &self,
        pk: String,
        lo: String,
        hi: String,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.tables.events)
            .index_name(LIFECYCLE)
            .key_condition_expression("lc_pk = :pk AND lc_sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":lo", s(lo))
            .expression_attribute_values(":hi", s(hi))
    }

    /// Every event fired in `(lo, hi]`: trigger key, fired time and name, from the lifecycle
    /// index, one Query per hour partition (in parallel).
    async fn fired_between(&self, lo: i64, hi: i64) -> Result<Vec<Crossing>, StoreError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        let legacy = self.legacy_last_hour().await?;
        let parts = (hour_of(lo + 1)..=hour_of(hi))
            .flat_map(|h| lifecycle_pks(h, legacy).into_iter().map(move |pk| (h, pk)));
        let items = all(parts.map(|(h, pk)| {
            let from = pad_ms((lo + 1).max(h * HOUR_MS));
            let to = pad_ms((hi + 1).min((h + 1) * HOUR_MS));
            // No projection: read units count whole items whatever is projected.
            query_until(self.lifecycle_range(pk, from, to), None, |_| true)
        }))
        .await?;
        items
            .iter()
            .flatten()
            .map(|i| {
                Ok(Crossing {
                    key: get_s(i, "trigger_key")?.to_string(),
                    fired_ms: get_n(i, "fired_ms")?,
                    name: get_s(i, "body")
                        .ok()
                        .and_then(|b| serde_json::from_str::<Named>(b).ok())
                        .map(|n| n.trigger_name),
                })
            })
            .collect()
    }

    /// Exact counts as of `cuts` from the hour counters (whole hours) and the events of the
    /// hours an edge falls in. Reads every counter of the retention: the expensive path.
    async fn rebuild(&self, cuts: Cuts, now_ms: i64) -> Result<Counts, StoreError> {
        let first = hour_of(cuts.retain_after);
        let last = hour_of(cuts.upto);
        // Also the hour of the reader's own retention edge: a purge up to it deletes that
        // hour's expired events but keeps its counter, which then overcounts.
        let purged = hour_of(cuts.retain_after + SETTLE_MS);
        let edges: BTreeSet<i64> = [first, purged, hour_of(cuts.active_after), last].into();
        let (items, edge_events) = tokio::try_join!(
            self.counters("sk >= :bound", pad_hour(first)),
            all(edges
                .clone()
                .into_iter()
                .map(|h| self.fired_between(h * HOUR_MS - 1, (h + 1) * HOUR_MS - 1))),
        )?;
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        for c in items.iter().map(counter) {
            let c = c?;
            if c.hour > last {
                continue;
            }
            let row = rows.entry(c.key.clone()).or_default();
            if c.last_fired_ms >= row.last_fired_ms {
                row.last_fired_ms = c.last_fired_ms;
                row.name = c.name;
            }
            // An hour no edge falls in is all one class.
            if !edges.contains(&c.hour)
                && let Some(class) = cuts.class(c.hour * HOUR_MS)
            {
                row.add(class, c.n);
            }
        }
        for e in edge_events.iter().flatten() {
            if let Some(class) = cuts.class(e.fired_ms) {
                rows.entry(e.key.clone()).or_default().add(class, 1);
            }
        }
        rows.retain(|_, r| r.active > 0 || r.archived > 0);
        Ok(Counts {
            cuts,
            rebuilt_ms: now_ms,
            rows,
        })
    }

    /// One chunk of the stored snapshot (GetItem, eventually consistent: any whole snapshot
    /// will do, the move makes it exact).
    async fn chunk(&self, i: usize) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.stats)
            .key("pk", s(SNAPSHOT_PK))
            .key("sk", s(chunk_sk(i)))
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item)
    }

    /// The stored snapshot if one is there whole, and how many chunks it has.
    async fn snapshot(&self) -> Result<(Option<Counts>, usize), StoreError> {
        let Some(head) = self.chunk(0).await? else {
            return Ok((None, 0));
        };
        let generation = get_s(&head, "generation")?.to_string();
        let parts: usize = get_n(&head, "parts")?;
        let rest = all((1..parts).map(|i| self.chunk(i))).await?;
        let mut items = vec![head];
        items.extend(rest.into_iter().flatten());
        // `all` answers in completion order.
        items.sort_by(|a, b| get_s(a, "sk").ok().cmp(&get_s(b, "sk").ok()));
        let mut bytes = Vec::new();
        for (i, item) in items.iter().enumerate() {
            // Chunks of another write (two readers wrote at once): rebuild rather than mix.
            if get_s(item, "generation")? != generation || get_s(item, "sk")? != chunk_sk(i) {
                return Ok((None, parts));
            }
            match item.get("data") {
                Some(AttributeValue::B(b)) => bytes.extend_from_slice(b.as_ref()),
                _ => return Err(unavailable("stats snapshot chunk lacks data")),
            }
        }
        if items.len() < parts {
            return Ok((None, parts));
        }
        match Counts::decode(&bytes) {
            Ok(c) => Ok((Some(c), parts)),
            Err(e) => {
                tracing::warn!(error = %e, "stats snapshot unreadable; rebuilding");
                Ok((None, parts))
            }
        }
    }

    /// Stores `counts`, replacing a snapshot of `old_chunks` chunks; returns its chunk count.
    async fn save_snapshot(&self, counts: &Counts, old_chunks: usize) -> Result<usize, StoreError> {
        let bytes = counts.encode()?;
        let generation = crate::domain::new_id();
        let parts: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        // Kept long enough to be moved, then TTL takes it (reads never rely on TTL).
        let expires = (counts.cuts.upto + MAX_MOVE_MS + HOUR_MS).div_euclid(1000);
        let mut writes = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let item = Item::from([
                ("pk".into(), s(SNAPSHOT_PK)),
                ("sk".into(), s(chunk_sk(i))),
                ("generation".into(), s(&generation)),
                ("parts".into(), n(parts.len())),
                ("data".into(), AttributeValue::B(Blob::new(part.to_vec()))),
                ("expires_at".into(), n(expires)),
            ]);
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(unavailable)?;
            writes.push(WriteRequest::builder().put_request(put).build());
        }
        for i in parts.len()..old_chunks {
            writes.push(super::maintenance::delete_request(Item::from([
                ("pk".into(), s(SNAPSHOT_PK)),
                ("sk".into(), s(chunk_sk(i))),
            ]))?);
        }
        self.write_batches(&self.tables.stats, writes).await?;
        Ok(parts.len())
    }

    /// Drops the snapshot, so the next read rebuilds it (after a purge changed the events).
    pub(super) async fn forget_snapshot(&self) -> Result<(), StoreError> {
        self.set_stats_memo(None);
        let (_, chunks) = self.snapshot().await?;
        let deletes = (0..chunks)
            .map(|i| {
                super::maintenance::delete_request(Item::from([
                    ("pk".into(), s(SNAPSHOT_PK)),
                    ("sk".into(), s(chunk_sk(i))),
                ]))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write_batches(&self.tables.stats, deletes).await
    }

    pub(super) async fn stats(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        active: FiredWindow,
        archived: FiredWindow,
    ) -> Result<Vec<TriggerStats>, StoreError> {
        let now_ms = ms(now);
        // The answer: everything fired up to (the writers' clocks allow) now, windows as given.
        let answer = Cuts {
            upto: now_ms.saturating_add(CLOCK_SKEW_MS),
            active_after: ms(active.after),
            retain_after: ms(archived.after),
        };
        // What a snapshot taken now holds: the same windows, a settle time ago.
        let settled = Cuts {
            upto: now_ms - SETTLE_MS,
            active_after: answer.active_after - SETTLE_MS,
            retain_after: answer.retain_after - SETTLE_MS,
        };
        let usable = |c: &Counts| {
            settled.not_before(&c.cuts)
                && settled.upto - c.cuts.upto <= MAX_MOVE_MS
                && now_ms - c.rebuilt_ms <= REBUILD_EVERY_MS
        };
        // This process's own moved counts first; then the stored snapshot; then the counters.
        let cached = self.stats_memo().filter(|m| usable(&m.counts));
        let from_memo = cached.is_some();
        let (memo, rebuilt) = match cached {
            Some(memo) => (memo, false),
            None => {
                let (stored, chunks) = self.snapshot().await?;
                match stored.filter(usable) {
                    Some(counts) => (
                        Arc::new(StatsMemo {
                            saved_upto: counts.cuts.upto,
                            saved_chunks: chunks,
                            counts,
                        }),
                        false,
                    ),
                    None => (
                        Arc::new(StatsMemo {
                            counts: self.rebuild(settled, now_ms).await?,
                            saved_upto: i64::MIN,
                            saved_chunks: chunks,
                        }),
                        true,
                    ),
                }
            }
        };
        let base = &memo.counts;
        let spans = swept(&base.cuts, &answer);
        let found = all(spans.into_iter().map(|(lo, hi)| self.fired_between(lo, hi))).await?;
        let crossings: Vec<Crossing> = found.into_iter().flatten().collect();
        let answer = base.moved(answer, &crossings).into_stats();
        if rebuilt || settled.upto - base.cuts.upto >= REFRESH_MS {
            let moved = base.moved(settled, &crossings);
            let mut next = StatsMemo {
                saved_upto: memo.saved_upto,
                saved_chunks: memo.saved_chunks,
                counts: moved,
            };
            // Stored for processes that start later, often enough that they can move it.
            if rebuilt || settled.upto - memo.saved_upto >= SAVE_EVERY_MS {
                match self.save_snapshot(&next.counts, memo.saved_chunks).await {
                    Ok(chunks) => {
                        next.saved_upto = next.counts.cuts.upto;
                        next.saved_chunks = chunks;
                    }
                    // The answer is still exact; a later reader saves again.
                    Err(e) => tracing::warn!(error = %e, "stats snapshot not saved"),
                }
            }
            self.set_stats_memo(Some(Arc::new(next)));
        } else if !from_memo {
            self.set_stats_memo(Some(memo));
        }
        Ok(answer)
    }

    /// This process's memo, shared (not copied) with the read that uses it.
    fn stats_memo(&self) -> Option<Arc<StatsMemo>> {
        self.stats_memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_stats_memo(&self, memo: Option<Arc<StatsMemo>>) {
        *self.stats_memo.lock().unwrap_or_else(|e| e.into_inner()) = memo;
    }
}

/// The counts this process last moved (exact as of their cuts, so any later read can move them
/// on), and what it knows of the stored snapshot.
#[derive(Debug)]
pub(super) struct StatsMemo {
    counts: Counts,
    saved_upto: i64,
    saved_chunks: usize,
}

fn chunk_sk(i: usize) -> String {
    format!("ST#{i:04}")
}

/// A long log's stats state as firings and an earlier read would have left it, for
/// benchmarks that cannot write millions of events: hour counters of one firing each
/// (`(trigger id, trigger name, hour, fired ms)`), and the snapshot a read at `now` would store.
#[cfg(feature = "test-support")]
impl DynamoStore {
    pub async fn seed_stats_history(
        &self,
        firings: &[(String, String, i64, i64)],
        now: chrono::DateTime<chrono::Utc>,
        active: FiredWindow,
        archived: FiredWindow,
    ) -> Result<(), StoreError> {
        let settled = Cuts {
            upto: ms(now) - SETTLE_MS,
            active_after: ms(active.after) - SETTLE_MS,
            retain_after: ms(archived.after) - SETTLE_MS,
        };
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        let mut writes = Vec::with_capacity(firings.len());
        for (id, name, hour, fired) in firings {
            if let Some(class) = settled.class(*fired) {
                let row = rows.entry(id.clone()).or_default();
                row.add(class, 1);
                if *fired >= row.last_fired_ms {
                    row.last_fired_ms = *fired;
                    row.name.clone_from(name);
                }
            }
            let item = Item::from([
                ("pk".into(), s(counter_pk(super::shard_of(id)))),
                ("sk".into(), s(format!("{}#{id}", pad_hour(*hour)))),
                ("n".into(), n(1)),
                ("trigger_name".into(), s(name)),
                ("last_fired_ms".into(), n(fired)),
            ]);
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(unavailable)?;
            writes.push(WriteRequest::builder().put_request(put).build());
        }
        for batch in writes.chunks(5_000) {
            self.write_batches(&self.tables.stats, batch.to_vec())
                .await?;
        }
        let counts = Counts {
            cuts: settled,
            rebuilt_ms: ms(now),
            rows,
        };
        self.save_snapshot(&counts, 0).await?;
        Ok(())
    }
}
