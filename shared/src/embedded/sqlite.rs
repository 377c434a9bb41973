//! The store port on SQLite (WAL): triggers, events with per-trigger ranks, and the timer's jobs.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use tokio::sync::oneshot;

use crate::domain::delivery::DeliveryPlan;
use crate::domain::event::Event;
use crate::domain::lifecycle::FiredWindow;
use crate::domain::target::Secret;
use crate::domain::trigger::{Trigger, TriggerStatus};
use crate::ports::{
    EventJson, EventQuery, EventStore, NewEvent, Page, Recorded, StoreError, TriggerQuery,
    TriggerStats, TriggerStore, cursor,
};

const READERS: usize = 4;
/// Threads (each with its own connection) for long reads.
const LONG_READERS: usize = 2;
/// Nice value of the long-read threads: a stats recomputation at 1M events takes tens of
/// milliseconds of CPU, and at normal priority the requests that arrive meanwhile wait for it.
const LONG_READ_NICE: i32 = 19;
/// Rows deleted per purge transaction, so a big purge never blocks writers for long.
const PURGE_BATCH: i64 = 5_000;

/// The encoding of trigger and event bodies, kept in `PRAGMA user_version`: listings serve the
/// stored JSON as it is, so a change to the JSON shape of `Trigger` or `Event` must raise this
/// (the test `body_format_is_current` fails until it does); [`migrate`] then rewrites every body.
const BODY_FORMAT: i64 = 1;

/// Tables; indexes come after [`migrate`], which may add the columns they cover.
const TABLES: &str = "
CREATE TABLE IF NOT EXISTS triggers (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
    version INTEGER NOT NULL, body TEXT NOT NULL
) WITHOUT ROWID;
-- seq: the event's rank among its trigger's events in (fired_ms, id) order, 1 for the first
-- ever recorded; purges leave the survivors' ranks alone, so counts are differences of ranks.
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, trigger_key TEXT NOT NULL, source TEXT NOT NULL,
    is_test INTEGER NOT NULL, fired_ms INTEGER NOT NULL, dedupe_key TEXT UNIQUE,
    body TEXT NOT NULL, seq INTEGER NOT NULL DEFAULT 0
);
-- One row per trigger key with events: the newest name and time, and the highest seq.
CREATE TABLE IF NOT EXISTS trigger_event_totals (
    trigger_key TEXT PRIMARY KEY, trigger_name TEXT NOT NULL, last_fired_ms INTEGER NOT NULL,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trigger_secrets (
    id TEXT PRIMARY KEY, secret TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT PRIMARY KEY, due_ms INTEGER, plan TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(due_ms) WHERE due_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS timer_jobs (
    key TEXT PRIMARY KEY, due_ms INTEGER NOT NULL, generation INTEGER NOT NULL, test_run TEXT
) WITHOUT ROWID;
";

const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS triggers_by_kind ON triggers(kind, id);
CREATE INDEX IF NOT EXISTS triggers_by_status ON triggers(status, id);
-- Time order for global listings and purges.
CREATE INDEX IF NOT EXISTS events_by_fired ON events(fired_ms, id);
-- Per-trigger listings; seq makes it covering for the stats' rank lookups.
CREATE INDEX IF NOT EXISTS events_by_trigger_seq ON events(trigger_key, fired_ms, id, seq);
";

/// Brings a database written by an earlier version to the current layout, in one transaction:
/// per-trigger ranks replace the per-hour counters, whose stats cost grew with the log.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let has_seq: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('events') WHERE name = 'seq'",
        [],
        |r| r.get(0),
    )?;
    let tx = conn.transaction()?;
    if !has_seq {
        tracing::info!("migrating the event log to per-trigger ranks (once)");
        tx.execute_batch(
            "ALTER TABLE events ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
             WITH ranked AS (SELECT id, ROW_NUMBER() OVER
                 (PARTITION BY trigger_key ORDER BY fired_ms, id) AS r FROM events)
             UPDATE events SET seq = ranked.r FROM ranked WHERE ranked.id = events.id;
             INSERT OR REPLACE INTO trigger_event_totals
                 (trigger_key, trigger_name, last_fired_ms, last_seq)
             SELECT trigger_key, json_extract(body, '$.trigger_name'), fired_ms, MAX(seq)
             FROM events GROUP BY trigger_key;",
        )?;
    }
    tx.execute_batch(
        "DROP TABLE IF EXISTS event_counts;
         DROP INDEX IF EXISTS events_by_time;
         DROP INDEX IF EXISTS events_by_trigger;",
    )?;
    let format: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if format < BODY_FORMAT {
        reencode::<Trigger>(&tx, "triggers")?;
        reencode::<Event>(&tx, "events")?;
        tx.execute_batch(&format!("PRAGMA user_version = {BODY_FORMAT};"))?;
    }
    tx.commit()
}

/// Rewrites every body of `table` (keyed by `id`) in the current encoding of `T`, so listings
/// can serve bodies as stored. Reads in key batches and writes between them, never while a read
/// is open on the table. An unreadable body stays as it is; reading that row reports it.
fn reencode<T: serde::de::DeserializeOwned + serde::Serialize>(
    tx: &Connection,
    table: &str,
) -> rusqlite::Result<()> {
    let mut read = tx.prepare(&format!(
        "SELECT id, body FROM {table} WHERE id > ?1 ORDER BY id LIMIT 10000"
    ))?;
    let mut write = tx.prepare(&format!("UPDATE {table} SET body = ?2 WHERE id = ?1"))?;
    let (mut after, mut n) = (String::new(), 0u64);
    loop {
        let batch: Vec<(String, String)> = read
            .query_map(params![after], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let Some((last, _)) = batch.last() else { break };
        after = last.clone();
        for (id, body) in batch {
            let Ok(current) = decode::<T>(&body).and_then(|v| encode(&v)) else {
                tracing::warn!(table, id, "body not readable; left as it is");
                continue;
            };
            if current != body {
                write.execute(params![id, current])?;
                n += 1;
            }
        }
    }
    if n > 0 {
        tracing::info!(table, rows = n, "bodies rewritten in the current encoding");
    }
    Ok(())
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
}

fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| unavailable(format!("corrupt stored row: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(unavailable)
}

/// Ad-hoc test runs have no trigger; they are counted and filtered under this key.
fn trigger_key(trigger_id: Option<&str>) -> &str {
    trigger_id.unwrap_or("")
}

/// A job the local timer keeps: when it is due and, for test runs, the definition to fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerJob {
    pub key: String,
    pub due_ms: i64,
    pub generation: i64,
    pub test_run: Option<String>,
}

struct Inner {
    writes: mpsc::Sender<Job>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    long_reads: mpsc::Sender<LongRead>,
}

/// A long read (stats, start-up loads), run on one of the low-priority reader threads.
type LongRead = Box<dyn FnOnce(&Connection) + Send>;

/// Reports a write's result once its batch has committed (or failed to).
type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A write, run on the writer thread inside its own savepoint.
type Job = Box<dyn FnOnce(&mut Connection) -> Completion + Send>;

/// Writes queued while a batch commits this many at most go into the next transaction.
const MAX_BATCH: usize = 512;

/// SQLite in WAL mode: a few reader connections used off the async threads, and one writer
/// thread that group-commits whatever writes are queued, so a burst of firings costs a few
/// transactions instead of one each. Every write still succeeds or fails on its own (savepoints).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // NORMAL keeps every commit across a process crash (kill -9); only power loss can drop the
    // last few, which WAL then rolls back cleanly.
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;
         PRAGMA temp_store=MEMORY;",
    )?;
    Ok(conn)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` in a savepoint: its writes are kept only if it succeeds.
fn in_savepoint<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let sp = conn.savepoint().map_err(unavailable)?;
    let value = f(&sp)?;
    sp.commit().map_err(unavailable)?;
    Ok(value)
}

/// Lowers the calling thread's CPU priority (Linux: the nice value is per thread). Best effort:
/// a failure only costs latency, so it is logged, not returned.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority has no memory-safety preconditions; `who` 0 is the calling thread.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, LONG_READ_NICE) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the long-read thread's priority");
        }
    }
}

/// A long-read thread: runs queued long reads one at a time at a lower CPU priority.
fn run_long_reader(conn: Connection, jobs: Arc<Mutex<mpsc::Receiver<LongRead>>>) {
    lower_thread_priority();
    loop {
        let job = match lock(&jobs).recv() {
            Ok(job) => job,
            Err(_) => return, // the store is gone
        };
        job(&conn);
    }
}

/// The writer thread: one transaction per batch of queued writes; replies after the commit.
fn run_writer(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = conn.execute_batch("BEGIN IMMEDIATE").map_err(unavailable);
        let done: Vec<Completion> = batch.into_iter().map(|job| job(&mut conn)).collect();
        let failed = match began {
            Err(e) => Some(e),
            Ok(()) => conn.execute_batch("COMMIT").map_err(unavailable).err(),
        };
        if failed.is_some() {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = ?failed, "write batch failed");
        }
        for complete in done {
            complete(failed.as_ref());
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut writer = connect(path).map_err(unavailable)?;
        writer.execute_batch(TABLES).map_err(unavailable)?;
        migrate(&mut writer).map_err(unavailable)?;
        writer.execute_batch(INDEXES).map_err(unavailable)?;
        let readers = (0..READERS)
            .map(|_| connect(path).map(Mutex::new))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(unavailable)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("etp-sqlite-writer".into())
            .spawn(move || run_writer(writer, rx))
            .map_err(unavailable)?;
        let (long_tx, long_rx) = mpsc::channel::<LongRead>();
        let long_rx = Arc::new(Mutex::new(long_rx));
        for i in 0..LONG_READERS {
            let conn = connect(path).map_err(unavailable)?;
            let jobs = long_rx.clone();
            std::thread::Builder::new()
                .name(format!("etp-sqlite-long-read-{i}"))
                .spawn(move || run_long_reader(conn, jobs))
                .map_err(unavailable)?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                writes: tx,
                readers,
                next_reader: AtomicUsize::new(0),
                long_reads: long_tx,
            }),
        })
    }

    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |failed: Option<&StoreError>| {
                let result = match (result, failed) {
                    (Ok(_), Some(e)) => Err(unavailable(e)),
                    (result, _) => result,
                };
                let _ = reply.send(result);
            })
        });
        self.inner
            .writes
            .send(job)
            .map_err(|_| unavailable("the writer thread has stopped"))?;
        answer
            .await
            .map_err(|_| unavailable("the writer thread dropped a write"))?
    }

    /// A long read, on a low-priority thread of its own so it never delays request handling.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: LongRead = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.inner
            .long_reads
            .send(job)
            .map_err(|_| unavailable("the long-read threads have stopped"))?;
        answer
            .await
            .map_err(|_| unavailable("a long-read thread dropped a read"))?
    }

    /// A short read (one row, or one page of at most a few hundred rows) run on the calling
    /// task: handing it to the blocking pool costs two thread switches, more than the query.
    /// Long reads (stats, start-up loads) go through [`Self::read`].
    fn read_now<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let inner = &self.inner;
        let n = inner.readers.len();
        let start = inner.next_reader.fetch_add(1, Ordering::Relaxed);
        // Prefer a connection nobody holds, so a short read never waits behind a long one.
        for i in 0..n {
            if let Ok(conn) = inner.readers[(start + i) % n].try_lock() {
                return f(&conn);
            }
        }
        f(&lock(&inner.readers[start % n]))
    }

    /// Every job the timer has to run, for loading at start-up.
    /// Events whose delivery is due at `now`, earliest first (the local delivery queue).
    pub async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let now = ms(now);
        self.read_now(|c| {
            c.prepare_cached(
                "SELECT event_id FROM deliveries WHERE due_ms IS NOT NULL AND due_ms <= ?1
                 ORDER BY due_ms LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![now, limit as i64], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(unavailable)
        })
    }

    /// When the earliest pending delivery is due.
    pub async fn next_delivery_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let due: Option<i64> = self.read_now(|c| {
            c.prepare_cached("SELECT min(due_ms) FROM deliveries WHERE due_ms IS NOT NULL")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(unavailable)
        })?;
        Ok(due.and_then(from_ms))
    }

    pub async fn timer_jobs(&self) -> Result<Vec<TimerJob>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare("SELECT key, due_ms, generation, test_run FROM timer_jobs")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(TimerJob {
                        key: r.get(0)?,
                        due_ms: r.get(1)?,
                        generation: r.get(2)?,
                        test_run: r.get(3)?,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)
        })
        .await
    }

    /// Writes a job, replacing any with the same key.
    pub async fn put_timer_job(&self, job: TimerJob) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO timer_jobs (key, due_ms, generation, test_run) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(key) DO UPDATE SET due_ms = ?2, generation = ?3, test_run = ?4",
                params![job.key, job.due_ms, job.generation, job.test_run],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    /// Moves a job to `next` (or removes it) only if it is still generation `generation`, so a firing
    /// that finishes after the API rescheduled the trigger cannot undo that change.
    pub async fn advance_timer_job(
        &self,
        key: String,
        generation: i64,
        next: Option<(i64, i64)>,
    ) -> Result<bool, StoreError> {
        self.write(move |c| {
            let changed = match next {
                Some((due_ms, new_generation)) => {
                    c.prepare_cached(
                        "UPDATE timer_jobs SET due_ms = ?3, generation = ?4
                         WHERE key = ?1 AND generation = ?2",
                    )
                    .and_then(|mut st| st.execute(params![key, generation, due_ms, new_generation]))
                }
                None => c
                    .prepare_cached("DELETE FROM timer_jobs WHERE key = ?1 AND generation = ?2")
                    .and_then(|mut st| st.execute(params![key, generation])),
            }
            .map_err(unavailable)?;
            Ok(changed == 1)
        })
        .await
    }

    pub async fn delete_timer_job(&self, key: String) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute("DELETE FROM timer_jobs WHERE key = ?1", params![key])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

fn record(tx: &Connection, new: NewEvent) -> Result<Recorded, StoreError> {
    if let Some(key) = &new.dedupe_key {
        let existing: Option<String> = tx
            .prepare_cached("SELECT body FROM events WHERE dedupe_key = ?1")
            .and_then(|mut st| st.query_row(params![key], |r| r.get(0)).optional())
            .map_err(unavailable)?;
        if let Some(body) = existing {
            return Ok(Recorded::Duplicate(decode(&body)?));
        }
    }
    let e = &new.event;
    let key = trigger_key(e.trigger_id.as_deref());
    let fired = ms(e.fired_at);
    let body = encode(e)?;
    let (seq, highest) = take_rank(tx, key, fired, &e.id)?;
    tx.prepare_cached(
        "INSERT INTO events (id, trigger_key, source, is_test, fired_ms, dedupe_key, body, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(params![
            e.id,
            key,
            e.source.as_str(),
            e.is_test,
            fired,
            new.dedupe_key,
            body,
            seq
        ])
    })
    .map_err(unavailable)?;
    count_event(tx, key, fired, &e.trigger_name, highest)?;
    if let Some(plan) = &new.delivery {
        let plan = encode(plan)?;
        tx.prepare_cached("INSERT INTO deliveries (event_id, due_ms, plan) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![e.id, fired, plan]))
            .map_err(unavailable)?;
    }
    if let Some((id, version)) = &new.complete {
        let body: Option<String> = tx
            .prepare_cached(
                "SELECT body FROM triggers WHERE id = ?1 AND version = ?2 AND status = 'active'",
            )
            .and_then(|mut st| {
                st.query_row(params![id, *version as i64], |r| r.get(0))
                    .optional()
            })
            .map_err(unavailable)?;
        if let Some(body) = body {
            let t: Trigger = decode(&body)?;
            let done = t.with_status(TriggerStatus::Completed, e.fired_at);
            write_trigger(tx, &done, Some(*version))?;
        }
    }
    Ok(Recorded::Written(new.event))
}

/// The rank a new event of `key` fired at `fired` takes, and the key's highest rank once it is
/// in. Firings arrive in time order, so the rank is almost always one past the highest; an event
/// that sorts before some already recorded (a concurrent firing that committed late) takes the
/// first one's rank and shifts those after it.
fn take_rank(tx: &Connection, key: &str, fired: i64, id: &str) -> Result<(i64, i64), StoreError> {
    let highest: Option<i64> = tx
        .prepare_cached("SELECT last_seq FROM trigger_event_totals WHERE trigger_key = ?1")
        .and_then(|mut st| st.query_row(params![key], |r| r.get(0)).optional())
        .map_err(unavailable)?;
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
    if let Some(rank) = successor {
        tx.prepare_cached(
            "UPDATE events SET seq = seq + 1 WHERE trigger_key = ?1 AND (fired_ms, id) > (?2, ?3)",
        )
        .and_then(|mut st| st.execute(params![key, fired, id]))
        .map_err(unavailable)?;
        let highest = match highest {
            Some(h) => h,
            // No totals row beside recorded events: only while a purge is between its steps.
            None => tx
                .prepare_cached(
                    "SELECT seq - 1 FROM events WHERE trigger_key = ?1
                     ORDER BY fired_ms DESC, id DESC LIMIT 1",
                )
                .and_then(|mut st| st.query_row(params![key], |r| r.get(0)))
                .map_err(unavailable)?,
        };
        return Ok((rank, highest + 1));
    }
    let rank = highest.unwrap_or(0) + 1;
    Ok((rank, rank))
}

/// Records a just-inserted event in its key's totals row (the newest name wins).
fn count_event(
    tx: &Connection,
    key: &str,
    fired: i64,
    name: &str,
    highest: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO trigger_event_totals (trigger_key, trigger_name, last_fired_ms, last_seq)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(trigger_key) DO UPDATE SET last_seq = ?4,
           trigger_name = CASE WHEN ?3 >= last_fired_ms THEN ?2 ELSE trigger_name END,
           last_fired_ms = max(last_fired_ms, ?3)",
    )
    .and_then(|mut st| st.execute(params![key, name, fired, highest]))
    .map_err(unavailable)?;
    Ok(())
}

/// Inserts (`expected` = None) or replaces at `expected` version; returns rows changed.
fn write_trigger(c: &Connection, t: &Trigger, expected: Option<u64>) -> Result<(), StoreError> {
    let body = encode(t)?;
    let changed = match expected {
        None => c.execute(
            "INSERT INTO triggers (id, kind, status, version, body) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO NOTHING",
            params![
                t.id,
                t.kind.as_str(),
                t.status.as_str(),
                t.version as i64,
                body
            ],
        ),
        Some(v) => c.execute(
            "UPDATE triggers SET kind = ?2, status = ?3, version = ?4, body = ?5
             WHERE id = ?1 AND version = ?6",
            params![
                t.id,
                t.kind.as_str(),
                t.status.as_str(),
                t.version as i64,
                body,
                v as i64
            ],
        ),
    }
    .map_err(unavailable)?;
    if changed == 1
        && let Some(secret) = &t.secret
    {
        c.prepare_cached(
            "INSERT INTO trigger_secrets (id, secret) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET secret = ?2",
        )
        .and_then(|mut st| st.execute(params![t.id, secret.expose()]))
        .map_err(unavailable)?;
    }
    match (changed, expected) {
        (1, _) => Ok(()),
        (_, None) => Err(StoreError::AlreadyExists),
        (_, Some(_)) => Err(StoreError::VersionConflict),
    }
}

/// Builds `WHERE a AND b ...` with positional parameters.
#[derive(Default)]
struct Filter {
    clauses: Vec<String>,
    params: Vec<SqlValue>,
}

impl Filter {
    fn add(&mut self, clause: &str, values: impl IntoIterator<Item = SqlValue>) {
        let mut values = values.into_iter();
        let mut out = String::new();
        for (i, part) in clause.split('?').enumerate() {
            if i > 0 {
                if let Some(v) = values.next() {
                    self.params.push(v);
                }
                out.push_str(&format!("?{}", self.params.len()));
            }
            out.push_str(part);
        }
        self.clauses.push(out);
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_string())
}

#[async_trait]
impl TriggerStore for SqliteStore {
    async fn insert_trigger(&self, trigger: &Trigger) -> Result<(), StoreError> {
        let t = trigger.clone();
        self.write(move |c| write_trigger(c, &t, None)).await
    }

    async fn get_trigger(&self, id: &str) -> Result<Option<Trigger>, StoreError> {
        let row: Option<(String, Option<String>)> = self.read_now(|c| {
            c.prepare_cached(
                "SELECT t.body, s.secret FROM triggers t
                 LEFT JOIN trigger_secrets s ON s.id = t.id WHERE t.id = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(unavailable)
        })?;
        row.map(|(body, secret)| {
            let mut t: Trigger = decode(&body)?;
            t.secret = secret.map(Secret::from_stored);
            Ok(t)
        })
        .transpose()
    }

    async fn list_triggers(&self, query: &TriggerQuery) -> Result<Page<Trigger>, StoreError> {
        self.list_triggers_json(query)
            .await?
            .try_map(|t| decode(&t))
    }

    /// The stored bodies as they are: [`migrate`] keeps them in the current encoding.
    async fn list_triggers_json(&self, query: &TriggerQuery) -> Result<Page<String>, StoreError> {
        let mut f = Filter::default();
        if let Some(cursor) = &query.cursor {
            f.add("id > ?", [text(&cursor::decode(cursor)?)]);
        }
        if let Some(kind) = query.kind {
            f.add("kind = ?", [text(kind.as_str())]);
        }
        if let Some(status) = query.status {
            f.add("status = ?", [text(status.as_str())]);
        }
        let limit = query.limit.max(1);
        let sql = format!(
            "SELECT id, body FROM triggers {} ORDER BY id LIMIT {}",
            f.sql(),
            limit + 1
        );
        let rows: Vec<(String, String)> = self.read_now(|c| {
            let mut stmt = c.prepare_cached(&sql).map_err(unavailable)?;
            let rows = stmt
                .query_map(params_from_iter(f.params), |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<_>>().map_err(unavailable)
        })?;
        Page::from_overfetch(rows, limit, |(id, _)| cursor::encode(id))
            .try_map(|(_, body)| Ok(body))
    }

    async fn replace_trigger(
        &self,
        trigger: &Trigger,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let t = trigger.clone();
        self.write(move |c| write_trigger(c, &t, Some(expected_version)))
            .await
    }

    async fn delete_trigger(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM triggers WHERE id = ?1", params![id])
                .map_err(unavailable)?;
            c.execute("DELETE FROM trigger_secrets WHERE id = ?1", params![id])
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn record_event(&self, new: NewEvent) -> Result<Recorded, StoreError> {
        self.write(move |c| record(c, new)).await
    }

    async fn get_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
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
        active: FiredWindow,
        archived: FiredWindow,
    ) -> Result<Vec<TriggerStats>, StoreError> {
        let active_cut = ms(active.after);
        let retain_cut = ms(archived.after);
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
            let body: Option<String> = c
                .prepare_cached("SELECT body FROM events WHERE id = ?1")
                .and_then(|mut s| s.query_row(params![event.id], |r| r.get(0)).optional())
                .map_err(unavailable)?;
            let Some(body) = body else {
                return Err(StoreError::VersionConflict);
            };
            let stored: Event = decode(&body)?;
            if stored.attempts.len() != seen_attempts {
                return Err(StoreError::VersionConflict);
            }
            let body = encode(&event)?;
            c.prepare_cached("UPDATE events SET body = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![event.id, body]))
                .map_err(unavailable)?;
            c.prepare_cached("UPDATE deliveries SET due_ms = ?2 WHERE event_id = ?1")
                .and_then(|mut s| s.execute(params![event.id, event.next_attempt_at.map(ms)]))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{EventSource, EventStatus};
    use crate::domain::lifecycle::{EventState, Lifecycle};
    use crate::domain::trigger::TriggerKind;
    use chrono::Duration;

    fn event(trigger: &str, fired_at: DateTime<Utc>) -> Event {
        Event {
            id: crate::domain::new_id(),
            trigger_id: Some(trigger.into()),
            trigger_name: format!("name of {trigger}"),
            kind: TriggerKind::Api,
            source: EventSource::Api,
            is_test: false,
            scheduled_for: None,
            fired_at,
            payload: serde_json::Value::Null,
            status: EventStatus::Success,
            attempts: Vec::new(),
            next_attempt_at: None,
        }
    }

    /// A data directory written by the version with per-hour counters opens with exact stats,
    /// and new firings count on top of the migrated ranks.
    #[tokio::test]
    async fn a_database_with_hour_counters_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etp.sqlite3");
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:34:56Z")
            .unwrap()
            .with_timezone(&Utc);
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE events (
                    id TEXT PRIMARY KEY, trigger_key TEXT NOT NULL, source TEXT NOT NULL,
                    is_test INTEGER NOT NULL, fired_ms INTEGER NOT NULL, dedupe_key TEXT UNIQUE,
                    body TEXT NOT NULL);
                 CREATE INDEX events_by_time ON events(fired_ms, id);
                 CREATE INDEX events_by_trigger ON events(trigger_key, fired_ms, id);
                 CREATE TABLE event_counts (
                    trigger_key TEXT NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL,
                    last_fired_ms INTEGER NOT NULL, trigger_name TEXT NOT NULL,
                    PRIMARY KEY (trigger_key, hour)) WITHOUT ROWID;",
            )
            .unwrap();
            // a: one active, two archived, one expired; b: one archived. Written out of order.
            for (key, age_min) in [
                ("a", 30),
                ("a", 3_000),
                ("b", 200),
                ("a", 125),
                ("a", 2_800),
            ] {
                let e = event(key, now - Duration::minutes(age_min));
                old.execute(
                    "INSERT INTO events VALUES (?1, ?2, 'api', 0, ?3, NULL, ?4)",
                    // Not the current encoding: the migration rewrites it.
                    params![
                        e.id,
                        key,
                        ms(e.fired_at),
                        serde_json::to_string_pretty(&e).unwrap()
                    ],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let l = Lifecycle::default();
        let stats = || async {
            let rows = store
                .event_stats(
                    l.window(EventState::Active, now),
                    l.window(EventState::Archived, now),
                )
                .await
                .unwrap();
            rows.into_iter()
                .map(|r| (r.trigger_id.unwrap(), r.active, r.archived))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            stats().await,
            vec![("a".to_string(), 1, 2), ("b".to_string(), 0, 1)]
        );
        store
            .record_event(NewEvent {
                event: event("a", now - Duration::seconds(1)),
                dedupe_key: None,
                complete: None,
                delivery: None,
            })
            .await
            .unwrap();
        assert_eq!(
            stats().await,
            vec![("a".to_string(), 2, 2), ("b".to_string(), 0, 1)]
        );
        drop(store);
        // Opening again does not migrate twice; bodies are served in the current encoding.
        let store = SqliteStore::open(&path).unwrap();
        let page = store
            .list_events_json(&EventQuery {
                window: l.window(EventState::Archived, now),
                trigger_id: None,
                source: None,
                is_test: None,
                limit: 10,
                cursor: None,
            })
            .await
            .unwrap();
        assert_eq!(page.items.len(), 3);
        for item in page.items {
            let event: Event = serde_json::from_str(&item.json).unwrap();
            assert_eq!(item.json, encode(&event).unwrap());
            assert_eq!(item.fired_at, event.fired_at);
        }
    }

    /// A tripwire: listings send stored bodies as they are, so when `Event`'s JSON changes,
    /// BODY_FORMAT must rise (then [`migrate`] rewrites old bodies) and this test with it.
    #[test]
    fn body_format_is_current() {
        let mut e = event("a", Utc::now());
        e.scheduled_for = Some(e.fired_at);
        e.next_attempt_at = Some(e.fired_at);
        let keys = |v: serde_json::Value| {
            let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.join(",")
        };
        let trigger: Trigger = serde_json::from_value(serde_json::json!({
            "id": "t", "name": "n", "kind": "scheduled", "status": "active",
            "schedule": {"type": "interval", "every_seconds": 60},
            "payload": {}, "payload_schema": {},
            "target": {"url": "https://example.com/hook"},
            "created_at": "2026-11-24T10:00:00Z", "updated_at": "2026-11-24T10:00:00Z",
            "version": 1
        }))
        .unwrap();
        assert_eq!(
            (
                BODY_FORMAT,
                keys(serde_json::to_value(&e).unwrap()),
                keys(serde_json::to_value(&trigger).unwrap()),
            ),
            (
                1,
                "attempts,fired_at,id,is_test,kind,next_attempt_at,payload,scheduled_for,source,\
                 status,trigger_id,trigger_name"
                    .to_string(),
                "created_at,id,kind,name,payload,payload_schema,schedule,status,target,updated_at,\
                 version"
                    .to_string(),
            )
        );
    }
}
