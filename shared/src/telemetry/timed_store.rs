//! `Timed`: a store decorator that records how long every store call takes
//! (`etp_store_op_duration_seconds{op}`), once for every adapter.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use metrics::Histogram;

use super::STORE_OP_DURATION;
use super::handles::Cached;
use crate::domain::api_key::ApiKey;
use crate::domain::delivery::DeliveryPlan;
use crate::domain::event::Event;
use crate::domain::lifecycle::FiredWindow;
use crate::domain::test_run::ScheduledTestRun;
use crate::domain::trigger::{Trigger, TriggerKind, TriggerStatus};
use crate::ports::{
    ApiKeyStore, EventJson, EventQuery, EventStore, NewEvent, Page, Recorded, StoreError,
    TestRunStore, TriggerJson, TriggerQuery, TriggerStats, TriggerStore,
};

/// Wraps a store; every call is timed under its method's name.
pub struct Timed<S: ?Sized>(pub Arc<S>);

/// Runs `call` and records its duration under `op`, whatever its result.
async fn timed<T>(
    histogram: &'static Cached<Histogram>,
    op: &'static str,
    call: impl Future<Output = T>,
) -> T {
    let started = Instant::now();
    let result = call.await;
    let took = started.elapsed().as_secs_f64();
    histogram.with(
        || metrics::histogram!(STORE_OP_DURATION, "op" => op),
        |h| h.record(took),
    );
    result
}

/// [`timed`] with the histogram handle of this call site's `op`.
macro_rules! timed {
    ($op:literal, $call:expr $(,)?) => {{
        static HISTOGRAM: Cached<Histogram> = Cached::new();
        timed(&HISTOGRAM, $op, $call)
    }};
}

#[async_trait]
impl<S: TriggerStore + ?Sized> TriggerStore for Timed<S> {
    async fn insert_trigger(&self, trigger: &Trigger, max_triggers: u64) -> Result<(), StoreError> {
        timed!(
            "insert_trigger",
            self.0.insert_trigger(trigger, max_triggers),
        )
        .await
    }
    async fn get_trigger(&self, id: &str) -> Result<Option<Trigger>, StoreError> {
        timed!("get_trigger", self.0.get_trigger(id)).await
    }
    async fn get_triggers(&self, ids: &[&str]) -> Result<Vec<Option<Trigger>>, StoreError> {
        timed!("get_triggers", self.0.get_triggers(ids)).await
    }
    async fn list_triggers(&self, query: &TriggerQuery) -> Result<Page<Trigger>, StoreError> {
        timed!("list_triggers", self.0.list_triggers(query)).await
    }
    async fn list_triggers_json(
        &self,
        query: &TriggerQuery,
    ) -> Result<Page<TriggerJson>, StoreError> {
        timed!("list_triggers", self.0.list_triggers_json(query)).await
    }
    async fn replace_trigger(
        &self,
        trigger: &Trigger,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        timed!(
            "replace_trigger",
            self.0.replace_trigger(trigger, expected_version),
        )
        .await
    }
    fn trigger_writes(&self) -> Option<u64> {
        self.0.trigger_writes()
    }
    async fn delete_trigger(&self, id: &str) -> Result<bool, StoreError> {
        timed!("delete_trigger", self.0.delete_trigger(id)).await
    }
    async fn trigger_counts(
        &self,
    ) -> Result<Option<Vec<(TriggerKind, TriggerStatus, u64)>>, StoreError> {
        timed!("trigger_counts", self.0.trigger_counts()).await
    }
}

#[async_trait]
impl<S: EventStore + ?Sized> EventStore for Timed<S> {
    fn event_writes(&self) -> Option<u64> {
        self.0.event_writes()
    }
    async fn earliest_fired_from(
        &self,
        from: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        timed!("earliest_fired_from", self.0.earliest_fired_from(from)).await
    }
    async fn record_event(&self, new: NewEvent) -> Result<Recorded, StoreError> {
        timed!("record_event", self.0.record_event(new)).await
    }
    async fn get_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        timed!("get_event", self.0.get_event(id)).await
    }
    async fn list_events(&self, query: &EventQuery) -> Result<Page<Event>, StoreError> {
        timed!("list_events", self.0.list_events(query)).await
    }
    async fn list_events_json(&self, query: &EventQuery) -> Result<Page<EventJson>, StoreError> {
        timed!("list_events", self.0.list_events_json(query)).await
    }
    async fn event_stats(
        &self,
        now: DateTime<Utc>,
        active: FiredWindow,
        archived: FiredWindow,
    ) -> Result<Vec<TriggerStats>, StoreError> {
        timed!("event_stats", self.0.event_stats(now, active, archived)).await
    }
    async fn get_delivery(
        &self,
        event_id: &str,
    ) -> Result<Option<(Event, DeliveryPlan)>, StoreError> {
        timed!("get_delivery", self.0.get_delivery(event_id)).await
    }
    async fn record_attempt(&self, event: &Event, seen_attempts: usize) -> Result<(), StoreError> {
        timed!(
            "record_attempt",
            self.0.record_attempt(event, seen_attempts),
        )
        .await
    }
    async fn claim_attempt(
        &self,
        event_id: &str,
        seen_attempts: usize,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        timed!(
            "claim_attempt",
            self.0.claim_attempt(event_id, seen_attempts, now, until),
        )
        .await
    }
    async fn redeliver(
        &self,
        event: &Event,
        plan: &DeliveryPlan,
        seen_attempts: usize,
    ) -> Result<(), StoreError> {
        timed!("redeliver", self.0.redeliver(event, plan, seen_attempts)).await
    }
    async fn purge_events(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        timed!("purge_events", self.0.purge_events(cutoff)).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        timed!("ping", self.0.ping()).await
    }
    async fn pending_deliveries(&self) -> Result<Option<u64>, StoreError> {
        timed!("pending_deliveries", self.0.pending_deliveries()).await
    }
}

#[async_trait]
impl<S: TestRunStore + ?Sized> TestRunStore for Timed<S> {
    async fn insert_test_run(
        &self,
        run: &ScheduledTestRun,
        max_pending: u64,
    ) -> Result<(), StoreError> {
        timed!("insert_test_run", self.0.insert_test_run(run, max_pending)).await
    }
    async fn get_test_run(&self, id: &str) -> Result<Option<ScheduledTestRun>, StoreError> {
        timed!("get_test_run", self.0.get_test_run(id)).await
    }
    async fn list_test_runs(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ScheduledTestRun>, StoreError> {
        timed!("list_test_runs", self.0.list_test_runs(limit, cursor)).await
    }
    async fn delete_test_run(&self, id: &str) -> Result<bool, StoreError> {
        timed!("delete_test_run", self.0.delete_test_run(id)).await
    }
}

#[async_trait]
impl<S: ApiKeyStore + ?Sized> ApiKeyStore for Timed<S> {
    async fn insert_api_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError> {
        timed!("insert_api_key", self.0.insert_api_key(key, hash)).await
    }
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<(ApiKey, String)>, StoreError> {
        timed!("api_key_by_hash", self.0.api_key_by_hash(hash)).await
    }
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        timed!("list_api_keys", self.0.list_api_keys()).await
    }
    async fn delete_api_key(&self, id: &str) -> Result<bool, StoreError> {
        timed!("delete_api_key", self.0.delete_api_key(id)).await
    }
    async fn touch_api_key(
        &self,
        hash: &str,
        at: DateTime<Utc>,
        unless_since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        timed!(
            "touch_api_key",
            self.0.touch_api_key(hash, at, unless_since),
        )
        .await
    }
}
