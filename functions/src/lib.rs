//! Wiring shared by the Lambda entry points: configuration, clients, logging, fire handling.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use etp::app::App;
use etp::aws::dynamo::{DynamoStore, Tables};
use etp::aws::scheduler::{EventBridgeScheduler, ScheduleTarget};
use etp::clock::{Clock, SystemClock};
use etp::config::{ApiToken, ConfigError, Settings, env_var};
use etp::domain::trigger::{Trigger, TriggerDefinition};
use etp::firing::{FireInput, Outcome, fire_scheduled, fire_test_run};
use etp::ports::{Recorded, Scheduler, SchedulerError, Store, StoreError};
use serde::Serialize;

/// A required variable the template injects.
fn required(name: &'static str) -> Result<String, ConfigError> {
    env_var(name).ok_or(ConfigError::Invalid {
        name,
        problem: "is not set (template.yaml injects it)".into(),
    })
}

/// JSON logs, as Lambda's JSON log format expects; `RUST_LOG` filters (default info).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
}

/// Everything a function needs, read from the environment and built once per cold start.
pub struct Runtime {
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub aws: aws_config::SdkConfig,
    pub store: Arc<DynamoStore>,
}

impl Runtime {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let settings = Settings::from_env()?;
        let tables = Tables {
            triggers: required("TRIGGERS_TABLE")?,
            events: required("EVENTS_TABLE")?,
        };
        let aws = aws_config::load_from_env().await;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), tables)
            .with_retention(settings.lifecycle.retain_for);
        Ok(Self {
            settings,
            clock: Arc::new(SystemClock),
            aws,
            store: Arc::new(store),
        })
    }

    pub fn token(&self) -> Result<ApiToken, ConfigError> {
        required("ETP_API_TOKEN").map(ApiToken::new)
    }

    /// The EventBridge Scheduler adapter, for the function that manages schedules.
    pub fn scheduler(&self) -> Result<EventBridgeScheduler, ConfigError> {
        let target = ScheduleTarget {
            group: required("SCHEDULE_GROUP")?,
            role_arn: required("SCHEDULER_ROLE_ARN")?,
            fire_function_arn: required("FIRE_FUNCTION_ARN")?,
            dead_letter_arn: required("FIRE_DLQ_ARN")?,
        };
        Ok(EventBridgeScheduler::new(
            aws_sdk_scheduler::Client::new(&self.aws),
            target,
            self.clock.clone(),
        ))
    }

    pub fn app(&self, scheduler: Arc<dyn Scheduler>) -> Arc<App> {
        Arc::new(App::new(
            self.store.clone(),
            scheduler,
            self.clock.clone(),
            self.settings.clone(),
        ))
    }
}

/// The scheduler seen by the read-only events function: it manages no schedules, and API
/// Gateway routes nothing to it that would ask it to.
pub struct ReadOnlyScheduler;

#[async_trait]
impl Scheduler for ReadOnlyScheduler {
    async fn schedule(&self, _: &Trigger) -> Result<(), SchedulerError> {
        Err(SchedulerError::Unavailable(
            "schedules are managed by triggers-api".into(),
        ))
    }

    async fn unschedule(&self, _: &str) -> Result<(), SchedulerError> {
        Err(SchedulerError::Unavailable(
            "schedules are managed by triggers-api".into(),
        ))
    }

    async fn schedule_test_run(
        &self,
        _: &str,
        _: &TriggerDefinition,
        _: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        Err(SchedulerError::Unavailable(
            "schedules are managed by triggers-api".into(),
        ))
    }

    async fn healthy(&self) -> bool {
        true
    }
}

/// What the fire function reports back (visible in logs and to `cargo lambda invoke`).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FireReport {
    pub outcome: &'static str,
    pub event_id: Option<String>,
}

/// Handles one scheduler invocation. Only store failures are errors, since only they are worth
/// Lambda's retry: a paused, completed or deleted trigger is a clean skip.
pub async fn handle_fire(
    store: &dyn Store,
    clock: &dyn Clock,
    input: FireInput,
) -> Result<FireReport, StoreError> {
    match input {
        FireInput::Occurrence {
            trigger_id,
            scheduled_time,
        } => {
            let firing = fire_scheduled(store, clock, &trigger_id, scheduled_time).await?;
            let report = match firing.outcome {
                Outcome::Fired(e) => FireReport {
                    outcome: "fired",
                    event_id: Some(e.id),
                },
                Outcome::AlreadyFired(e) => FireReport {
                    outcome: "already_fired",
                    event_id: Some(e.id),
                },
                Outcome::Skipped(why) => {
                    tracing::info!(%trigger_id, reason = ?why, "occurrence skipped");
                    FireReport {
                        outcome: "skipped",
                        event_id: None,
                    }
                }
            };
            tracing::info!(%trigger_id, %scheduled_time, outcome = report.outcome, "fire handled");
            Ok(report)
        }
        FireInput::TestRun {
            test_run_id,
            definition,
            scheduled_time,
        } => {
            let recorded = fire_test_run(
                store,
                clock,
                &test_run_id,
                &definition,
                Some(scheduled_time),
            )
            .await?;
            let outcome = match recorded {
                Recorded::Written(_) => "fired",
                Recorded::Duplicate(_) => "already_fired",
            };
            Ok(FireReport {
                outcome,
                event_id: Some(recorded.event().id.clone()),
            })
        }
    }
}
