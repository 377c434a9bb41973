//! Firing: the one way every path (api, test, scheduled occurrence, test run; local or on AWS)
//! turns "this fires now" into exactly one recorded event with its delivery plan.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::clock::Clock;
use crate::domain::delivery::DeliveryPlan;
use crate::domain::event::{Event, EventSource, EventStatus, FailureReason};
use crate::domain::new_id;
use crate::domain::target::{Secret, Target};
use crate::domain::trigger::{Trigger, TriggerDefinition, TriggerKind, TriggerStatus};
use crate::ports::{Completion, NewEvent, Recorded, Store, StoreError};
use crate::telemetry::{self, FireOutcome};

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

/// One firing to record: what its event says, where it is delivered, and its identity.
#[derive(Debug, Clone)]
pub struct Firing<'a> {
    pub trigger_id: Option<&'a str>,
    pub trigger_name: &'a str,
    pub kind: TriggerKind,
    pub source: EventSource,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub payload: Value,
    /// Delivered here (signed with `secret`), when both are there.
    pub target: Option<&'a Target>,
    pub secret: Option<&'a Secret>,
    /// A second firing with the same key yields the first event, and writes nothing.
    pub dedupe_key: Option<String>,
    /// Mark this trigger (as read) completed in the same write: its last occurrence.
    pub complete: Option<&'a Trigger>,
    /// The trigger's delivery is paused: the event is recorded as a `failure` (reason
    /// `delivery_paused`) and not delivered.
    pub delivery_paused: bool,
}

impl<'a> Firing<'a> {
    /// A firing of stored trigger `t` from `source` with `payload`.
    pub fn of_trigger(t: &'a Trigger, source: EventSource, payload: Value) -> Self {
        Self {
            trigger_id: Some(&t.id),
            trigger_name: &t.name,
            kind: t.kind,
            source,
            scheduled_for: None,
            payload,
            target: t.target.as_ref(),
            secret: t.secret.as_ref(),
            dedupe_key: None,
            complete: None,
            delivery_paused: t.delivery_paused_at.is_some() && t.target.is_some(),
        }
    }

    /// A test run `run_id` of a definition that is not stored; the run id makes a redelivered
    /// run write one event.
    pub fn of_test_run(
        run_id: &str,
        def: &'a TriggerDefinition,
        secret: Option<&'a Secret>,
        scheduled_for: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            trigger_id: None,
            trigger_name: def.name.trim(),
            kind: def.kind,
            source: EventSource::ManualTest,
            scheduled_for,
            payload: def.payload.clone().unwrap_or(Value::Null),
            target: def.target.as_ref(),
            secret,
            dedupe_key: Some(format!("test:{run_id}")),
            complete: None,
            delivery_paused: false,
        }
    }

    /// The event a firing at `fired_at` would record, without recording it (a dry run).
    pub fn preview(&self, fired_at: DateTime<Utc>) -> Event {
        let delivering = self.target.is_some() && self.secret.is_some();
        self.event(fired_at, delivering, self.payload.clone())
    }

    /// The event it records at `fired_at` with `payload` (the firing's own, moved out or
    /// copied): `pending` until delivered when it has a target.
    fn event(&self, fired_at: DateTime<Utc>, delivering: bool, payload: Value) -> Event {
        Event {
            id: new_id(),
            trigger_id: self.trigger_id.map(str::to_string),
            trigger_name: self.trigger_name.to_string(),
            kind: self.kind,
            source: self.source,
            is_test: self.source == EventSource::ManualTest,
            scheduled_for: self.scheduled_for,
            fired_at,
            payload,
            // Recording without a target is a success.
            status: if delivering {
                EventStatus::Pending
            } else if self.delivery_paused {
                EventStatus::Failure
            } else {
                EventStatus::Success
            },
            attempts: Vec::new(),
            next_attempt_at: delivering.then_some(fired_at),
            delivery_series: 1,
            reason: (self.delivery_paused && !delivering).then_some(FailureReason::DeliveryPaused),
        }
    }
}

/// Records `firing` now: one store write (the event, its dedupe marker, its delivery plan and a
/// one-time trigger's completion together). The caller hands a pending delivery to its queue.
pub async fn record(
    store: &dyn Store,
    clock: &dyn Clock,
    firing: Firing<'_>,
) -> Result<Recorded, StoreError> {
    record_encoded(store, clock, firing, false)
        .await
        .map(|(recorded, _)| recorded)
}

/// [`record`], and the new event's JSON (`serde_json::to_string`) when it wrote one: made once,
/// for the store and for the caller's answer.
pub async fn record_answered(
    store: &dyn Store,
    clock: &dyn Clock,
    firing: Firing<'_>,
) -> Result<(Recorded, Option<String>), StoreError> {
    record_encoded(store, clock, firing, true).await
}

async fn record_encoded(
    store: &dyn Store,
    clock: &dyn Clock,
    mut firing: Firing<'_>,
    answer: bool,
) -> Result<(Recorded, Option<String>), StoreError> {
    let delivery = match (firing.target, firing.secret) {
        _ if firing.delivery_paused => None,
        (Some(target), Some(secret)) => Some(DeliveryPlan {
            target: target.clone(),
            secret: secret.clone(),
        }),
        _ => None,
    };
    let payload = std::mem::take(&mut firing.payload);
    let event = firing.event(clock.now(), delivery.is_some(), payload);
    let (source, fired_at) = (firing.source, event.fired_at);
    // An event that cannot be encoded is the store's to report, as without an answer.
    let json = answer.then(|| serde_json::to_string(&event).ok()).flatten();
    let recorded = store
        .record_event(NewEvent {
            event,
            json: json.clone(),
            dedupe_key: firing.dedupe_key,
            complete: firing.complete.map(|t| Completion::of(t, fired_at)),
            delivery,
        })
        .await;
    let outcome = match &recorded {
        Ok(Recorded::Written(_)) => FireOutcome::Success,
        Ok(Recorded::Duplicate(_)) => FireOutcome::Duplicate,
        Err(_) => FireOutcome::Failure,
    };
    telemetry::fired(source, outcome, firing.scheduled_for.map(|s| (s, fired_at)));
    let recorded = recorded?;
    let json = json.filter(|_| matches!(recorded, Recorded::Written(_)));
    Ok((recorded, json))
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
    /// Skipped on its own by a client (`POST /triggers/{id}/skip`).
    ByUser,
}

/// What became of one scheduled occurrence.
#[derive(Debug, Clone, PartialEq)]
pub enum OccurrenceOutcome {
    Fired(Event),
    /// This occurrence had fired before (a redelivery): nothing new was written.
    AlreadyFired(Event),
    Skipped(Skip),
}

/// The outcome, and the trigger as it was loaded, so the caller can plan the next occurrence.
#[derive(Debug, Clone)]
pub struct FiredOccurrence {
    pub outcome: OccurrenceOutcome,
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

/// Fires the occurrence of `trigger_id` scheduled for `scheduled_for`: loads the trigger, skips
/// it when paused, completed, broken or gone, writes the event once per occurrence and
/// completes one-time triggers in the same write. Two store operations at most.
pub async fn fire_scheduled(
    store: &dyn Store,
    clock: &dyn Clock,
    trigger_id: &str,
    scheduled_for: DateTime<Utc>,
) -> Result<FiredOccurrence, StoreError> {
    let trigger = store.get_trigger(trigger_id).await?;
    fire_occurrence(store, clock, trigger, scheduled_for).await
}

/// [`fire_scheduled`] with the trigger already read (`None`: it is gone), for a caller that
/// had to read it first (the local timer, to coalesce missed occurrences).
pub async fn fire_occurrence(
    store: &dyn Store,
    clock: &dyn Clock,
    trigger: Option<Trigger>,
    scheduled_for: DateTime<Utc>,
) -> Result<FiredOccurrence, StoreError> {
    let Some(trigger) = trigger else {
        telemetry::skipped(telemetry::skip_reason(Skip::Deleted));
        return Ok(FiredOccurrence {
            outcome: OccurrenceOutcome::Skipped(Skip::Deleted),
            trigger: None,
        });
    };
    // The status the occurrence's own instant saw: a pause whose end has passed is over even
    // if no write has said so, and one that covered the occurrence still skips it when the
    // scheduler delivers it late.
    let skip = match (trigger.status_at(scheduled_for), &trigger.schedule) {
        (_, None) => Some(Skip::NotScheduled),
        _ if trigger.interruptions().is_skipped(scheduled_for) => Some(Skip::ByUser),
        (TriggerStatus::Paused, _) => Some(Skip::Paused),
        // Completed by its last occurrence, while an earlier one was still on its way (a
        // scheduler may deliver late and out of order): that earlier one still fires.
        (TriggerStatus::Completed, Some(s)) if s.next_after(scheduled_for).is_some() => None,
        (TriggerStatus::Completed, _) => Some(Skip::Completed),
        (TriggerStatus::Broken, _) => Some(Skip::Broken),
        (TriggerStatus::Active, Some(_)) => None,
    };
    if let Some(skip) = skip {
        telemetry::skipped(telemetry::skip_reason(skip));
        return Ok(FiredOccurrence {
            outcome: OccurrenceOutcome::Skipped(skip),
            trigger: Some(trigger),
        });
    }
    let exhausted = trigger
        .schedule
        .as_ref()
        .is_none_or(|s| s.next_after(scheduled_for).is_none());
    let firing = Firing {
        scheduled_for: Some(scheduled_for),
        dedupe_key: Some(occurrence_key(&trigger.id, scheduled_for)),
        complete: exhausted.then_some(&trigger),
        ..Firing::of_trigger(
            &trigger,
            EventSource::Schedule,
            trigger.payload.clone().unwrap_or(Value::Null),
        )
    };
    let outcome = match record(store, clock, firing).await? {
        Recorded::Written(e) => OccurrenceOutcome::Fired(e),
        Recorded::Duplicate(e) => OccurrenceOutcome::AlreadyFired(e),
    };
    Ok(FiredOccurrence {
        outcome,
        trigger: Some(trigger),
    })
}

/// Fires a definition that was never stored, once, as a test run.
pub async fn fire_test_run(
    store: &dyn Store,
    clock: &dyn Clock,
    run_id: &str,
    definition: &TriggerDefinition,
    scheduled_for: Option<DateTime<Utc>>,
    secret: Option<&Secret>,
) -> Result<Recorded, StoreError> {
    record(
        store,
        clock,
        Firing::of_test_run(run_id, definition, secret, scheduled_for),
    )
    .await
}
