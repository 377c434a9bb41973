//! Repairing deliveries: a new delivery series for one event, and resuming a trigger's
//! delivery after it was paused for failures in a row.

use super::{App, AppError, AppResult};
use chrono::{DateTime, Utc};

use crate::domain::delivery::DeliveryPlan;
use crate::domain::event::{EventStatus, EventView};
use crate::domain::lifecycle::FiredWindow;
use crate::domain::trigger::Trigger;
use crate::ports::{EventQuery, StoreError, cursor};

/// Events re-queued at most by one bulk redelivery call; the cursor goes on from there.
pub const REDELIVER_BATCH: usize = 100;

/// Which events of a trigger a bulk redelivery takes.
#[derive(Debug, Clone)]
pub struct RedeliverFilter {
    /// `failure` (or `success`, to send delivered events once more).
    pub status: EventStatus,
    /// Fired at or after this instant; fired before `until`.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
}

/// What one bulk redelivery call did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BulkRedelivery {
    /// Events given a new delivery series by this call.
    pub queued: usize,
    /// Matching events left alone: changed meanwhile (a delivery under way).
    pub skipped: usize,
    /// Pass back as `cursor` to go on; `null` once every matching event was taken.
    pub next_cursor: Option<String>,
}

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

    /// Redelivers the trigger's events with outcome `filter.status` fired in the window,
    /// newest first: [`super::STATUS_SCAN`] events read and at most [`REDELIVER_BATCH`]
    /// re-queued per call, with a cursor to go on.
    pub async fn redeliver_trigger(
        &self,
        id: &str,
        filter: RedeliverFilter,
    ) -> AppResult<BulkRedelivery> {
        let trigger = self.load(id).await?;
        if trigger.target.is_none() {
            return Err(AppError::Conflict(format!(
                "the trigger {id} has no target to deliver to"
            )));
        }
        if filter.status == EventStatus::Pending {
            return Err(crate::domain::validation::ValidationError::field(
                "status",
                "must be failure or success: pending events are being delivered",
            )
            .into());
        }
        let now = self.now();
        let retained = FiredWindow {
            after: self.settings.lifecycle.expired_at_or_before(now),
            until: None,
        };
        let window = super::events::narrow_checked(retained, filter.since, filter.until)?;
        let read = self
            .store
            .list_events(&EventQuery {
                window,
                now: Some(now),
                trigger_id: Some(trigger.id.clone()),
                source: None,
                is_test: None,
                limit: super::STATUS_SCAN,
                cursor: filter.cursor,
            })
            .await?;
        let matching: Vec<_> = read
            .items
            .iter()
            .filter(|e| e.status == filter.status)
            .collect();
        let (batch, next_cursor) = if matching.len() > REDELIVER_BATCH {
            let last = matching[REDELIVER_BATCH - 1];
            (
                &matching[..REDELIVER_BATCH],
                Some(cursor::encode_event(
                    last.fired_at.timestamp_millis(),
                    &last.id,
                )),
            )
        } else {
            (&matching[..], read.next_cursor)
        };
        let (mut queued, mut skipped) = (0, 0);
        for event in batch {
            match self.redeliver_event(&event.id).await {
                Ok(_) => queued += 1,
                Err(AppError::Conflict(_) | AppError::NotFound { .. }) => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        tracing::info!(trigger_id = id, queued, skipped, "bulk redelivery");
        Ok(BulkRedelivery {
            queued,
            skipped,
            next_cursor,
        })
    }
}
