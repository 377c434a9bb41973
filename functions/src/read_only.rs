//! The scheduler seen by the read-only `events-api` function: it manages no schedules.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use etp::domain::trigger::Trigger;
use etp::ports::{DeliveryQueue, Scheduler, SchedulerError};

fn managed_elsewhere() -> SchedulerError {
    SchedulerError::Unavailable("schedules are managed by triggers-api".into())
}

/// API Gateway routes nothing to `events-api` that would ask it to schedule; if something did,
/// it gets an error rather than a schedule made by a function without the rights to.
pub struct ReadOnlyScheduler;

#[async_trait]
impl Scheduler for ReadOnlyScheduler {
    async fn schedule(&self, _: &Trigger) -> Result<(), SchedulerError> {
        Err(managed_elsewhere())
    }

    async fn unschedule(&self, _: &str) -> Result<(), SchedulerError> {
        Err(managed_elsewhere())
    }

    async fn schedule_test_run(&self, _: &str, _: DateTime<Utc>) -> Result<(), SchedulerError> {
        Err(managed_elsewhere())
    }

    async fn unschedule_test_run(&self, _: &str) -> Result<(), SchedulerError> {
        Err(managed_elsewhere())
    }

    async fn healthy(&self) -> bool {
        true
    }
}

#[async_trait]
impl DeliveryQueue for ReadOnlyScheduler {
    async fn enqueue(&self, _: &str, _: DateTime<Utc>) -> Result<(), SchedulerError> {
        Err(SchedulerError::Unavailable(
            "deliveries are queued by triggers-api and fire".into(),
        ))
    }
}
