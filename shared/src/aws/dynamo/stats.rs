//! Stats on DynamoDB: a compressed snapshot of per-trigger counts, moved to the reader's
//! instant by the events that crossed a window edge since it was taken, rebuilt from the hour
//! counters only when it is missing, too old, or due for its periodic check.

// Why a snapshot: every per-(shard, hour, trigger) counter of 48 hours is millions of items at
// a million firings a day. A snapshot is one small Query however long the log; what moved
// since it was taken is read event by event, exactly, so the answer is exact at read time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use serde::{Deserialize, Serialize};

use super::{
    DynamoStore, HOUR_MS, Item, LIFECYCLE, SHARDS, all, counter_pk, from_ms, get_n, get_s, hour_of,
    legacy_counter_pk, lifecycle_pks, ms, n, pad_hour, pad_ms, query_until, s, trigger_id_of,
    unavailable,
};
use crate::domain::lifecycle::FiredWindow;
use crate::ports::{StoreError, TriggerStats};

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

/// Where the windows stood for a set of counts: events fired in `(active_after, upto]` are
/// active, in `(retain_after, active_after]` archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Cuts {
    upto: i64,
    active_after: i64,
    retain_after: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Active,
    Archived,
}

impl Cuts {
    fn class(&self, fired: i64) -> Option<Class> {
        if fired > self.upto || fired <= self.retain_after {
            None
        } else if fired > self.active_after {
            Some(Class::Active)
        } else {
            Some(Class::Archived)
        }
    }

    /// Whether every edge of `self` is at or after the same edge of `other`.
    fn not_before(&self, other: &Cuts) -> bool {
        self.upto >= other.upto
            && self.active_after >= other.active_after
            && self.retain_after >= other.retain_after
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Row {
    name: String,
    active: i64,
    archived: i64,
    last_fired_ms: i64,
}

impl Row {
    fn add(&mut self, class: Class, by: i64) {
        match class {
            Class::Active => self.active += by,
            Class::Archived => self.archived += by,
        }
    }
}

/// Per-trigger counts as of some cuts; keyed by trigger key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counts {
    cuts: Cuts,
    /// When these counts were last computed from the counters rather than moved.
    rebuilt_ms: i64,
    rows: BTreeMap<String, Row>,
}

/// The stored form: columns compress far better than rows (ids share their time prefix).
#[derive(Serialize, Deserialize)]
struct Stored {
    cuts: Cuts,
    rebuilt_ms: i64,
    keys: Vec<String>,
    names: Vec<String>,
    active: Vec<i64>,
    archived: Vec<i64>,
    last: Vec<i64>,
}

/// The one field of a stored event body a crossing needs.
#[derive(Deserialize)]
struct Named {
    trigger_name: String,
}

/// One event that may have crossed an edge: its trigger key, fired time, and name if stored.
struct Crossing {
    key: String,
    fired_ms: i64,
    name: Option<String>,
}

impl Counts {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let rows = &self.rows;
        let stored = Stored {
            cuts: self.cuts,
            rebuilt_ms: self.rebuilt_ms,
            keys: rows.keys().cloned().collect(),
            names: rows.values().map(|r| r.name.clone()).collect(),
            active: rows.values().map(|r| r.active).collect(),
            archived: rows.values().map(|r| r.archived).collect(),
            last: rows.values().map(|r| r.last_fired_ms).collect(),
        };
        let json = serde_json::to_vec(&stored).map_err(unavailable)?;
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&json).map_err(unavailable)?;
        z.finish().map_err(unavailable)
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut json = Vec::new();
        flate2::read::DeflateDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(|e| StoreError::Corrupt(format!("stats snapshot: {e}")))?;
        let s: Stored = serde_json::from_slice(&json)
            .map_err(|e| StoreError::Corrupt(format!("stats snapshot: {e}")))?;
        let n = s.keys.len();
        if [
            s.names.len(),
            s.active.len(),
            s.archived.len(),
            s.last.len(),
        ] != [n; 4]
        {
            return Err(StoreError::Corrupt("stats snapshot columns differ".into()));
        }
        let mut rows = BTreeMap::new();
        for (i, key) in s.keys.into_iter().enumerate() {
            rows.insert(
                key,
                Row {
                    name: s.names[i].clone(),
                    active: s.active[i],
                    archived: s.archived[i],
                    last_fired_ms: s.last[i],
                },
            );
        }
        Ok(Counts {
            cuts: s.cuts,
            rebuilt_ms: s.rebuilt_ms,
            rows,
        })
    }

    /// Moves the counts from their cuts to `to` (every edge at or after the old one), given
    /// every event fired in the spans the edges swept.
    fn moved(&self, to: Cuts, crossings: &[Crossing]) -> Counts {
        let mut rows = self.rows.clone();
        for c in crossings {
            let (was, is) = (self.cuts.class(c.fired_ms), to.class(c.fired_ms));
            if was == is {
                continue;
            }
            let row = rows.entry(c.key.clone()).or_default();
            if let Some(was) = was {
                row.add(was, -1);
            }
            if let Some(is) = is {
                row.add(is, 1);
                if c.fired_ms >= row.last_fired_ms {
                    row.last_fired_ms = c.fired_ms;
                    if let Some(name) = &c.name {
                        row.name.clone_from(name);
                    }
                }
            }
        }
        rows.retain(|key, r| {
            if r.active < 0 || r.archived < 0 {
                tracing::warn!(
                    key,
                    active = r.active,
                    archived = r.archived,
                    "stats drifted"
                );
            }
            r.active > 0 || r.archived > 0
        });
        Counts {
            cuts: to,
            rebuilt_ms: self.rebuilt_ms,
            rows,
        }
    }

    fn into_stats(self) -> Vec<TriggerStats> {
        let mut out: Vec<TriggerStats> = self
            .rows
            .into_iter()
            .map(|(key, r)| TriggerStats {
                trigger_id: trigger_id_of(&key),
                trigger_name: r.name,
                active: r.active.max(0).unsigned_abs(),
                archived: r.archived.max(0).unsigned_abs(),
                last_fired_at: from_ms(r.last_fired_ms),
            })
            .collect();
        // Ad-hoc test runs (no trigger id) first, then by id, as the SQLite adapter orders them.
        out.sort_by(|a, b| a.trigger_id.cmp(&b.trigger_id));
        out
    }
}

/// The spans of fired times whose class may differ between `from` and `to`, merged.
fn swept(from: &Cuts, to: &Cuts) -> Vec<(i64, i64)> {
    let mut spans = vec![
        (from.retain_after, to.retain_after),
        (from.active_after, to.active_after),
        (from.upto, to.upto),
    ];
    spans.retain(|(lo, hi)| lo < hi);
    spans.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (lo, hi) in spans {
        match merged.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

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
    /// Every counter item of every shard, in both layouts, whose sort key satisfies
    /// `condition` against `:bound`.
    pub(super) async fn counters(
        &self,
        condition: &str,
        bound: String,
    ) -> Result<Vec<Item>, StoreError> {
        let partitions =
            (0..SHARDS).flat_map(|shard| [counter_pk(shard), legacy_counter_pk(shard)]);
        let shards = all(partitions.map(|pk| {
            let q = self
                .client
                .query()
                .table_name(&self.tables.events)
                .key_condition_expression(format!("pk = :pk AND {condition}"))
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":bound", s(bound.clone()));
            query_until(q, None, |_| true)
        }))
        .await?;
        Ok(shards.into_iter().flatten().collect())
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
            let q = self
                .client
                .query()
                .table_name(&self.tables.events)
                .index_name(LIFECYCLE)
                .key_condition_expression("lc_pk = :pk AND lc_sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":lo", s(from))
                .expression_attribute_values(":hi", s(to))
                // No projection: read units count whole items whatever is projected.
                ;
            query_until(q, None, |_| true)
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

    /// The stored snapshot, if one is there whole.
    async fn snapshot(&self) -> Result<(Option<Counts>, usize), StoreError> {
        let q = self
            .client
            .query()
            .table_name(&self.tables.events)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(SNAPSHOT_PK));
        let items = query_until(q, None, |_| true).await?;
        let chunks = items.len();
        let Some(head) = items.first() else {
            return Ok((None, 0));
        };
        let generation = get_s(head, "generation")?;
        let parts: usize = get_n(head, "parts")?;
        let mut bytes = Vec::new();
        for (i, item) in items.iter().enumerate().take(parts) {
            // Chunks of another write (two readers wrote at once): rebuild rather than mix.
            if get_s(item, "generation")? != generation || get_s(item, "sk")? != chunk_sk(i) {
                return Ok((None, chunks));
            }
            match item.get("data") {
                Some(AttributeValue::B(b)) => bytes.extend_from_slice(b.as_ref()),
                _ => return Err(unavailable("stats snapshot chunk lacks data")),
            }
        }
        if items.len() < parts {
            return Ok((None, chunks));
        }
        match Counts::decode(&bytes) {
            Ok(c) => Ok((Some(c), chunks)),
            Err(e) => {
                tracing::warn!(error = %e, "stats snapshot unreadable; rebuilding");
                Ok((None, chunks))
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
        self.write_batches(writes).await?;
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
        self.write_batches(deletes).await
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
                        StatsMemo {
                            saved_upto: counts.cuts.upto,
                            saved_chunks: chunks,
                            counts,
                        },
                        false,
                    ),
                    None => (
                        StatsMemo {
                            counts: self.rebuild(settled, now_ms).await?,
                            saved_upto: i64::MIN,
                            saved_chunks: chunks,
                        },
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
            self.set_stats_memo(Some(next));
        } else if !from_memo {
            self.set_stats_memo(Some(memo));
        }
        Ok(answer)
    }

    fn stats_memo(&self) -> Option<StatsMemo> {
        self.stats_memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_stats_memo(&self, memo: Option<StatsMemo>) {
        *self.stats_memo.lock().unwrap_or_else(|e| e.into_inner()) = memo;
    }
}

/// The counts this process last moved (exact as of their cuts, so any later read can move them
/// on), and what it knows of the stored snapshot.
#[derive(Debug, Clone)]
pub(super) struct StatsMemo {
    counts: Counts,
    saved_upto: i64,
    saved_chunks: usize,
}

fn chunk_sk(i: usize) -> String {
    format!("ST#{i:04}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuts(upto: i64, active_after: i64, retain_after: i64) -> Cuts {
        Cuts {
            upto,
            active_after,
            retain_after,
        }
    }

    fn crossing(key: &str, fired_ms: i64) -> Crossing {
        Crossing {
            key: key.into(),
            fired_ms,
            name: Some(format!("{key} at {fired_ms}")),
        }
    }

    /// Counts moved across every edge equal counts computed at the new cuts from scratch.
    #[test]
    fn moving_counts_equals_counting_again() {
        let fired: Vec<(&str, i64)> = (0..200)
            .map(|i| (if i % 3 == 0 { "a" } else { "b" }, i * 7))
            .collect();
        let count_at = |c: Cuts| {
            let mut rows: BTreeMap<String, Row> = BTreeMap::new();
            for (key, f) in &fired {
                if let Some(class) = c.class(*f) {
                    let row = rows.entry(key.to_string()).or_default();
                    row.add(class, 1);
                    if *f >= row.last_fired_ms {
                        row.last_fired_ms = *f;
                        row.name = format!("{key} at {f}");
                    }
                }
            }
            Counts {
                cuts: c,
                rebuilt_ms: 0,
                rows,
            }
        };
        for (from, to) in [
            (cuts(500, 400, 100), cuts(560, 460, 160)),
            (cuts(500, 400, 100), cuts(1400, 1300, 1000)),
            (cuts(500, 400, 100), cuts(500, 450, 100)),
            (cuts(300, 300, 0), cuts(900, 880, 850)),
        ] {
            let crossings: Vec<Crossing> = swept(&from, &to)
                .into_iter()
                .flat_map(|(lo, hi)| {
                    fired
                        .iter()
                        .filter(move |(_, f)| *f > lo && *f <= hi)
                        .map(|(k, f)| crossing(k, *f))
                })
                .collect();
            assert_eq!(
                count_at(from).moved(to, &crossings),
                count_at(to),
                "{from:?} -> {to:?}"
            );
        }
    }

    #[test]
    fn swept_spans_merge_when_they_overlap() {
        assert_eq!(
            swept(&cuts(50, 40, 10), &cuts(60, 50, 20)),
            vec![(10, 20), (40, 60)]
        );
        assert_eq!(swept(&cuts(5, 4, 1), &cuts(5, 4, 1)), vec![]);
    }

    #[test]
    fn the_snapshot_round_trips_compressed() {
        let mut rows = BTreeMap::new();
        for i in 0..1000 {
            rows.insert(
                crate::domain::new_id(),
                Row {
                    name: format!("trigger {i}"),
                    active: i % 5,
                    archived: i,
                    last_fired_ms: 1_700_000_000_000 + i,
                },
            );
        }
        let counts = Counts {
            cuts: cuts(3, 2, 1),
            rebuilt_ms: 9,
            rows,
        };
        let bytes = counts.encode().unwrap();
        assert!(
            bytes.len() < 40 * 1000,
            "{} bytes for 1000 rows",
            bytes.len()
        );
        assert_eq!(Counts::decode(&bytes).unwrap(), counts);
        assert!(Counts::decode(b"not deflate").is_err());
    }
}

/// Hour counters as firings write them, for benchmarks that need a long log without writing
/// millions of events: `(trigger id, trigger name, hour, firings, last fired ms)`.
#[cfg(feature = "test-support")]
impl DynamoStore {
    pub async fn seed_hour_counters(
        &self,
        counters: &[(String, String, i64, u64, i64)],
    ) -> Result<(), StoreError> {
        let writes = counters
            .iter()
            .map(|(id, name, hour, count, last)| {
                let item = Item::from([
                    ("pk".into(), s(counter_pk(super::shard_of(id)))),
                    ("sk".into(), s(format!("{}#{id}", pad_hour(*hour)))),
                    ("n".into(), n(count)),
                    ("trigger_name".into(), s(name)),
                    ("last_fired_ms".into(), n(last)),
                ]);
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(unavailable)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write_batches(writes).await
    }
}
