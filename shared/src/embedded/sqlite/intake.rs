//! The intake log: a firing with no dedupe key and no completion is acknowledged once its line
//! is appended here, before its transaction commits; a restart records what never committed.
//!
//! Why: waiting for the writer's commit cost each `POST /triggers/{id}/fire` two thread
//! hand-offs and a share of a commit. A line is copied into a shared mapping of the segment
//! file, that is, into the kernel's page cache, which survives `kill -9` exactly as a committed
//! WAL frame does under `synchronous=NORMAL` (a `write(2)` per line did the same at 5% of a
//! firing's CPU). Reads of events wait for the writer to catch up ([`Intake::settled`]),
//! so whoever heard "202" and then reads sees the event.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{lock, unavailable};
use crate::domain::delivery::DeliveryPlan;
use crate::domain::event::Event;
use crate::ports::{NewEvent, StoreError};

/// The size of a segment (a larger line gets one of its own size); closed segments are deleted
/// once all they hold committed. The open one is mapped, and what a firing touched of it counts
/// in the process's resident memory, hence small.
const SEGMENT_BYTES: usize = 1 << 20;
/// Logged firings not yet committed, at most: beyond it a firing waits for the writer, so a
/// writer that cannot keep up slows the clients down instead of growing memory.
const MAX_UNAPPLIED: u64 = 4_096;

/// One logged firing: what its transaction writes.
#[derive(Serialize, Deserialize)]
pub(super) struct IntakeRecord<E = Event, D = Option<DeliveryPlan>> {
    pub event: E,
    pub delivery: D,
}

impl IntakeRecord {
    pub(super) fn into_new_event(self) -> NewEvent {
        NewEvent {
            event: self.event,
            json: None,
            dedupe_key: None,
            complete: None,
            delivery: self.delivery,
        }
    }
}

/// The log line of a firing from its encoded event and delivery plan: the JSON of an
/// [`IntakeRecord`] and a newline, spliced rather than encoded again.
pub(super) fn intake_line(event_json: &str, plan_json: Option<&str>) -> Vec<u8> {
    let plan = plan_json.unwrap_or("null");
    let mut line = Vec::with_capacity(event_json.len() + plan.len() + 24);
    line.extend_from_slice(b"{\"event\":");
    line.extend_from_slice(event_json.as_bytes());
    line.extend_from_slice(b",\"delivery\":");
    line.extend_from_slice(plan.as_bytes());
    line.extend_from_slice(b"}\n");
    line
}

/// Whether `new` may be acknowledged from the log: its write cannot turn out a duplicate, and it
/// changes no trigger.
pub(super) fn loggable(new: &NewEvent) -> bool {
    new.dedupe_key.is_none() && new.complete.is_none()
}

struct Log {
    /// None until the first line: a start needs no room on the disk.
    segment: Option<Segment>,
    /// The open segment's number, or the last one's before it is opened.
    number: u64,
    /// Closed segments: (number, sequence number of their last line).
    closed: VecDeque<(u64, u64)>,
}

pub(super) struct Intake {
    dir: PathBuf,
    log: Mutex<Log>,
    /// Sequence number of the last appended line (handed to the writer in the same order).
    appended: AtomicU64,
    /// Sequence number of the last line whose transaction has committed (or failed).
    applied: AtomicU64,
    caught_up: Notify,
    /// A logged firing failed to commit: keep every segment, so the next start records it.
    keep: AtomicBool,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:012}.log"))
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Records every logged firing of `dir` that is not in the store yet, in one transaction.
/// Returns (recorded, unreadable lines). A line that cannot be read or recorded is skipped and
/// its segment kept aside (`<segment>.<ms>.rejected`) so that nothing readable stops a restart.
fn replay(conn: &mut Connection, dir: &Path) -> Result<(u64, u64), StoreError> {
    let found = segments(dir).map_err(unavailable)?;
    if found.is_empty() {
        return Ok((0, 0));
    }
    let (mut recorded, mut unreadable) = (0, 0);
    let mut rejected = Vec::new();
    let mut tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    for (_, path) in &found {
        let file = File::open(path).map_err(unavailable)?;
        let mut bad = false;
        for line in BufReader::new(file).split(b'\n') {
            let mut line = line.map_err(unavailable)?;
            // The unused end of a segment a process left open is zeros.
            let text = line.iter().rposition(|b| *b != 0).map_or(0, |end| end + 1);
            line.truncate(text);
            if line.is_empty() {
                continue;
            }
            let record = match serde_json::from_slice::<IntakeRecord>(&line) {
                Ok(record) => record,
                Err(e) => {
                    // A line cut short by a crash was never acknowledged; anything else is
                    // damage. Either way it cannot be recorded.
                    tracing::warn!(segment = %path.display(), error = %e, "unreadable intake line skipped");
                    unreadable += 1;
                    bad = true;
                    continue;
                }
            };
            let known: Option<i64> = tx
                .prepare_cached("SELECT 1 FROM events WHERE id = ?1")
                .and_then(|mut st| {
                    st.query_row(params![record.event.id], |r| r.get(0))
                        .optional()
                })
                .map_err(unavailable)?;
            if known.is_some() {
                continue;
            }
            let id = record.event.id.clone();
            let sp = tx.savepoint().map_err(unavailable)?;
            let outcome = super::events::EncodedEvent::new(record.into_new_event())
                .and_then(|encoded| super::events::record(&sp, encoded));
            match outcome {
                Ok(_) => {
                    sp.commit().map_err(unavailable)?;
                    recorded += 1;
                }
                Err(e) => {
                    tracing::error!(event_id = %id, error = %e, "logged firing could not be recorded");
                    unreadable += 1;
                    bad = true;
                }
            }
        }
        if bad {
            rejected.push(path.clone());
        }
    }
    tx.commit().map_err(unavailable)?;
    // Named by the time of this start, so that no earlier rejected segment is overwritten.
    let kept_aside = format!("{}.rejected", chrono::Utc::now().timestamp_millis());
    for (_, path) in &found {
        let result = if rejected.contains(path) {
            fs::rename(path, path.with_extension(&kept_aside))
        } else {
            fs::remove_file(path)
        };
        if let Err(e) = result {
            tracing::warn!(segment = %path.display(), error = %e, "could not retire an intake segment");
        }
    }
    Ok((recorded, unreadable))
}

impl Intake {
    /// Opens the log in `dir` (creating it), first recording through `conn` whatever a
    /// previous process logged and never committed.
    pub(super) fn open(dir: &Path, conn: &mut Connection) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(unavailable)?;
        let (recorded, unreadable) = replay(conn, dir)?;
        if recorded > 0 || unreadable > 0 {
            tracing::info!(recorded, unreadable, "intake log replayed");
        }
        let number = segments(dir)
            .map_err(unavailable)?
            .last()
            .map_or(0, |(n, _)| *n);
        Ok(Self {
            dir: dir.to_path_buf(),
            log: Mutex::new(Log {
                segment: None,
                number,
                closed: VecDeque::new(),
            }),
            appended: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            caught_up: Notify::new(),
            keep: AtomicBool::new(false),
        })
    }

    /// Appends `line` (one record and its newline) and, under the same lock so that the
    /// writer sees lines in log order, hands `send` the line's sequence number.
    pub(super) fn append(
        &self,
        line: &[u8],
        send: impl FnOnce(u64) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut log = lock(&self.log);
        let seq = self.appended.load(Ordering::Relaxed) + 1;
        let segment = match log.segment.take() {
            Some(open) if open.fits(line.len()) => open,
            open => self.next_segment(&mut log, open, seq - 1, line.len())?,
        };
        log.segment.insert(segment).put(line);
        send(seq)?;
        self.appended.store(seq, Ordering::Release);
        Ok(())
    }

    /// Opens the next segment (room for at least `line` bytes), closes `open` (its last line
    /// is `last`), and deletes the closed segments whose lines have all committed. If the next
    /// cannot be opened, `open` stays the open one.
    fn next_segment(
        &self,
        log: &mut Log,
        open: Option<Segment>,
        last: u64,
        line: usize,
    ) -> Result<Segment, StoreError> {
        let next = log.number + 1;
        let segment = match Segment::create(&segment_path(&self.dir, next), SEGMENT_BYTES.max(line))
        {
            Ok(segment) => segment,
            Err(e) => {
                log.segment = open;
                return Err(unavailable(e));
            }
        };
        if let Some(closed) = open {
            // Dropping it cuts its file to the lines it holds.
            drop(closed);
            log.closed.push_back((log.number, last));
        }
        log.number = next;
        if self.keep.load(Ordering::Acquire) {
            return Ok(segment);
        }
        let applied = self.applied.load(Ordering::Acquire);
        while let Some(&(number, last)) = log.closed.front() {
            if last > applied {
                break;
            }
            log.closed.pop_front();
            if let Err(e) = fs::remove_file(segment_path(&self.dir, number)) {
                tracing::warn!(error = %e, "could not delete an intake segment");
            }
        }
        Ok(segment)
    }

    /// Called by the writer, in log order, once line `seq`'s transaction has committed (`ok`)
    /// or failed.
    pub(super) fn applied(&self, seq: u64, ok: bool) {
        if !ok && !self.keep.swap(true, Ordering::AcqRel) {
            tracing::error!(
                seq,
                "a logged firing did not commit; the intake log is kept until the next start records it"
            );
        }
        self.applied.store(seq, Ordering::Release);
        self.caught_up.notify_waiters();
    }

    /// Waits until every line appended before the call has committed: a read that follows it
    /// sees every firing acknowledged before it began. `hurry` runs before each wait (the writer
    /// may be holding those lines back for a larger commit).
    pub(super) async fn settled(&self, hurry: impl Fn()) {
        let target = self.appended.load(Ordering::Acquire);
        self.wait_until(|applied, _| applied >= target, hurry).await;
    }

    /// Waits until the writer is less than [`MAX_UNAPPLIED`] lines behind.
    pub(super) async fn room(&self, hurry: impl Fn()) {
        self.wait_until(
            |applied, appended| appended.saturating_sub(applied) < MAX_UNAPPLIED,
            hurry,
        )
        .await;
    }

    async fn wait_until(&self, done: impl Fn(u64, u64) -> bool, hurry: impl Fn()) {
        loop {
            // Created before the check: a notification between the two is not missed.
            let notified = self.caught_up.notified();
            let applied = self.applied.load(Ordering::Acquire);
            if done(applied, self.appended.load(Ordering::Acquire)) {
                return;
            }
            hurry();
            notified.await;
        }
    }
}

/// Reports line `seq` applied when dropped: after its commit (with `ok` set), or as failed when
/// its job panics or never runs (the writer drops such a job), so that no reader waits for it
/// forever.
pub(super) struct Applied {
    intake: Arc<Intake>,
    seq: u64,
    ok: bool,
}

impl Applied {
    pub(super) fn new(intake: Arc<Intake>, seq: u64) -> Self {
        Self {
            intake,
            seq,
            ok: false,
        }
    }

    /// Reports the line's transaction as committed (`ok`) or failed.
    pub(super) fn report(mut self, ok: bool) {
        self.ok = ok;
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        self.intake.applied(self.seq, self.ok);
    }
}

/// The open segment: a file of fixed size, its blocks allocated up front and mapped shared, so
/// appending a line is a copy into the page cache. Allocating first means a full disk fails
/// the segment's creation (a 503 for the firing), never a page fault (`SIGBUS`) later.
struct Segment {
    file: File,
    map: std::ptr::NonNull<u8>,
    len: usize,
    used: usize,
}

// SAFETY: the mapping is owned by the segment alone and only touched through `&mut self`.
unsafe impl Send for Segment {}

impl Segment {
    /// A new segment at `path`; on failure no file is left there, so the next try can use the
    /// same name (a full disk that frees up again is then written to again).
    fn create(path: &Path, len: usize) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Self::map(file, len).inspect_err(|_| {
            let _ = fs::remove_file(path);
        })
    }

    fn map(file: File, len: usize) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let size = libc::off_t::try_from(len).map_err(std::io::Error::other)?;
        // SAFETY: plain system calls on a descriptor this function owns; the mapping's pointer
        // and length are kept together and unmapped once, in `Drop`.
        let map = unsafe {
            let rc = libc::posix_fallocate(file.as_raw_fd(), 0, size);
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let map = std::ptr::NonNull::new(map.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        // Every page write-faulted now, in one call: otherwise every eighth firing or so took a
        // page fault of its own (a quarter of a microsecond per firing). Best effort: a kernel
        // older than 5.14 refuses it, and lines then fault their pages in as before.
        #[cfg(target_os = "linux")]
        // SAFETY: advice on the mapping just made, within its length.
        unsafe {
            libc::madvise(map.as_ptr().cast(), len, libc::MADV_POPULATE_WRITE);
        }
        Ok(Self {
            file,
            map,
            len,
            used: 0,
        })
    }

    fn fits(&self, line: usize) -> bool {
        line <= self.len - self.used
    }

    /// Copies `line` after the last one; the caller checked that it [`fits`](Self::fits).
    fn put(&mut self, line: &[u8]) {
        assert!(self.fits(line.len()), "an intake line past its segment");
        // SAFETY: `used + line.len() <= len`, inside the mapping; `line` is not in it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                line.as_ptr(),
                self.map.as_ptr().add(self.used),
                line.len(),
            );
        }
        self.used += line.len();
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `create`, unmapped once.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.len);
        }
        // Only tidiness: a replay skips the zeros after the last line anyway.
        if let Err(e) = self.file.set_len(self.used as u64) {
            tracing::warn!(error = %e, "could not trim a closed intake segment");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment that cannot be made (here: an allocation of zero bytes, which the kernel
    /// refuses as it would a full disk's) leaves no file behind, so the next try succeeds.
    #[test]
    fn a_failed_segment_leaves_its_name_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        assert!(Segment::create(&path, 0).is_err());
        assert!(!path.exists(), "no file left behind");
        let mut segment = Segment::create(&path, SEGMENT_BYTES).unwrap();
        segment.put(b"line\n");
        drop(segment);
        assert_eq!(
            fs::read(&path).unwrap(),
            b"line\n",
            "cut to its lines when closed"
        );
    }
}
