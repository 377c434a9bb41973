//! The scheduler port in-process: a durable timer whose jobs live in SQLite beside the data.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::{Notify, Semaphore};

use crate::clock::Clock;
use crate::domain::event::Event;
use crate::domain::time_range;
use crate::domain::trigger::{Trigger, TriggerKind, TriggerStatus};
use crate::firing::{OccurrenceOutcome, fire_occurrence, fire_test_run};
use crate::ports::{
    DeliveryQueue, JobMove, Scheduler, SchedulerError, Store, StoreError, TimerJob, TimerJobs,
    TriggerQuery,
};
use crate::supervise::{self, lock};

/// Firings in flight at once; more wait for a slot. A slot is held until the firing's writes
/// commit, so this must cover a typical burst: with fewer slots than due jobs, the rest take
/// their `fired_at` only after earlier group commits, and lateness grows with the burst.
const MAX_IN_FLIGHT: usize = 4_096;
/// Due jobs handled by one task: their triggers are read in one go and their firings run
/// side by side on it (a task and a read each cost more than a firing's own work). Small, so
/// the first firing of a chunk waits little for the others' reads and encoding: at 128, p99
/// lateness of 1,000 due together went from about 20 ms to 30. At most 30, the size up to which
/// `join_all` polls its futures in place: above it, it allocates a task for each.
const CHUNK: usize = 30;
/// Later than this, a job first looks for newer occurrences to coalesce into one catch-up.
const LATE_MS: i64 = 1_000;
/// How long job moves gather before they are written together.
const FLUSH_DELAY_MS: u64 = 5;
/// Longest the loop sleeps, so its heartbeat proves it alive.
const TICK_MS: i64 = 500;
/// After a store failure a firing is retried this much later.
const RETRY_MS: i64 = 1_000;
/// After a job panicked (a bug, logged and counted) it is tried again this much later, so a
/// job that always panics costs one attempt a minute, not a busy loop.
const AFTER_PANIC_MS: i64 = 60_000;

const TRIGGER_PREFIX: &str = "trigger:";
const TEST_PREFIX: &str = "test:";

/// What the timer keeps of a job in memory: when it is due and its generation. A test run's
/// definition stays in the store until it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Live {
    generation: i64,
    due_ms: i64,
}

/// Aborts the task when dropped (the flusher ends with the timer's loop).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<(i64, i64, String)>>,
    live: HashMap<String, Live>,
}

impl State {
    fn put(&mut self, key: String, live: Live) {
        self.heap
            .push(Reverse((live.due_ms, live.generation, key.clone())));
        self.live.insert(key, live);
    }

    /// Pops every job due at `now_ms` that is still current.
    fn take_due(&mut self, now_ms: i64) -> Vec<(String, Live)> {
        let mut due = Vec::new();
        while let Some(Reverse((due_ms, generation, _))) = self.heap.peek() {
            if *due_ms > now_ms {
                break;
            }
            let (due_ms, generation) = (*due_ms, *generation);
            let Some(Reverse((_, _, key))) = self.heap.pop() else {
                break;
            };
            if let Some(live) = self.live.get(&key)
                && live.generation == generation
                && live.due_ms == due_ms
            {
                due.push((key, *live));
            }
        }
        due
    }

    fn next_due(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse((d, _, _))| *d)
    }
}

struct Inner {
    store: Arc<dyn Store>,
    jobs: Arc<dyn TimerJobs>,
    deliveries: Arc<dyn DeliveryQueue>,
    clock: Arc<dyn Clock>,
    grace: Duration,
    state: Mutex<State>,
    wake: Notify,
    /// Job moves not yet in the store, and their wake-up (see `advance`).
    moves: Mutex<Vec<JobMove>>,
    moved: Notify,
    gens: AtomicI64,
    started: Instant,
    heartbeat_ms: AtomicU64,
    permits: Arc<Semaphore>,
}

/// Fires due triggers on time; survives restarts because every job is written before it counts.
#[derive(Clone)]
pub struct LocalTimer {
    inner: Arc<Inner>,
}

fn ms_to_time(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

fn trigger_job(id: &str) -> String {
    format!("{TRIGGER_PREFIX}{id}")
}

fn test_run_job(run_id: &str) -> String {
    format!("{TEST_PREFIX}{run_id}")
}

impl LocalTimer {
    /// Loads the persisted jobs and schedules any active trigger that has none (one written just
    /// before a crash), so no trigger is lost. Fired events with a target are handed to
    /// `deliveries`: the timer is built after the delivery queue, so it cannot lack one.
    pub async fn open(
        store: Arc<dyn Store>,
        jobs: Arc<dyn TimerJobs>,
        deliveries: Arc<dyn DeliveryQueue>,
        clock: Arc<dyn Clock>,
        grace: Duration,
    ) -> Result<Self, StoreError> {
        let mut state = State::default();
        let mut max_generation = 0;
        for job in jobs.timer_jobs().await? {
            max_generation = max_generation.max(job.generation);
            state.put(
                job.key,
                Live {
                    generation: job.generation,
                    due_ms: job.due_ms,
                },
            );
        }
        let timer = Self {
            inner: Arc::new(Inner {
                store,
                jobs,
                deliveries,
                clock,
                grace,
                state: Mutex::new(state),
                wake: Notify::new(),
                moves: Mutex::new(Vec::new()),
                moved: Notify::new(),
                gens: AtomicI64::new(max_generation + 1),
                started: Instant::now(),
                heartbeat_ms: AtomicU64::new(0),
                permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            }),
        };
        timer.reconcile().await?;
        Ok(timer)
    }

    /// Gives every active scheduled trigger a job, and marks `broken` (logged, kept aside) each
    /// one that cannot fire: an unreadable row or a schedule out of range. One bad row never
    /// stops start-up. Api triggers have no job and are not read: a restart costs the scheduled
    /// ones only (an unreadable api trigger already reads as `broken` and cannot fire).
    async fn reconcile(&self) -> Result<(), StoreError> {
        let mut cursor = None;
        loop {
            let page = self
                .inner
                .store
                .list_triggers(&TriggerQuery {
                    kind: Some(TriggerKind::Scheduled),
                    status: Some(TriggerStatus::Active),
                    now: Some(self.inner.clock.now()),
                    limit: 500,
                    cursor,
                })
                .await?;
            // A page's missing jobs go to the store in one write: after a crash or a restore
            // they may be many, and one write each made the start take seconds.
            let mut missing = Vec::new();
            for t in &page.items {
                if let Some(job) = self.reconcile_one(t).await? {
                    missing.push(job);
                }
            }
            if !missing.is_empty() {
                tracing::warn!(
                    triggers = missing.len(),
                    "active triggers had no timer job; scheduling them"
                );
                self.put_jobs(missing)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// Settles one trigger at start-up; a trigger that should have a job and has none is
    /// returned with its due time, for the caller to schedule with the rest of its page.
    async fn reconcile_one(
        &self,
        t: &Trigger,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let now = self.inner.clock.now();
        if t.status == TriggerStatus::Broken {
            // An unreadable body: its stand-in replaces it, the bytes are kept aside.
            let reason = t.problem.clone().unwrap_or_default();
            self.inner
                .jobs
                .quarantine_trigger(t.clone(), reason)
                .await?;
            self.remove_job(trigger_job(&t.id))
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            return Ok(None);
        }
        if let Some(problem) = t.stored_problem() {
            tracing::error!(trigger_id = %t.id, %problem, "stored trigger cannot fire; marked broken");
            match self
                .inner
                .store
                .replace_trigger(&t.broken(problem, now), t.version)
                .await
            {
                Ok(()) | Err(StoreError::VersionConflict) => {}
                Err(e) => return Err(e),
            }
            self.remove_job(trigger_job(&t.id))
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            return Ok(None);
        }
        let key = trigger_job(&t.id);
        if t.schedule.is_none() || self.state().live.contains_key(&key) {
            return Ok(None);
        }
        // Without a next occurrence there is nothing to schedule, and no stored job to remove
        // (memory holds every stored one).
        Ok(t.next_fire_after(now).map(|due| {
            tracing::debug!(trigger_id = %t.id, "active trigger had no timer job");
            (key, due)
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    fn next_gen(&self) -> i64 {
        self.inner.gens.fetch_add(1, Ordering::Relaxed)
    }

    async fn hand_over(&self, event: &Event) {
        if let Some(due) = event.first_delivery_due()
            && let Err(e) = self.inner.deliveries.enqueue(&event.id, due).await
        {
            tracing::error!(event_id = %event.id, error = %e, "could not queue a delivery");
        }
    }

    /// Runs the timer until the task is dropped.
    pub async fn run(self) {
        let flusher = tokio::spawn(self.clone().run_flusher());
        let _stop_flusher = AbortOnDrop(flusher);
        loop {
            self.inner.heartbeat_ms.store(
                self.inner.started.elapsed().as_millis() as u64,
                Ordering::Relaxed,
            );
            let now_ms = self.inner.clock.now().timestamp_millis();
            let (due, next) = {
                let mut state = self.state();
                (state.take_due(now_ms), state.next_due())
            };
            let mut due = due.into_iter().peekable();
            while due.peek().is_some() {
                let chunk: Vec<_> = due.by_ref().take(CHUNK).collect();
                let Ok(permits) = self
                    .inner
                    .permits
                    .clone()
                    .acquire_many_owned(chunk.len() as u32)
                    .await
                else {
                    return;
                };
                let timer = self.clone();
                tokio::spawn(async move {
                    timer.process_chunk(chunk).await;
                    drop(permits);
                });
            }
            let wait = next.map_or(TICK_MS, |d| (d - now_ms).clamp(0, TICK_MS));
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait as u64)) => {}
                _ = self.inner.wake.notified() => {}
            }
        }
    }

    /// Processes every job due now and waits for them: lets tests drive the timer with a
    /// manual clock.
    pub async fn run_due(&self) -> usize {
        let now_ms = self.inner.clock.now().timestamp_millis();
        let due = self.state().take_due(now_ms);
        let n = due.len();
        let mut due = due.into_iter().peekable();
        while due.peek().is_some() {
            self.process_chunk(due.by_ref().take(CHUNK).collect()).await;
        }
        self.flush_moves().await;
        n
    }

    /// When the job for `trigger_id` is next due, if it has one.
    pub fn due(&self, trigger_id: &str) -> Option<DateTime<Utc>> {
        self.state()
            .live
            .get(&trigger_job(trigger_id))
            .and_then(|l| ms_to_time(l.due_ms))
    }

    /// When the test run `run_id` is due, if it is waiting.
    pub fn test_run_due(&self, run_id: &str) -> Option<DateTime<Utc>> {
        self.state()
            .live
            .get(&test_run_job(run_id))
            .and_then(|l| ms_to_time(l.due_ms))
    }

    /// Processes due jobs side by side on this task, their triggers read together first. A
    /// panic in one (a bug, logged and counted by the hook) ends only it: the job is put back
    /// a minute later, so the loop and every other job go on.
    async fn process_chunk(&self, chunk: Vec<(String, Live)>) {
        let ids: Vec<&str> = chunk
            .iter()
            .filter_map(|(key, _)| key.strip_prefix(TRIGGER_PREFIX))
            .collect();
        // Should the read fail (or panic), each job reads its own trigger instead, and retries
        // or is put back on its own.
        let mut read = match supervise::caught("timer read", self.inner.store.get_triggers(&ids))
            .await
        {
            Some(Ok(triggers)) => triggers.into_iter().map(Some).collect(),
            Some(Err(e)) => {
                tracing::warn!(jobs = ids.len(), error = %e, "could not read due triggers together");
                vec![None; ids.len()]
            }
            None => vec![None; ids.len()],
        }
        .into_iter();
        let jobs = chunk.into_iter().map(|(key, live)| {
            let trigger = if key.starts_with(TRIGGER_PREFIX) {
                read.next().flatten()
            } else {
                None
            };
            async move {
                // Boxed: the firing's state machine is kilobytes, and unboxed it was copied into
                // the chunk's futures and again into `caught` (a tenth of the workers' CPU under
                // a burst went to those copies).
                let job = Box::pin(self.process(&key, live, trigger));
                if supervise::caught("timer job", job).await.is_none() {
                    let due_ms = self
                        .inner
                        .clock
                        .now()
                        .timestamp_millis()
                        .saturating_add(AFTER_PANIC_MS);
                    self.requeue(key, live, due_ms);
                }
            }
        });
        futures_util::future::join_all(jobs).await;
    }

    /// Puts job `key` back in memory at `due_ms`, unless it was rescheduled meanwhile.
    fn requeue(&self, key: String, live: Live, due_ms: i64) {
        let mut state = self.state();
        if state
            .live
            .get(&key)
            .is_some_and(|l| l.generation == live.generation)
        {
            state.put(key, Live { due_ms, ..live });
        }
    }

    /// Processes job `key`; `read` is its trigger when already read (`Some(None)`: not stored).
    async fn process(&self, key: &str, live: Live, read: Option<Option<Trigger>>) {
        let result = match (
            key.strip_prefix(TEST_PREFIX),
            key.strip_prefix(TRIGGER_PREFIX),
        ) {
            (Some(run_id), _) => self.process_test_run(key, run_id, live).await,
            (None, Some(id)) => self.process_trigger(key, id, live, read).await,
            (None, None) => self.advance(key, live.generation, None).await,
        };
        if let Err(e) = result {
            tracing::error!(key = %key, error = %e, "firing failed; retrying shortly");
            let due_ms = self.inner.clock.now().timestamp_millis() + RETRY_MS;
            self.requeue(key.to_string(), live, due_ms);
        }
    }

    async fn process_test_run(
        &self,
        key: &str,
        run_id: &str,
        live: Live,
    ) -> Result<(), StoreError> {
        let store = self.inner.store.as_ref();
        // Cancelled (or already fired by a run that crashed before advancing): nothing to do.
        if let Some(run) = store.get_test_run(run_id).await? {
            let recorded = fire_test_run(
                store,
                self.inner.clock.as_ref(),
                run_id,
                &run.definition,
                ms_to_time(live.due_ms),
                run.secret.as_ref(),
            )
            .await?;
            self.hand_over(recorded.event()).await;
            store.delete_test_run(run_id).await?;
        }
        self.advance(key, live.generation, None).await
    }

    async fn process_trigger(
        &self,
        key: &str,
        id: &str,
        live: Live,
        read: Option<Option<Trigger>>,
    ) -> Result<(), StoreError> {
        let store = self.inner.store.as_ref();
        let clock = self.inner.clock.as_ref();
        let Some(mut scheduled_for) = ms_to_time(live.due_ms) else {
            return self.advance(key, live.generation, None).await;
        };
        let now = clock.now();
        // Read once (here, or with the rest of its chunk just before): the firing below uses
        // the same read.
        let trigger = match read {
            Some(trigger) => trigger,
            None => store.get_trigger(id).await?,
        };
        if let Some(trigger) = &trigger
            && (now - scheduled_for).num_milliseconds() > LATE_MS
        {
            // Occurrences missed while down (or suspended) coalesce into one catch-up firing for
            // the latest of them within the grace window; older ones are skipped.
            let from = scheduled_for.max(time_range::sub_saturating(now, self.inner.grace));
            let latest = trigger
                .schedule
                .as_ref()
                .and_then(|s| s.latest_between(from, now));
            match latest {
                Some(l) => {
                    if l > scheduled_for {
                        tracing::warn!(trigger_id = %id, first_missed = %scheduled_for, catch_up = %l,
                            "missed occurrences coalesced into one catch-up firing");
                    }
                    scheduled_for = l;
                }
                None => {
                    tracing::warn!(trigger_id = %id, first_missed = %scheduled_for,
                        grace_s = self.inner.grace.num_seconds(),
                        "missed occurrences older than the grace window skipped");
                    crate::telemetry::skipped("missed_beyond_grace");
                    let next = trigger.next_fire_after(now);
                    return self.advance(key, live.generation, next).await;
                }
            }
        }
        let firing = fire_occurrence(store, clock, trigger, scheduled_for).await?;
        match &firing.outcome {
            OccurrenceOutcome::Fired(e) => {
                tracing::info!(trigger_id = %id, event_id = %e.id, scheduled_for = %scheduled_for,
                    lateness_ms = (e.fired_at - scheduled_for).num_milliseconds(), "fired");
                self.hand_over(e).await;
            }
            OccurrenceOutcome::AlreadyFired(e) => {
                tracing::info!(trigger_id = %id, event_id = %e.id, "occurrence had already fired");
            }
            OccurrenceOutcome::Skipped(why) => {
                tracing::info!(trigger_id = %id, reason = ?why, "skipped")
            }
        }
        let next = match (&firing.outcome, &firing.trigger) {
            (OccurrenceOutcome::Skipped(_), _) | (_, None) => None,
            (_, Some(t)) => t
                .schedule
                .as_ref()
                .and_then(|s| s.next_after(scheduled_for)),
        };
        self.advance(key, live.generation, next).await
    }

    /// Moves job `key` from generation `generation` to its next due time, or removes it: in
    /// memory now, in the store with the next batch of moves (see [`Self::flush_moves`]). A
    /// job whose move is lost to a crash fires its occurrence again after the restart, which
    /// records nothing new (one event per occurrence) and moves it then.
    async fn advance(
        &self,
        key: &str,
        generation: i64,
        next: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let new_generation = self.next_gen();
        let next_ms = next.map(|t| t.timestamp_millis());
        {
            let mut state = self.state();
            // Rescheduled meanwhile (memory and store both hold the newer job): that one stands.
            if state
                .live
                .get(key)
                .is_none_or(|l| l.generation != generation)
            {
                return Ok(());
            }
            match next_ms {
                Some(due_ms) => state.put(
                    key.to_string(),
                    Live {
                        generation: new_generation,
                        due_ms,
                    },
                ),
                None => {
                    state.live.remove(key);
                }
            }
        }
        lock(&self.inner.moves).push(JobMove {
            key: key.to_string(),
            generation,
            next: next_ms.map(|d| (d, new_generation)),
        });
        self.inner.moved.notify_one();
        Ok(())
    }

    /// Writes every pending job move in one store write: a burst of firings costs one write per
    /// firing (its event), not two.
    async fn flush_moves(&self) {
        let moves = std::mem::take(&mut *lock(&self.inner.moves));
        if moves.is_empty() {
            return;
        }
        let n = moves.len();
        if let Err(e) = self.inner.jobs.advance_timer_jobs(moves).await {
            // Those jobs fire their occurrence once more after a restart (recording nothing).
            tracing::warn!(moves = n, error = %e, "could not store timer job moves");
        }
    }

    /// Flushes job moves as they come, a few milliseconds apart so they batch.
    async fn run_flusher(self) {
        loop {
            self.inner.moved.notified().await;
            tokio::time::sleep(std::time::Duration::from_millis(FLUSH_DELAY_MS)).await;
            self.flush_moves().await;
        }
    }

    async fn put_job(&self, key: String, due: DateTime<Utc>) -> Result<(), SchedulerError> {
        self.put_jobs(vec![(key, due)]).await
    }

    /// Stores jobs (each replacing any of its key) in one write, then keeps them in memory.
    async fn put_jobs(&self, jobs: Vec<(String, DateTime<Utc>)>) -> Result<(), SchedulerError> {
        let jobs: Vec<TimerJob> = jobs
            .into_iter()
            .map(|(key, due)| TimerJob {
                key,
                due_ms: due.timestamp_millis(),
                generation: self.next_gen(),
            })
            .collect();
        self.inner.jobs.put_timer_jobs(jobs.clone()).await?;
        {
            let mut state = self.state();
            for job in jobs {
                state.put(
                    job.key,
                    Live {
                        generation: job.generation,
                        due_ms: job.due_ms,
                    },
                );
            }
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    async fn remove_job(&self, key: String) -> Result<(), SchedulerError> {
        // Memory holds every stored job (loaded at open, written after the store): a key it
        // lacks has no row, so removing it (an api trigger's create or edit) costs no write.
        // A job whose removal waits in the batched moves is deleted by them.
        if !self.state().live.contains_key(&key) {
            return Ok(());
        }
        self.inner.jobs.delete_timer_job(key.clone()).await?;
        self.state().live.remove(&key);
        Ok(())
    }
}

#[async_trait]
impl Scheduler for LocalTimer {
    async fn schedule(&self, trigger: &Trigger) -> Result<(), SchedulerError> {
        let key = trigger_job(&trigger.id);
        match trigger.next_fire_after(self.inner.clock.now()) {
            Some(due) => self.put_job(key, due).await,
            None => self.remove_job(key).await,
        }
    }

    async fn unschedule(&self, trigger_id: &str) -> Result<(), SchedulerError> {
        self.remove_job(trigger_job(trigger_id)).await
    }

    async fn schedule_test_run(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        self.put_job(test_run_job(run_id), at).await
    }

    async fn unschedule_test_run(&self, run_id: &str) -> Result<(), SchedulerError> {
        self.remove_job(test_run_job(run_id)).await
    }

    async fn healthy(&self) -> bool {
        let beat = self.inner.heartbeat_ms.load(Ordering::Relaxed);
        let now = self.inner.started.elapsed().as_millis() as u64;
        beat > 0 && now.saturating_sub(beat) < 5_000
    }
}
