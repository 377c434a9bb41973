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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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
    /// The delivery series under way (or the last one run): 1 for the deliveries of the
    /// firing, one more for each redelivery. Shown only from 2 on.
    #[serde(default = "first_series", skip_serializing_if = "is_first_series")]
    #[schema(minimum = 1)]
    pub delivery_series: u32,
    /// Why a `failure` was recorded without any attempt: `delivery_paused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
}

/// Why an event failed without a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Its trigger's delivery was paused after failures in a row (`pause_after_failures`).
    DeliveryPaused,
}

fn first_series() -> u32 {
    1
}

fn is_first_series(series: &u32) -> bool {
    *series <= 1
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

    /// Attempts made so far in the series under way.
    pub fn series_attempts(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.series == self.delivery_series)
            .count()
    }

    /// The event set up for a new delivery series, due at `now`.
    pub fn redelivered(mut self, now: DateTime<Utc>) -> Self {
        self.status = EventStatus::Pending;
        self.next_attempt_at = Some(now);
        self.delivery_series = self.delivery_series.saturating_add(1);
        self.reason = None;
        self
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

/// The read-time fields of a view, after the event's own.
fn push_view_fields(
    out: &mut String,
    state: EventState,
    archives_at: &DateTime<Utc>,
    expires_at: &DateTime<Utc>,
) {
    out.push_str(",\"state\":");
    out.push_str(match state {
        EventState::Active => "\"active\"",
        EventState::Archived => "\"archived\"",
    });
    out.push_str(",\"archives_at\":");
    super::timestamp::push_json(out, archives_at);
    out.push_str(",\"expires_at\":");
    super::timestamp::push_json(out, expires_at);
}

impl EventView {
    /// The JSON of [`EventView::at`] built from the event's own JSON (`serde_json::to_string` of
    /// the `Event`) without decoding it: the view is the event's fields, then the read-time ones.
    /// `None` once the event has expired, or if `event_json` is not an object.
    pub fn json_at(
        event_json: &str,
        fired_at: DateTime<Utc>,
        lifecycle: &Lifecycle,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let state = lifecycle.state(fired_at, now)?;
        let (archives_at, expires_at) = (
            lifecycle.archives_at(fired_at),
            lifecycle.expires_at(fired_at),
        );
        super::extend_object(event_json, |out| {
            push_view_fields(out, state, &archives_at, &expires_at);
        })
    }

    /// What `serde_json::to_string` writes for the view, without serde's `flatten`, which
    /// buffers every field of the event on the way (a tenth of a firing's response time).
    pub fn to_json(&self) -> serde_json::Result<String> {
        self.to_json_from(&serde_json::to_string(&self.event)?)
    }

    /// [`Self::to_json`] from the event's JSON (`serde_json::to_string(&self.event)`), made
    /// before: a firing's answer reuses the JSON its event was stored with.
    pub fn to_json_from(&self, event_json: &str) -> serde_json::Result<String> {
        match super::extend_object(event_json, |out| {
            push_view_fields(out, self.state, &self.archives_at, &self.expires_at);
        }) {
            Some(json) => Ok(json),
            None => serde_json::to_string(self),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn sample(attempts: Vec<Attempt>, next: Option<DateTime<Utc>>) -> Event {
        let fired_at = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.387Z")
            .unwrap()
            .with_timezone(&Utc);
        Event {
            id: "01kevent".into(),
            trigger_id: Some("01ktrigger".into()),
            trigger_name: "quote \" and \\ and é".into(),
            kind: TriggerKind::Scheduled,
            source: EventSource::Schedule,
            is_test: false,
            scheduled_for: Some(fired_at - Duration::milliseconds(387)),
            fired_at,
            payload: serde_json::json!({"b": [1, 2], "a": {"nested": null}}),
            status: EventStatus::Pending,
            attempts,
            next_attempt_at: next,
            delivery_series: 1,
            reason: None,
        }
    }

    /// Listings splice the stored JSON; what they send must be byte for byte the view's JSON.
    #[test]
    fn json_at_is_the_views_json() {
        let l = Lifecycle::default();
        let e = sample(Vec::new(), None);
        let later = sample(Vec::new(), Some(e.fired_at + Duration::seconds(5)));
        for (event, age) in [
            (e, 1),
            (later, 3 * 3600),
            (sample(Vec::new(), None), 49 * 3600),
        ] {
            let now = event.fired_at + Duration::seconds(age);
            let stored = serde_json::to_string(&event).unwrap();
            let spliced = EventView::json_at(&stored, event.fired_at, &l, now);
            let view = EventView::at(event, &l, now).map(|v| serde_json::to_string(&v).unwrap());
            assert_eq!(spliced, view);
        }
        assert_eq!(EventView::json_at("{}", Utc::now(), &l, Utc::now()), None);
    }

    /// A firing's answer is written without serde's flatten: byte for byte the same JSON.
    #[test]
    fn to_json_is_the_views_json() {
        let l = Lifecycle::default();
        let mut failed = sample(Vec::new(), None);
        failed.reason = Some(FailureReason::DeliveryPaused);
        failed.payload = serde_json::json!({"quote": "\"", "nested": [1, {"é": null}]});
        for event in [
            sample(Vec::new(), None),
            sample(Vec::new(), Some(Utc::now())),
            failed,
        ] {
            let now = event.fired_at + Duration::seconds(7200);
            let view = EventView::at(event, &l, now).unwrap();
            assert_eq!(
                view.to_json().unwrap(),
                serde_json::to_string(&view).unwrap()
            );
        }
    }
}
