//! Repairing deliveries: a new delivery series for one event, and resuming a trigger's
//! delivery after it was paused for failures in a row.

use super::{App, AppError, AppResult};
use crate::domain::delivery::DeliveryPlan;
use crate::domain::event::{EventStatus, EventView};
use crate::domain::trigger::Trigger;
use crate::ports::StoreError;

fn gone(id: &str) -> AppError {
    AppError::NotFound {
        what: "event",
        id: id.to_string(),
    }
}

impl App {
    /// Delivers event `id` again, as a new series of attempts: same event (so the same
    /// `webhook-id`), the trigger's current target and secret, the whole retry schedule.
    pub async fn redeliver_event(&self, id: &str) -> AppResult<EventView> {
        let now = self.now();
        let lifecycle = self.settings.lifecycle;
        let event = self
            .store
            .get_event(id)
            .await?
            .filter(|e| lifecycle.state(e.fired_at, now).is_some())
            .ok_or_else(|| gone(id))?;
        let Some(trigger_id) = event.trigger_id.clone() else {
            return Err(AppError::Conflict(
                "the event is a test run of a definition that was never stored: it has no \
                 trigger to deliver it with"
                    .into(),
            ));
        };
        if event.status == EventStatus::Pending {
            return Err(AppError::Conflict(
                "a delivery of this event is under way; redeliver once it has succeeded or failed"
                    .into(),
            ));
        }
        let trigger = self.store.get_trigger(&trigger_id).await?.ok_or_else(|| {
            AppError::Conflict(format!("the event's trigger {trigger_id} was deleted"))
        })?;
        let (Some(target), Some(secret)) = (trigger.target.clone(), trigger.secret.clone()) else {
            return Err(AppError::Conflict(format!(
                "the event's trigger {trigger_id} has no target to deliver to"
            )));
        };
        let seen = event.attempts.len();
        let next = event.redelivered(now);
        let plan = DeliveryPlan { target, secret };
        match self.store.redeliver(&next, &plan, seen).await {
            Err(StoreError::VersionConflict) => {
                return Err(AppError::Conflict(
                    "the event changed meanwhile (a delivery or redelivery is under way)".into(),
                ));
            }
            other => other?,
        }
        self.deliveries.enqueue(id, now).await?;
        tracing::info!(
            event_id = id,
            series = next.delivery_series,
            "redelivery queued"
        );
        EventView::at(next, &lifecycle, now).ok_or_else(|| gone(id))
    }

    /// Delivers the trigger's firings again from now on, its failures in a row forgotten.
    /// Resuming a trigger whose delivery is not paused changes nothing. Events recorded while
    /// paused stay `failure`; redeliver them one by one.
    pub async fn resume_delivery(&self, id: &str, if_match: Option<&str>) -> AppResult<Trigger> {
        let current = self.load(id).await?;
        self.check_version(if_match, &current)?;
        if current.delivery_paused_at.is_none() && current.consecutive_failures == 0 {
            return Ok(current);
        }
        let next = current.with_delivery_resumed(self.now());
        match self.store.replace_trigger(&next, current.version).await {
            Err(StoreError::VersionConflict) => Err(AppError::PreconditionFailed {
                current: self.load(id).await?.etag(),
            }),
            Err(e) => Err(e.into()),
            Ok(()) => {
                tracing::info!(trigger_id = id, "delivery resumed");
                Ok(next)
            }
        }
    }
}
