//! What the use cases hand back: triggers as readers see them, test-run and api-firing results,
//! event filters and health.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::event::{EventSource, EventStatus, EventView};
use crate::domain::lifecycle::EventState;
use crate::domain::trigger::{FiringFields, Trigger, view_changes};

/// A trigger as a reader sees it, with its next firing computed at read time.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TriggerView {
    #[serde(flatten)]
    pub trigger: Trigger,
    #[serde(with = "crate::domain::timestamp::option")]
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The signing secret (`whsec_...`), only in the response that creates the trigger or
    /// rotates the secret. It is never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl TriggerView {
    /// The JSON of the view of a trigger (no secret) from the trigger's own JSON
    /// (`serde_json::to_string` of the `Trigger`): its fields, then `next_fire_at`. Reads only
    /// the status and schedule. `None` if `trigger_json` is not a trigger.
    pub fn json_at(trigger_json: &str, now: DateTime<Utc>) -> Option<String> {
        Self::json_until(trigger_json, now).map(|(json, _)| json)
    }

    /// [`Self::json_at`], and the instant until which it stays exact (see
    /// [`Trigger::view_changes_after`]; `None`: until the trigger is written).
    pub fn json_until(
        trigger_json: &str,
        now: DateTime<Utc>,
    ) -> Option<(String, Option<DateTime<Utc>>)> {
        let firing: FiringFields = serde_json::from_str(trigger_json).ok()?;
        let next = firing.next_fire_after(now);
        let until = view_changes(firing.status, firing.paused_until, next, now);
        if firing.resumed_by(now) {
            // The stored status is out of date: the view is built in full.
            let trigger: Trigger = serde_json::from_str(trigger_json).ok()?;
            let view = TriggerView {
                next_fire_at: next,
                trigger: trigger.as_seen_at(now),
                secret: None,
            };
            return Some((serde_json::to_string(&view).ok()?, until));
        }
        let json = crate::domain::extend_object(trigger_json, |out| {
            out.push_str(",\"next_fire_at\":");
            match next {
                Some(t) => crate::domain::timestamp::push_json(out, &t),
                None => out.push_str("null"),
            }
        })?;
        Some((json, until))
    }
}

/// A page of views as JSON, the items already joined by commas (what goes between `[` and `]`),
/// so a page served from the cache is one shared string.
#[derive(Debug, Clone, Default)]
pub struct JoinedPage {
    pub items: String,
    pub next_cursor: Option<String>,
    /// The whole response body, kept once the HTTP layer has written it: a page never changes,
    /// so a page served again from the cache is served as the same bytes.
    pub body: std::sync::OnceLock<std::sync::Arc<[u8]>>,
}

impl JoinedPage {
    pub fn push(&mut self, item: &str) {
        if !self.items.is_empty() {
            self.items.push(',');
        }
        self.items.push_str(item);
    }
}

/// What a test run of a definition did.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TestRunOutcome {
    /// An api definition fired at once.
    Fired {
        event: EventView,
        /// Signs this run's delivery, when the definition has a target; shown only here.
        #[serde(skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
    /// A scheduled definition will fire once, at its first occurrence.
    Scheduled {
        run_id: String,
        scheduled_for: DateTime<Utc>,
        /// Signs this run's delivery, when the definition has a target; shown only here.
        #[serde(skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
}

/// Result of an api firing; `replayed` when an `Idempotency-Key` matched an earlier firing.
#[derive(Debug, Clone)]
pub struct ApiFireResult {
    pub event: EventView,
    pub replayed: bool,
    /// The event's JSON as it was stored, when this firing wrote it (not on a replay).
    pub event_json: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventFilter {
    pub state: EventState,
    pub trigger_id: Option<String>,
    pub source: Option<EventSource>,
    pub is_test: Option<bool>,
    /// Only events with this outcome: read through a bounded page of the window
    /// ([`STATUS_SCAN`](super::STATUS_SCAN) events at most per request).
    pub status: Option<EventStatus>,
    /// Only events fired at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only events fired before this instant.
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
    pub cursor: Option<String>,
}

impl Default for EventFilter {
    /// Active events, any trigger, source and outcome, a page of 50.
    fn default() -> Self {
        Self {
            state: EventState::Active,
            trigger_id: None,
            source: None,
            is_test: None,
            status: None,
            since: None,
            until: None,
            limit: 50,
            cursor: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Health {
    pub store: bool,
    pub scheduler: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::trigger::{TriggerDefinition, TriggerStatus};
    use serde_json::json;

    /// Listings splice the stored JSON; what they send must be byte for byte the view's JSON.
    #[test]
    fn trigger_json_at_is_the_views_json() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:00:30.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let defs = [
            json!({"name": "api \"quoted\" é", "kind": "api",
                   "payload_schema": {"type": "object", "required": ["a"]}}),
            json!({"name": "every", "kind": "scheduled",
                   "schedule": {"type": "interval", "every_seconds": 60},
                   "payload": {"x": [1, 2]}, "target": {"url": "https://example.com/h"}}),
            json!({"name": "cron", "kind": "scheduled",
                   "schedule": {"type": "cron", "expression": "0 9 * * MON-FRI",
                                "timezone": "Europe/Berlin"}}),
        ];
        for def in defs {
            let def: TriggerDefinition = serde_json::from_value(def).unwrap();
            let created = Trigger::create(def, crate::domain::new_id(), now);
            let earlier = now - chrono::Duration::hours(1);
            for t in [
                created.clone(),
                created.with_status(TriggerStatus::Paused, now),
                created.paused(earlier, Some(now + chrono::Duration::minutes(1))),
                created.paused(earlier, Some(now)),
                created.skipping(now + chrono::Duration::days(1), now),
            ] {
                let stored = serde_json::to_string(&t).unwrap();
                let view = TriggerView {
                    next_fire_at: t.next_fire_after(now),
                    trigger: t.as_seen_at(now),
                    secret: None,
                };
                assert_eq!(
                    TriggerView::json_at(&stored, now),
                    Some(serde_json::to_string(&view).unwrap())
                );
            }
        }
        assert_eq!(TriggerView::json_at("{}", now), None);
    }
}
