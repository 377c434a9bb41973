//! Ports: the small traits the domain needs from the outside world (stores and a scheduler).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::api_key::ApiKey;
use crate::domain::delivery::DeliveryPlan;
use crate::domain::event::{Event, EventSource};
use crate::domain::lifecycle::FiredWindow;
use crate::domain::test_run::ScheduledTestRun;
use crate::domain::trigger::{Trigger, TriggerKind, TriggerStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored version differs from the one the write was based on.
    #[error("version conflict")]
    VersionConflict,
    #[error("already exists")]
    AlreadyExists,
    #[error("invalid cursor")]
    InvalidCursor,
    /// The backing store failed; the text is for logs, never for clients.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be read (written by another version, or damaged); the text
    /// is for logs, never for clients.
    #[error("unreadable stored record: {0}")]
    Corrupt(String),
    /// A quota (`ETP_MAX_*`) is reached: nothing was written.
    #[error("at most {limit} {what} may be kept")]
    QuotaExceeded { what: &'static str, limit: u64 },
}

/// A backing store failed: `e` is kept for the logs, never sent to clients.
pub fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The schedule cannot be expressed by this scheduler (e.g. sub-minute on EventBridge).
    #[error("{field}: {message}")]
    Unsupported { field: String, message: String },
    #[error("scheduler unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for SchedulerError {
    /// A scheduler that keeps its jobs in a store (the local timer) fails when the store does.
    fn from(e: StoreError) -> Self {
        SchedulerError::Unavailable(e.to_string())
    }
}

/// Opaque page cursors, shared by every store adapter so they page the same way.
pub mod cursor {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::StoreError;

    pub fn encode(raw: &str) -> String {
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(cursor: &str) -> Result<String, StoreError> {
        URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(StoreError::InvalidCursor)
    }

    /// An event listing's position: the last `(fired_at ms, id)` returned.
    pub fn encode_event(fired_ms: i64, id: &str) -> String {
        encode(&format!("{fired_ms}:{id}"))
    }

    pub fn decode_event(cursor: &str) -> Result<(i64, String), StoreError> {
        decode(cursor)?
            .split_once(':')
            .and_then(|(f, id)| Some((f.parse::<i64>().ok()?, id.to_string())))
            .filter(|(f, id)| *f >= 0 && !id.is_empty())
            .ok_or(StoreError::InvalidCursor)
    }
}

/// A trigger as its JSON (exactly `serde_json::to_string(&trigger)`, no secret), with its id.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerJson {
    pub id: String,
    pub json: String,
}

/// An event as its JSON, with the field a read-time view needs.
#[derive(Debug, Clone, PartialEq)]
pub struct EventJson {
    pub fired_at: DateTime<Utc>,
    pub json: String,
}

/// One page of results and the opaque cursor for the next, if there is one.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from `limit + 1` fetched items: the extra one only says another page exists, and
    /// the cursor points after the last item kept.
    pub fn from_overfetch(
        mut items: Vec<T>,
        limit: usize,
        cursor_of: impl FnOnce(&T) -> String,
    ) -> Self {
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor_of)
        } else {
            None
        };
        Page { items, next_cursor }
    }

    /// The same page with each item converted; the first failure fails the page.
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            items: self.items.into_iter().map(f).collect::<Result<_, _>>()?,
            next_cursor: self.next_cursor,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct TriggerQuery {
    pub kind: Option<TriggerKind>,
    /// The status at `now` (see [`Trigger::status_at`]): a pause whose `paused_until` has passed
    /// counts as active. Without `now`, the stored status.
    pub status: Option<TriggerStatus>,
    pub now: Option<DateTime<Utc>>,
    pub limit: usize,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EventQuery {
    pub window: FiredWindow,
    /// The reader's clock: where a listing with no upper bound starts (the newest events
    /// cannot be much later). Without it, the store finds the newest stored hour itself.
    pub now: Option<DateTime<Utc>>,
    pub trigger_id: Option<String>,
    pub source: Option<EventSource>,
    pub is_test: Option<bool>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// Per-trigger event counts; ad-hoc test runs are grouped under a `null` trigger id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TriggerStats {
    pub trigger_id: Option<String>,
    pub trigger_name: String,
    pub active: u64,
    pub archived: u64,
    #[serde(with = "crate::domain::timestamp::option")]
    pub last_fired_at: Option<DateTime<Utc>>,
}

/// A one-time trigger's last occurrence: the trigger as it is once completed, made by the caller
/// (so the store's single writer does not decode and encode it).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The version the trigger was read at: the completion is written only over that one.
    pub expected_version: u64,
    /// The trigger completed at the firing (one version on), without its secrets.
    pub done: Trigger,
}

impl Completion {
    /// `trigger`, as read, completed by a firing at `fired_at`.
    pub fn of(trigger: &Trigger, fired_at: DateTime<Utc>) -> Self {
        let done = trigger.with_status(TriggerStatus::Completed, fired_at);
        Self {
            expected_version: trigger.version,
            done: Trigger {
                secret: None,
                retiring_secret: None,
                ..done
            },
        }
    }
}

/// An event to write once: a second write with the same `dedupe_key` returns the first event.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: Event,
    /// `serde_json::to_string(&event)`, when the caller made it already (to answer with it):
    /// a store that keeps the event's JSON takes this one rather than encoding it again.
    pub json: Option<String>,
    /// Identity of the firing, e.g. trigger + scheduled time, or trigger + Idempotency-Key.
    pub dedupe_key: Option<String>,
    /// Mark this trigger completed in the same atomic write, if it is still active at the
    /// version it was read at.
    pub complete: Option<Completion>,
    /// Deliver the event to this target; the event is `pending` until delivered or given up.
    pub delivery: Option<DeliveryPlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Written(Event),
    /// The firing had already been recorded; this is the event from then.
    Duplicate(Event),
}

impl Recorded {
    pub fn event(&self) -> &Event {
        match self {
            Recorded::Written(e) | Recorded::Duplicate(e) => e,
        }
    }

    pub fn into_event(self) -> Event {
        match self {
            Recorded::Written(e) | Recorded::Duplicate(e) => e,
        }
    }
}

#[async_trait]
pub trait TriggerStore: Send + Sync {
    /// Stores a new trigger, unless `max_triggers` are stored already (`QuotaExceeded`).
    async fn insert_trigger(&self, trigger: &Trigger, max_triggers: u64) -> Result<(), StoreError>;
    /// The trigger; one whose stored definition cannot be read comes back as
    /// [`Trigger::unreadable`] (status `broken`), so a reader sees it and can replace it.
    async fn get_trigger(&self, id: &str) -> Result<Option<Trigger>, StoreError>;
    /// [`Self::get_trigger`] for each of `ids`, in their order: the timer reads a burst's due
    /// triggers together. A store that can read them in one go does; this default reads each.
    async fn get_triggers(&self, ids: &[&str]) -> Result<Vec<Option<Trigger>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.get_trigger(id).await?);
        }
        Ok(out)
    }
    /// Triggers in id (creation) order, without their secrets (only single reads carry them);
    /// unreadable ones as [`Trigger::unreadable`].
    async fn list_triggers(&self, query: &TriggerQuery) -> Result<Page<Trigger>, StoreError>;
    /// The same page as each trigger's JSON (exactly `serde_json::to_string(&trigger)`, no
    /// secret); a store that keeps that JSON returns it as is (unread: a damaged one is found
    /// by its reader), this default encodes.
    async fn list_triggers_json(
        &self,
        query: &TriggerQuery,
    ) -> Result<Page<TriggerJson>, StoreError> {
        self.list_triggers(query)
            .await?
            .try_map(|t| {
                serde_json::to_string(&t).map(|json| TriggerJson {
                    id: t.id.clone(),
                    json,
                })
            })
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
    /// Writes `trigger` only if the stored version is `expected_version`.
    async fn replace_trigger(
        &self,
        trigger: &Trigger,
        expected_version: u64,
    ) -> Result<(), StoreError>;
    /// Removes the trigger (its events stay); false when there was none.
    async fn delete_trigger(&self, id: &str) -> Result<bool, StoreError>;
    /// A number that moves on after every committed change to stored triggers, before the
    /// writer hears of it: two reads under the same number saw the same triggers. `None` where
    /// the store cannot see every write (DynamoDB: other processes write too), so nothing
    /// read from it is cached.
    fn trigger_writes(&self) -> Option<u64> {
        None
    }
    /// Stored triggers per kind and status, for the `etp_triggers` gauge; `None` where that
    /// cannot be counted cheaply (DynamoDB would need a table scan per scrape).
    async fn trigger_counts(
        &self,
    ) -> Result<Option<Vec<(TriggerKind, TriggerStatus, u64)>>, StoreError> {
        Ok(None)
    }
}

#[async_trait]
pub trait EventStore: Send + Sync {
    async fn record_event(&self, new: NewEvent) -> Result<Recorded, StoreError>;
    async fn get_event(&self, id: &str) -> Result<Option<Event>, StoreError>;
    /// Events with `fired_at` in the window, newest first.
    async fn list_events(&self, query: &EventQuery) -> Result<Page<Event>, StoreError>;
    /// The same page as each event's JSON (exactly `serde_json::to_string(&event)`), for
    /// listings that only add read-time fields. A store that keeps that JSON returns it as is,
    /// saving a decode and an encode per event; this default encodes.
    async fn list_events_json(&self, query: &EventQuery) -> Result<Page<EventJson>, StoreError> {
        self.list_events(query)
            .await?
            .try_map(|e| {
                serde_json::to_string(&e).map(|json| EventJson {
                    fired_at: e.fired_at,
                    json,
                })
            })
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
    /// A number that moves on after every committed write to the store, before the writer
    /// hears of it: two listings under the same number saw the same events. `None` where the
    /// store cannot see every write (DynamoDB), so no event listing is cached.
    fn event_writes(&self) -> Option<u64> {
        None
    }
    /// The earliest `fired_at` (to the millisecond, rounded down) at or after `from`, if any
    /// event has one: what tells a listing when the next event changes state.
    async fn earliest_fired_from(
        &self,
        from: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let _ = from;
        Err(StoreError::Unavailable(
            "this store does not find the earliest event".into(),
        ))
    }
    /// Counts per trigger of events fired in `active` and in `archived`, as of `now` (the
    /// instant the windows were computed at).
    async fn event_stats(
        &self,
        now: DateTime<Utc>,
        active: FiredWindow,
        archived: FiredWindow,
    ) -> Result<Vec<TriggerStats>, StoreError>;
    /// The event and its delivery plan, if it was recorded with one.
    async fn get_delivery(
        &self,
        event_id: &str,
    ) -> Result<Option<(Event, DeliveryPlan)>, StoreError>;
    /// Stores `event` after a delivery attempt, only if it still has `seen_attempts` attempts
    /// (else `VersionConflict`: someone else attempted meanwhile). It is due again at
    /// `event.next_attempt_at`; with none, its delivery is over.
    async fn record_attempt(&self, event: &Event, seen_attempts: usize) -> Result<(), StoreError>;
    /// Claims the next attempt of `event_id`'s delivery until `until`: true only if it still
    /// has `seen_attempts` attempts and no other claim is live at `now`. Schedulers invoke at
    /// least once, sometimes twice at the same moment: the claim makes the second invocation
    /// stand down before it sends anything, so a receiver gets each attempt once.
    async fn claim_attempt(
        &self,
        event_id: &str,
        seen_attempts: usize,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Starts a new delivery series: stores `event` (pending, due at `next_attempt_at`, its
    /// `delivery_series` one higher) with `plan` as its delivery plan, only if the stored event
    /// is not pending and still has `seen_attempts` attempts (else `VersionConflict`: a
    /// delivery is under way, or another redelivery won).
    async fn redeliver(
        &self,
        event: &Event,
        plan: &DeliveryPlan,
        seen_attempts: usize,
    ) -> Result<(), StoreError>;
    /// Physically deletes events fired at or before `cutoff`; returns how many.
    async fn purge_events(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    /// Deliveries still under way, for the `etp_deliveries_pending` gauge; `None` where that
    /// cannot be counted cheaply.
    async fn pending_deliveries(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
}

/// Scheduled test runs waiting for their time.
#[async_trait]
pub trait TestRunStore: Send + Sync {
    /// Keeps `run` (and its secret), unless `max_pending` wait already (`QuotaExceeded`).
    async fn insert_test_run(
        &self,
        run: &ScheduledTestRun,
        max_pending: u64,
    ) -> Result<(), StoreError>;
    /// The run with its secret.
    async fn get_test_run(&self, id: &str) -> Result<Option<ScheduledTestRun>, StoreError>;
    /// Waiting runs in id (creation) order, without their secrets.
    async fn list_test_runs(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ScheduledTestRun>, StoreError>;
    /// Removes the run (fired or cancelled); false when there was none.
    async fn delete_test_run(&self, id: &str) -> Result<bool, StoreError>;
}

/// Scoped API keys, kept as the SHA-256 of the key (never the key).
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Keeps `key` under `hash`; `AlreadyExists` if the id or hash is taken.
    async fn insert_api_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError>;
    /// The key stored under `hash` (one keyed read), with the hash it was found under.
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<(ApiKey, String)>, StoreError>;
    /// Every key, in id (creation) order.
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes the key; false when there was none.
    async fn delete_api_key(&self, id: &str) -> Result<bool, StoreError>;
    /// Sets the key's `last_used_at` to `at`, only if it is unset or before `unless_since`
    /// (so concurrent requests write it at most once a minute); true if it was written.
    async fn touch_api_key(
        &self,
        hash: &str,
        at: DateTime<Utc>,
        unless_since: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// Everything the platform keeps.
pub trait Store: TriggerStore + EventStore + TestRunStore + ApiKeyStore {}
impl<T: TriggerStore + EventStore + TestRunStore + ApiKeyStore> Store for T {}

/// The local timer's own table: a job per trigger and per test run, written before it counts,
/// so restarts lose nothing. Only the embedded timer uses it.
#[async_trait]
pub trait TimerJobs: Send + Sync {
    /// Every job, for loading at start-up.
    async fn timer_jobs(&self) -> Result<Vec<TimerJob>, StoreError>;
    /// Writes jobs in one write, each replacing any with the same key.
    async fn put_timer_jobs(&self, jobs: Vec<TimerJob>) -> Result<(), StoreError>;
    /// Applies each move in one write: job `key` goes to `next` (due ms, new generation), or is
    /// removed, only if it is still at `generation` (a job rescheduled meanwhile stays as is).
    async fn advance_timer_jobs(&self, moves: Vec<JobMove>) -> Result<(), StoreError>;
    async fn delete_timer_job(&self, key: String) -> Result<(), StoreError>;
    /// Keeps the unreadable stored body of `stand_in`'s trigger aside and stores the stand-in
    /// (status `broken`) in its place, so start-up goes on and the bytes are not lost.
    async fn quarantine_trigger(&self, stand_in: Trigger, reason: String)
    -> Result<(), StoreError>;
}

/// A timer job moved on after its firing (see [`TimerJobs::advance_timer_jobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMove {
    pub key: String,
    pub generation: i64,
    pub next: Option<(i64, i64)>,
}

/// A job of the local timer: its key (`trigger:<id>` or `test:<run id>`), when it is due, and
/// its generation (a rescheduled job gets a new one, so a stale firing cannot move it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerJob {
    pub key: String,
    pub due_ms: i64,
    pub generation: i64,
}

/// The local delivery worker's view of pending deliveries. Only the embedded worker uses it.
#[async_trait]
pub trait DeliveryBacklog: Send + Sync {
    /// Events whose delivery is due at `now`, earliest first, with their target's host;
    /// deliveries to `skip_hosts` (whose slots are all taken) are left for later.
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip_hosts: &[String],
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// When the earliest pending delivery is due.
    async fn next_delivery_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Moves a delivery that could not be attempted (its attempt panicked, or its stored plan
    /// is unreadable) to `due`, or out of the queue with `None`.
    async fn postpone_delivery(
        &self,
        event_id: &str,
        due: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
}

/// Where deliveries wait for their turn: the local durable queue, or one-time EventBridge
/// schedules on AWS.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Deliver (or retry) `event_id` at `due`. The store already says it is due; this makes sure
    /// something acts on it.
    async fn enqueue(&self, event_id: &str, due: DateTime<Utc>) -> Result<(), SchedulerError>;
}

/// What fires triggers on time. The API never runs timers itself; it reports changes here.
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// The trigger was created or changed (including pause and resume): fire it per its current
    /// schedule and status from now on.
    async fn schedule(&self, trigger: &Trigger) -> Result<(), SchedulerError>;
    /// The trigger was deleted: never fire it again.
    async fn unschedule(&self, trigger_id: &str) -> Result<(), SchedulerError>;
    /// Fire the stored test run `run_id` once at `at` (the store holds its definition).
    async fn schedule_test_run(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), SchedulerError>;
    /// The test run was cancelled: never fire it.
    async fn unschedule_test_run(&self, run_id: &str) -> Result<(), SchedulerError>;
    /// Whether the scheduler is alive and able to fire.
    async fn healthy(&self) -> bool;
}
