//! What a trigger's schedule becomes on EventBridge Scheduler, independent of the SDK: the
//! expression, zone, window and state every CreateSchedule and UpdateSchedule sends in full.

use chrono::{DateTime, Utc};

use super::expression::{at_expression, cron_expression, rate_expression};
use super::input::{SCHEDULED_TIME_PLACEHOLDER, occurrence_input, test_run_input};
use crate::domain::schedule::Schedule;
use crate::domain::trigger::{Trigger, TriggerStatus};
use crate::ports::SchedulerError;

/// One schedule as the mapping intends it, independent of the SDK: what the tests check and
/// what both CreateSchedule and UpdateSchedule send in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// `at(...)`, `rate(...)` or `cron(...)`.
    pub expression: String,
    /// The instant of a one-time schedule (what its `at(...)` says); `None` for a recurring one.
    pub at: Option<DateTime<Utc>>,
    /// IANA zone the expression is evaluated in.
    pub timezone: String,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// DISABLED while the trigger is paused.
    pub enabled: bool,
    /// Let EventBridge remove the schedule after its last invocation.
    pub delete_after_completion: bool,
    /// The target's `Input`: a `FireInput` with the scheduled-time placeholder.
    pub input: String,
}

/// What `schedule(trigger)` must do on EventBridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Api triggers have no schedule.
    Nothing,
    /// Completed or exhausted: nothing left to fire.
    Delete,
    /// Create the schedule, or replace it in full.
    Put(ScheduleSpec),
}

/// Decides the schedule for `trigger` as of `now`.
pub fn plan(trigger: &Trigger, now: DateTime<Utc>) -> Result<Plan, SchedulerError> {
    // A broken trigger never fires, whatever schedule it had (its stand-in shows none).
    if trigger.status == TriggerStatus::Broken {
        return Ok(Plan::Delete);
    }
    let Some(schedule) = &trigger.schedule else {
        return Ok(Plan::Nothing);
    };
    if trigger.status == TriggerStatus::Completed {
        return Ok(Plan::Delete);
    }
    // The status is ignored here on purpose: a paused trigger keeps a (disabled) schedule as long
    // as its schedule still has occurrences, so resuming only flips the state. A pause with an
    // end is an enabled schedule that starts then: nothing has to run to resume it.
    let resumes = trigger
        .paused_until
        .filter(|_| trigger.status == TriggerStatus::Paused);
    let from = resumes.map_or(now, |u| {
        now.max(crate::domain::time_range::sub_saturating(
            u,
            chrono::Duration::milliseconds(1),
        ))
    });
    let Some(next) = schedule.next_after(from) else {
        return Ok(Plan::Delete);
    };
    let timing = timing(schedule, next, resumes, now)?;
    Ok(Plan::Put(ScheduleSpec {
        expression: timing.expression,
        at: timing.at,
        timezone: timing.timezone,
        start_date: timing.start_date,
        end_date: timing.end_date,
        enabled: trigger.status == TriggerStatus::Active || resumes.is_some(),
        delete_after_completion: timing.delete_after_completion,
        input: occurrence_input(&trigger.id),
    }))
}

/// The spec of a one-time test run at `at`: the input names the stored run, nothing more.
pub fn test_run_spec(run_id: &str, at: DateTime<Utc>) -> Result<ScheduleSpec, SchedulerError> {
    Ok(one_time_spec(at, test_run_input(run_id)?))
}

/// A schedule that invokes the fire function once, at `at`, and then deletes itself.
pub(super) fn one_time_spec(at: DateTime<Utc>, input: String) -> ScheduleSpec {
    ScheduleSpec {
        expression: at_expression(at),
        at: Some(at),
        timezone: "UTC".into(),
        start_date: None,
        end_date: None,
        enabled: true,
        delete_after_completion: true,
        input,
    }
}

/// `spec` as written when its one-time instant must not be sooner than `earliest`: EventBridge
/// reads an `at()` when the request arrives and does not say what becomes of one already past
/// then (it may refuse it, or keep it and never run it). Moved later, the schedule still names
/// its own occurrence: the input carries the instant itself instead of the scheduled-time
/// placeholder, which would say `earliest`. Recurring schedules and later instants are unchanged.
pub(super) fn not_before(spec: &ScheduleSpec, earliest: DateTime<Utc>) -> ScheduleSpec {
    match spec.at {
        Some(at) if at < earliest => ScheduleSpec {
            expression: at_expression(earliest),
            input: spec.input.replace(
                SCHEDULED_TIME_PLACEHOLDER,
                &at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ),
            ..spec.clone()
        },
        _ => spec.clone(),
    }
}

/// The schedule-dependent part of a spec.
struct Timing {
    expression: String,
    at: Option<DateTime<Utc>>,
    timezone: String,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    delete_after_completion: bool,
}

/// Maps a schedule whose next occurrence is `next` to EventBridge terms.
fn timing(
    schedule: &Schedule,
    next: DateTime<Utc>,
    resumes: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Timing, SchedulerError> {
    let one_time = |at: DateTime<Utc>| Timing {
        expression: at_expression(at),
        at: Some(at),
        timezone: "UTC".into(),
        start_date: None,
        end_date: None,
        delete_after_completion: true,
    };
    Ok(match schedule {
        Schedule::At { at } => one_time(*at),
        // A non-recurring interval fires once, one interval after its start: that is `next`.
        Schedule::Interval {
            recurring: false, ..
        } => one_time(next),
        Schedule::Interval {
            every_seconds,
            end_at,
            ..
        } => Timing {
            expression: rate_expression(*every_seconds)?,
            at: None,
            timezone: "UTC".into(),
            // A rate schedule first fires at its StartDate; starting at the next occurrence keeps
            // EventBridge on the domain's grid (start_at + k * every) rather than "now + every".
            start_date: Some(next),
            end_date: end_at.map(exclusive_end),
            // Without an EndDate EventBridge never deletes; with one, it deletes after the last.
            delete_after_completion: end_at.is_some(),
        },
        Schedule::Cron {
            expression,
            timezone,
            start_at,
            end_at,
        } => Timing {
            expression: cron_expression(expression)?,
            at: None,
            timezone: timezone.clone(),
            // AWS rejects a StartDate more than a few minutes in the past, and a past start
            // changes nothing, so only a future start is sent.
            start_date: (*start_at).max(resumes).filter(|s| *s > now),
            end_date: end_at.map(exclusive_end),
            delete_after_completion: end_at.is_some(),
        },
    })
}

/// EventBridge's `EndDate` is exclusive ("the date before which the schedule can invoke its
/// target") while `end_at` is the last instant a firing may have: one second later keeps an
/// occurrence exactly at `end_at`, and a window of one occurrence (start = end) stays valid.
fn exclusive_end(end_at: DateTime<Utc>) -> DateTime<Utc> {
    end_at + chrono::Duration::seconds(1)
}

pub(super) fn unsupported(field: &str, message: impl Into<String>) -> SchedulerError {
    SchedulerError::Unsupported {
        field: field.into(),
        message: message.into(),
    }
}
