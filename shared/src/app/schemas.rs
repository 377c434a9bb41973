//! Payload schemas in use: compiled and checked off the async workers within a budget, and
//! kept compiled per trigger version.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{App, AppError, AppResult};
use crate::domain::limits::{Rules, json_size};
use crate::domain::payload_schema::{self, Validator};
use crate::domain::trigger::{Purpose, Trigger, TriggerDefinition};
use crate::domain::validation::ValidationError;

/// Compiled payload schemas kept at most; beyond this the cache starts afresh.
const SCHEMA_CACHE_MAX: usize = 4096;
/// Schema compilations and payload checks running at once (each on a blocking thread): one per
/// core, so hostile schemas cannot take more CPU than that from firing and serving.
const SCHEMA_WORKERS: usize = 2;

/// A trigger's compiled schema, and whether small payloads are checked against it in place
/// ([`payload_schema::quick_to_check`]): handing a check to the blocking pool costs two thread
/// hand-offs, more than the check itself for most schemas.
pub(super) struct CompiledSchema {
    validator: Validator,
    quick: bool,
}

/// CPU-heavy schema work (compiling a schema, checking a payload against one) runs here: on
/// the blocking pool, never on the async workers, at most [`SCHEMA_WORKERS`] at once, each
/// answered within the budget. Work over budget is given up on (its thread finishes in the
/// background, holding its slot, so a flood of it cannot multiply).
pub(super) struct SchemaWork {
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
    pub(super) fn new(budget: std::time::Duration) -> Self {
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

impl App {
    /// Validates `def` as of `now` off the async workers, within the schema budget (an api
    /// definition's schema is compiled, a test run's payload checked).
    pub(super) async fn validate(
        &self,
        def: &TriggerDefinition,
        now: DateTime<Utc>,
        purpose: Purpose,
    ) -> AppResult<()> {
        // An api definition with a small, cheap schema (and a small test payload) is checked
        // here: the hand-off to the blocking pool costs more than compiling such a schema.
        // Schedules stay on the pool: a cron's next-fire search is bounded, not small.
        let in_place = def.schedule.is_none()
            && def
                .payload_schema
                .as_ref()
                .is_none_or(payload_schema::quick_to_check)
            && def
                .payload
                .as_ref()
                .is_none_or(|p| json_size(p) <= payload_schema::QUICK_PAYLOAD_BYTES);
        if in_place {
            let rules = Rules {
                now,
                egress: &self.settings.egress,
                limits: &self.settings.limits,
            };
            return Ok(def.validate(&rules, purpose)?);
        }
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

    /// The trigger's compiled schema, from the cache or compiled off the async workers (the
    /// cache's lock is held only to look up and to insert, never while compiling).
    async fn validator(&self, trigger: &Trigger) -> AppResult<Arc<CompiledSchema>> {
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
            .run(move || {
                payload_schema::compile(&schema, &limits).map(|validator| CompiledSchema {
                    quick: payload_schema::quick_to_check(&schema),
                    validator,
                })
            })
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
    pub(super) async fn check_payload(&self, trigger: &Trigger, payload: &Value) -> AppResult<()> {
        let limit = self.settings.limits.max_payload_bytes;
        let size = json_size(payload);
        if size > limit {
            return Err(AppError::PayloadTooLarge { size, limit });
        }
        let compiled = self.validator(trigger).await?;
        let errors = if compiled.quick && size <= payload_schema::QUICK_PAYLOAD_BYTES {
            payload_schema::payload_errors(&compiled.validator, payload)
        } else {
            let payload = payload.clone();
            self.schema_work
                .run(move || payload_schema::payload_errors(&compiled.validator, &payload))
                .await
                .map_err(|o| {
                    o.into_error(
                        "payload",
                        "checking the payload against the schema",
                        self.settings.limits.schema_budget,
                    )
                })?
        };
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
}
