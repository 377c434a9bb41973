//! The occurrences audit: every occurrence a schedule defined in a window, joined to what
//! became of it (fired, skipped and why, upcoming), from the trigger and its events alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::event::Event;
use super::schedule::Schedule;
use super::time_range;
use super::trigger::{Trigger, TriggerStatus};

/// Most occurrences one audit lists.
pub const MAX_OCCURRENCES: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OccurrenceStatus {
    /// An event records it (`event_id`, `lateness_seconds`).
    Fired,
    /// It did not fire, and will not: `reason` says why.
    Skipped,
    /// Not fired yet: in the future, or just due (within the catch-up grace).
    Upcoming,
    /// Past the event retention: the log no longer tells whether it fired.
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The trigger was (or will be) paused at that instant.
    Paused,
    /// Before the schedule's `start_at` or after its `end_at`.
    OutsideWindow,
    /// Missed (the platform was down or the scheduler late) longer than the catch-up grace.
    MissedBeyondGrace,
    /// Missed, and folded into one later catch-up firing.
    Coalesced,
    /// The trigger had completed.
    Completed,
    /// Skipped on its own with `POST /triggers/{id}/skip`.
    SkippedByUser,
}

/// One occurrence and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Occurrence {
    #[serde(with = "super::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub scheduled_for: DateTime<Utc>,
    pub status: OccurrenceStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<SkipReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "super::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub fired_at: Option<DateTime<Utc>>,
    /// `fired_at - scheduled_for`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness_seconds: Option<f64>,
}

/// What the audit reads besides the trigger.
#[derive(Debug, Clone, Copy)]
pub struct AuditContext {
    pub now: DateTime<Utc>,
    /// How late a missed occurrence still gets its catch-up firing.
    pub grace: Duration,
    /// Events fired before this are gone from the log.
    pub retained_since: DateTime<Utc>,
}

/// The schedule with its window removed: the occurrences its expression defines.
fn unwindowed(schedule: &Schedule) -> Schedule {
    match schedule.clone() {
        Schedule::Interval {
            every_seconds,
            recurring,
            start_at,
            ..
        } => Schedule::Interval {
            every_seconds,
            recurring,
            start_at,
            end_at: None,
        },
        Schedule::Cron {
            expression,
            timezone,
            ..
        } => Schedule::Cron {
            expression,
            timezone,
            start_at: None,
            end_at: None,
        },
        at => at,
    }
}

fn in_window(schedule: &Schedule, t: DateTime<Utc>) -> bool {
    let (start, end) = match schedule {
        Schedule::Interval { end_at, .. } => (None, *end_at),
        Schedule::Cron {
            start_at, end_at, ..
        } => (*start_at, *end_at),
        Schedule::At { .. } => (None, None),
    };
    start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e)
}

/// The occurrences of `trigger` in `[from, to]` (at most `limit`) with what became of each,
/// from `events`: its scheduled events fired from `from` on. Fired occurrences of an earlier
/// schedule (before an edit) are listed too. The flag says the window held more than `limit`.
pub fn audit(
    trigger: &Trigger,
    events: &[Event],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
    ctx: AuditContext,
) -> (Vec<Occurrence>, bool) {
    let fired: BTreeMap<DateTime<Utc>, &Event> = events
        .iter()
        .filter_map(|e| Some((e.scheduled_for?, e)))
        .filter(|(t, _)| *t >= from && *t <= to)
        .collect();
    let mut instants: Vec<DateTime<Utc>> = fired.keys().copied().collect();
    let mut truncated = false;
    if let Some(schedule) = &trigger.schedule {
        let defined = unwindowed(schedule);
        // Occurrences before the trigger existed were never its own.
        let start = from.max(trigger.created_at);
        let mut cursor = time_range::sub(start, Duration::milliseconds(1));
        while let Some(t) = cursor
            .and_then(|c| defined.next_after(c))
            .filter(|t| *t <= to)
        {
            if instants.len() >= limit.saturating_mul(2) {
                truncated = true;
                break;
            }
            instants.push(t);
            cursor = Some(t);
        }
    }
    instants.sort();
    instants.dedup();
    if instants.len() > limit {
        instants.truncate(limit);
        truncated = true;
    }
    let occurrences = instants
        .into_iter()
        .map(|t| match fired.get(&t) {
            Some(e) => Occurrence {
                scheduled_for: t,
                status: OccurrenceStatus::Fired,
                reason: None,
                event_id: Some(e.id.clone()),
                fired_at: Some(e.fired_at),
                lateness_seconds: Some((e.fired_at - t).num_milliseconds() as f64 / 1000.0),
            },
            None => {
                let (status, reason) = fate(trigger, &fired, t, ctx);
                Occurrence {
                    scheduled_for: t,
                    status,
                    reason,
                    event_id: None,
                    fired_at: None,
                    lateness_seconds: None,
                }
            }
        })
        .collect();
    (occurrences, truncated)
}

/// Why occurrence `t`, which no event records, did not fire (or has not yet).
fn fate(
    trigger: &Trigger,
    fired: &BTreeMap<DateTime<Utc>, &Event>,
    t: DateTime<Utc>,
    ctx: AuditContext,
) -> (OccurrenceStatus, Option<SkipReason>) {
    let skipped = |reason| (OccurrenceStatus::Skipped, Some(reason));
    let schedule = trigger.schedule.as_ref();
    if schedule.is_some_and(|s| !in_window(s, t)) {
        return skipped(SkipReason::OutsideWindow);
    }
    if trigger.interruptions().is_skipped(t) {
        return skipped(SkipReason::SkippedByUser);
    }
    let paused_now = trigger.status_at(ctx.now) == TriggerStatus::Paused
        && trigger.paused_until.is_none_or(|u| t < u);
    if trigger.interruptions().paused_at(t) || (t > ctx.now && paused_now) {
        return skipped(SkipReason::Paused);
    }
    if trigger.status == TriggerStatus::Completed && t >= trigger.updated_at {
        return skipped(SkipReason::Completed);
    }
    if t < ctx.retained_since {
        return (OccurrenceStatus::Expired, None);
    }
    // A scheduler moves forward: once a later occurrence fired, this one never will. Within
    // the grace of that firing it was folded into it (a catch-up), else it was missed.
    let mut later = fired.range(t..).map(|(_, e)| e).peekable();
    if later.peek().is_some() {
        let folded = later.any(|e| time_range::sub_saturating(e.fired_at, ctx.grace) <= t);
        return skipped(if folded {
            SkipReason::Coalesced
        } else {
            SkipReason::MissedBeyondGrace
        });
    }
    if t > time_range::sub_saturating(ctx.now, ctx.grace) {
        return (OccurrenceStatus::Upcoming, None);
    }
    skipped(SkipReason::MissedBeyondGrace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::EventSource;
    use crate::domain::trigger::TriggerDefinition;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hourly(created: DateTime<Utc>) -> Trigger {
        let def: TriggerDefinition = serde_json::from_value(json!({
            "name": "hourly", "kind": "scheduled",
            "schedule": {"type": "cron", "expression": "0 * * * *", "timezone": "UTC",
                         "end_at": "2030-01-01T12:00:00Z"}
        }))
        .unwrap();
        Trigger::create(def, crate::domain::new_id(), created)
    }

    fn fired(trigger: &Trigger, scheduled: DateTime<Utc>, late_s: i64) -> Event {
        let mut e = crate::testing::contract::event(
            Some(trigger),
            EventSource::Schedule,
            scheduled + Duration::seconds(late_s),
        );
        e.scheduled_for = Some(scheduled);
        e
    }

    fn statuses(list: &[Occurrence]) -> Vec<(String, OccurrenceStatus, Option<SkipReason>)> {
        list.iter()
            .map(|o| (o.scheduled_for.format("%H").to_string(), o.status, o.reason))
            .collect()
    }

    #[test]
    fn each_occurrence_is_joined_to_what_became_of_it() {
        use OccurrenceStatus::*;
        let t0 = at("2030-01-01T00:30:00Z");
        let now = at("2030-01-01T09:30:00Z");
        let mut trigger = hourly(t0);
        // Paused 02:30..04:30, one skip at 11:00, down from 04:50 to 07:10 (the catch-up
        // folds in what the 90-minute grace reaches back to).
        trigger = trigger.paused(at("2030-01-01T02:30:00Z"), None);
        trigger = trigger.resumed(at("2030-01-01T04:30:00Z"));
        trigger = trigger.skipping(at("2030-01-01T11:00:00Z"), now);
        let events = [
            fired(&trigger, at("2030-01-01T01:00:00Z"), 1),
            fired(&trigger, at("2030-01-01T07:00:00Z"), 600),
            fired(&trigger, at("2030-01-01T08:00:00Z"), 0),
            fired(&trigger, at("2030-01-01T09:00:00Z"), 2),
        ];
        let ctx = AuditContext {
            now,
            grace: Duration::minutes(90),
            retained_since: at("2030-01-01T00:00:00Z"),
        };
        let (list, truncated) = audit(
            &trigger,
            &events,
            at("2029-12-31T23:00:00Z"),
            at("2030-01-01T13:00:00Z"),
            100,
            ctx,
        );
        assert!(!truncated);
        let s = |h: &str, st, r| (h.to_string(), st, r);
        assert_eq!(
            statuses(&list),
            vec![
                s("01", Fired, None),
                s("02", Skipped, Some(SkipReason::MissedBeyondGrace)),
                s("03", Skipped, Some(SkipReason::Paused)),
                s("04", Skipped, Some(SkipReason::Paused)),
                s("05", Skipped, Some(SkipReason::MissedBeyondGrace)),
                s("06", Skipped, Some(SkipReason::Coalesced)),
                s("07", Fired, None),
                s("08", Fired, None),
                s("09", Fired, None),
                s("10", Upcoming, None),
                s("11", Skipped, Some(SkipReason::SkippedByUser)),
                s("12", Upcoming, None),
                s("13", Skipped, Some(SkipReason::OutsideWindow)),
            ]
        );
        assert_eq!(list[6].lateness_seconds, Some(600.0));
        assert_eq!(list[0].event_id.as_deref(), Some(events[0].id.as_str()));
    }

    #[test]
    fn a_pause_with_an_end_skips_only_until_then() {
        let t0 = at("2030-01-01T00:30:00Z");
        let now = at("2030-01-01T01:30:00Z");
        let trigger = hourly(t0).paused(now, Some(at("2030-01-01T03:00:00Z")));
        let ctx = AuditContext {
            now,
            grace: Duration::minutes(15),
            retained_since: t0,
        };
        let (list, _) = audit(&trigger, &[], now, at("2030-01-01T04:00:00Z"), 10, ctx);
        assert_eq!(
            statuses(&list),
            vec![
                (
                    "02".into(),
                    OccurrenceStatus::Skipped,
                    Some(SkipReason::Paused)
                ),
                ("03".into(), OccurrenceStatus::Upcoming, None),
                ("04".into(), OccurrenceStatus::Upcoming, None),
            ]
        );
        assert_eq!(
            trigger.next_fire_after(now),
            Some(at("2030-01-01T03:00:00Z"))
        );
    }

    #[test]
    fn a_dense_window_is_bounded() {
        let def: TriggerDefinition = serde_json::from_value(json!({
            "name": "s", "kind": "scheduled",
            "schedule": {"type": "interval", "every_seconds": 1}
        }))
        .unwrap();
        let t0 = at("2030-01-01T00:00:00Z");
        let trigger = Trigger::create(def, crate::domain::new_id(), t0);
        let ctx = AuditContext {
            now: t0,
            grace: Duration::minutes(15),
            retained_since: t0,
        };
        let (list, truncated) = audit(&trigger, &[], t0, t0 + Duration::days(3650), 5, ctx);
        assert_eq!(list.len(), 5);
        assert!(truncated);
    }
}
