//! Events on SQLite: the write path (dedupe, ranks, totals, deliveries, one-time completion),
//! listings, stats from ranks, delivery attempts and the purge.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::intake::loggable;
use super::{
    Filter, SqliteStore, bare, decode, encode, event_group, from_ms, ms, note_trigger_write, text,
    unavailable,
};
use crate::domain::delivery::DeliveryPlan;
use crate::domain::event::{Event, EventStatus};
use crate::domain::lifecycle::FiredWindow;
use crate::ports::{
    EventJson, EventQuery, EventStore, NewEvent, Page, Recorded, StoreError, TriggerStats, cursor,
};

/// Rows deleted per purge transaction, so a big purge never blocks writers for long.
const PURGE_BATCH: i64 = 5_000;

/// A firing with its bodies encoded: encoding happens on the caller's task, so the single
/// writer thread spends its time on the rows alone.
pub(super) struct EncodedEvent {
    new: NewEvent,
    body: String,
    plan: Option<String>,
    done: Option<String>,
}

impl EncodedEvent {
    pub(super) fn new(mut new: NewEvent) -> Result<Self, StoreError> {
        Ok(Self {
            body: match new.json.take() {
                Some(json) => json,
                None => encode(&new.event)?,
            },
            plan: new.delivery.as_ref().map(encode).transpose()?,
            done: new.complete.as_ref().map(|c| encode(&c.done)).transpose()?,
            new,
        })
    }
}

impl EncodedEvent {
    /// The event's JSON, as stored.
    pub(super) fn body(&self) -> &str {
        &self.body
    }

    /// The delivery plan's JSON, when it has one.
    pub(super) fn plan(&self) -> Option<&str> {
        self.plan.as_deref()
    }

    /// The event for the caller's answer, with the payload moved out: the rows are written from
    /// the encoded body and the event's other fields, so the payload is not copied.
    pub(super) fn answer(&mut self) -> Event {
        let payload = std::mem::take(&mut self.new.event.payload);
        let mut event = self.new.event.clone();
        event.payload = payload;
        event
    }
}

/// Records a firing (in the caller's savepoint).
pub(super) fn record(tx: &Connection, encoded: EncodedEvent) -> Result<Recorded, StoreError> {
    match insert_event(tx, &encoded)? {
        Some(rank) => finish_event(tx, encoded, rank),
        None => first_recorded(tx, &encoded.new),
    }
}

/// Records a firing without a savepoint of its own: a savepoint copies every page the firing
/// touches into a sub-journal, a quarter of the writer's time per firing. Up to and including
/// the event's insert nothing else is written, so a failure there (an unreadable duplicate, an
/// id already taken) fails this firing alone; a failure after it rolls back the whole batch
/// (see [`bare`]).
pub(super) fn record_bare(tx: &Connection, encoded: EncodedEvent) -> Result<Recorded, StoreError> {
    match insert_event(tx, &encoded)? {
        Some(rank) => bare(tx, |tx| finish_event(tx, encoded, rank)),
        None => first_recorded(tx, &encoded.new),
    }
}

/// The event recorded first under this firing's dedupe key (its insert found the key taken).
fn first_recorded(tx: &Connection, new: &NewEvent) -> Result<Recorded, StoreError> {
    let body: String = tx
        .prepare_cached("SELECT body FROM events WHERE dedupe_key = ?1")
        .and_then(|mut st| st.query_row(params![new.dedupe_key], |r| r.get(0)))
        .map_err(unavailable)?;
    Ok(Recorded::Duplicate(decode(&body)?))
}

/// Where a new event goes among its key's events (see [`take_rank`]).
struct Rank {
    seq: i64,
    highest: i64,
    /// Events recorded already sort after it: their ranks move up by one.
    shift: bool,
}

/// The firing's first write: its event row, at its rank; `None` (nothing written) when its
/// dedupe key is taken, so a duplicate costs no read before the insert of an original.
fn insert_event(tx: &Connection, encoded: &EncodedEvent) -> Result<Option<Rank>, StoreError> {
    let e = &encoded.new.event;
    let key = event_group(e.trigger_id.as_deref());
    let fired = ms(e.fired_at);
    let rank = take_rank(tx, key, fired, &e.id)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO events (id, trigger_key, source, is_test, fired_ms, dedupe_key, body, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING",
        )
        .and_then(|mut st| {
            st.execute(params![
                e.id,
                key,
                e.source.as_str(),
                e.is_test,
                fired,
                encoded.new.dedupe_key,
                encoded.body,
                rank.seq
            ])
        })
        .map_err(unavailable)?;
    Ok((inserted == 1).then_some(rank))
}

/// The rest of a firing once its event is in: the ranks after it, the totals, the delivery
/// and the one-time trigger's completion.
fn finish_event(
    tx: &Connection,
    encoded: EncodedEvent,
    rank: Rank,
) -> Result<Recorded, StoreError> {
    let EncodedEvent {
        new, plan, done, ..
    } = encoded;
    let e = &new.event;
    let key = event_group(e.trigger_id.as_deref());
    let fired = ms(e.fired_at);
    if rank.shift {
        tx.prepare_cached(
            "UPDATE events SET seq = seq + 1 WHERE trigger_key = ?1 AND (fired_ms, id) > (?2, ?3)",
        )
        .and_then(|mut st| st.execute(params![key, fired, e.id]))
        .map_err(unavailable)?;
    }
    super::totals::count(tx, key, fired, &e.trigger_name, rank.highest, &e.id)?;
    if let (Some(delivery), Some(plan)) = (&new.delivery, plan) {
        let host = host_of(&delivery.target.url);
        tx.prepare_cached(
            "INSERT INTO deliveries (event_id, due_ms, plan, host) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut st| st.execute(params![e.id, fired, plan, host]))
        .map_err(unavailable)?;
    }
    if let (Some(c), Some(body)) = (&new.complete, done) {
        // Only over the active trigger it was made from: an edit meanwhile wins.
        note_trigger_write();
        tx.prepare_cached(
            "UPDATE triggers SET status = ?2, version = ?3, body = ?4
             WHERE id = ?1 AND version = ?5 AND status = 'active'",
        )
        .and_then(|mut st| {
            st.execute(params![
                c.done.id,
                c.done.status.as_str(),
                c.done.version as i64,
                body,
                c.expected_version as i64
            ])
        })
        .map_err(unavailable)?;
    }
    Ok(Recorded::Written(new.event))
}

/// The rank a new event of `key` fired at `fired` takes, and the key's highest rank once it is
/// in. Firings arrive in time order, so the rank is almost always one past the highest; an event
/// that sorts before some already recorded (a concurrent firing that committed late) takes the
/// first one's rank, and those after it move up (in [`finish_event`], after the insert).
fn take_rank(tx: &Connection, key: &str, fired: i64, id: &str) -> Result<Rank, StoreError> {
    let totals = super::totals::read(tx, key, |t| {
        t.map(|t| {
            // Whether an event of this millisecond with this id sorts after the last one.
            let after_last = t.last_id.as_deref().is_some_and(|l| id > l);
            (t.last_seq, t.last_fired, after_last)
        })
    })?;
    // No recorded event of the key sorts after (`last_fired_ms`, `last_id`) (purges only remove
    // events), so a later event is last: the usual case, one read. Firings in the same
    // millisecond are common under load; `last_id` keeps them off the lookup below.
    if let Some((last_seq, last_fired, after_last)) = totals
        && (fired > last_fired || (fired == last_fired && after_last))
    {
        return Ok(Rank {
            seq: last_seq + 1,
            highest: last_seq + 1,
            shift: false,
        });
    }
    let highest = totals.map(|(seq, _, _)| seq);
    let successor: Option<i64> = tx
        .prepare_cached(
            "SELECT seq FROM events WHERE trigger_key = ?1 AND (fired_ms, id) > (?2, ?3)
             ORDER BY fired_ms, id LIMIT 1",
        )
        .and_then(|mut st| {
            st.query_row(params![key, fired, id], |r| r.get(0))
                .optional()
        })
        .map_err(unavailable)?;
    if let Some(seq) = successor {
        let highest = match highest {
            Some(h) => h,
            // No totals row beside recorded events: only while a purge is between its steps.
            None => tx
                .prepare_cached(
                    "SELECT seq FROM events WHERE trigger_key = ?1
                     ORDER BY fired_ms DESC, id DESC LIMIT 1",
                )
                .and_then(|mut st| st.query_row(params![key], |r| r.get(0)))
                .map_err(unavailable)?,
        };
        return Ok(Rank {
            seq,
            highest: highest + 1,
            shift: true,
        });
    }
    let seq = highest.unwrap_or(0) + 1;
    Ok(Rank {
        seq,
        highest: seq,
        shift: false,
    })
}

#[async_trait]
impl EventStore for SqliteStore {
    fn event_writes(&self) -> Option<u64> {
        Some(
            self.inner
                .all_writes
                .load(std::sync::atomic::Ordering::Acquire),
        )
    }

    /// One step down the `fired_ms` index.
    async fn earliest_fired_from(
        &self,
        from: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.settled().await;
        let earliest: Option<i64> = self.read_now(|c| {
            c.prepare_cached("SELECT min(fired_ms) FROM events WHERE fired_ms >= ?1")
                .and_then(|mut st| st.query_row(params![ms(from)], |r| r.get(0)))
                .map_err(unavailable)
        })?;
        Ok(earliest.and_then(from_ms))
    }

    async fn record_event(&self, new: NewEvent) -> Result<Recorded, StoreError> {
        if loggable(&new) {
            return self.record_logged(new).await;
        }
        let encoded = EncodedEvent::new(new)?;
        self.write_bare(move |c| record_bare(c, encoded)).await
    }

    async fn get_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        self.settled().await;
        let body: Option<String> = self.read_now(|c| {
            c.prepare_cached("SELECT body FROM events WHERE id = ?1")
                .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
                .map_err(unavailable)
        })?;
        body.map(|b| decode(&b)).transpose()
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Page<Event>, StoreError> {
        self.list_events_json(query)
            .await?
            .try_map(|e| decode(&e.json))
    }

    /// The stored bodies as they are: [`migrate`] keeps them in the current encoding.
    async fn list_events_json(&self, query: &EventQuery) -> Result<Page<EventJson>, StoreError> {
        self.settled().await;
        let mut f = Filter::default();
        if let Some(id) = &query.trigger_id {
            f.add("trigger_key = ?", [text(id)]);
        }
        f.add("fired_ms > ?", [SqlValue::Integer(ms(query.window.after))]);
        if let Some(until) = query.window.until {
            f.add("fired_ms <= ?", [SqlValue::Integer(ms(until))]);
        }
        if let Some(cursor) = &query.cursor {
            let (fired, id) = cursor::decode_event(cursor)?;
            f.add(
                "(fired_ms, id) < (?, ?)",
                [SqlValue::Integer(fired), SqlValue::Text(id)],
            );
        }
        if let Some(source) = query.source {
            f.add("source = ?", [text(source.as_str())]);
        }
        if let Some(is_test) = query.is_test {
            f.add("is_test = ?", [SqlValue::Integer(is_test.into())]);
        }
        let limit = query.limit.max(1);
        let sql = format!(
            "SELECT fired_ms, id, body FROM events {} ORDER BY fired_ms DESC, id DESC LIMIT {}",
            f.sql(),
            limit + 1
        );
        let rows: Vec<(i64, String, String)> = self.read_now(|c| {
            let mut stmt = c.prepare_cached(&sql).map_err(unavailable)?;
            let rows = stmt
                .query_map(params_from_iter(f.params), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<_>>().map_err(unavailable)
        })?;
        Page::from_overfetch(rows, limit, |(fired, id, _)| {
            cursor::encode_event(*fired, id)
        })
        .try_map(|(fired, _, json)| {
            from_ms(fired)
                .map(|fired_at| EventJson { fired_at, json })
                .ok_or_else(|| unavailable(format!("bad fired_ms {fired}")))
        })
    }

    async fn event_stats(
        &self,
        _now: DateTime<Utc>,
        active: FiredWindow,
        archived: FiredWindow,
    ) -> Result<Vec<TriggerStats>, StoreError> {
        let active_cut = ms(active.after);
        let retain_cut = ms(archived.after);
        self.settled().await;
        self.read(move |c| {
            // Per key, events after a cut = its highest rank - the rank of its first event after
            // the cut + 1: one seek in the covering per-trigger index per cut, however long the
            // log. One statement, so the per-key work stays inside SQLite.
            let mut stmt = c
                .prepare_cached(
                    "SELECT t.trigger_key, t.trigger_name, t.last_fired_ms, t.last_seq,
                       (SELECT seq FROM events INDEXED BY events_by_trigger_seq
                        WHERE trigger_key = t.trigger_key AND fired_ms > ?1
                        ORDER BY fired_ms, id LIMIT 1),
                       CASE WHEN t.last_fired_ms > ?2 THEN
                       (SELECT seq FROM events INDEXED BY events_by_trigger_seq
                        WHERE trigger_key = t.trigger_key AND fired_ms > ?2
                        ORDER BY fired_ms, id LIMIT 1) END
                     FROM trigger_event_totals t WHERE t.last_fired_ms > ?1
                     ORDER BY t.trigger_key",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![retain_cut, active_cut], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                })
                .map_err(unavailable)?;
            let mut out = Vec::new();
            for row in rows {
                let (key, name, last_fired, highest, first_retained, first_active) =
                    row.map_err(unavailable)?;
                let after =
                    |first: Option<i64>| first.map_or(0, |f| (highest - f + 1).max(0) as u64);
                let total = after(first_retained);
                if total == 0 {
                    continue;
                }
                let act = after(first_active);
                out.push(TriggerStats {
                    trigger_id: (!key.is_empty()).then_some(key),
                    trigger_name: name,
                    active: act,
                    archived: total.saturating_sub(act),
                    last_fired_at: from_ms(last_fired),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn get_delivery(
        &self,
        event_id: &str,
    ) -> Result<Option<(Event, DeliveryPlan)>, StoreError> {
        self.settled().await;
        let row: Option<(String, String)> = self.read_now(|c| {
            c.prepare_cached(
                "SELECT e.body, d.plan FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.event_id = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![event_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(unavailable)
        })?;
        row.map(|(event, plan)| Ok((decode(&event)?, decode(&plan)?)))
            .transpose()
    }

    async fn record_attempt(&self, event: &Event, seen_attempts: usize) -> Result<(), StoreError> {
        let event = event.clone();
        self.write(move |c| {
            if attempts_recorded(c, &event.id)? != Some(seen_attempts) {
                return Err(StoreError::VersionConflict);
            }
            let body = encode(&event)?;
            c.prepare_cached("UPDATE events SET body = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![event.id, body]))
                .map_err(unavailable)?;
            // The attempt is recorded: its claim ends with it.
            c.prepare_cached(
                "UPDATE deliveries SET due_ms = ?2, claim_ms = NULL WHERE event_id = ?1",
            )
            .and_then(|mut s| s.execute(params![event.id, event.next_attempt_at.map(ms)]))
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn claim_attempt(
        &self,
        event_id: &str,
        seen_attempts: usize,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = event_id.to_string();
        self.write(move |c| {
            if attempts_recorded(c, &id)? != Some(seen_attempts) {
                return Ok(false);
            }
            let claimed = c
                .prepare_cached(
                    "UPDATE deliveries SET claim_ms = ?2
                     WHERE event_id = ?1 AND (claim_ms IS NULL OR claim_ms < ?3)",
                )
                .and_then(|mut s| s.execute(params![id, ms(until), ms(now)]))
                .map_err(unavailable)?;
            Ok(claimed == 1)
        })
        .await
    }

    async fn redeliver(
        &self,
        event: &Event,
        plan: &DeliveryPlan,
        seen_attempts: usize,
    ) -> Result<(), StoreError> {
        let event = event.clone();
        let host = host_of(&plan.target.url);
        let plan = encode(plan)?;
        self.write(move |c| {
            let stored: Option<String> = c
                .prepare_cached("SELECT body FROM events WHERE id = ?1")
                .and_then(|mut s| s.query_row(params![event.id], |r| r.get(0)).optional())
                .map_err(unavailable)?;
            let Some(stored) = stored.map(|b| decode::<Event>(&b)).transpose()? else {
                return Err(StoreError::VersionConflict);
            };
            if stored.status == EventStatus::Pending || stored.attempts.len() != seen_attempts {
                return Err(StoreError::VersionConflict);
            }
            let body = encode(&event)?;
            c.prepare_cached("UPDATE events SET body = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![event.id, body]))
                .map_err(unavailable)?;
            c.prepare_cached(
                "INSERT INTO deliveries (event_id, due_ms, plan, host, claim_ms)
                 VALUES (?1, ?2, ?3, ?4, NULL)
                 ON CONFLICT(event_id) DO UPDATE SET due_ms = ?2, plan = ?3, host = ?4,
                   claim_ms = NULL",
            )
            .and_then(|mut s| {
                s.execute(params![event.id, event.next_attempt_at.map(ms), plan, host])
            })
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn purge_events(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let cut = ms(cutoff);
        let mut total = 0u64;
        loop {
            let n = self
                .write(move |c| {
                    c.execute(
                        "DELETE FROM deliveries WHERE event_id IN
                         (SELECT id FROM events WHERE fired_ms <= ?1 LIMIT ?2)",
                        params![cut, PURGE_BATCH],
                    )
                    .map_err(unavailable)?;
                    c.execute(
                        "DELETE FROM events WHERE id IN
                         (SELECT id FROM events WHERE fired_ms <= ?1 LIMIT ?2)",
                        params![cut, PURGE_BATCH],
                    )
                    .map_err(unavailable)
                })
                .await?;
            total += n as u64;
            if (n as i64) < PURGE_BATCH {
                break;
            }
        }
        // Keys whose every event is gone start again from rank 1.
        self.write(move |c| {
            c.execute(
                "DELETE FROM trigger_event_totals WHERE last_fired_ms <= ?1",
                params![cut],
            )
            .map_err(unavailable)
        })
        .await?;
        Ok(total)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read_now(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable))
    }

    /// Rows still due (the partial index `deliveries_due` holds exactly those).
    async fn pending_deliveries(&self) -> Result<Option<u64>, StoreError> {
        self.settled().await;
        self.read_now(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM deliveries WHERE due_ms IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| Some(u64::try_from(n).unwrap_or(0)))
            .map_err(unavailable)
        })
    }
}

/// The lower-cased host of a target URL (the worker's per-host slots), empty if none.
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

/// How many delivery attempts event `id` has recorded; `None` if it is gone.
fn attempts_recorded(c: &Connection, id: &str) -> Result<Option<usize>, StoreError> {
    let body: Option<String> = c
        .prepare_cached("SELECT body FROM events WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
        .map_err(unavailable)?;
    body.map(|b| decode::<Event>(&b).map(|e| e.attempts.len()))
        .transpose()
}
