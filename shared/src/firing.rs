//! Firing one occurrence: the single routine every timer (local or EventBridge) calls.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::clock::Clock;
use crate::domain::delivery::DeliveryPlan;
use crate::domain::event::{Event, EventSource, EventStatus};
use crate::domain::new_id;
use crate::domain::target::{Secret, Target};
use crate::domain::trigger::{Trigger, TriggerDefinition, TriggerKind, TriggerStatus};

use crate::ports::{NewEvent, Recorded, Store, StoreError};

/// What a timer hands the fire routine: the input EventBridge Scheduler's target carries (and
/// the AWS adapter serializes from this same type, with `T` its time placeholder, so the two
/// cannot drift). `scheduled_time` is the occurrence being fired.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum FireInput<T = DateTime<Utc>> {
    /// An occurrence of a stored trigger.
    Occurrence {
        trigger_id: String,
        scheduled_time: T,
    },
    /// A stored test run of a definition that was never stored as a trigger.
    TestRun {
        test_run_id: String,
        scheduled_time: T,
    },
    /// A delivery attempt (first or retry) of an event that is due.
    Delivery { delivery_event_id: String },
}

/// The plan for delivering a firing, when there is a target to deliver to.
pub fn delivery_plan(target: Option<&Target>, secret: Option<&Secret>) -> Option<DeliveryPlan> {
    Some(DeliveryPlan {
        target: target?.clone(),
        secret: secret?.clone(),
    })
}

/// Why an occurrence did not fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Deleted,
    Paused,
    Completed,
    NotScheduled,
    /// Its stored definition cannot be read or cannot fire.
    Broken,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Fired(Event),
    /// This occurrence had fired before (a redelivery): nothing new was written.
    AlreadyFired(Event),
    Skipped(Skip),
}

/// The outcome, and the trigger as it was loaded, so the caller can plan the next occurrence.
#[derive(Debug, Clone)]
pub struct Firing {
    pub outcome: Outcome,
    pub trigger: Option<Trigger>,
}

/// The identity of a scheduled occurrence: writing it twice yields one event.
pub fn occurrence_key(trigger_id: &str, scheduled_for: DateTime<Utc>) -> String {
    format!("schedule:{trigger_id}:{}", scheduled_for.timestamp_millis())
}

/// The identity of an api firing under a client's `Idempotency-Key`.
pub fn idempotency_key(trigger_id: &str, key: &str) -> String {
    format!("api:{trigger_id}:{key}")
}

/// A new event for `trigger`-like data, fired now; `pending` until delivered when `delivering`.
#[allow(clippy::too_many_arguments)]
pub fn new_event(
    trigger_id: Option<&str>,
    name: &str,
    kind: TriggerKind,
    source: EventSource,
    scheduled_for: Option<DateTime<Utc>>,
    payload: Value,
    fired_at: DateTime<Utc>,
    delivering: bool,
) -> Event {
    Event {
        id: new_id(),
        trigger_id: trigger_id.map(str::to_string),
        trigger_name: name.to_string(),
        kind,
        source,
        is_test: source == EventSource::ManualTest,
        scheduled_for,
        fired_at,
        payload,
        // Recording without a target is a success.
        status: if delivering {
            EventStatus::Pending
        } else {
            EventStatus::Success
        },
        attempts: Vec::new(),
        next_attempt_at: delivering.then_some(fired_at),
    }
}

/// Fires the occurrence of `trigger_id` scheduled for `scheduled_for`: loads the trigger, skips
/// it when paused, completed or gone, writes the event once per occurrence and completes
/// one-time triggers in the same write. Two store operations at most.
pub async fn fire_scheduled(
    store: &dyn Store,
    clock: &dyn Clock,
    trigger_id: &str,
    scheduled_for: DateTime<Utc>,
) -> Result<Firing, StoreError> {
    let Some(trigger) = store.get_trigger(trigger_id).await? else {
        return Ok(Firing {
            outcome: Outcome::Skipped(Skip::Deleted),
            trigger: None,
        });
    };
    let skip = match (trigger.status, &trigger.schedule) {
        (_, None) => Some(Skip::NotScheduled),
        (TriggerStatus::Paused, _) => Some(Skip::Paused),
        (TriggerStatus::Completed, _) => Some(Skip::Completed),
        (TriggerStatus::Broken, _) => Some(Skip::Broken),
        (TriggerStatus::Active, Some(_)) => None,
    };
    if let Some(skip) = skip {
        return Ok(Firing {
            outcome: Outcome::Skipped(skip),
            trigger: Some(trigger),
        });
    }
    let exhausted = trigger
        .schedule
        .as_ref()
        .is_none_or(|s| s.next_after(scheduled_for).is_none());
    let delivery = delivery_plan(trigger.target.as_ref(), trigger.secret.as_ref());
    let event = new_event(
        Some(&trigger.id),
        &trigger.name,
        trigger.kind,
        EventSource::Schedule,
        Some(scheduled_for),
        trigger.payload.clone().unwrap_or(Value::Null),
        clock.now(),
        delivery.is_some(),
    );
    let recorded = store
        .record_event(NewEvent {
            event,
            dedupe_key: Some(occurrence_key(&trigger.id, scheduled_for)),
            complete: exhausted.then(|| (trigger.id.clone(), trigger.version)),
            delivery,
        })
        .await?;
    let outcome = match recorded {
        Recorded::Written(e) => Outcome::Fired(e),
        Recorded::Duplicate(e) => Outcome::AlreadyFired(e),
    };
    Ok(Firing {
        outcome,
        trigger: Some(trigger),
    })
}

/// Fires a definition that was never stored, once, as a test run. `run_id` makes a redelivered
/// run write one event.
pub async fn fire_test_run(
    store: &dyn Store,
    clock: &dyn Clock,
    run_id: &str,
    definition: &TriggerDefinition,
    scheduled_for: Option<DateTime<Utc>>,
    secret: Option<&Secret>,
) -> Result<Recorded, StoreError> {
    let delivery = delivery_plan(definition.target.as_ref(), secret);
    let event = new_event(
        None,
        definition.name.trim(),
        definition.kind,
        EventSource::ManualTest,
        scheduled_for,
        definition.payload.clone().unwrap_or(Value::Null),
        clock.now(),
        delivery.is_some(),
    );
    store
        .record_event(NewEvent {
            event,
            dedupe_key: Some(format!("test:{run_id}")),
            complete: None,
            delivery,
        })
        .await
}
