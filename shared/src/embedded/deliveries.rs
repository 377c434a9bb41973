//! The local delivery queue: due deliveries live in SQLite (so they survive `kill -9`), and a
//! worker sends them, a few at a time and a few per host, when they fall due.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::{Notify, Semaphore};

use crate::clock::Clock;
use crate::delivery::{Deliverer, DeliveryError};
use crate::ports::{DeliveryBacklog, DeliveryQueue, SchedulerError, StoreError};
use crate::supervise;

/// Attempts in flight at once; each may wait up to its target's timeout.
const CONCURRENCY: usize = 32;
/// Attempts in flight to one host at once: a receiver that stalls or tarpits holds at most
/// this many of the [`CONCURRENCY`] slots; deliveries to every other host go on.
pub const PER_HOST: usize = 4;
/// Due deliveries fetched per look at the queue.
const BATCH: usize = 256;
/// Longest sleep between looks, so a clock that jumps (tests, suspend) is noticed.
const TICK: StdDuration = StdDuration::from_secs(1);
/// A delivery whose attempt panicked (a bug, logged and counted) is tried again this much later.
const AFTER_PANIC: Duration = Duration::minutes(1);

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
    backlog: Arc<dyn DeliveryBacklog>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    deliverer: Arc<Deliverer>,
    in_flight: Mutex<InFlight>,
    permits: Arc<Semaphore>,
}

/// Deliveries being attempted, and how many per host.
#[derive(Default)]
struct InFlight {
    events: HashSet<String>,
    hosts: HashMap<String, usize>,
}

impl InFlight {
    /// Hosts with every per-host slot taken: their due deliveries wait.
    fn saturated(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|(_, n)| **n >= PER_HOST)
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Marks `id` (to `host`) in flight, unless it is already or its host is full.
    fn claim(&mut self, id: &str, host: &str) -> bool {
        let taken = self.hosts.get(host).copied().unwrap_or(0);
        if taken >= PER_HOST || !self.events.insert(id.to_string()) {
            return false;
        }
        self.hosts.insert(host.to_string(), taken + 1);
        true
    }

    fn release(&mut self, id: &str, host: &str) {
        self.events.remove(id);
        if let Some(n) = self.hosts.get_mut(host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.hosts.remove(host);
            }
        }
    }
}

impl DeliveryWorker {
    /// The worker draining `queue`'s backlog through `deliverer` (itself built on `queue`, so
    /// retries come back here).
    pub fn new(
        backlog: Arc<dyn DeliveryBacklog>,
        clock: Arc<dyn Clock>,
        queue: &LocalDeliveryQueue,
        deliverer: Arc<Deliverer>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                backlog,
                clock,
                wake: queue.wake.clone(),
                deliverer,
                in_flight: Mutex::new(InFlight::default()),
                permits: Arc::new(Semaphore::new(CONCURRENCY)),
            }),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// One attempt; a panic in it (logged and counted by the hook) or an unreadable stored
    /// plan moves the delivery out of the way instead of retrying it in a loop.
    async fn attempt(&self, event_id: &str) {
        let deliverer = self.inner.deliverer.clone();
        let id = event_id.to_string();
        let later = match supervise::contained(
            "delivery",
            async move { deliverer.deliver(&id).await },
        )
        .await
        {
            Some(Ok(_)) => return,
            Some(Err(DeliveryError::Store(StoreError::Corrupt(e)))) => {
                tracing::error!(event_id, error = %e, "delivery plan unreadable; delivery dropped");
                None
            }
            Some(Err(e)) => {
                tracing::error!(event_id, error = %e, "delivery could not be recorded; retrying soon");
                return;
            }
            None => Some(self.inner.clock.now() + AFTER_PANIC),
        };
        if let Err(e) = self.inner.backlog.postpone_delivery(event_id, later).await {
            tracing::error!(event_id, error = %e, "could not move a failed delivery");
        }
    }

    /// Due deliveries not already being attempted and whose host has a free slot, marked as
    /// in flight.
    async fn claim_due(&self) -> Vec<(String, String)> {
        let now = self.inner.clock.now();
        let saturated = self.in_flight().saturated();
        let due = match self
            .inner
            .backlog
            .due_deliveries(now, BATCH, &saturated)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "could not read the delivery queue");
                return Vec::new();
            }
        };
        let mut in_flight = self.in_flight();
        due.into_iter()
            .filter(|(id, host)| in_flight.claim(id, host))
            .collect()
    }

    /// Runs the worker until the task is dropped.
    pub async fn run(self) {
        loop {
            for (id, host) in self.claim_due().await {
                let Ok(permit) = self.inner.permits.clone().acquire_owned().await else {
                    return;
                };
                let worker = self.clone();
                tokio::spawn(async move {
                    worker.attempt(&id).await;
                    worker.in_flight().release(&id, &host);
                    drop(permit);
                    // A retry may be due sooner than the worker planned to look again.
                    worker.inner.wake.notify_one();
                });
            }
            let now = self.inner.clock.now();
            let wait = match self.inner.backlog.next_delivery_due().await {
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
        for (id, host) in &due {
            self.attempt(id).await;
            self.in_flight().release(id, host);
        }
        due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_holds_at_most_its_share() {
        let mut f = InFlight::default();
        for i in 0..PER_HOST {
            assert!(f.claim(&format!("e{i}"), "tarpit.example"));
        }
        assert!(!f.claim("one-more", "tarpit.example"));
        assert_eq!(f.saturated(), ["tarpit.example"]);
        assert!(f.claim("other", "fine.example"));
        assert!(!f.claim("other", "fine.example"), "never twice in flight");
        f.release("e0", "tarpit.example");
        assert!(f.saturated().is_empty());
        assert!(f.claim("one-more", "tarpit.example"));
    }
}
