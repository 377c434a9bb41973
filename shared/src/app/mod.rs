//! The application service: every use case the HTTP API offers, over the ports. One `impl
//! App` block per group of use cases, each in its own file.

mod api_keys;
mod caches;
mod events;
mod firing;
mod occurrences;
mod repair;
mod schemas;
mod scrape;
mod triggers;
mod view_cache;
mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::trigger::Trigger;
use crate::domain::validation::ValidationError;
use crate::ports::{DeliveryQueue, Scheduler, SchedulerError, Store, StoreError};

pub use caches::StatsSnapshot;
pub use events::STATUS_SCAN;
pub use occurrences::OccurrenceAuditView;
pub use repair::{BulkRedelivery, REDELIVER_BATCH, RedeliverFilter};
pub use view_cache::RenderedView;
pub use views::{ApiFireResult, EventFilter, Health, JoinedPage, TestRunOutcome, TriggerView};

use schemas::{CompiledSchema, SchemaWork};

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
    #[error("store: {0}")]
    Store(#[source] StoreError),
    #[error("scheduler: {0}")]
    Scheduler(#[source] SchedulerError),
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

pub struct App {
    pub store: Arc<dyn Store>,
    pub scheduler: Arc<dyn Scheduler>,
    pub deliveries: Arc<dyn DeliveryQueue>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    stats_cache: Mutex<Option<Arc<StatsSnapshot>>>,
    /// Held by whoever is recomputing the stats, so only one recomputation runs at a time.
    stats_refresh: Arc<tokio::sync::Mutex<()>>,
    schemas: Mutex<HashMap<String, (u64, Arc<CompiledSchema>)>>,
    schema_work: SchemaWork,
    views: view_cache::ViewCache,
    /// What `GET /metrics` renders: the process-wide Prometheus recorder, or a test's own.
    #[cfg(feature = "prometheus")]
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

pub(super) fn not_found(id: &str) -> AppError {
    AppError::NotFound {
        what: "trigger",
        id: id.to_string(),
    }
}

/// Accepts `*`, `"N"` and `W/"N"` (a list too); anything else matches nothing.
pub(super) fn if_match_allows(if_match: Option<&str>, trigger: &Trigger) -> bool {
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
            views: view_cache::ViewCache::default(),
            #[cfg(feature = "prometheus")]
            metrics: crate::telemetry::prometheus::installed(),
        }
    }

    /// Renders `GET /metrics` from `handle` (a recorder of the caller's, e.g. one per test)
    /// instead of the process-wide one.
    #[cfg(feature = "prometheus")]
    pub fn with_metrics(mut self, handle: metrics_exporter_prometheus::PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The stored trigger, from the view cache while no trigger has been written since it was
    /// read (a firing reads its trigger once per request).
    pub(super) async fn load(&self, id: &str) -> AppResult<Trigger> {
        Ok(Arc::unwrap_or_clone(self.load_shared(id).await?))
    }

    /// [`Self::load`] without copying a cached trigger, for callers that only read it: a firing
    /// would otherwise copy the whole trigger, schema and all, on every request.
    pub(super) async fn load_shared(&self, id: &str) -> AppResult<Arc<Trigger>> {
        let writes = self.store.trigger_writes();
        if let Some(w) = writes
            && let Some(hit) = self.views.trigger(id, w)
        {
            return Ok(hit);
        }
        let trigger = Arc::new(
            self.store
                .get_trigger(id)
                .await?
                .ok_or_else(|| not_found(id))?,
        );
        if let Some(w) = writes {
            self.views.keep_trigger(id, w, trigger.clone());
        }
        Ok(trigger)
    }

    pub(super) fn check_version(&self, if_match: Option<&str>, trigger: &Trigger) -> AppResult<()> {
        if if_match_allows(if_match, trigger) {
            Ok(())
        } else {
            Err(AppError::PreconditionFailed {
                current: trigger.etag(),
            })
        }
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
