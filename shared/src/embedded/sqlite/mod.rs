//! The store port on SQLite (WAL): triggers, events with per-trigger ranks, the timer's jobs
//! and the delivery queue, one file per concern.

mod api_keys;
mod events;
mod intake;
mod jobs;
mod schema;
mod test_runs;
#[cfg(test)]
mod tests;
mod threads;
mod totals;
mod triggers;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, mpsc};

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use crate::ports::StoreError;
use intake::Intake;
use schema::{INDEXES, TABLES, connect, migrate};
use threads::{
    LongRead, Write, bare, note_trigger_write, run_checkpointer, run_long_reader, run_writer,
};

const READERS: usize = 4;
/// Pages (4 KiB) in the write-ahead log at which the writer checkpoints itself (SQLite's
/// default). A passive checkpoint thread alone let the log grow without bound under constant
/// writes (1.1 GB in 10 s of firings). A larger threshold drains a burst of firings faster
/// (100,000: 43k/s at 1,000 pages, 46k/s at 4,096, 52k/s at 65,536) but stalls the writer
/// for longer: `POST /triggers` p99 at 2 connections went from 11 ms to 38 and 293 ms. So
/// the larger threshold applies only while the writer works through a backlog (see
/// `threads::BACKLOG_CHECKPOINT_PAGES`), when no client waits on a lone write.
const WRITER_CHECKPOINT_PAGES: u32 = 1_000;
/// Threads (each with its own connection) for long reads.
const LONG_READERS: usize = 2;

struct Inner {
    writes: mpsc::Sender<Write>,
    /// The writer, to wake it from a linger, and the flag that tells it why.
    writer_thread: std::thread::Thread,
    hurry: Arc<AtomicBool>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    long_reads: mpsc::Sender<LongRead>,
    /// Committed writes that changed the `triggers` table (see `TriggerStore::trigger_writes`).
    trigger_writes: Arc<AtomicU64>,
    /// Committed writes of any kind (see `EventStore::event_writes`).
    all_writes: Arc<AtomicU64>,
    /// Firings acknowledged before their commit (see the `intake` module).
    intake: Arc<Intake>,
    /// Joined when the store is dropped (see `Drop for Inner`).
    writer: Option<std::thread::JoinHandle<()>>,
    /// Dropped with the store, which ends the checkpoint thread.
    _stop_checkpoints: mpsc::Sender<()>,
}

/// SQLite in WAL mode: a few reader connections used off the async threads, and one writer
/// thread that group-commits whatever writes are queued, so a burst of firings costs a few
/// transactions instead of one each. Every write still succeeds or fails on its own (savepoints).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut writer = connect(path).map_err(unavailable)?;
        // Checkpoints mostly run on their own thread (below), not inside the writer's commits:
        // one there copies pages and syncs the file while every queued write waits. Under
        // constant writes that thread never catches up completely, and only a complete
        // checkpoint lets the log start over, so the writer still checkpoints once the log
        // holds WRITER_CHECKPOINT_PAGES; by then most of it is copied already.
        writer
            .execute_batch(&threads::checkpoint_settings(false))
            .map_err(unavailable)?;
        writer.execute_batch(TABLES).map_err(unavailable)?;
        migrate(&mut writer).map_err(unavailable)?;
        writer.execute_batch(INDEXES).map_err(unavailable)?;
        // One process owns the file: attempt claims left by the previous one died with it.
        writer
            .execute_batch("UPDATE deliveries SET claim_ms = NULL WHERE claim_ms IS NOT NULL;")
            .map_err(unavailable)?;
        // Before any reader or writer thread: what a previous process acknowledged and never
        // committed is recorded first.
        let intake = Arc::new(Intake::open(&path.with_extension("intake"), &mut writer)?);
        let readers = (0..READERS)
            .map(|_| connect(path).map(Mutex::new))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(unavailable)?;
        let (tx, rx) = mpsc::channel::<Write>();
        let hurry = Arc::new(AtomicBool::new(false));
        let writer_hurry = hurry.clone();
        let writer = std::thread::Builder::new()
            .name("etp-sqlite-writer".into())
            .spawn(move || run_writer(writer, rx, &writer_hurry))
            .map_err(unavailable)?;
        let checkpoints = connect(path).map_err(unavailable)?;
        // The thread stops when the store is dropped (its sender goes with it).
        let (stop_checkpoints, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("etp-sqlite-checkpoint".into())
            .spawn(move || run_checkpointer(checkpoints, stopped))
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
                writer_thread: writer.thread().clone(),
                hurry,
                readers,
                next_reader: AtomicUsize::new(0),
                long_reads: long_tx,
                trigger_writes: Arc::new(AtomicU64::new(0)),
                all_writes: Arc::new(AtomicU64::new(0)),
                intake,
                writer: Some(writer),
                _stop_checkpoints: stop_checkpoints,
            }),
        })
    }
}

impl Drop for Inner {
    /// The last handle to the store finishes the writes already queued (acknowledged firings
    /// among them) before it is gone, so that a new store on the same file starts from them.
    fn drop(&mut self) {
        // Replacing the sender ends the writer's loop once the queue is empty.
        drop(std::mem::replace(&mut self.writes, mpsc::channel().0));
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the writer thread panicked");
        }
    }
}

pub(super) use crate::ports::unavailable;

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("stored row: {e}")))
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(unavailable)
}

/// The key a trigger's events are grouped (counted, listed) under: its id; ad-hoc test runs,
/// which have no trigger, share the empty key.
pub(super) fn event_group(trigger_id: Option<&str>) -> &str {
    trigger_id.unwrap_or("")
}

pub(super) use crate::supervise::lock;

/// Builds `WHERE a AND b ...` with positional parameters.
#[derive(Default)]
pub(super) struct Filter {
    clauses: Vec<String>,
    params: Vec<SqlValue>,
}

impl Filter {
    pub(super) fn add(&mut self, clause: &str, values: impl IntoIterator<Item = SqlValue>) {
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

    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

pub(super) fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_string())
}
