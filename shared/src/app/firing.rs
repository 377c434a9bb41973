//! Firing use cases: fire an api trigger, test-fire a stored trigger, test-run a definition
//! (now, or scheduled and then listed and cancellable). All record through `firing::record`.

use std::sync::Arc;

use serde_json::Value;

use super::{ApiFireResult, App, AppError, AppResult, TestRunOutcome};
use crate::domain::event::{Event, EventSource, EventView};
use crate::domain::lifecycle::EventState;
use crate::domain::new_id;
use crate::domain::target::Secret;
use crate::domain::test_run::ScheduledTestRun;
use crate::domain::trigger::{Purpose, Trigger, TriggerDefinition, TriggerKind, TriggerStatus};
use crate::domain::validation::ValidationError;
use crate::firing::{Firing, fire_test_run, idempotency_key, record, record_answered};
use crate::ports::{Page, Recorded};

impl App {
    /// Hands a freshly recorded event that awaits its first delivery to the delivery queue.
    /// A replayed firing whose delivery never started is handed over again.
    async fn start_delivery(&self, recorded: &Recorded) -> AppResult<()> {
        let e = recorded.event();
        if let Some(due) = e.first_delivery_due() {
            self.deliveries.enqueue(&e.id, due).await?;
        }
        Ok(())
    }

    /// The event as a reader sees it now; one that has expired already (a replay of a firing
    /// older than the lifecycle) shows as archived.
    fn event_view(&self, event: Event) -> EventView {
        let lifecycle = self.settings.lifecycle;
        let fired_at = event.fired_at;
        EventView {
            state: lifecycle
                .state(fired_at, self.now())
                .unwrap_or(EventState::Archived),
            archives_at: lifecycle.archives_at(fired_at),
            expires_at: lifecycle.expires_at(fired_at),
            event,
        }
    }

    /// The api trigger `id`, if it may fire `payload` now.
    async fn fireable(&self, id: &str, payload: &Value) -> AppResult<Arc<Trigger>> {
        let trigger = self.load_shared(id).await?;
        if trigger.kind != TriggerKind::Api {
            return Err(AppError::Conflict(
                "only api triggers fire through this route; use /test to test-fire a scheduled trigger".into(),
            ));
        }
        let status = trigger.status_at(self.now());
        if status != TriggerStatus::Active {
            return Err(AppError::Conflict(format!(
                "the trigger is {}; resume it first",
                status.as_str()
            )));
        }
        self.check_payload(&trigger, payload).await?;
        Ok(trigger)
    }

    /// What firing the api trigger with `payload` would record, checked like a firing, with
    /// nothing stored and nothing delivered.
    pub async fn fire_dry_run(&self, id: &str, payload: Value) -> AppResult<EventView> {
        let trigger = self.fireable(id, &payload).await?;
        let event = Firing::of_trigger(&trigger, EventSource::Api, payload).preview(self.now());
        Ok(self.event_view(event))
    }

    /// Fires an api trigger with a client's payload.
    pub async fn fire(
        &self,
        id: &str,
        payload: Value,
        key: Option<&str>,
    ) -> AppResult<ApiFireResult> {
        let trigger = self.fireable(id, &payload).await?;
        // Kept only to compare with a replayed key's first payload.
        let keyed_payload = key.map(|_| payload.clone());
        let firing = Firing {
            dedupe_key: key.map(|k| idempotency_key(&trigger.id, k)),
            ..Firing::of_trigger(&trigger, EventSource::Api, payload)
        };
        let (recorded, event_json) =
            record_answered(self.store.as_ref(), self.clock.as_ref(), firing).await?;
        if let (Recorded::Duplicate(earlier), Some(payload)) = (&recorded, &keyed_payload)
            && earlier.payload != *payload
        {
            return Err(ValidationError::field(
                "Idempotency-Key",
                "was already used with a different payload",
            )
            .into());
        }
        self.start_delivery(&recorded).await?;
        let replayed = matches!(recorded, Recorded::Duplicate(_));
        Ok(ApiFireResult {
            event: self.event_view(recorded.into_event()),
            replayed,
            event_json,
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
        let firing = Firing::of_trigger(&trigger, EventSource::ManualTest, payload);
        let recorded = record(self.store.as_ref(), self.clock.as_ref(), firing).await?;
        self.start_delivery(&recorded).await?;
        Ok(self.event_view(recorded.into_event()))
    }

    /// Validates a definition like a create and fires it once without storing a trigger.
    pub async fn test_definition(&self, mut def: TriggerDefinition) -> AppResult<TestRunOutcome> {
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
                Ok(TestRunOutcome::Fired {
                    event: self.event_view(recorded.into_event()),
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
                Ok(TestRunOutcome::Scheduled {
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
}
