//! The application service: every use case the HTTP API offers, over the ports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::event::{EventSource, EventView};
use crate::domain::lifecycle::EventState;
use crate::domain::limits::{Rules, json_size};
use crate::domain::new_id;
use crate::domain::payload_schema::{self, Validator};
use crate::domain::target::Secret;
use crate::domain::test_run::ScheduledTestRun;
use crate::domain::trigger::{
    FiringFields, Purpose, Trigger, TriggerDefinition, TriggerKind, TriggerStatus,
};
use crate::domain::validation::ValidationError;
use crate::firing::{delivery_plan, fire_test_run, idempotency_key, new_event};
use crate::ports::{
    DeliveryQueue, EventQuery, NewEvent, Page, Recorded, Scheduler, SchedulerError, Store,
    StoreError, TriggerQuery, TriggerStats,
};

/// How many TTLs old a stats snapshot may be and still be served while it is refreshed.
const STATS_MAX_STALENESS: u32 = 10;

/// Compiled payload schemas kept at most; beyond this the cache starts afresh.
const SCHEMA_CACHE_MAX: usize = 4096;
/// Schema compilations and payload checks running at once (each on a blocking thread): one per
/// core, so hostile schemas cannot take more CPU than that from firing and serving.
const SCHEMA_WORKERS: usize = 2;

/// CPU-heavy schema work (compiling a schema, checking a payload against one) runs here: on
/// the blocking pool, never on the async workers, at most [`SCHEMA_WORKERS`] at once, each
/// answered within the budget. Work over budget is given up on (its thread finishes in the
/// background, holding its slot, so a flood of it cannot multiply).
struct SchemaWork {
    slots: Arc<tokio::sync::Semaphore>,
    budget: std::time::Duration,
}

/// Why schema work gave no answer.
enum Overrun {
    /// It ran longer than the budget.
    Budget,
    /// No slot came free within the budget.
    Busy,
    /// It panicked (logged by the panic hook).
    Panicked,
}

impl SchemaWork {
    fn new(budget: std::time::Duration) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(SCHEMA_WORKERS)),
            budget,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Overrun> {
        let deadline = tokio::time::Instant::now() + self.budget;
        let slot = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Overrun::Busy)?
            .map_err(|_| Overrun::Busy)?;
        let task = tokio::task::spawn_blocking(move || {
            let out = work();
            drop(slot);
            out
        });
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(Overrun::Panicked),
            Err(_) => Err(Overrun::Budget),
        }
    }
}

impl Overrun {
    /// The error for the client: over budget is the client's schema or payload at fault.
    fn into_error(self, field: &str, what: &str, budget: std::time::Duration) -> AppError {
        match self {
            Overrun::Budget => ValidationError::field(
                field,
                format!(
                    "{what} took longer than {} ms; simplify the schema",
                    budget.as_millis()
                ),
            )
            .into(),
            Overrun::Busy => AppError::Busy,
            Overrun::Panicked => AppError::Internal(format!("{what} panicked")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The request is valid but the resource's state forbids it.
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named a version that is no longer current.
    #[error("the trigger has changed since it was read; current ETag is {current}")]
    PreconditionFailed { current: String },
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Scheduler(SchedulerError),
    /// A payload larger than `ETP_MAX_PAYLOAD_BYTES`.
    #[error("the payload is {size} bytes as JSON; at most {limit} are accepted")]
    PayloadTooLarge { size: usize, limit: usize },
    /// Every slot for schema work stayed taken for the whole budget.
    #[error("schema work is saturated")]
    Busy,
    /// A quota is reached (`ETP_MAX_*`); nothing was written.
    #[error("at most {limit} {what} may be kept")]
    Quota { what: &'static str, limit: u64 },
    /// A bug: a panic, caught and logged where it happened.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidCursor => AppError::Validation(ValidationError::field(
                "cursor",
                "is not a cursor this listing returned",
            )),
            StoreError::QuotaExceeded { what, limit } => AppError::Quota { what, limit },
            other => AppError::Store(other),
        }
    }
}

impl From<SchedulerError> for AppError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::Unsupported { field, message } => {
                AppError::Validation(ValidationError::field(field, message))
            }
            other => AppError::Scheduler(other),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// A trigger as a reader sees it, with its next firing computed at read time.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TriggerView {
    #[serde(flatten)]
    pub trigger: Trigger,
    #[serde(with = "crate::domain::timestamp::option")]
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The signing secret (`whsec_...`), only in the response that creates the trigger or
    /// rotates the secret. It is never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl TriggerView {
    /// The JSON of the view of a trigger (no secret) from the trigger's own JSON
    /// (`serde_json::to_string` of the `Trigger`): its fields, then `next_fire_at`. Reads only
    /// the status and schedule. `None` if `trigger_json` is not a trigger.
    pub fn json_at(trigger_json: &str, now: DateTime<Utc>) -> Option<String> {
        let firing: FiringFields = serde_json::from_str(trigger_json).ok()?;
        crate::domain::extend_object(trigger_json, |out| {
            out.push_str(",\"next_fire_at\":");
            match firing.next_fire_after(now) {
                Some(t) => crate::domain::timestamp::push_json(out, &t),
                None => out.push_str("null"),
            }
        })
    }
}

/// What a test run of a definition did.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TestRun {
    /// An api definition fired at once.
    Fired {
        event: EventView,
        /// Signs this run's delivery, when the definition has a target; shown only here.
        #[serde(skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
    /// A scheduled definition will fire once, at its first occurrence.
    Scheduled {
        run_id: String,
        scheduled_for: DateTime<Utc>,
        /// Signs this run's delivery, when the definition has a target; shown only here.
        #[serde(skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
}

/// Result of an api firing; `replayed` when an `Idempotency-Key` matched an earlier firing.
#[derive(Debug, Clone)]
pub struct Fired {
    pub event: EventView,
    pub replayed: bool,
}

#[derive(Debug, Clone)]
pub struct EventFilter {
    pub state: EventState,
    pub trigger_id: Option<String>,
    pub source: Option<EventSource>,
    pub is_test: Option<bool>,
    pub limit: usize,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Health {
    pub store: bool,
    pub scheduler: bool,
}

/// Stats as computed at one moment, with their JSON rendered at most once however often served.
#[derive(Debug)]
pub struct StatsSnapshot {
    computed_at: Instant,
    pub items: Vec<TriggerStats>,
    json: std::sync::OnceLock<axum::body::Bytes>,
}

impl StatsSnapshot {
    /// `{"items":[...]}`, serialized on first use.
    pub fn json(&self) -> axum::body::Bytes {
        self.json
            .get_or_init(|| {
                serde_json::to_vec(&serde_json::json!({ "items": &self.items }))
                    .map(axum::body::Bytes::from)
                    .unwrap_or_default()
            })
            .clone()
    }
}

pub struct App {
    pub store: Arc<dyn Store>,
    pub scheduler: Arc<dyn Scheduler>,
    pub deliveries: Arc<dyn DeliveryQueue>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    stats_cache: Mutex<Option<Arc<StatsSnapshot>>>,
    /// Held by whoever is recomputing the stats, so only one recomputation runs at a time.
    stats_refresh: Arc<tokio::sync::Mutex<()>>,
    schemas: Mutex<HashMap<String, (u64, Arc<Validator>)>>,
    schema_work: SchemaWork,
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound {
        what: "trigger",
        id: id.to_string(),
    }
}

/// Accepts `*`, `"N"` and `W/"N"` (a list too); anything else matches nothing.
fn if_match_allows(if_match: Option<&str>, trigger: &Trigger) -> bool {
    let Some(header) = if_match else { return true };
    let current = trigger.etag();
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == current || tag.strip_prefix("W/") == Some(current.as_str()))
}

impl App {
    pub fn new(
        store: Arc<dyn Store>,
        scheduler: Arc<dyn Scheduler>,
        deliveries: Arc<dyn DeliveryQueue>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Self {
        Self {
            schema_work: SchemaWork::new(settings.limits.schema_budget),
            store,
            scheduler,
            deliveries,
            clock,
            settings,
            stats_cache: Mutex::new(None),
            stats_refresh: Arc::new(tokio::sync::Mutex::new(())),
            schemas: Mutex::new(HashMap::new()),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn view(&self, trigger: Trigger) -> TriggerView {
        TriggerView {
            next_fire_at: trigger.next_fire_after(self.now()),
            trigger,
            secret: None,
        }
    }

    /// The view of a trigger just created or given a new secret: the one that shows it.
    pub fn view_with_secret(&self, trigger: Trigger) -> TriggerView {
        let secret = trigger.secret.as_ref().map(|s| s.expose().to_string());
        TriggerView {
            secret,
            ..self.view(trigger)
        }
    }

    async fn load(&self, id: &str) -> AppResult<Trigger> {
        self.store
            .get_trigger(id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    fn check_version(&self, if_match: Option<&str>, trigger: &Trigger) -> AppResult<()> {
        if if_match_allows(if_match, trigger) {
            Ok(())
        } else {
            Err(AppError::PreconditionFailed {
                current: trigger.etag(),
            })
        }
    }

    /// Validates `def` as of `now` off the async workers, within the schema budget (an api
    /// definition's schema is compiled, a test run's payload checked).
    async fn validate(
        &self,
        def: &TriggerDefinition,
        now: DateTime<Utc>,
        purpose: Purpose,
    ) -> AppResult<()> {
        let (def, egress, limits) = (
            def.clone(),
            self.settings.egress.clone(),
            self.settings.limits.clone(),
        );
        let verdict = self
            .schema_work
            .run(move || {
                def.validate(
                    &Rules {
                        now,
                        egress: &egress,
                        limits: &limits,
                    },
                    purpose,
                )
            })
            .await
            .map_err(|o| {
                o.into_error(
                    "payload_schema",
                    "compiling the schema (and checking the test payload)",
                    self.settings.limits.schema_budget,
                )
            })?;
        Ok(verdict?)
    }

    pub async fn create_trigger(&self, def: TriggerDefinition) -> AppResult<Trigger> {
        let now = self.now();
        self.validate(&def, now, Purpose::Store).await?;
        let trigger = Trigger::create(def, new_id(), now);
        self.store
            .insert_trigger(&trigger, self.settings.limits.max_triggers)
            .await?;
        if let Err(e) = self.scheduler.schedule(&trigger).await {
            // Nothing half-written: a trigger that cannot be scheduled is not kept.
            if let Err(undo) = self.store.delete_trigger(&trigger.id).await {
                tracing::error!(trigger_id = %trigger.id, error = %undo, "could not undo trigger insert");
            }
            return Err(e.into());
        }
        tracing::info!(trigger_id = %trigger.id, kind = trigger.kind.as_str(), "trigger created");
        Ok(trigger)
    }

    pub async fn get_trigger(&self, id: &str) -> AppResult<Trigger> {
        self.load(id).await
    }

    pub async fn list_triggers(&self, query: &TriggerQuery) -> AppResult<Page<Trigger>> {
        Ok(self.store.list_triggers(query).await?)
    }

    /// One page of triggers as the JSON of their views (see [`TriggerView::json_at`]). A
    /// stored body that cannot be read is shown as the store's broken stand-in for it.
    pub async fn list_trigger_views_json(&self, query: &TriggerQuery) -> AppResult<Page<String>> {
        let now = self.now();
        let page = self.store.list_triggers_json(query).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for t in page.items {
            match TriggerView::json_at(&t.json, now) {
                Some(json) => items.push(json),
                None => {
                    if let Some(stand_in) = self.store.get_trigger(&t.id).await? {
                        let view = self.view(Trigger {
                            secret: None,
                            ..stand_in
                        });
                        items.push(serde_json::to_string(&view).map_err(|e| {
                            AppError::Internal(format!("encoding a trigger view: {e}"))
                        })?);
                    }
                }
            }
        }
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
        })
    }

    /// Writes `next` over `current` and tells the scheduler; undoes the write if it cannot.
    async fn commit(&self, current: &Trigger, next: Trigger) -> AppResult<Trigger> {
        match self.store.replace_trigger(&next, current.version).await {
            Err(StoreError::VersionConflict) => {
                let latest = self.load(&current.id).await?;
                return Err(AppError::PreconditionFailed {
                    current: latest.etag(),
                });
            }
            other => other?,
        }
        if let Err(e) = self.scheduler.schedule(&next).await {
            let mut restore = current.clone();
            restore.version = next.version + 1;
            if let Err(undo) = self.store.replace_trigger(&restore, next.version).await {
                tracing::error!(trigger_id = %current.id, error = %undo, "could not undo trigger change");
            }
            return Err(e.into());
        }
        Ok(next)
    }

    pub async fn replace_trigger(
        &self,
        id: &str,
        def: TriggerDefinition,
        if_match: Option<&str>,
    ) -> AppResult<Trigger> {
        let current = self.load(id).await?;
        self.check_version(if_match, &current)?;
        let now = self.now();
        self.validate(&def, now, Purpose::Store).await?;
        if def.kind != current.kind {
            return Err(ValidationError::field(
                "kind",
                format!(
                    "cannot change from {} to {}; create a new trigger instead",
                    current.kind.as_str(),
                    def.kind.as_str()
                ),
            )
            .into());
        }
        let next = current.replaced(def, now);
        self.commit(&current, next).await
    }

    pub async fn set_paused(
        &self,
        id: &str,
        paused: bool,
        if_match: Option<&str>,
    ) -> AppResult<Trigger> {
        let current = self.load(id).await?;
        self.check_version(if_match, &current)?;
        let target = match (current.status, paused) {
            (TriggerStatus::Completed, _) => {
                return Err(AppError::Conflict(
                    "the trigger has completed; give it a new schedule with PUT to fire again"
                        .into(),
                ));
            }
            (TriggerStatus::Broken, _) => {
                return Err(AppError::Conflict(
                    "the trigger is broken (see `problem`); PUT a new definition or DELETE it"
                        .into(),
                ));
            }
            (TriggerStatus::Paused, true) | (TriggerStatus::Active, false) => return Ok(current),
            (_, true) => TriggerStatus::Paused,
            (_, false) => TriggerStatus::Active,
        };
        let next = current.with_status(target, self.now());
        self.commit(&current, next).await
    }

    /// Gives the trigger a new signing secret; deliveries from now on are signed with it.
    pub async fn rotate_secret(&self, id: &str, if_match: Option<&str>) -> AppResult<Trigger> {
        let current = self.load(id).await?;
        self.check_version(if_match, &current)?;
        let next = current.with_new_secret(self.now(), self.settings.secret_rotation_grace);
        match self.store.replace_trigger(&next, current.version).await {
            Err(StoreError::VersionConflict) => {
                let latest = self.load(id).await?;
                Err(AppError::PreconditionFailed {
                    current: latest.etag(),
                })
            }
            Err(e) => Err(e.into()),
            Ok(()) => {
                tracing::info!(trigger_id = %id, "signing secret rotated");
                Ok(next)
            }
        }
    }

    /// Hands a freshly recorded event that awaits its first delivery to the delivery queue.
    /// A replayed firing whose delivery never started is handed over again.
    async fn start_delivery(&self, recorded: &Recorded) -> AppResult<()> {
        let e = recorded.event();
        if let Some(due) = e.first_delivery_due() {
            self.deliveries.enqueue(&e.id, due).await?;
        }
        Ok(())
    }

    pub async fn delete_trigger(&self, id: &str, if_match: Option<&str>) -> AppResult<()> {
        let current = self.load(id).await?;
        self.check_version(if_match, &current)?;
        self.scheduler.unschedule(id).await?;
        if let Err(e) = self.store.delete_trigger(id).await {
            if let Err(undo) = self.scheduler.schedule(&current).await {
                tracing::error!(trigger_id = %id, error = %undo, "could not restore schedule");
            }
            return Err(e.into());
        }
        tracing::info!(trigger_id = %id, "trigger deleted");
        Ok(())
    }

    /// The trigger's compiled schema, from the cache or compiled off the async workers (the
    /// cache's lock is held only to look up and to insert, never while compiling).
    async fn validator(&self, trigger: &Trigger) -> AppResult<Arc<Validator>> {
        if let Some((version, v)) = self
            .schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&trigger.id)
            && *version == trigger.version
        {
            return Ok(v.clone());
        }
        let schema = trigger.payload_schema.clone().unwrap_or(Value::Bool(true));
        let limits = self.settings.limits.clone();
        let compiled = self
            .schema_work
            .run(move || payload_schema::compile(&schema, &limits))
            .await
            .map_err(|o| {
                o.into_error(
                    "payload_schema",
                    "compiling the trigger's schema",
                    self.settings.limits.schema_budget,
                )
            })?
            .map_err(|e| {
                tracing::error!(trigger_id = %trigger.id, error = %e, "stored schema does not compile");
                AppError::Conflict("the trigger's stored payload schema is unusable".into())
            })?;
        let compiled = Arc::new(compiled);
        let mut cache = self.schemas.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= SCHEMA_CACHE_MAX {
            cache.clear();
        }
        cache.insert(trigger.id.clone(), (trigger.version, compiled.clone()));
        Ok(compiled)
    }

    /// Checks a fired payload: its size, then the trigger's schema (off the async workers,
    /// within the budget).
    async fn check_payload(&self, trigger: &Trigger, payload: &Value) -> AppResult<()> {
        let limit = self.settings.limits.max_payload_bytes;
        let size = json_size(payload);
        if size > limit {
            return Err(AppError::PayloadTooLarge { size, limit });
        }
        let validator = self.validator(trigger).await?;
        let payload = payload.clone();
        let errors = self
            .schema_work
            .run(move || payload_schema::payload_errors(&validator, &payload))
            .await
            .map_err(|o| {
                o.into_error(
                    "payload",
                    "checking the payload against the schema",
                    self.settings.limits.schema_budget,
                )
            })?;
        if errors.is_empty() {
            Ok(())
        } else {
            let mut e = ValidationError::fields(errors);
            e.detail = format!(
                "the payload does not match the trigger's schema: {}",
                e.detail
            );
            Err(e.into())
        }
    }

    fn event_view(&self, recorded: &Recorded) -> EventView {
        let event = recorded.event().clone();
        let lifecycle = self.settings.lifecycle;
        let fired_at = event.fired_at;
        EventView::at(event.clone(), &lifecycle, self.now()).unwrap_or(EventView {
            state: EventState::Archived,
            archives_at: lifecycle.archives_at(fired_at),
            expires_at: lifecycle.expires_at(fired_at),
            event,
        })
    }

    /// Fires an api trigger with a client's payload.
    pub async fn fire(&self, id: &str, payload: Value, key: Option<&str>) -> AppResult<Fired> {
        let trigger = self.load(id).await?;
        if trigger.kind != TriggerKind::Api {
            return Err(AppError::Conflict(
                "only api triggers fire through this route; use /test to test-fire a scheduled trigger".into(),
            ));
        }
        if trigger.status != TriggerStatus::Active {
            return Err(AppError::Conflict(format!(
                "the trigger is {}; resume it first",
                trigger.status.as_str()
            )));
        }
        self.check_payload(&trigger, &payload).await?;
        let delivery = delivery_plan(trigger.target.as_ref(), trigger.secret.as_ref());
        let event = new_event(
            Some(&trigger.id),
            &trigger.name,
            trigger.kind,
            EventSource::Api,
            None,
            payload.clone(),
            self.now(),
            delivery.is_some(),
        );
        let recorded = self
            .store
            .record_event(NewEvent {
                event,
                dedupe_key: key.map(|k| idempotency_key(&trigger.id, k)),
                complete: None,
                delivery,
            })
            .await?;
        if let Recorded::Duplicate(earlier) = &recorded
            && earlier.payload != payload
        {
            return Err(ValidationError::field(
                "Idempotency-Key",
                "was already used with a different payload",
            )
            .into());
        }
        self.start_delivery(&recorded).await?;
        Ok(Fired {
            event: self.event_view(&recorded),
            replayed: matches!(recorded, Recorded::Duplicate(_)),
        })
    }

    /// Fires a stored trigger once, now, as a test; the trigger itself is untouched.
    pub async fn test_trigger(&self, id: &str, payload: Option<Value>) -> AppResult<EventView> {
        let trigger = self.load(id).await?;
        let payload = match trigger.kind {
            TriggerKind::Api => {
                let payload = payload.unwrap_or_else(|| Value::Object(Default::default()));
                self.check_payload(&trigger, &payload).await?;
                payload
            }
            TriggerKind::Scheduled => {
                if payload.is_some() {
                    return Err(ValidationError::field(
                        "payload",
                        "a scheduled trigger is test-fired with its own payload; send no body",
                    )
                    .into());
                }
                trigger.payload.clone().unwrap_or(Value::Null)
            }
        };
        let delivery = delivery_plan(trigger.target.as_ref(), trigger.secret.as_ref());
        let event = new_event(
            Some(&trigger.id),
            &trigger.name,
            trigger.kind,
            EventSource::ManualTest,
            None,
            payload,
            self.now(),
            delivery.is_some(),
        );
        let recorded = self
            .store
            .record_event(NewEvent {
                event,
                dedupe_key: None,
                complete: None,
                delivery,
            })
            .await?;
        self.start_delivery(&recorded).await?;
        Ok(self.event_view(&recorded))
    }

    /// Validates a definition like a create and fires it once without storing a trigger.
    pub async fn test_definition(&self, mut def: TriggerDefinition) -> AppResult<TestRun> {
        let now = self.now();
        self.validate(&def, now, Purpose::TestRun).await?;
        let run_id = new_id();
        // A test run has no stored trigger to hold a secret: its delivery gets its own.
        let secret = def.target.as_ref().map(|_| Secret::generate());
        let shown = secret.as_ref().map(|s| s.expose().to_string());
        match def.kind {
            TriggerKind::Api => {
                def.payload
                    .get_or_insert_with(|| Value::Object(Default::default()));
                let recorded = fire_test_run(
                    self.store.as_ref(),
                    self.clock.as_ref(),
                    &run_id,
                    &def,
                    None,
                    secret.as_ref(),
                )
                .await?;
                self.start_delivery(&recorded).await?;
                Ok(TestRun::Fired {
                    event: self.event_view(&recorded),
                    secret: shown,
                })
            }
            TriggerKind::Scheduled => {
                def.schedule = def.schedule.map(|s| s.resolved(now));
                let first = def
                    .schedule
                    .as_ref()
                    .and_then(|s| s.next_after(now))
                    .ok_or_else(|| ValidationError::field("schedule", "never fires"))?;
                let lead = self.settings.limits.max_test_run_lead;
                if first - now > lead {
                    return Err(ValidationError::field(
                        "schedule",
                        format!(
                            "a test run fires at its first occurrence, {}, which is more than {} \
                             minutes away (ETP_TEST_RUN_MAX_LEAD); test a schedule that fires sooner",
                            first.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            lead.num_minutes()
                        ),
                    )
                    .into());
                }
                let run = ScheduledTestRun {
                    id: run_id.clone(),
                    definition: def,
                    scheduled_for: first,
                    created_at: now,
                    secret,
                };
                self.store
                    .insert_test_run(&run, self.settings.limits.max_pending_test_runs)
                    .await?;
                if let Err(e) = self.scheduler.schedule_test_run(&run_id, first).await {
                    // Nothing half-written: a run that cannot be scheduled is not kept.
                    if let Err(undo) = self.store.delete_test_run(&run_id).await {
                        tracing::error!(run_id, error = %undo, "could not undo test run insert");
                    }
                    return Err(e.into());
                }
                Ok(TestRun::Scheduled {
                    run_id,
                    scheduled_for: first,
                    secret: shown,
                })
            }
        }
    }

    /// Scheduled test runs still waiting, oldest first.
    pub async fn list_test_runs(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> AppResult<Page<ScheduledTestRun>> {
        Ok(self.store.list_test_runs(limit, cursor).await?)
    }

    /// Cancels a waiting test run: it never fires.
    pub async fn cancel_test_run(&self, id: &str) -> AppResult<()> {
        if self.store.get_test_run(id).await?.is_none() {
            return Err(AppError::NotFound {
                what: "test run",
                id: id.to_string(),
            });
        }
        self.scheduler.unschedule_test_run(id).await?;
        self.store.delete_test_run(id).await?;
        tracing::info!(run_id = id, "test run cancelled");
        Ok(())
    }

    pub async fn get_event(&self, id: &str) -> AppResult<EventView> {
        let event = self.store.get_event(id).await?;
        event
            .and_then(|e| EventView::at(e, &self.settings.lifecycle, self.now()))
            .ok_or_else(|| AppError::NotFound {
                what: "event",
                id: id.to_string(),
            })
    }

    /// The store query for `filter` as of `now`.
    fn event_query(&self, filter: EventFilter, now: DateTime<Utc>) -> EventQuery {
        EventQuery {
            window: self.settings.lifecycle.window(filter.state, now),
            trigger_id: filter.trigger_id,
            source: filter.source,
            is_test: filter.is_test,
            limit: filter.limit,
            cursor: filter.cursor,
        }
    }

    /// One page of events as seen now.
    pub async fn list_events(&self, filter: EventFilter) -> AppResult<Page<EventView>> {
        let now = self.now();
        let lifecycle = self.settings.lifecycle;
        let page = self
            .store
            .list_events(&self.event_query(filter, now))
            .await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .filter_map(|e| EventView::at(e, &lifecycle, now))
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// One page of events as the JSON of their views (see [`EventView::json_at`]): listings
    /// send the stored JSON with the read-time fields added, without decoding it.
    pub async fn list_event_views_json(&self, filter: EventFilter) -> AppResult<Page<String>> {
        let now = self.now();
        let lifecycle = self.settings.lifecycle;
        let page = self
            .store
            .list_events_json(&self.event_query(filter, now))
            .await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .filter_map(|e| EventView::json_at(&e.json, e.fired_at, &lifecycle, now))
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    async fn compute_stats(&self) -> AppResult<Arc<StatsSnapshot>> {
        let now = self.now();
        let lifecycle = self.settings.lifecycle;
        let items = self
            .store
            .event_stats(
                lifecycle.window(EventState::Active, now),
                lifecycle.window(EventState::Archived, now),
            )
            .await?;
        Ok(Arc::new(StatsSnapshot {
            computed_at: Instant::now(),
            items,
            json: std::sync::OnceLock::new(),
        }))
    }

    /// Per-trigger counts, from a cache that lives `ETP_STATS_CACHE_TTL` (zero: no cache).
    /// An expired snapshot younger than [`STATS_MAX_STALENESS`] TTLs is served while one
    /// background task recomputes it, so no request waits for a recomputation; an older or
    /// missing one is recomputed by one request while concurrent ones wait for its result.
    pub async fn stats(self: &Arc<Self>) -> AppResult<Arc<StatsSnapshot>> {
        let ttl = self.settings.stats_cache_ttl;
        if ttl.is_zero() {
            return self.compute_stats().await;
        }
        let cached = || {
            self.stats_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        if let Some(s) = cached() {
            let age = s.computed_at.elapsed();
            if age < ttl {
                return Ok(s);
            }
            if age < ttl * STATS_MAX_STALENESS {
                self.refresh_stats_in_background();
                return Ok(s);
            }
        }
        let _refreshing = self.stats_refresh.lock().await;
        // Someone may have refreshed while this request waited for the lock.
        if let Some(s) = cached()
            && s.computed_at.elapsed() < ttl
        {
            return Ok(s);
        }
        let fresh = self.compute_stats().await?;
        *self.stats_cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }

    fn refresh_stats_in_background(self: &Arc<Self>) {
        let Ok(refreshing) = self.stats_refresh.clone().try_lock_owned() else {
            return; // a refresh is already running
        };
        let app = self.clone();
        // A panic in the refresh is logged and counted by the hook; the lock guard is dropped
        // on unwinding, so the next request starts another refresh.
        tokio::spawn(async move {
            let _refreshing = refreshing;
            match app.compute_stats().await {
                Ok(fresh) => {
                    *app.stats_cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
                }
                Err(e) => tracing::error!(error = %e, "stats refresh failed"),
            }
        });
    }

    pub async fn health(&self) -> Health {
        Health {
            store: self.store.ping().await.is_ok(),
            scheduler: self.scheduler.healthy().await,
        }
    }

    /// Physically deletes expired events; reads already hide them, this reclaims the space.
    pub async fn purge_expired(&self) -> AppResult<u64> {
        let cutoff = self.settings.lifecycle.expired_at_or_before(self.now());
        Ok(self.store.purge_events(cutoff).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Listings splice the stored JSON; what they send must be byte for byte the view's JSON.
    #[test]
    fn trigger_json_at_is_the_views_json() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:00:30.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let defs = [
            json!({"name": "api \"quoted\" é", "kind": "api",
                   "payload_schema": {"type": "object", "required": ["a"]}}),
            json!({"name": "every", "kind": "scheduled",
                   "schedule": {"type": "interval", "every_seconds": 60},
                   "payload": {"x": [1, 2]}, "target": {"url": "https://example.com/h"}}),
            json!({"name": "cron", "kind": "scheduled",
                   "schedule": {"type": "cron", "expression": "0 9 * * MON-FRI",
                                "timezone": "Europe/Berlin"}}),
        ];
        for def in defs {
            let def: TriggerDefinition = serde_json::from_value(def).unwrap();
            let created = Trigger::create(def, crate::domain::new_id(), now);
            for t in [
                created.clone(),
                created.with_status(TriggerStatus::Paused, now),
            ] {
                let stored = serde_json::to_string(&t).unwrap();
                let view = TriggerView {
                    next_fire_at: t.next_fire_after(now),
                    trigger: t,
                    secret: None,
                };
                assert_eq!(
                    TriggerView::json_at(&stored, now),
                    Some(serde_json::to_string(&view).unwrap())
                );
            }
        }
        assert_eq!(TriggerView::json_at("{}", now), None);
    }
}
