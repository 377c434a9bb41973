//! Delivering fired events to their targets: one attempt at a time, retried per the schedule,
//! the same routine in the local server and in the fire function.

pub mod alert;
pub mod sender;
pub mod signing;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::clock::Clock;
use crate::domain::delivery::{AttemptError, RetrySchedule, Verdict};
use crate::domain::event::{Event, EventStatus};
use crate::domain::trigger::Trigger;
use crate::ports::{DeliveryQueue, SchedulerError, Store, StoreError};
use crate::telemetry;
pub use sender::{Sender, SenderError, install_crypto_provider};

/// An attempt may run this early and still count as due: the local timer is exact to the
/// millisecond, so one second covers it. EventBridge Scheduler has one-minute precision (it
/// may invoke anywhere in the scheduled minute), so the AWS wiring allows a minute
/// ([`Deliverer::with_early_slack`]); an invocation earlier than that is re-queued.
const EARLY_SLACK: Duration = Duration::seconds(1);
/// How much longer than the attempt's own timeout its claim lasts.
const CLAIM_MARGIN: Duration = Duration::seconds(10);
/// The early slack EventBridge Scheduler needs.
pub const SCHEDULER_EARLY_SLACK: Duration = Duration::seconds(60);

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The next attempt could not be queued; the event stays due, so a re-run picks it up.
    #[error("could not queue the retry: {0}")]
    Queue(#[from] SchedulerError),
}

/// What one call to [`Deliverer::deliver`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Final failure: no retry left, or one the target's answer rules out.
    Failed,
    /// This attempt failed; the next is queued for then.
    RetryAt(DateTime<Utc>),
    /// Not due yet (queued again for then).
    NotDue(DateTime<Utc>),
    /// Nothing to do: no target, already delivered or given up, or the event is gone.
    Nothing,
    /// Someone else attempted this delivery meanwhile; their outcome stands.
    Raced,
}

pub struct Deliverer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    queue: Arc<dyn DeliveryQueue>,
    sender: Arc<Sender>,
    retry: RetrySchedule,
    early_slack: Duration,
    alerts: Option<alert::Alerts>,
}

impl Deliverer {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        queue: Arc<dyn DeliveryQueue>,
        sender: Arc<Sender>,
        retry: RetrySchedule,
    ) -> Self {
        Self {
            store,
            clock,
            queue,
            sender,
            retry,
            early_slack: EARLY_SLACK,
            alerts: None,
        }
    }

    /// Notify `target` (`ETP_ALERT_URL`) of deliveries given up and of paused triggers.
    pub fn with_alerts(mut self, target: Option<alert::AlertTarget>) -> Self {
        self.alerts = target.map(|t| alert::Alerts::new(t, self.sender.clone()));
        self
    }

    /// How early an invocation may come and still make the due attempt.
    pub fn with_early_slack(mut self, slack: Duration) -> Self {
        self.early_slack = slack;
        self
    }

    /// Makes the due attempt of `event_id`'s delivery, records it, and queues the next one. An
    /// event that is delivered (or given up) is never sent again.
    pub async fn deliver(&self, event_id: &str) -> Result<Delivery, DeliveryError> {
        let Some((mut event, plan)) = self.store.get_delivery(event_id).await? else {
            return Ok(Delivery::Nothing);
        };
        let Some(due) = event.delivery_due() else {
            return Ok(Delivery::Nothing);
        };
        let now = self.clock.now();
        if due > now + self.early_slack {
            self.queue.enqueue(event_id, due).await?;
            return Ok(Delivery::NotDue(due));
        }
        let seen = event.attempts.len();
        // Signed with the trigger's secrets as they are now (a rotation reaches pending
        // retries; the replaced secret signs beside the new one during its grace); a test run
        // has no trigger and keeps its own. A deleted trigger's deliveries stop.
        let mut loaded = None;
        let secrets = match &event.trigger_id {
            None => vec![plan.secret.clone()],
            Some(trigger_id) => match self.store.get_trigger(trigger_id).await? {
                Some(t) if t.secret.is_some() => {
                    let secrets = t.signing_secrets(now);
                    loaded = Some(t);
                    secrets
                }
                Some(t) => {
                    loaded = Some(t);
                    vec![plan.secret.clone()]
                }
                None => {
                    tracing::info!(event_id, trigger_id, "trigger deleted; its delivery stops");
                    event.status = EventStatus::Failure;
                    event.next_attempt_at = None;
                    return match self.store.record_attempt(&event, seen).await {
                        Err(StoreError::VersionConflict) => Ok(Delivery::Raced),
                        Err(e) => Err(e.into()),
                        Ok(()) => Ok(Delivery::Failed),
                    };
                }
            },
        };
        // Claimed for as long as the attempt can take, and some: a second invocation of the
        // same attempt stands down here, before anything is sent; a claim left by a crash
        // lapses and the next invocation makes the attempt.
        let lease = Duration::milliseconds(i64::from(plan.target.timeout_ms())) + CLAIM_MARGIN;
        if !self
            .store
            .claim_attempt(event_id, seen, now, now + lease)
            .await?
        {
            return Ok(Delivery::Raced);
        }
        let number = seen as u32 + 1;
        let started = std::time::Instant::now();
        let sent = self.sender.send(&plan, &secrets, &event, number, now).await;
        let took = started.elapsed();
        let verdict = sent.attempt.verdict(sent.retry_after);
        tracing::info!(
            event_id,
            attempt = number,
            status_code = sent.attempt.status_code,
            error = ?sent.attempt.error,
            duration_ms = sent.attempt.duration_ms,
            "delivery attempt"
        );
        let refused = sent.attempt.error == Some(AttemptError::RefusedByPolicy);
        // Retries are counted within the series: a redelivery gets the whole schedule again.
        let in_series = event.series_attempts() as u32 + 1;
        let retries_left = u32::from(plan.target.max_retries()) >= in_series;
        let after = self.clock.now();
        let (status, next) = match verdict {
            Verdict::Delivered => (EventStatus::Success, None),
            Verdict::Retry { not_before } if retries_left => {
                let jitter: f64 = rand::random();
                let at = self.retry.next_at(in_series, after, jitter, not_before);
                (EventStatus::Pending, Some(at))
            }
            Verdict::Retry { .. } | Verdict::Failed => (EventStatus::Failure, None),
        };
        telemetry::delivery_attempt(
            match (status, next) {
                (EventStatus::Success, _) => "success",
                (_, Some(_)) => "retry",
                _ if refused => "refused",
                _ => "failure",
            },
            took,
        );
        event.attempts.push(sent.attempt);
        event.status = status;
        event.next_attempt_at = next;
        match self.store.record_attempt(&event, seen).await {
            Err(StoreError::VersionConflict) => return Ok(Delivery::Raced),
            other => other?,
        }
        Ok(match (status, next) {
            (EventStatus::Success, _) => {
                self.settled(&event, false, loaded).await;
                Delivery::Delivered
            }
            (_, Some(at)) => {
                self.queue.enqueue(event_id, at).await?;
                Delivery::RetryAt(at)
            }
            _ => {
                self.settled(&event, true, loaded).await;
                Delivery::Failed
            }
        })
    }

    /// After `event`'s series ended: the alert when it failed, and its trigger's failures in a
    /// row (pausing delivery at `target.pause_after_failures`). Best-effort: the outcome is
    /// recorded already, so a store error here is logged, not returned.
    /// `loaded` is the trigger as read for this attempt: read again only if it changed since.
    async fn settled(&self, event: &Event, failed: bool, mut loaded: Option<Trigger>) {
        let now = self.clock.now();
        if failed && let Some(alerts) = &self.alerts {
            alerts.delivery_failed(event, now).await;
        }
        let Some(trigger_id) = &event.trigger_id else {
            return;
        };
        // A few tries: an edit of the trigger may land in between (its version moves).
        for _ in 0..3 {
            let trigger = match loaded.take() {
                Some(t) => t,
                None => match self.store.get_trigger(trigger_id).await {
                    Ok(Some(t)) => t,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(trigger_id, error = %e, "failures in a row not counted");
                        return;
                    }
                },
            };
            let Some(next) = trigger.after_delivery(failed, now) else {
                return;
            };
            match self.store.replace_trigger(&next, trigger.version).await {
                Ok(()) => {
                    if next.delivery_paused_at.is_some() && trigger.delivery_paused_at.is_none() {
                        tracing::warn!(
                            trigger_id,
                            failures = next.consecutive_failures,
                            "delivery paused after failures in a row"
                        );
                        if let Some(alerts) = &self.alerts {
                            alerts.delivery_paused(&next, now).await;
                        }
                    }
                    return;
                }
                Err(StoreError::VersionConflict) => continue,
                Err(e) => {
                    tracing::warn!(trigger_id, error = %e, "failures in a row not counted");
                    return;
                }
            }
        }
    }
}
