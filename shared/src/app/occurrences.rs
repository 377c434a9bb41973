//! The occurrences audit use case: a trigger's schedule in a window, joined to its events.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{App, AppResult};
use crate::domain::event::{Event, EventSource};
use crate::domain::lifecycle::FiredWindow;
use crate::domain::occurrence::{AuditContext, MAX_OCCURRENCES, Occurrence, audit};
use crate::domain::time_range;
use crate::domain::validation::ValidationError;
use crate::ports::EventQuery;

/// Longest window one audit covers.
pub const MAX_AUDIT_WINDOW_DAYS: i64 = 31;
/// Events read per audit, at most: a page of the densest schedule, with room for late ones.
const MAX_AUDIT_EVENTS: usize = 2 * MAX_OCCURRENCES;
/// How long after its occurrence a firing is still looked for (schedulers retry late).
const LATE_FIRING_HORIZON: Duration = Duration::hours(24);
/// How long before its occurrence a firing is still looked for: clocks differ between the
/// scheduler and the function that records the event, and a schedule can be invoked by hand.
const EARLY_FIRING_MARGIN: Duration = Duration::minutes(5);

/// A trigger's occurrences in `[from, to]`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OccurrenceAuditView {
    pub trigger_id: String,
    #[serde(with = "crate::domain::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub from: DateTime<Utc>,
    #[serde(with = "crate::domain::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub to: DateTime<Utc>,
    pub occurrences: Vec<Occurrence>,
    /// The window holds more occurrences than `limit`: ask again from the last one listed.
    pub truncated: bool,
}

impl App {
    /// Every occurrence the trigger's schedule defined in `[from, to]` (at most `limit`), each
    /// with what became of it.
    pub async fn occurrences(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> AppResult<OccurrenceAuditView> {
        if to < from {
            return Err(ValidationError::field("to", "must not be before from").into());
        }
        if to - from > Duration::days(MAX_AUDIT_WINDOW_DAYS) {
            return Err(ValidationError::field(
                "to",
                format!("must be at most {MAX_AUDIT_WINDOW_DAYS} days after from"),
            )
            .into());
        }
        if !(1..=MAX_OCCURRENCES).contains(&limit) {
            return Err(ValidationError::field(
                "limit",
                format!("must be between 1 and {MAX_OCCURRENCES}"),
            )
            .into());
        }
        let trigger = self.load(id).await?;
        let now = self.now();
        let lifecycle = self.settings.lifecycle;
        let retained_since = time_range::sub_saturating(now, lifecycle.retain_for);
        let (events, events_truncated) = if to < retained_since {
            (Vec::new(), false)
        } else {
            self.scheduled_events(id, from.max(retained_since), to, now)
                .await?
        };
        let ctx = AuditContext {
            now,
            grace: self.settings.catch_up_grace,
            retained_since,
        };
        let (occurrences, truncated) = audit(&trigger, &events, from, to, limit, ctx);
        Ok(OccurrenceAuditView {
            trigger_id: trigger.id,
            from,
            to,
            occurrences,
            truncated: truncated || events_truncated,
        })
    }

    /// The trigger's scheduled events fired from shortly before `from` until a day after `to`,
    /// bounded.
    async fn scheduled_events(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> AppResult<(Vec<Event>, bool)> {
        let window = FiredWindow {
            after: time_range::sub_saturating(from, EARLY_FIRING_MARGIN),
            until: Some(time_range::add_saturating(to, LATE_FIRING_HORIZON).min(now)),
        };
        let mut events = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_events(&EventQuery {
                    window,
                    now: Some(now),
                    trigger_id: Some(id.to_string()),
                    source: Some(EventSource::Schedule),
                    is_test: Some(false),
                    limit: crate::http::MAX_PAGE,
                    cursor,
                })
                .await?;
            events.extend(page.items);
            match page.next_cursor {
                Some(c) if events.len() < MAX_AUDIT_EVENTS => cursor = Some(c),
                Some(_) => return Ok((events, true)),
                None => return Ok((events, false)),
            }
        }
    }
}
