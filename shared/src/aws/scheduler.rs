//! The scheduler port on EventBridge Scheduler: one schedule per trigger in the stack's group.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_scheduler::error::{DisplayErrorContext, SdkError};
use aws_sdk_scheduler::operation::create_schedule::CreateScheduleError;
use aws_sdk_scheduler::operation::delete_schedule::DeleteScheduleError;
use aws_sdk_scheduler::operation::update_schedule::UpdateScheduleError;
use aws_sdk_scheduler::primitives::DateTime as AwsDateTime;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode,
    RetryPolicy, ScheduleGroupState, ScheduleState, Target,
};
use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::domain::schedule::Schedule;
use crate::domain::target::Secret;
use crate::domain::trigger::{Trigger, TriggerDefinition, TriggerStatus};
use crate::ports::{DeliveryQueue, Scheduler, SchedulerError};

/// Scheduler substitutes the occurrence's time for this text when it invokes the target.
pub const SCHEDULED_TIME_PLACEHOLDER: &str = "<aws.scheduler.scheduled-time>";
/// EventBridge Scheduler's limit on a target's `Input`.
pub const MAX_INPUT_CHARS: usize = 8192;
/// EventBridge Scheduler's limit on schedule names.
const MAX_NAME_CHARS: usize = 64;
/// EventBridge Scheduler's limit on client tokens.
const MAX_CLIENT_TOKEN_CHARS: usize = 64;
/// Retries of a failed invocation before the event goes to the dead-letter queue. The fire
/// function is idempotent per occurrence, so a retry can never write a second event.
const MAX_RETRY_ATTEMPTS: i32 = 5;
/// A firing more than an hour late is better dead-lettered (and inspected) than recorded.
const MAX_EVENT_AGE_SECONDS: i32 = 3600;

/// Where schedules live and what they invoke: the stack's resources, from the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleTarget {
    pub group: String,
    pub role_arn: String,
    pub fire_function_arn: String,
    pub dead_letter_arn: String,
}

/// One schedule as the mapping intends it, independent of the SDK: what the tests check and
/// what both CreateSchedule and UpdateSchedule send in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// `at(...)`, `rate(...)` or `cron(...)`.
    pub expression: String,
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
    // as its schedule still has occurrences, so resuming only flips the state.
    let Some(next) = schedule.next_after(now) else {
        return Ok(Plan::Delete);
    };
    let timing = timing(schedule, next, now)?;
    Ok(Plan::Put(ScheduleSpec {
        expression: timing.expression,
        timezone: timing.timezone,
        start_date: timing.start_date,
        end_date: timing.end_date,
        enabled: trigger.status == TriggerStatus::Active,
        delete_after_completion: timing.delete_after_completion,
        input: occurrence_input(&trigger.id),
    }))
}

/// The spec of a one-time test run of `definition` at `at`.
pub fn test_run_spec(
    run_id: &str,
    definition: &TriggerDefinition,
    at: DateTime<Utc>,
) -> Result<ScheduleSpec, SchedulerError> {
    let input = test_run_input(run_id, definition)?;
    let chars = input.chars().count();
    if chars > MAX_INPUT_CHARS {
        return Err(unsupported(
            "payload",
            format!(
                "EventBridge Scheduler limits a schedule's input to {MAX_INPUT_CHARS} characters and this \
                 test run needs {chars}: make the payload smaller"
            ),
        ));
    }
    Ok(one_time_spec(at, input))
}

/// A schedule that invokes the fire function once, at `at`, and then deletes itself.
fn one_time_spec(at: DateTime<Utc>, input: String) -> ScheduleSpec {
    ScheduleSpec {
        expression: at_expression(at),
        timezone: "UTC".into(),
        start_date: None,
        end_date: None,
        enabled: true,
        delete_after_completion: true,
        input,
    }
}

/// The schedule-dependent part of a spec.
struct Timing {
    expression: String,
    timezone: String,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    delete_after_completion: bool,
}

/// Maps a schedule whose next occurrence is `next` to EventBridge terms.
fn timing(
    schedule: &Schedule,
    next: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Timing, SchedulerError> {
    let one_time = |at: DateTime<Utc>| Timing {
        expression: at_expression(at),
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
            timezone: "UTC".into(),
            // A rate schedule first fires at its StartDate; starting at the next occurrence keeps
            // EventBridge on the domain's grid (start_at + k * every) rather than "now + every".
            start_date: Some(next),
            end_date: *end_at,
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
            timezone: timezone.clone(),
            // AWS rejects a StartDate more than a few minutes in the past, and a past start
            // changes nothing, so only a future start is sent.
            start_date: start_at.filter(|s| *s > now),
            end_date: *end_at,
            delete_after_completion: end_at.is_some(),
        },
    })
}

fn unsupported(field: &str, message: impl Into<String>) -> SchedulerError {
    SchedulerError::Unsupported {
        field: field.into(),
        message: message.into(),
    }
}

/// `at(yyyy-mm-ddThh:mm:ss)` in UTC (the spec's timezone says so).
pub fn at_expression(at: DateTime<Utc>) -> String {
    format!("at({})", at.format("%Y-%m-%dT%H:%M:%S"))
}

/// `rate(...)` for a recurring interval, in the largest whole unit. Never rounds.
pub fn rate_expression(every_seconds: u64) -> Result<String, SchedulerError> {
    if every_seconds == 0 || every_seconds % 60 != 0 {
        return Err(unsupported(
            "schedule.every_seconds",
            format!(
                "EventBridge Scheduler fires at most once a minute: use a multiple of 60 seconds \
                 (got {every_seconds})"
            ),
        ));
    }
    let minutes = every_seconds / 60;
    let (value, unit) = if minutes % (24 * 60) == 0 {
        (minutes / (24 * 60), "day")
    } else if minutes % 60 == 0 {
        (minutes / 60, "hour")
    } else {
        (minutes, "minute")
    };
    let plural = if value == 1 { "" } else { "s" };
    Ok(format!("rate({value} {unit}{plural})"))
}

/// Maps a 5-field cron expression (or 6-field with seconds first) to EventBridge's 6-field
/// `cron(minute hour day-of-month month day-of-week year)`.
pub fn cron_expression(expression: &str) -> Result<String, SchedulerError> {
    const FIELD: &str = "schedule.expression";
    let upper = expression.to_ascii_uppercase();
    let fields: Vec<&str> = upper.split_whitespace().collect();
    let five = match fields.as_slice() {
        [_, _, _, _, _] => &fields[..],
        [seconds, rest @ ..] if rest.len() == 5 => {
            // EventBridge has no seconds field; only "at second 0" means the same thing.
            if seconds.parse::<u8>() != Ok(0) {
                return Err(unsupported(
                    FIELD,
                    format!(
                        "EventBridge Scheduler cron expressions have minute precision: the seconds \
                         field must be 0 (got {seconds:?})"
                    ),
                ));
            }
            rest
        }
        _ => {
            return Err(unsupported(
                FIELD,
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first",
            ));
        }
    };
    let [minute, hour, dom, month, dow] = five else {
        return Err(unsupported(FIELD, "expected 5 fields"));
    };
    let any = |f: &str| f == "*" || f == "?";
    // EventBridge needs exactly one of the two day fields to be `?`.
    let (dom, dow) = match (any(dom), any(dow)) {
        (true, true) => ("*".to_string(), "?".to_string()),
        (false, true) => (dom.to_string(), "?".to_string()),
        (true, false) => ("?".to_string(), day_of_week(dow)?),
        (false, false) => {
            return Err(unsupported(
                FIELD,
                "EventBridge Scheduler cannot restrict both day-of-month and day-of-week (standard \
                 cron fires when either matches): restrict one of them and use * in the other",
            ));
        }
    };
    Ok(format!("cron({minute} {hour} {dom} {month} {dow} *)"))
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A standard cron day token: 0-7 (0 and 7 are Sunday) or a name; Sunday is 0.
fn day_number(token: &str) -> Option<u8> {
    if let Some(i) = DAY_NAMES.iter().position(|n| *n == token) {
        return u8::try_from(i).ok();
    }
    token.parse::<u8>().ok().filter(|d| *d <= 7).map(|d| d % 7)
}

/// Standard day (0 = Sunday) to EventBridge's (1 = Sunday .. 7 = Saturday).
fn eventbridge_day(day: u8) -> u8 {
    day % 7 + 1
}

/// Maps a restricted day-of-week field to EventBridge numbering and syntax. Names mean the same
/// on both sides and pass through; numbers shift by one; steps, which EventBridge does not allow
/// in this field, are expanded into the days they select.
fn day_of_week(field: &str) -> Result<String, SchedulerError> {
    let cannot = |why: &str| {
        unsupported(
            "schedule.expression",
            format!("EventBridge Scheduler cannot express day-of-week {field:?}: {why}"),
        )
    };
    let is_name = |t: &str| DAY_NAMES.contains(&t);
    let parts: Vec<&str> = field.split(',').collect();

    // `d#n` (n-th weekday of the month) and `dL` (last one): EventBridge allows one such term.
    if field.contains('#') || field.ends_with('L') || field.contains("L,") {
        let [part] = parts.as_slice() else {
            return Err(cannot(
                "a '#' or 'L' term must be the only term in the field",
            ));
        };
        let (day, suffix) = match part.split_once('#') {
            Some((day, nth)) => (day, format!("#{nth}")),
            None => (part.trim_end_matches('L'), "L".to_string()),
        };
        if is_name(day) {
            return Ok(format!("{day}{suffix}"));
        }
        let day = day_number(day).ok_or_else(|| cannot("unknown day"))?;
        return Ok(format!("{}{suffix}", eventbridge_day(day)));
    }

    // Plain names and name ranges read the same on EventBridge.
    let name_term = |p: &str| match p.split_once('-') {
        Some((a, b)) => is_name(a) && is_name(b),
        None => is_name(p),
    };
    if parts.iter().all(|p| name_term(p)) {
        return Ok(field.to_string());
    }

    let mut days = BTreeSet::new();
    for part in &parts {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<u8>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| cannot("invalid step"))?;
                (range, Some(step))
            }
            None => (*part, None),
        };
        // Raw bounds keep 7 as 7 so a step walks the same values as the domain's parser (0..=7).
        let bound = |t: &str| -> Result<u8, SchedulerError> {
            match DAY_NAMES.iter().position(|n| *n == t) {
                Some(i) => u8::try_from(i).map_err(|_| cannot("unknown day")),
                None => t
                    .parse::<u8>()
                    .ok()
                    .filter(|d| *d <= 7)
                    .ok_or_else(|| cannot("unknown day")),
            }
        };
        let (from, to) = match range.split_once('-') {
            Some((a, b)) => (bound(a)?, bound(b)?),
            None if range == "*" => (0, 7),
            None if step.is_some() => (bound(range)?, 7),
            None => {
                let d = bound(range)?;
                (d, d)
            }
        };
        if from > to {
            return Err(cannot("a range must not wrap around the week"));
        }
        for d in (from..=to).step_by(usize::from(step.unwrap_or(1))) {
            days.insert(eventbridge_day(d % 7));
        }
    }
    Ok(compact(&days))
}

/// `1,2,3,5` -> `1-3,5`.
fn compact(days: &BTreeSet<u8>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(u8, u8)> = None;
    let flush = |run: (u8, u8), out: &mut Vec<String>| {
        out.push(if run.0 == run.1 {
            run.0.to_string()
        } else {
            format!("{}-{}", run.0, run.1)
        });
    };
    for &d in days {
        run = match run {
            Some((a, b)) if d == b + 1 => Some((a, d)),
            Some(r) => {
                flush(r, &mut out);
                Some((d, d))
            }
            None => Some((d, d)),
        };
    }
    if let Some(r) = run {
        flush(r, &mut out);
    }
    out.join(",")
}

/// `{"trigger_id":"<id>","scheduled_time":"<aws.scheduler.scheduled-time>"}`: the occurrence
/// `FireInput`, written by hand because its time must stay the placeholder text.
pub fn occurrence_input(trigger_id: &str) -> String {
    format!(
        r#"{{"trigger_id":{},"scheduled_time":"{SCHEDULED_TIME_PLACEHOLDER}"}}"#,
        json_string(trigger_id)
    )
}

/// The test-run `FireInput` with the placeholder time.
pub fn test_run_input(
    run_id: &str,
    definition: &TriggerDefinition,
) -> Result<String, SchedulerError> {
    let definition = serde_json::to_string(definition).map_err(|e| {
        SchedulerError::Unavailable(format!("cannot serialize the definition: {e}"))
    })?;
    Ok(format!(
        r#"{{"test_run_id":{},"definition":{definition},"scheduled_time":"{SCHEDULED_TIME_PLACEHOLDER}"}}"#,
        json_string(run_id)
    ))
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// EventBridge accepts 1 to 64 of `[0-9a-zA-Z-_.]`; ids and run ids are ours, so a bad one is a
/// bug here, not a client error.
fn checked_name(name: String) -> Result<String, SchedulerError> {
    let ok = (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(name)
    } else {
        Err(SchedulerError::Unavailable(format!(
            "{name:?} is not a valid EventBridge schedule name"
        )))
    }
}

fn aws_time(t: DateTime<Utc>) -> AwsDateTime {
    AwsDateTime::from_millis(t.timestamp_millis())
}

/// The SDK error with its full context, for logs only.
fn unavailable<E, R>(operation: &str, name: &str, err: &SdkError<E, R>) -> SchedulerError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(err).to_string();
    tracing::error!(schedule = name, operation, error = %detail, "EventBridge Scheduler call failed");
    SchedulerError::Unavailable(format!("{operation} {name}: {detail}"))
}

/// Sets every field of a `ScheduleSpec` on a CreateSchedule or UpdateSchedule builder: the two
/// share setters but no trait, and UpdateSchedule replaces all fields, so both get the same set.
macro_rules! full_definition {
    ($builder:expr, $self:expr, $name:expr, $spec:expr, $target:expr) => {
        $builder
            .name($name)
            .group_name(&$self.target.group)
            .schedule_expression(&$spec.expression)
            .schedule_expression_timezone(&$spec.timezone)
            .set_start_date($spec.start_date.map(aws_time))
            .set_end_date($spec.end_date.map(aws_time))
            .state(if $spec.enabled {
                ScheduleState::Enabled
            } else {
                ScheduleState::Disabled
            })
            .action_after_completion(if $spec.delete_after_completion {
                ActionAfterCompletion::Delete
            } else {
                ActionAfterCompletion::None
            })
            .flexible_time_window($self.exact_time()?)
            .target($target)
    };
}

/// [`Scheduler`] on EventBridge Scheduler.
#[derive(Clone)]
pub struct EventBridgeScheduler {
    client: aws_sdk_scheduler::Client,
    target: ScheduleTarget,
    clock: Arc<dyn Clock>,
}

impl EventBridgeScheduler {
    pub fn new(
        client: aws_sdk_scheduler::Client,
        target: ScheduleTarget,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            target,
            clock,
        }
    }

    pub fn group(&self) -> &str {
        &self.target.group
    }

    fn exact_time(&self) -> Result<FlexibleTimeWindow, SchedulerError> {
        FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| SchedulerError::Unavailable(e.to_string()))
    }

    fn invocation(&self, input: &str) -> Result<Target, SchedulerError> {
        Target::builder()
            .arn(&self.target.fire_function_arn)
            .role_arn(&self.target.role_arn)
            .input(input)
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_retry_attempts(MAX_RETRY_ATTEMPTS)
                    .maximum_event_age_in_seconds(MAX_EVENT_AGE_SECONDS)
                    .build(),
            )
            .dead_letter_config(
                DeadLetterConfig::builder()
                    .arn(&self.target.dead_letter_arn)
                    .build(),
            )
            .build()
            .map_err(|e| SchedulerError::Unavailable(e.to_string()))
    }

    /// A token for this one call, so the SDK's own retries cannot apply it twice. It names the
    /// trigger and version (for CloudTrail) and the operation, and carries the time because a
    /// deliberate re-create of the same version (the API's undo after a failed delete) must not
    /// be taken for a replay of the first create.
    fn client_token(&self, key: &str, operation: char) -> Option<String> {
        let token = format!("{key}-{operation}{}", self.clock.now().timestamp_millis());
        (token.len() <= MAX_CLIENT_TOKEN_CHARS).then_some(token)
    }

    /// Creates the schedule, or replaces it in full when it exists.
    async fn put(
        &self,
        name: &str,
        spec: &ScheduleSpec,
        token_key: &str,
    ) -> Result<(), SchedulerError> {
        let target = self.invocation(&spec.input)?;
        // Two rounds at most: a one-time schedule can delete itself between our create and update.
        for _ in 0..2 {
            let created = full_definition!(
                self.client.create_schedule(),
                self,
                name,
                spec,
                target.clone()
            )
            .set_client_token(self.client_token(token_key, 'c'))
            .send()
            .await;
            match created {
                Ok(_) => {
                    tracing::info!(schedule = name, expression = %spec.expression, enabled = spec.enabled, "schedule created");
                    return Ok(());
                }
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(CreateScheduleError::ConflictException(_))
                    ) => {}
                Err(e) => return Err(unavailable("CreateSchedule", name, &e)),
            }
            let updated = full_definition!(
                self.client.update_schedule(),
                self,
                name,
                spec,
                target.clone()
            )
            .set_client_token(self.client_token(token_key, 'u'))
            .send()
            .await;
            match updated {
                Ok(_) => {
                    tracing::info!(schedule = name, expression = %spec.expression, enabled = spec.enabled, "schedule updated");
                    return Ok(());
                }
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(UpdateScheduleError::ResourceNotFoundException(_))
                    ) => {}
                Err(e) => return Err(unavailable("UpdateSchedule", name, &e)),
            }
        }
        Err(SchedulerError::Unavailable(format!(
            "schedule {name} kept appearing and disappearing"
        )))
    }

    /// Deletes the schedule; one that is already gone is fine.
    async fn delete(&self, name: &str) -> Result<(), SchedulerError> {
        let deleted = self
            .client
            .delete_schedule()
            .name(name)
            .group_name(&self.target.group)
            .send()
            .await;
        match deleted {
            Ok(_) => {
                tracing::info!(schedule = name, "schedule deleted");
                Ok(())
            }
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteScheduleError::ResourceNotFoundException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable("DeleteSchedule", name, &e)),
        }
    }
}

#[async_trait]
impl Scheduler for EventBridgeScheduler {
    async fn schedule(&self, trigger: &Trigger) -> Result<(), SchedulerError> {
        match plan(trigger, self.clock.now())? {
            Plan::Nothing => Ok(()),
            Plan::Delete => self.delete(&checked_name(trigger.id.clone())?).await,
            Plan::Put(spec) => {
                let name = checked_name(trigger.id.clone())?;
                self.put(&name, &spec, &format!("{}-{}", trigger.id, trigger.version))
                    .await
            }
        }
    }

    async fn unschedule(&self, trigger_id: &str) -> Result<(), SchedulerError> {
        self.delete(&checked_name(trigger_id.to_string())?).await
    }

    async fn schedule_test_run(
        &self,
        run_id: &str,
        definition: &TriggerDefinition,
        at: DateTime<Utc>,
        secret: Option<&Secret>,
    ) -> Result<(), SchedulerError> {
        let mut spec = test_run_spec(run_id, definition, at)?;
        if let Some(secret) = secret {
            // The run's delivery secret rides in the input (FireInput::TestRun.secret).
            spec.input = spec.input.replacen(
                '{',
                &format!("{{\"secret\":{},", json_string(secret.expose())),
                1,
            );
        }
        let name = checked_name(format!("test-{run_id}"))?;
        self.put(&name, &spec, &name).await
    }

    async fn healthy(&self) -> bool {
        match self
            .client
            .get_schedule_group()
            .name(&self.target.group)
            .send()
            .await
        {
            // A group being deleted takes its schedules with it: not a place to schedule into.
            Ok(out) => out.state() != Some(&ScheduleGroupState::Deleting),
            Err(e) => {
                tracing::warn!(group = %self.target.group, error = %DisplayErrorContext(&e), "schedule group unreachable");
                false
            }
        }
    }
}

/// The input of a delivery schedule: the fire function's `FireInput::Delivery`.
pub fn delivery_input(event_id: &str) -> String {
    format!(r#"{{"delivery_event_id":{}}}"#, json_string(event_id))
}

/// Pending delivery attempts are one-time schedules (`at()`, deleted after they run) that invoke
/// the fire function, one per event and due time.
#[async_trait]
impl DeliveryQueue for EventBridgeScheduler {
    async fn enqueue(&self, event_id: &str, due: DateTime<Utc>) -> Result<(), SchedulerError> {
        // `at()` has whole seconds; a time already past would not fire, so the earliest is the
        // next second.
        let earliest = self.clock.now() + chrono::Duration::seconds(1);
        let at = due.max(earliest);
        let spec = one_time_spec(at, delivery_input(event_id));
        // Named by the due time asked for (not the clamped one): each attempt gets its own
        // schedule, and queueing the same attempt twice is the same schedule.
        let name = checked_name(format!("dlv-{event_id}-{}", due.timestamp_millis()))?;
        self.put(&name, &spec, &name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use serde_json::{Value, json};

    use crate::domain::trigger::TriggerKind;
    use crate::firing::FireInput;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const ID: &str = "01jexample0000000000000000";

    fn trigger(schedule: Schedule, status: TriggerStatus) -> Trigger {
        let def = TriggerDefinition {
            name: "nightly".into(),
            kind: TriggerKind::Scheduled,
            schedule: Some(schedule),
            payload: Some(json!({"k": 1})),
            payload_schema: None,
            target: None,
        };
        let mut trigger = Trigger::create(def, ID.into(), t("2026-11-24T10:00:00Z"));
        trigger.status = status;
        trigger
    }

    fn spec(schedule: Schedule, status: TriggerStatus, now: &str) -> ScheduleSpec {
        match plan(&trigger(schedule, status), t(now)).unwrap() {
            Plan::Put(spec) => spec,
            other => panic!("expected a schedule, got {other:?}"),
        }
    }

    fn cron(expr: &str) -> Result<String, SchedulerError> {
        cron_expression(expr)
    }

    fn unsupported_of(r: Result<String, SchedulerError>) -> (String, String) {
        match r {
            Err(SchedulerError::Unsupported { field, message }) => (field, message),
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    fn cron_schedule(expr: &str, tz: &str) -> Schedule {
        Schedule::Cron {
            expression: expr.into(),
            timezone: tz.into(),
            start_at: None,
            end_at: None,
        }
    }

    #[test]
    fn rate_uses_the_largest_whole_unit_and_singular_for_one() {
        assert_eq!(rate_expression(60).unwrap(), "rate(1 minute)");
        assert_eq!(rate_expression(120).unwrap(), "rate(2 minutes)");
        assert_eq!(rate_expression(5400).unwrap(), "rate(90 minutes)");
        assert_eq!(rate_expression(3600).unwrap(), "rate(1 hour)");
        assert_eq!(rate_expression(7200).unwrap(), "rate(2 hours)");
        assert_eq!(rate_expression(90_000).unwrap(), "rate(25 hours)");
        assert_eq!(rate_expression(86_400).unwrap(), "rate(1 day)");
        assert_eq!(rate_expression(7 * 86_400).unwrap(), "rate(7 days)");
        assert_eq!(rate_expression(86_400 + 60).unwrap(), "rate(1441 minutes)");
    }

    #[test]
    fn sub_minute_or_ragged_rates_are_refused_naming_the_limit() {
        for every in [1, 30, 59, 90, 61, 3601] {
            let (field, message) = unsupported_of(rate_expression(every));
            assert_eq!(field, "schedule.every_seconds");
            assert!(message.contains("at most once a minute"), "{message}");
            assert!(message.contains("multiple of 60 seconds"), "{message}");
            assert!(message.contains(&format!("(got {every})")), "{message}");
        }
        assert_eq!(
            unsupported_of(rate_expression(90)).1,
            "EventBridge Scheduler fires at most once a minute: use a multiple of 60 seconds (got 90)"
        );
    }

    #[test]
    fn at_is_utc_to_the_second() {
        assert_eq!(
            at_expression(t("2026-11-24T10:00:05Z")),
            "at(2026-11-24T10:00:05)"
        );
        assert_eq!(
            at_expression(t("2027-01-02T03:04:05+02:00")),
            "at(2027-01-02T01:04:05)"
        );
    }

    #[test]
    fn cron_places_question_mark_in_exactly_one_day_field() {
        assert_eq!(cron("*/5 * * * *").unwrap(), "cron(*/5 * * * ? *)");
        assert_eq!(cron("0 0 1 * *").unwrap(), "cron(0 0 1 * ? *)");
        assert_eq!(cron("0 0 1,15 * ?").unwrap(), "cron(0 0 1,15 * ? *)");
        assert_eq!(cron("0 0 L * *").unwrap(), "cron(0 0 L * ? *)");
        assert_eq!(cron("0 9 * * MON-FRI").unwrap(), "cron(0 9 ? * MON-FRI *)");
        assert_eq!(cron("0 9 ? * MON").unwrap(), "cron(0 9 ? * MON *)");
        assert_eq!(
            cron("30 8 * JAN,JUL *").unwrap(),
            "cron(30 8 * JAN,JUL ? *)"
        );
        assert_eq!(cron("0 12 1-7 */2 *").unwrap(), "cron(0 12 1-7 */2 ? *)");
    }

    #[test]
    fn cron_refuses_restricting_both_day_fields() {
        let (field, message) = unsupported_of(cron("0 0 1 * MON"));
        assert_eq!(field, "schedule.expression");
        assert!(
            message.contains("both day-of-month and day-of-week"),
            "{message}"
        );
        unsupported_of(cron("0 0 1-7 * 1"));
    }

    #[test]
    fn cron_shifts_numeric_days_of_week() {
        assert_eq!(cron("0 0 * * 0").unwrap(), "cron(0 0 ? * 1 *)");
        assert_eq!(cron("0 0 * * 7").unwrap(), "cron(0 0 ? * 1 *)");
        assert_eq!(cron("0 0 * * 6").unwrap(), "cron(0 0 ? * 7 *)");
        assert_eq!(cron("0 9 * * 1-5").unwrap(), "cron(0 9 ? * 2-6 *)");
        assert_eq!(cron("0 9 * * 0,6").unwrap(), "cron(0 9 ? * 1,7 *)");
        assert_eq!(cron("0 9 * * 1,3,5").unwrap(), "cron(0 9 ? * 2,4,6 *)");
        // Friday to Sunday: 7 is Sunday, which EventBridge numbers 1.
        assert_eq!(cron("0 9 * * 5-7").unwrap(), "cron(0 9 ? * 1,6-7 *)");
        assert_eq!(cron("0 9 * * 0-6").unwrap(), "cron(0 9 ? * 1-7 *)");
        // Steps are not allowed in EventBridge's day-of-week: expanded into the days they select.
        assert_eq!(cron("0 9 * * */2").unwrap(), "cron(0 9 ? * 1,3,5,7 *)");
        assert_eq!(cron("0 9 * * 1/2").unwrap(), "cron(0 9 ? * 1-2,4,6 *)");
        assert_eq!(cron("0 9 * * 1-5/2").unwrap(), "cron(0 9 ? * 2,4,6 *)");
        assert_eq!(cron("0 9 * * MON-FRI/2").unwrap(), "cron(0 9 ? * 2,4,6 *)");
        // A mix of names and numbers is normalized to numbers.
        assert_eq!(cron("0 9 * * MON,3").unwrap(), "cron(0 9 ? * 2,4 *)");
        assert_eq!(cron("0 9 * * mon-fri").unwrap(), "cron(0 9 ? * MON-FRI *)");
    }

    #[test]
    fn cron_nth_and_last_weekday() {
        assert_eq!(cron("0 9 * * 5#2").unwrap(), "cron(0 9 ? * 6#2 *)");
        assert_eq!(cron("0 9 * * FRI#2").unwrap(), "cron(0 9 ? * FRI#2 *)");
        assert_eq!(cron("0 9 * * 5L").unwrap(), "cron(0 9 ? * 6L *)");
        assert_eq!(cron("0 9 * * 0#1").unwrap(), "cron(0 9 ? * 1#1 *)");
        let (_, message) = unsupported_of(cron("0 9 * * 1#1,5#3"));
        assert!(message.contains("only term"), "{message}");
    }

    #[test]
    fn cron_with_seconds_only_at_second_zero() {
        assert_eq!(cron("0 0 9 * * *").unwrap(), "cron(0 9 * * ? *)");
        assert_eq!(cron("00 30 9 * * 1").unwrap(), "cron(30 9 ? * 2 *)");
        for expr in ["*/15 * * * * *", "30 0 9 * * *", "0-5 * * * * *"] {
            let (field, message) = unsupported_of(cron(expr));
            assert_eq!(field, "schedule.expression");
            assert!(message.contains("seconds field must be 0"), "{message}");
        }
    }

    /// Days from Sunday an EventBridge day-of-week field selects (numbers, ranges, lists only).
    fn eventbridge_days(field: &str) -> BTreeSet<u32> {
        let mut out = BTreeSet::new();
        for part in field.split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            for n in a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap() {
                out.insert(n - 1);
            }
        }
        out
    }

    /// The mapped day-of-week selects exactly the weekdays the domain's own cron fires on.
    #[test]
    fn day_of_week_mapping_agrees_with_the_domain() {
        for dow in [
            "0", "7", "1-5", "0,6", "5-7", "*/2", "1/2", "1-5/2", "*/3", "2-6/2", "MON,3", "3/1",
        ] {
            let expr = format!("0 9 * * {dow}");
            let mapped = cron(&expr).unwrap();
            let eb_dow = mapped.split_whitespace().nth(4).unwrap();
            let schedule = cron_schedule(&expr, "UTC");
            let mut fired = BTreeSet::new();
            let mut at = t("2026-11-22T00:00:00Z");
            while let Some(next) = schedule.next_after(at) {
                if next > t("2026-12-06T00:00:00Z") {
                    break;
                }
                fired.insert(next.weekday().num_days_from_sunday());
                at = next;
            }
            assert_eq!(eventbridge_days(eb_dow), fired, "{expr} -> {mapped}");
        }
    }

    #[test]
    fn api_triggers_have_no_schedule() {
        let def = TriggerDefinition {
            name: "hook".into(),
            kind: TriggerKind::Api,
            schedule: None,
            payload: None,
            payload_schema: Some(json!({"type": "object"})),
            target: None,
        };
        let trigger = Trigger::create(def, ID.into(), t("2026-11-24T10:00:00Z"));
        assert_eq!(
            plan(&trigger, t("2026-11-24T10:00:00Z")).unwrap(),
            Plan::Nothing
        );
    }

    #[test]
    fn one_time_at_fires_once_and_deletes_itself() {
        let s = spec(
            Schedule::At {
                at: t("2026-11-24T12:30:00Z"),
            },
            TriggerStatus::Active,
            "2026-11-24T10:00:00Z",
        );
        assert_eq!(
            s,
            ScheduleSpec {
                expression: "at(2026-11-24T12:30:00)".into(),
                timezone: "UTC".into(),
                start_date: None,
                end_date: None,
                enabled: true,
                delete_after_completion: true,
                input: format!(
                    r#"{{"trigger_id":"{ID}","scheduled_time":"<aws.scheduler.scheduled-time>"}}"#
                ),
            }
        );
    }

    #[test]
    fn completed_or_exhausted_triggers_lose_their_schedule() {
        let at = Schedule::At {
            at: t("2026-11-24T12:30:00Z"),
        };
        assert_eq!(
            plan(
                &trigger(at.clone(), TriggerStatus::Completed),
                t("2026-11-24T10:00:00Z")
            )
            .unwrap(),
            Plan::Delete
        );
        assert_eq!(
            plan(
                &trigger(at.clone(), TriggerStatus::Active),
                t("2026-11-24T12:30:00Z")
            )
            .unwrap(),
            Plan::Delete
        );
        // Paused but with nothing left to fire: no disabled schedule lingers either.
        assert_eq!(
            plan(
                &trigger(at, TriggerStatus::Paused),
                t("2026-11-24T13:00:00Z")
            )
            .unwrap(),
            Plan::Delete
        );
        let ended = Schedule::Interval {
            every_seconds: 60,
            recurring: true,
            start_at: Some(t("2026-11-24T10:00:00Z")),
            end_at: Some(t("2026-11-24T10:05:00Z")),
        };
        assert_eq!(
            plan(
                &trigger(ended, TriggerStatus::Active),
                t("2026-11-24T10:05:00Z")
            )
            .unwrap(),
            Plan::Delete
        );
    }

    #[test]
    fn paused_is_disabled_and_active_is_enabled() {
        let at = Schedule::At {
            at: t("2026-11-24T12:30:00Z"),
        };
        assert!(!spec(at.clone(), TriggerStatus::Paused, "2026-11-24T10:00:00Z").enabled);
        assert!(spec(at, TriggerStatus::Active, "2026-11-24T10:00:00Z").enabled);
    }

    #[test]
    fn non_recurring_interval_is_one_at_after_its_start() {
        let s = spec(
            Schedule::Interval {
                every_seconds: 90,
                recurring: false,
                start_at: Some(t("2026-11-24T10:00:00Z")),
                end_at: None,
            },
            TriggerStatus::Active,
            "2026-11-24T10:00:10Z",
        );
        // Any whole second works for a single firing; only recurrence needs whole minutes.
        assert_eq!(s.expression, "at(2026-11-24T10:01:30)");
        assert_eq!(s.timezone, "UTC");
        assert!(s.delete_after_completion);
        assert_eq!((s.start_date, s.end_date), (None, None));
    }

    #[test]
    fn recurring_interval_starts_on_the_domain_grid() {
        let s = spec(
            Schedule::Interval {
                every_seconds: 600,
                recurring: true,
                start_at: Some(t("2026-11-24T10:00:07Z")),
                end_at: Some(t("2026-11-25T10:00:07Z")),
            },
            TriggerStatus::Active,
            "2026-11-24T10:25:00Z",
        );
        assert_eq!(s.expression, "rate(10 minutes)");
        assert_eq!(s.start_date, Some(t("2026-11-24T10:30:07Z")));
        assert_eq!(s.end_date, Some(t("2026-11-25T10:00:07Z")));
        assert!(s.delete_after_completion);

        let open = spec(
            Schedule::Interval {
                every_seconds: 3600,
                recurring: true,
                start_at: Some(t("2026-11-24T10:00:00Z")),
                end_at: None,
            },
            TriggerStatus::Active,
            "2026-11-24T10:00:00Z",
        );
        // The first firing is one interval after the start, as in the domain.
        assert_eq!(open.start_date, Some(t("2026-11-24T11:00:00Z")));
        assert_eq!(open.end_date, None);
        assert!(!open.delete_after_completion);
    }

    #[test]
    fn recurring_sub_minute_interval_is_unsupported() {
        let r = plan(
            &trigger(
                Schedule::Interval {
                    every_seconds: 30,
                    recurring: true,
                    start_at: Some(t("2026-11-24T10:00:00Z")),
                    end_at: None,
                },
                TriggerStatus::Active,
            ),
            t("2026-11-24T10:00:00Z"),
        );
        assert!(
            matches!(r, Err(SchedulerError::Unsupported { ref field, .. }) if field == "schedule.every_seconds")
        );
    }

    #[test]
    fn cron_passes_its_zone_through_across_dst() {
        // Berlin leaves summer time on 2026-10-25: EventBridge evaluates in the zone itself.
        let s = spec(
            cron_schedule("30 2 * * *", "Europe/Berlin"),
            TriggerStatus::Active,
            "2026-10-24T12:00:00Z",
        );
        assert_eq!(s.expression, "cron(30 2 * * ? *)");
        assert_eq!(s.timezone, "Europe/Berlin");
        let ny = spec(
            cron_schedule("0 9 * * 1-5", "America/New_York"),
            TriggerStatus::Active,
            "2026-03-07T12:00:00Z",
        );
        assert_eq!(ny.expression, "cron(0 9 ? * 2-6 *)");
        assert_eq!(ny.timezone, "America/New_York");
        assert!(!ny.delete_after_completion);
    }

    #[test]
    fn cron_window_sends_only_a_future_start() {
        let windowed = |start: &str| Schedule::Cron {
            expression: "0 * * * *".into(),
            timezone: "Asia/Tokyo".into(),
            start_at: Some(t(start)),
            end_at: Some(t("2026-12-31T00:00:00Z")),
        };
        let future = spec(
            windowed("2026-12-01T00:00:00Z"),
            TriggerStatus::Active,
            "2026-11-24T10:00:00Z",
        );
        assert_eq!(future.start_date, Some(t("2026-12-01T00:00:00Z")));
        assert_eq!(future.end_date, Some(t("2026-12-31T00:00:00Z")));
        assert!(future.delete_after_completion);
        let past = spec(
            windowed("2026-11-01T00:00:00Z"),
            TriggerStatus::Active,
            "2026-11-24T10:00:00Z",
        );
        assert_eq!(past.start_date, None);
    }

    #[test]
    fn occurrence_input_is_a_fire_input_once_the_placeholder_is_filled() {
        let input = occurrence_input(ID);
        let filled = input.replace(SCHEDULED_TIME_PLACEHOLDER, "2026-11-24T10:00:00Z");
        let parsed: FireInput = serde_json::from_str(&filled).unwrap();
        assert_eq!(
            parsed,
            FireInput::Occurrence {
                trigger_id: ID.into(),
                scheduled_time: t("2026-11-24T10:00:00Z"),
            }
        );
    }

    fn definition(payload: Value) -> TriggerDefinition {
        TriggerDefinition {
            name: "try it".into(),
            kind: TriggerKind::Scheduled,
            schedule: Some(Schedule::At {
                at: t("2026-11-24T10:05:00Z"),
            }),
            payload: Some(payload),
            payload_schema: None,
            target: None,
        }
    }

    #[test]
    fn test_run_input_round_trips_and_deletes_after_firing() {
        let def = definition(json!({"greeting": "hi \"there\""}));
        let s = test_run_spec(
            "01jrun00000000000000000000",
            &def,
            t("2026-11-24T10:05:00Z"),
        )
        .unwrap();
        assert_eq!(s.expression, "at(2026-11-24T10:05:00)");
        assert!(s.delete_after_completion && s.enabled);
        let v: Value = serde_json::from_str(&s.input).unwrap();
        assert_eq!(v["scheduled_time"], SCHEDULED_TIME_PLACEHOLDER);
        let filled = s
            .input
            .replace(SCHEDULED_TIME_PLACEHOLDER, "2026-11-24T10:05:00Z");
        match serde_json::from_str::<FireInput>(&filled).unwrap() {
            FireInput::TestRun {
                test_run_id,
                definition,
                ..
            } => {
                assert_eq!(test_run_id, "01jrun00000000000000000000");
                assert_eq!(definition, def);
            }
            other => panic!("expected a test run, got {other:?}"),
        }
    }

    #[test]
    fn test_run_input_is_capped() {
        let big = definition(json!({"blob": "x".repeat(MAX_INPUT_CHARS)}));
        let r = test_run_spec(
            "01jrun00000000000000000000",
            &big,
            t("2026-11-24T10:05:00Z"),
        );
        match r {
            Err(SchedulerError::Unsupported { field, message }) => {
                assert_eq!(field, "payload");
                assert!(message.contains("8192 characters"), "{message}");
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
        // Just under the limit passes.
        let overhead = test_run_input(
            "01jrun00000000000000000000",
            &definition(json!({"blob": ""})),
        )
        .unwrap()
        .chars()
        .count();
        let fits = definition(json!({"blob": "x".repeat(MAX_INPUT_CHARS - overhead)}));
        assert!(
            test_run_spec(
                "01jrun00000000000000000000",
                &fits,
                t("2026-11-24T10:05:00Z")
            )
            .is_ok()
        );
    }

    #[test]
    fn names_follow_eventbridge_rules() {
        assert!(checked_name(ID.into()).is_ok());
        assert!(checked_name(format!("test-{ID}")).is_ok());
        assert!(checked_name("a".repeat(65)).is_err());
        assert!(checked_name("bad name".into()).is_err());
        assert!(checked_name(String::new()).is_err());
    }

    #[test]
    fn dates_keep_milliseconds() {
        let d = aws_time(t("2026-11-24T10:00:00.250Z"));
        assert_eq!(
            d.to_millis().unwrap(),
            t("2026-11-24T10:00:00.250Z").timestamp_millis()
        );
    }
}
