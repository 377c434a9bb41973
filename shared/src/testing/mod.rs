//! Test support shared by every adapter's tests: the store contract suite and a recording scheduler.

#[cfg(feature = "aws")]
pub mod capacity;
pub mod contract;
#[cfg(all(feature = "aws", feature = "embedded"))]
pub mod cost_model;
pub mod fixtures;
pub mod instants;
#[cfg(feature = "aws")]
pub mod moto;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::trigger::Trigger;
use crate::ports::{Scheduler, SchedulerError};

/// What the API told the scheduler, in order.
#[derive(Debug, Clone, PartialEq)]
// Test calls, compared and printed, never moved in bulk: boxing would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum SchedulerCall {
    Schedule(Trigger),
    Unschedule(String),
    TestRun { run_id: String, at: DateTime<Utc> },
    CancelTestRun(String),
}

/// A scheduler that records calls and can be told to fail, for API tests.
#[derive(Debug, Default)]
pub struct RecordingScheduler {
    calls: Mutex<Vec<SchedulerCall>>,
    failing: AtomicBool,
}

impl RecordingScheduler {
    pub fn calls(&self) -> Vec<SchedulerCall> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn record(&self, call: SchedulerCall) -> Result<(), SchedulerError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SchedulerError::Unavailable("told to fail".into()));
        }
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
        Ok(())
    }
}

#[async_trait]
impl Scheduler for RecordingScheduler {
    async fn schedule(&self, trigger: &Trigger) -> Result<(), SchedulerError> {
        self.record(SchedulerCall::Schedule(trigger.clone()))
    }

    async fn unschedule(&self, trigger_id: &str) -> Result<(), SchedulerError> {
        self.record(SchedulerCall::Unschedule(trigger_id.to_string()))
    }

    async fn schedule_test_run(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        self.record(SchedulerCall::TestRun {
            run_id: run_id.to_string(),
            at,
        })
    }

    async fn unschedule_test_run(&self, run_id: &str) -> Result<(), SchedulerError> {
        self.record(SchedulerCall::CancelTestRun(run_id.to_string()))
    }

    async fn healthy(&self) -> bool {
        !self.failing.load(Ordering::SeqCst)
    }
}

/// A delivery queue that remembers what it was handed: `(event id, due)`.
#[derive(Default)]
pub struct RecordingQueue {
    pub enqueued: std::sync::Mutex<Vec<(String, DateTime<Utc>)>>,
}

#[async_trait]
impl crate::ports::DeliveryQueue for RecordingQueue {
    async fn enqueue(&self, event_id: &str, due: DateTime<Utc>) -> Result<(), SchedulerError> {
        self.enqueued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((event_id.to_string(), due));
        Ok(())
    }
}
