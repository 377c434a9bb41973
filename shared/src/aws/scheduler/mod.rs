//! The scheduler port on EventBridge Scheduler: one schedule per trigger in the stack's group,
//! one-time schedules for test runs and delivery retries. The SDK calls live here; what each
//! schedule is (`plan`), its expression (`expression`) and its input (`input`) beside it.

mod expression;
mod input;
mod plan;
#[cfg(test)]
mod tests;

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
use crate::domain::trigger::Trigger;
use crate::ports::{DeliveryQueue, Scheduler, SchedulerError};

pub use expression::{at_expression, cron_expression, rate_expression};
pub use input::{
    MAX_INPUT_CHARS, SCHEDULED_TIME_PLACEHOLDER, ScheduledTimePlaceholder, delivery_input,
    occurrence_input, test_run_input,
};
pub use plan::{Plan, ScheduleSpec, plan, test_run_spec};
use plan::{not_before, one_time_spec};

/// EventBridge Scheduler's limit on schedule names.
const MAX_NAME_CHARS: usize = 64;
/// EventBridge Scheduler's limit on client tokens.
const MAX_CLIENT_TOKEN_CHARS: usize = 64;
/// Retries of a failed invocation before the event goes to the dead-letter queue. The fire
/// function is idempotent per occurrence, so a retry can never write a second event.
const MAX_RETRY_ATTEMPTS: i32 = 5;
/// A firing more than an hour late is better dead-lettered (and inspected) than recorded.
const MAX_EVENT_AGE_SECONDS: i32 = 3600;
/// A one-time schedule's `at()` is written at least this far ahead of now (rounded up to a whole
/// second): it has whole seconds and EventBridge reads it when the request arrives.
const AT_LEAD: chrono::Duration = chrono::Duration::seconds(2);
/// Writes of one one-time schedule at most: each further one is later, after a write that was
/// refused as past or may have arrived after its time.
const AT_ROUNDS: usize = 3;

/// Where schedules live and what they invoke: the stack's resources, from the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleTarget {
    pub group: String,
    pub role_arn: String,
    pub fire_function_arn: String,
    pub dead_letter_arn: String,
}

fn test_run_schedule_name(run_id: &str) -> Result<String, SchedulerError> {
    checked_name(format!("test-{run_id}"))
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

/// Why a CreateSchedule or UpdateSchedule did not take.
#[derive(Debug)]
enum PutError {
    /// ValidationException: EventBridge refused the definition (e.g. an `at()` already past).
    Invalid(SchedulerError),
    Failed(SchedulerError),
}

impl From<SchedulerError> for PutError {
    fn from(e: SchedulerError) -> Self {
        PutError::Failed(e)
    }
}

impl From<PutError> for SchedulerError {
    fn from(e: PutError) -> Self {
        match e {
            PutError::Invalid(e) | PutError::Failed(e) => e,
        }
    }
}

/// The `at()` instant a further write of a one-time schedule meant for `at` would have, if it
/// is later than `written`, the one just written: the next round's time, or `None` when another
/// write could only say the same.
fn later_at(
    at: DateTime<Utc>,
    written: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    Some(at.max(ceil_second(now + AT_LEAD))).filter(|next| *next > written)
}

/// Whether a one-time schedule written for `written` may have reached EventBridge at or after
/// that instant: the answer came then or later, and the request arrived before the answer.
fn may_have_arrived_late(written: DateTime<Utc>, answered: DateTime<Utc>) -> bool {
    answered >= written
}

/// The SDK error with its full context, for logs only.
fn sdk_failure<E, R>(operation: &str, name: &str, err: &SdkError<E, R>) -> SchedulerError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(err).to_string();
    tracing::error!(schedule = name, operation, error = %detail, "EventBridge Scheduler call failed");
    SchedulerError::Unavailable(format!("{operation} {name}: {detail}"))
}

/// A CreateSchedule or UpdateSchedule error `put` acts on.
enum Refusal {
    /// The schedule is not as the call needs: it exists (create), or is missing (update).
    WrongState,
    /// ValidationException: the definition was refused (e.g. an `at()` already past).
    Invalid,
}

/// What a CreateSchedule or UpdateSchedule answer means to `put`: `Ok(true)` when it took,
/// `Ok(false)` on [`Refusal::WrongState`] (try the other call), else the error.
fn put_outcome<O, E, R>(
    operation: &str,
    name: &str,
    spec: &ScheduleSpec,
    result: Result<O, SdkError<E, R>>,
    kind: impl Fn(&E) -> Option<Refusal>,
) -> Result<bool, PutError>
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => {
            tracing::info!(schedule = name, operation, expression = %spec.expression, enabled = spec.enabled, "schedule written");
            Ok(true)
        }
        Err(e) => match e.as_service_error().and_then(&kind) {
            Some(Refusal::WrongState) => Ok(false),
            Some(Refusal::Invalid) => Err(PutError::Invalid(sdk_failure(operation, name, &e))),
            None => Err(sdk_failure(operation, name, &e).into()),
        },
    }
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
    /// The last health answer and when it was taken: `GetScheduleGroup` allows 10 calls per
    /// second per account, shared by every container, so `/health` must not call it each time.
    health: Arc<std::sync::Mutex<Option<(std::time::Instant, bool)>>>,
}

/// How long one scheduler health answer is reused.
const HEALTH_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl EventBridgeScheduler {
    pub fn new(
        client: aws_sdk_scheduler::Client,
        target: ScheduleTarget,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            health: Arc::new(std::sync::Mutex::new(None)),
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
    ///
    /// A one-time schedule is written so that its `at()` is still ahead when EventBridge reads it.
    /// What becomes of an `at()` already past on arrival is not documented: it may be refused
    /// (ValidationException) or kept and never run, which would lose a firing or a delivery
    /// without a trace. So it is written at least [`AT_LEAD`] ahead (see [`not_before`]), and
    /// written again, later, when it was refused as invalid while a later time was possible, or
    /// when the answer came at or after its time (the request may have arrived late: a stalled
    /// network, the SDK's own retries).
    async fn put(
        &self,
        name: &str,
        spec: &ScheduleSpec,
        token_key: &str,
        update_first: bool,
    ) -> Result<(), SchedulerError> {
        let Some(at) = spec.at else {
            return Ok(self.try_put(name, spec, token_key, update_first).await?);
        };
        let mut earliest = ceil_second(self.clock.now() + AT_LEAD);
        for _ in 0..AT_ROUNDS {
            let written = at.max(earliest);
            let outcome = self
                .try_put(name, &not_before(spec, earliest), token_key, update_first)
                .await;
            let now = self.clock.now();
            match outcome {
                Ok(()) if !may_have_arrived_late(written, now) => return Ok(()),
                Ok(()) => {
                    tracing::warn!(schedule = name, at = %written, answered = %now, "the write may have arrived after its at(); writing it again, later");
                }
                Err(PutError::Invalid(e)) => {
                    if later_at(at, written, now).is_none() {
                        return Err(e);
                    }
                    tracing::warn!(schedule = name, at = %written, error = %e, "at() refused; writing it again, later");
                }
                Err(PutError::Failed(e)) => return Err(e),
            }
            earliest = ceil_second(now + AT_LEAD);
        }
        Err(SchedulerError::Unavailable(format!(
            "schedule {name}: no write reached EventBridge ahead of its at() in {AT_ROUNDS} tries"
        )))
    }

    /// [`Self::put`], telling a refused definition from other failures. A schedule that likely
    /// exists (an edited trigger's) is updated first, so the usual case is one call.
    async fn try_put(
        &self,
        name: &str,
        spec: &ScheduleSpec,
        token_key: &str,
        update_first: bool,
    ) -> Result<(), PutError> {
        // Two rounds at most: a one-time schedule can delete itself between our create and update.
        for _ in 0..2 {
            // Update, else create; or create, else update.
            let done = (update_first && self.try_update(name, spec, token_key).await?)
                || self.try_create(name, spec, token_key).await?
                || (!update_first && self.try_update(name, spec, token_key).await?);
            if done {
                return Ok(());
            }
        }
        Err(
            SchedulerError::Unavailable(format!("schedule {name} kept appearing and disappearing"))
                .into(),
        )
    }

    /// CreateSchedule; `false` when the schedule exists.
    async fn try_create(
        &self,
        name: &str,
        spec: &ScheduleSpec,
        token_key: &str,
    ) -> Result<bool, PutError> {
        let target = self.invocation(&spec.input)?;
        let created = full_definition!(self.client.create_schedule(), self, name, spec, target)
            .set_client_token(self.client_token(token_key, 'c'))
            .send()
            .await;
        put_outcome("CreateSchedule", name, spec, created, |e| match e {
            CreateScheduleError::ConflictException(_) => Some(Refusal::WrongState),
            CreateScheduleError::ValidationException(_) => Some(Refusal::Invalid),
            _ => None,
        })
    }

    /// UpdateSchedule (a full replacement); `false` when there is no such schedule.
    async fn try_update(
        &self,
        name: &str,
        spec: &ScheduleSpec,
        token_key: &str,
    ) -> Result<bool, PutError> {
        let target = self.invocation(&spec.input)?;
        let updated = full_definition!(self.client.update_schedule(), self, name, spec, target)
            .set_client_token(self.client_token(token_key, 'u'))
            .send()
            .await;
        put_outcome("UpdateSchedule", name, spec, updated, |e| match e {
            UpdateScheduleError::ResourceNotFoundException(_) => Some(Refusal::WrongState),
            UpdateScheduleError::ValidationException(_) => Some(Refusal::Invalid),
            _ => None,
        })
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
            Err(e) => Err(sdk_failure("DeleteSchedule", name, &e)),
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
                // A trigger past its first version has had its schedule written before.
                let key = format!("{}-{}", trigger.id, trigger.version);
                self.put(&name, &spec, &key, trigger.version > 1).await
            }
        }
    }

    async fn unschedule(&self, trigger_id: &str) -> Result<(), SchedulerError> {
        self.delete(&checked_name(trigger_id.to_string())?).await
    }

    async fn schedule_test_run(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let spec = test_run_spec(run_id, at)?;
        let name = test_run_schedule_name(run_id)?;
        self.put(&name, &spec, &name, false).await
    }

    async fn unschedule_test_run(&self, run_id: &str) -> Result<(), SchedulerError> {
        self.delete(&test_run_schedule_name(run_id)?).await
    }

    async fn healthy(&self) -> bool {
        let cached = *self.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, answer)) = cached
            && at.elapsed() < HEALTH_TTL
        {
            return answer;
        }
        let answer = self.probe().await;
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), answer));
        answer
    }
}

impl EventBridgeScheduler {
    /// Whether the schedule group answers and is not being deleted.
    async fn probe(&self) -> bool {
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

/// `t` rounded up to a whole second.
fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    crate::domain::time_range::ceil(t, chrono::Duration::seconds(1))
}

/// Pending delivery attempts are one-time schedules (`at()`, deleted after they run) that invoke
/// the fire function, one per event and due time.
#[async_trait]
impl DeliveryQueue for EventBridgeScheduler {
    async fn enqueue(&self, event_id: &str, due: DateTime<Utc>) -> Result<(), SchedulerError> {
        // `at()` has whole seconds: the due time rounded up, never down into the past, and
        // written ahead of now however late the attempt is (see `put`).
        let spec = one_time_spec(ceil_second(due), delivery_input(event_id));
        // Named by the due time asked for (not the written one): each attempt gets its own
        // schedule, and queueing the same attempt twice is the same schedule.
        let name = checked_name(format!("dlv-{event_id}-{}", due.timestamp_millis()))?;
        self.put(&name, &spec, &name, false).await
    }
}
