//! Wiring shared by the Lambda entry points: configuration, clients, logging, fire handling.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use etp::app::App;
use etp::aws::dynamo::{DynamoStore, Tables};
use etp::aws::scheduler::{EventBridgeScheduler, ScheduleTarget};
use etp::clock::{Clock, SystemClock};
use etp::config::{ApiToken, ConfigError, Settings, env_var};
use etp::delivery::{Deliverer, Delivery, DeliveryError, Sender};
use etp::domain::event::{Event, EventStatus};
use etp::domain::target::Secret;
use etp::domain::trigger::{Trigger, TriggerDefinition};
use etp::firing::{FireInput, Outcome, fire_scheduled, fire_test_run};
use etp::ports::{DeliveryQueue, Recorded, Scheduler, SchedulerError, Store, StoreError};
use serde::Serialize;

/// A required variable the template injects.
fn required(name: &'static str) -> Result<String, ConfigError> {
    env_var(name).ok_or(ConfigError::Invalid {
        name,
        problem: "is not set (template.yaml injects it)".into(),
    })
}

/// JSON logs, as Lambda's JSON log format expects; `RUST_LOG` filters (default info). Panics
/// are logged as JSON too, with their location, before the runtime ends the invocation.
pub fn init_tracing() {
    etp::supervise::install_panic_hook();
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
        self.scheduler_for(required("FIRE_FUNCTION_ARN")?)
    }

    /// The adapter with schedules that invoke `fire_function_arn` (the fire function learns its
    /// own ARN from its invocations: the template cannot hand a function its own ARN).
    pub fn scheduler_for(
        &self,
        fire_function_arn: String,
    ) -> Result<EventBridgeScheduler, ConfigError> {
        let target = ScheduleTarget {
            group: required("SCHEDULE_GROUP")?,
            role_arn: required("SCHEDULER_ROLE_ARN")?,
            fire_function_arn,
            dead_letter_arn: required("FIRE_DLQ_ARN")?,
        };
        Ok(EventBridgeScheduler::new(
            aws_sdk_scheduler::Client::new(&self.aws),
            target,
            self.clock.clone(),
        ))
    }

    pub fn app(
        &self,
        scheduler: Arc<dyn Scheduler>,
        deliveries: Arc<dyn DeliveryQueue>,
    ) -> Arc<App> {
        Arc::new(App::new(
            self.store.clone(),
            scheduler,
            deliveries,
            self.clock.clone(),
            self.settings.clone(),
        ))
    }

    /// The delivery HTTP client: built once per cold start, it holds the connection pool.
    pub fn sender(&self) -> Result<Arc<Sender>, ConfigError> {
        self.settings.warn_about_relaxed_egress();
        Sender::new(self.settings.egress.clone())
            .map(Arc::new)
            .map_err(|e| ConfigError::Invalid {
                name: "ETP_ALLOW_PRIVATE_TARGETS",
                problem: e.to_string(),
            })
    }

    /// Delivers fired events to their targets; retries wait in `queue`.
    pub fn deliverer(&self, queue: Arc<dyn DeliveryQueue>, sender: Arc<Sender>) -> Deliverer {
        Deliverer::new(
            self.store.clone(),
            self.clock.clone(),
            queue,
            sender,
            self.settings.retry.clone(),
        )
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
        _: Option<&Secret>,
    ) -> Result<(), SchedulerError> {
        Err(SchedulerError::Unavailable(
            "schedules are managed by triggers-api".into(),
        ))
    }

    async fn healthy(&self) -> bool {
        true
    }
}

#[async_trait]
impl DeliveryQueue for ReadOnlyScheduler {
    async fn enqueue(&self, _: &str, _: DateTime<Utc>) -> Result<(), SchedulerError> {
        Err(SchedulerError::Unavailable(
            "deliveries are queued by triggers-api and fire".into(),
        ))
    }
}

/// What the fire function reports back (visible in logs and to `cargo lambda invoke`).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FireReport {
    pub outcome: &'static str,
    pub event_id: Option<String>,
    /// What the delivery to the target did, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<&'static str>,
}

/// Failures worth Lambda's retry: the store, or queueing the next delivery attempt.
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

fn delivery_word(d: &Delivery) -> &'static str {
    match d {
        Delivery::Delivered => "delivered",
        Delivery::Failed => "failed",
        Delivery::RetryAt(_) => "retry_scheduled",
        Delivery::NotDue(_) => "not_due",
        Delivery::Nothing => "nothing_to_do",
        Delivery::Raced => "attempted_elsewhere",
    }
}

/// The first attempt happens here, inline: the function is already running.
async fn deliver_if_pending(
    deliverer: &Deliverer,
    event: &Event,
) -> Result<Option<&'static str>, FireError> {
    if event.status != EventStatus::Pending {
        return Ok(None);
    }
    let d = deliverer.deliver(&event.id).await?;
    Ok(Some(delivery_word(&d)))
}

/// Handles one scheduler invocation. Only store and queue failures are errors, since only they
/// are worth Lambda's retry: a paused, completed or deleted trigger is a clean skip.
pub async fn handle_fire(
    store: &dyn Store,
    clock: &dyn Clock,
    deliverer: &Deliverer,
    input: FireInput,
) -> Result<FireReport, FireError> {
    match input {
        FireInput::Occurrence {
            trigger_id,
            scheduled_time,
        } => {
            let firing = fire_scheduled(store, clock, &trigger_id, scheduled_time).await?;
            let report = match firing.outcome {
                Outcome::Fired(e) => FireReport {
                    outcome: "fired",
                    delivery: deliver_if_pending(deliverer, &e).await?,
                    event_id: Some(e.id),
                },
                Outcome::AlreadyFired(e) => FireReport {
                    outcome: "already_fired",
                    delivery: deliver_if_pending(deliverer, &e).await?,
                    event_id: Some(e.id),
                },
                Outcome::Skipped(why) => {
                    tracing::info!(%trigger_id, reason = ?why, "occurrence skipped");
                    FireReport {
                        outcome: "skipped",
                        event_id: None,
                        delivery: None,
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
            secret,
        } => {
            let recorded = fire_test_run(
                store,
                clock,
                &test_run_id,
                &definition,
                Some(scheduled_time),
                secret.as_ref(),
            )
            .await?;
            let outcome = match recorded {
                Recorded::Written(_) => "fired",
                Recorded::Duplicate(_) => "already_fired",
            };
            Ok(FireReport {
                outcome,
                delivery: deliver_if_pending(deliverer, recorded.event()).await?,
                event_id: Some(recorded.event().id.clone()),
            })
        }
        FireInput::Delivery { delivery_event_id } => {
            let d = deliverer.deliver(&delivery_event_id).await?;
            tracing::info!(event_id = %delivery_event_id, delivery = delivery_word(&d), "delivery handled");
            Ok(FireReport {
                outcome: "delivery",
                event_id: Some(delivery_event_id),
                delivery: Some(delivery_word(&d)),
            })
        }
    }
}
