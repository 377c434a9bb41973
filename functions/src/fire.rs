//! The `fire` function's handler: one occurrence, one test run or one delivery attempt per
//! invocation, through the same firing and delivery routines as the local timer.

use etp::clock::Clock;
use etp::delivery::{Deliverer, Delivery, DeliveryError};
use etp::domain::event::{Event, EventStatus};
use etp::firing::{FireInput, OccurrenceOutcome, fire_scheduled, fire_test_run};
use etp::ports::{Recorded, Store, StoreError};
use serde::Serialize;

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
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("delivery: {0}")]
    Delivery(#[from] DeliveryError),
    /// A variable the template injects is missing or bad.
    #[error("configuration: {0}")]
    Config(#[from] etp::config::ConfigError),
}

/// What Lambda records for a failed invocation (and Scheduler's retry and dead-letter queue
/// see): a stable type per cause, the cause's text for the operator.
impl From<FireError> for lambda_runtime::Diagnostic {
    fn from(e: FireError) -> Self {
        let error_type = match &e {
            FireError::Store(_) => "StoreUnavailable",
            FireError::Delivery(_) => "DeliveryQueueUnavailable",
            FireError::Config(_) => "Misconfigured",
        };
        tracing::error!(error = %e, error_type, "fire failed; Lambda retries the invocation");
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
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
                OccurrenceOutcome::Fired(e) => FireReport {
                    outcome: "fired",
                    delivery: deliver_if_pending(deliverer, &e).await?,
                    event_id: Some(e.id),
                },
                OccurrenceOutcome::AlreadyFired(e) => FireReport {
                    outcome: "already_fired",
                    delivery: deliver_if_pending(deliverer, &e).await?,
                    event_id: Some(e.id),
                },
                OccurrenceOutcome::Skipped(why) => {
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
            scheduled_time,
        } => {
            // Its definition and secret wait in the store; gone means cancelled or fired.
            let Some(run) = store.get_test_run(&test_run_id).await? else {
                tracing::info!(%test_run_id, "test run cancelled or already fired");
                return Ok(FireReport {
                    outcome: "skipped",
                    event_id: None,
                    delivery: None,
                });
            };
            let recorded = fire_test_run(
                store,
                clock,
                &test_run_id,
                &run.definition,
                Some(scheduled_time),
                run.secret.as_ref(),
            )
            .await?;
            let outcome = match recorded {
                Recorded::Written(_) => "fired",
                Recorded::Duplicate(_) => "already_fired",
            };
            let delivery = deliver_if_pending(deliverer, recorded.event()).await?;
            // After the event and its first attempt: a retry of this invocation finds the run
            // and writes no second event (the run id dedupes it).
            store.delete_test_run(&test_run_id).await?;
            Ok(FireReport {
                outcome,
                delivery,
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
