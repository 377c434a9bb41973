//! The threads behind the store: one writer that group-commits queued writes, readers on the
//! calling task, and low-priority threads for long reads.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::intake::{Applied, intake_line};
use super::totals;
use super::{SqliteStore, lock, unavailable};
use crate::ports::{NewEvent, Recorded, StoreError};

/// Nice value of the long-read threads: a stats recomputation at 1M events takes tens of
/// milliseconds of CPU, and at normal priority the requests that arrive meanwhile wait for it.
const LONG_READ_NICE: i32 = 19;

/// A long read (stats, start-up loads), run on one of the low-priority reader threads.
pub(super) type LongRead = Box<dyn FnOnce(&Connection) + Send>;

/// Reports a write's result once its batch has committed (or failed to).
pub(super) type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A write, run on the writer thread inside its own savepoint.
pub(super) type Job = Box<dyn FnOnce(&mut Connection) -> Completion + Send>;

/// A queued write, and whether a caller waits for its commit. A firing acknowledged from the
/// intake log has nobody waiting: its commit may wait for company (see [`LINGER`]).
pub(super) struct Write {
    job: Job,
    awaited: bool,
}

/// Writes queued while a batch commits this many at most go into the next transaction.
const MAX_BATCH: usize = 512;

/// How long the writer holds a batch in which nobody waits for the commit, so that more firings
/// share it. Under 32 clients firing, one commit per handful of firings was a third of the
/// writer's time (writing the same few log pages again for each small batch). Nothing is lost
/// by waiting: those firings are in the intake log already. A read that must see them, or a
/// write someone waits for, cuts the wait short ([`SqliteStore::hurry_writer`]). At 2 ms the
/// writer spent 18 µs per firing; at 10 ms (some 150 firings a commit at 15k/s), 14 to 16.
const LINGER: Duration = Duration::from_millis(10);
/// A batch this large commits without lingering.
const LINGER_BATCH: usize = 512;

thread_local! {
    /// Set on the writer thread by every statement that changes the `triggers` table, for the
    /// write that ran it (see [`note_trigger_write`]).
    static TRIGGERS_TOUCHED: Cell<bool> = const { Cell::new(false) };
    /// Set on the writer thread while a write runs outside a savepoint (see [`bare`]).
    static BARE_RUNNING: Cell<bool> = const { Cell::new(false) };
    /// Set when such a write fails or panics part-way: its batch is rolled back whole.
    static BATCH_SPOILED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` outside any savepoint, for writes that fail only on a storage error (a full disk,
/// an I/O error), which dooms the transaction anyway. If it fails (or panics) part-way, what
/// it wrote cannot be undone alone, so the whole batch is rolled back and every write in it
/// fails, as when a commit fails.
pub(super) fn bare<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    BARE_RUNNING.set(true);
    let result = f(conn);
    BARE_RUNNING.set(false);
    if result.is_err() {
        BATCH_SPOILED.set(true);
    }
    result
}

/// Records that the write running on this (the writer) thread changes stored triggers: once it
/// commits, [`SqliteStore::trigger_writes`] moves on, which is what lets readers cache views.
pub(super) fn note_trigger_write() {
    TRIGGERS_TOUCHED.with(|t| t.set(true));
}

/// Runs `f` in a savepoint: its writes are kept only if it succeeds.
pub(super) fn in_savepoint<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut open = OpenSavepoint::begin(conn)?;
    let value = f(open.conn)?;
    open.release()?;
    Ok(value)
}

/// A savepoint from cached statements (a fresh `SAVEPOINT` parses its SQL on every write,
/// about a tenth of a firing's writer time); rolled back when dropped unreleased, so a write
/// that fails or panics leaves nothing in the batch.
struct OpenSavepoint<'c> {
    conn: &'c Connection,
    released: bool,
}

impl<'c> OpenSavepoint<'c> {
    fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        run_cached(conn, "SAVEPOINT job")?;
        Ok(Self {
            conn,
            released: false,
        })
    }

    fn release(&mut self) -> Result<(), StoreError> {
        run_cached(self.conn, "RELEASE job")?;
        self.released = true;
        Ok(())
    }
}

impl Drop for OpenSavepoint<'_> {
    fn drop(&mut self) {
        if !self.released {
            let rolled_back = run_cached(self.conn, "ROLLBACK TO job")
                .and_then(|()| run_cached(self.conn, "RELEASE job"));
            if let Err(e) = rolled_back {
                tracing::error!(error = %e, "could not roll back a failed write");
            }
        }
    }
}

fn run_cached(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut st| st.execute([]))
        .map(|_| ())
        .map_err(unavailable)
}

/// Lowers the calling thread's CPU priority (Linux: the nice value is per thread). Best effort:
/// a failure only costs latency, so it is logged, not returned.
pub(super) fn lower_thread_priority() {
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
pub(super) fn run_long_reader(conn: Connection, jobs: Arc<Mutex<mpsc::Receiver<LongRead>>>) {
    lower_thread_priority();
    loop {
        let job = match lock(&jobs).recv() {
            Ok(job) => job,
            Err(_) => return, // the store is gone
        };
        // A read that panics fails alone (its caller hears the thread dropped it).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn)));
    }
}

/// How often the checkpoint thread moves the write-ahead log into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The checkpoint thread: a passive checkpoint every [`CHECKPOINT_EVERY`], which never blocks
/// the writer or a reader, so the writer's own checkpoints find little left to copy. Ends when
/// the store is dropped (`stop` disconnects).
pub(super) fn run_checkpointer(conn: Connection, stop: mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
            tracing::warn!(error = %e, "checkpoint failed; the next one retries");
        }
    }
}

/// A batch this large means a backlog: the writer then leaves checkpoints to the checkpoint
/// thread until the log holds [`BACKLOG_CHECKPOINT_PAGES`].
const BACKLOG_BATCH: usize = 64;
/// The writer's own checkpoint threshold while it works through a backlog. Each of its
/// checkpoints makes every queued write wait for two `fsync`s: under a burst of 100,000
/// firings the writer spent a quarter of its time there. Without a backlog (at most a few
/// dozen writes queued, as under 32 clients) it stays at [`super::WRITER_CHECKPOINT_PAGES`],
/// whose shorter stalls keep request latency low.
pub(super) const BACKLOG_CHECKPOINT_PAGES: u32 = 16_384;

/// The write-ahead log's size, in bytes, that the writer truncates it to when the log starts
/// over outside a backlog. SQLite otherwise keeps the file at its largest ever (64 MiB and more
/// after a burst of firings, or after a long read held the log) and reuses it in place. Well
/// above what steady writes reach (under 10 MiB at [`super::WRITER_CHECKPOINT_PAGES`]), so
/// only the first restart after a burst truncates.
pub(super) const LOG_SIZE_LIMIT: i64 = 16 << 20;

/// The writer's checkpoint settings for a backlog or for none. Through a backlog the log keeps
/// its size (no `ftruncate` and no file regrowth between its checkpoints); once the backlog is
/// over, the next restart of the log gives the space back.
pub(super) fn checkpoint_settings(backlog: bool) -> String {
    let (pages, limit) = if backlog {
        (BACKLOG_CHECKPOINT_PAGES, -1)
    } else {
        (super::WRITER_CHECKPOINT_PAGES, LOG_SIZE_LIMIT)
    };
    format!("PRAGMA wal_autocheckpoint={pages}; PRAGMA journal_size_limit={limit};")
}

/// Sets the writer's checkpoint settings for a backlog or for none, when that changes.
pub(super) fn checkpoint_for(conn: &Connection, backlog: bool, current: &mut bool) {
    if backlog == *current {
        return;
    }
    match conn.execute_batch(&checkpoint_settings(backlog)) {
        Ok(()) => *current = backlog,
        Err(e) => tracing::warn!(error = %e, "could not set the checkpoint threshold"),
    }
}

/// The next batch, starting with `first`: whatever else is queued, and, when nobody waits for
/// any of it, what arrives within [`LINGER`] (until `hurry` is set or [`LINGER_BATCH`]). Also
/// whether the queue alone (before any lingering) held a backlog.
fn gather(first: Write, jobs: &mpsc::Receiver<Write>, hurry: &AtomicBool) -> (Vec<Write>, bool) {
    let started = Instant::now();
    let mut awaited = first.awaited;
    let mut batch = vec![first];
    let mut first_drain = None;
    loop {
        // Taken before the queue is drained: whatever a hurrying reader waits for was queued
        // before it set the flag, so it is in this drain or the flag is seen next round.
        let hurried = hurry.swap(false, Ordering::AcqRel);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(write) => {
                    awaited |= write.awaited;
                    batch.push(write);
                }
                Err(_) => break,
            }
        }
        let behind = *first_drain.get_or_insert(batch.len() >= BACKLOG_BATCH);
        let left = LINGER.saturating_sub(started.elapsed());
        if hurried || awaited || batch.len() >= LINGER_BATCH || left.is_zero() {
            return (batch, behind);
        }
        // Senders do not wake a parked writer; `hurry_writer` does.
        std::thread::park_timeout(left);
    }
}

/// The writer thread: one transaction per batch of queued writes; replies after the commit.
pub(super) fn run_writer(mut conn: Connection, jobs: mpsc::Receiver<Write>, hurry: &AtomicBool) {
    let mut backlog = false;
    while let Ok(first) = jobs.recv() {
        let (batch, behind) = gather(first, &jobs, hurry);
        checkpoint_for(&conn, behind, &mut backlog);
        let began = conn.execute_batch("BEGIN IMMEDIATE").map_err(unavailable);
        BATCH_SPOILED.set(false);
        // A write that panics is rolled back to its savepoint and fails alone (its caller hears
        // the writer dropped it); the thread, and every other write, go on. One without a
        // savepoint spoils the batch instead.
        let done: Vec<Completion> = batch
            .into_iter()
            .filter_map(|Write { job, awaited }| {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if awaited {
                        // Any other write may read the totals: it finds them written.
                        if let Err(e) = totals::flush(&conn) {
                            tracing::error!(error = %e, "could not write the held totals");
                            BATCH_SPOILED.set(true);
                        }
                        job(&mut conn)
                    } else {
                        totals::deferring(|| job(&mut conn))
                    }
                }));
                if ran.is_err() && BARE_RUNNING.replace(false) {
                    BATCH_SPOILED.set(true);
                }
                ran.ok()
            })
            .collect();
        let failed = match began {
            Err(e) => Some(e),
            Ok(()) if BATCH_SPOILED.get() => Some(unavailable(
                "a write failed part-way outside a savepoint; its batch is rolled back",
            )),
            Ok(()) => totals::flush(&conn)
                .and_then(|()| conn.execute_batch("COMMIT").map_err(unavailable))
                .err(),
        };
        if failed.is_some() {
            totals::forget();
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = ?failed, "write batch failed");
        }
        for complete in done {
            complete(failed.as_ref());
        }
    }
}

impl SqliteStore {
    /// A write in a savepoint of its own: if it fails, it fails alone.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.queue_write(true, f).await
    }

    /// A write that keeps to [`bare`]'s rules itself (no savepoint).
    pub(super) async fn write_bare<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.queue_write(false, f).await
    }

    async fn queue_write<T, F>(&self, savepoint: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let writes = self.inner.trigger_writes.clone();
        let all_writes = self.inner.all_writes.clone();
        let job: Job = Box::new(move |conn| {
            TRIGGERS_TOUCHED.with(|t| t.set(false));
            let result = if savepoint {
                in_savepoint(conn, f)
            } else {
                f(conn)
            };
            let touched = TRIGGERS_TOUCHED.with(Cell::take);
            Box::new(move |failed: Option<&StoreError>| {
                // After the commit and before the answer: whoever hears of the write and then
                // reads sees the new count, and a page read before the commit was filed under
                // the old one. A write rolled back moves it too, which only costs a cache miss.
                if touched {
                    writes.fetch_add(1, Ordering::Release);
                }
                all_writes.fetch_add(1, Ordering::Release);
                let result = match (result, failed) {
                    (Ok(_), Some(e)) => Err(unavailable(e)),
                    (result, _) => result,
                };
                let _ = reply.send(result);
            })
        });
        self.inner
            .writes
            .send(Write { job, awaited: true })
            .map_err(|_| unavailable("the writer thread has stopped"))?;
        self.hurry_writer();
        answer
            .await
            .map_err(|_| unavailable("the writer thread dropped a write"))?
    }

    /// Records `new` (a [`super::intake::loggable`] firing) once its line is in the intake
    /// log: the writer commits it after the answer, in log order.
    pub(super) async fn record_logged(&self, new: NewEvent) -> Result<Recorded, StoreError> {
        let intake = &self.inner.intake;
        intake.room(|| self.hurry_writer()).await;
        let mut new = super::events::EncodedEvent::new(new)?;
        let line = intake_line(new.body(), new.plan());
        let event = new.answer();
        intake.append(&line, |seq| {
            let applied = Applied::new(intake.clone(), seq);
            let job: Job = Box::new(move |conn| {
                let ok = super::events::record_bare(conn, new).is_ok();
                Box::new(move |failed: Option<&StoreError>| {
                    applied.report(ok && failed.is_none());
                })
            });
            self.inner
                .writes
                .send(Write {
                    job,
                    awaited: false,
                })
                .map_err(|_| unavailable("the writer thread has stopped"))
        })?;
        // Before the answer, as for a committed write: a page cached before it is not served.
        self.inner.all_writes.fetch_add(1, Ordering::Release);
        Ok(Recorded::Written(event))
    }

    /// Waits until every firing acknowledged from the intake log has committed.
    pub(super) async fn settled(&self) {
        self.inner.intake.settled(|| self.hurry_writer()).await;
    }

    /// Ends the writer's [`LINGER`] now: someone waits for what it holds.
    fn hurry_writer(&self) {
        self.inner.hurry.store(true, Ordering::Release);
        self.inner.writer_thread.unpark();
    }

    /// A long read, on a low-priority thread of its own so it never delays request handling.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
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
    pub(super) fn read_now<T>(
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
}
