//! Events: the record each firing writes, and how it is shown at read time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::delivery::Attempt;
use super::lifecycle::{EventState, Lifecycle};
use super::trigger::TriggerKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    Schedule,
    Api,
    ManualTest,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Schedule => "schedule",
            EventSource::Api => "api",
            EventSource::ManualTest => "manual_test",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Recorded, and delivered to the target if there is one.
    Success,
    /// The target refused the event or could not be reached, and no retry is left.
    Failure,
    /// The event is still being delivered: a first attempt or a retry is due.
    Pending,
}

/// One firing, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub id: String,
    /// `null` for a test run of a definition that was never stored.
    pub trigger_id: Option<String>,
    pub trigger_name: String,
    pub kind: TriggerKind,
    pub source: EventSource,
    pub is_test: bool,
    /// The occurrence this firing is for; `null` for api and test firings.
    #[serde(default, with = "super::timestamp::option")]
    pub scheduled_for: Option<DateTime<Utc>>,
    #[serde(with = "super::timestamp")]
    pub fired_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub status: EventStatus,
    /// Deliveries to the trigger's target, oldest first; empty when it has none.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// When the next delivery attempt is due, while `status` is `pending`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::timestamp::option"
    )]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl Event {
    /// When the next delivery attempt is due, while the event is still being delivered.
    pub fn delivery_due(&self) -> Option<DateTime<Utc>> {
        (self.status == EventStatus::Pending).then(|| self.next_attempt_at.unwrap_or(self.fired_at))
    }

    /// When the first delivery attempt is due, if none has been made yet: what a firing path
    /// hands to the delivery queue.
    pub fn first_delivery_due(&self) -> Option<DateTime<Utc>> {
        self.delivery_due().filter(|_| self.attempts.is_empty())
    }
}

/// An event as a reader sees it at a given moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    #[serde(flatten)]
    pub event: Event,
    pub state: EventState,
    #[serde(with = "super::timestamp")]
    pub archives_at: DateTime<Utc>,
    #[serde(with = "super::timestamp")]
    pub expires_at: DateTime<Utc>,
}

impl EventView {
    /// The event as seen at `now`, or `None` once it has expired.
    pub fn at(event: Event, lifecycle: &Lifecycle, now: DateTime<Utc>) -> Option<Self> {
        let state = lifecycle.state(event.fired_at, now)?;
        Some(Self {
            state,
            archives_at: lifecycle.archives_at(event.fired_at),
            expires_at: lifecycle.expires_at(event.fired_at),
            event,
        })
    }
}
