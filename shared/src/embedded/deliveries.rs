//! The local delivery queue: due deliveries live in SQLite (so they survive `kill -9`), and a
//! worker sends them, a few at a time, when they fall due.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};

use super::sqlite::SqliteStore;
use crate::clock::Clock;
use crate::delivery::Deliverer;
use crate::ports::{DeliveryQueue, SchedulerError};

/// Attempts in flight at once; each may wait up to its target's timeout.
const CONCURRENCY: usize = 32;
/// Due deliveries fetched per look at the queue.
const BATCH: usize = 256;
/// Longest sleep between looks, so a clock that jumps (tests, suspend) is noticed.
const TICK: StdDuration = StdDuration::from_secs(1);

/// Wakes the worker when something becomes due; the row in SQLite is the queue itself.
#[derive(Clone, Default)]
pub struct LocalDeliveryQueue {
    wake: Arc<Notify>,
}

#[async_trait]
impl DeliveryQueue for LocalDeliveryQueue {
    async fn enqueue(&self, _event_id: &str, _due: DateTime<Utc>) -> Result<(), SchedulerError> {
        self.wake.notify_one();
        Ok(())
    }
}

/// Sends due deliveries. Shares the store's `deliveries` table with every firing path.
#[derive(Clone)]
pub struct DeliveryWorker {
    inner: Arc<Inner>,
}

struct Inner {
    db: SqliteStore,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    deliverer: OnceLock<Arc<Deliverer>>,
    in_flight: Mutex<HashSet<String>>,
    permits: Arc<Semaphore>,
}

impl DeliveryWorker {
    pub fn new(db: SqliteStore, clock: Arc<dyn Clock>, queue: &LocalDeliveryQueue) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                clock,
                wake: queue.wake.clone(),
                deliverer: OnceLock::new(),
                in_flight: Mutex::new(HashSet::new()),
                permits: Arc::new(Semaphore::new(CONCURRENCY)),
            }),
        }
    }

    /// The deliverer is built on the queue this worker drains, so it is handed over after.
    pub fn start_with(&self, deliverer: Arc<Deliverer>) {
        let _ = self.inner.deliverer.set(deliverer);
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    async fn attempt(&self, event_id: &str) {
        let Some(deliverer) = self.inner.deliverer.get() else {
            return;
        };
        if let Err(e) = deliverer.deliver(event_id).await {
            tracing::error!(event_id, error = %e, "delivery could not be recorded; retrying soon");
        }
    }

    /// Due event ids not already being attempted, marked as in flight.
    async fn claim_due(&self) -> Vec<String> {
        let now = self.inner.clock.now();
        let due = match self.inner.db.due_deliveries(now, BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "could not read the delivery queue");
                return Vec::new();
            }
        };
        let mut in_flight = self.in_flight();
        due.into_iter()
            .filter(|id| in_flight.insert(id.clone()))
            .collect()
    }

    /// Runs the worker until the task is dropped.
    pub async fn run(self) {
        loop {
            for id in self.claim_due().await {
                let Ok(permit) = self.inner.permits.clone().acquire_owned().await else {
                    return;
                };
                let worker = self.clone();
                tokio::spawn(async move {
                    worker.attempt(&id).await;
                    worker.in_flight().remove(&id);
                    drop(permit);
                    // A retry may be due sooner than the worker planned to look again.
                    worker.inner.wake.notify_one();
                });
            }
            let now = self.inner.clock.now();
            let wait = match self.inner.db.next_delivery_due().await {
                // Due now means in flight: its task wakes the worker when done.
                Ok(Some(due)) if due > now => (due - now).to_std().unwrap_or_default().min(TICK),
                _ => TICK,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.wake.notified() => {}
            }
        }
    }

    /// Attempts every delivery due now and waits for them: lets tests drive deliveries with a
    /// manual clock. Returns how many were attempted.
    pub async fn run_due(&self) -> usize {
        let due = self.claim_due().await;
        for id in &due {
            self.attempt(id).await;
            self.in_flight().remove(id);
        }
        due.len()
    }
}
