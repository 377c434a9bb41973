//! The store contract: behaviour every `Store` adapter must show, run against each of them
//! through [`store_contract_tests!`](crate::store_contract_tests).

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::domain::event::{Event, EventSource, EventStatus};
use crate::domain::lifecycle::{EventState, Lifecycle};
use crate::domain::new_id;
use crate::domain::schedule::Schedule;
use crate::domain::trigger::{Trigger, TriggerDefinition, TriggerKind, TriggerStatus};
use crate::ports::{EventQuery, NewEvent, Recorded, Store, StoreError, TriggerQuery};

mod api_keys;
mod deliveries;
mod events;
mod triggers;

pub use api_keys::*;
pub use deliveries::*;
pub use events::*;
pub use triggers::*;

/// Generates one `#[tokio::test]` per contract case. `$make` is an async expression yielding
/// `(store, guard)`; the guard (a temp dir, a table) lives as long as the test.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@cases $make;
            trigger_round_trip, duplicate_trigger_insert_is_rejected,
            replace_checks_the_version, delete_keeps_events, triggers_page_and_filter,
            recording_is_idempotent_per_key, recording_completes_one_time_triggers,
            events_list_by_window_newest_first, events_page_and_filter,
            stats_count_per_trigger_exactly, purge_deletes_only_expired, ping_answers,
            secrets_are_kept_with_the_trigger, deliveries_record_attempts_once,
            trigger_quota_writes_nothing_beyond_it, test_runs_are_kept_listed_and_bounded,
            a_pause_with_an_end_is_listed_by_its_status_at_now,
            api_keys_are_found_listed_and_revoked, duplicate_api_key_is_rejected,
            api_key_use_is_written_once_a_minute,
            redelivery_starts_one_new_series, events_list_by_a_narrow_window);
    };
    (@cases $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make.await;
                $crate::testing::contract::$name(&store).await;
            }
        )*
    };
}

/// The instant the contract's data is built around: a whole hour derived from the real clock
/// (DynamoDB on moto runs on it), see [`crate::testing::instants`].
pub fn t0() -> DateTime<Utc> {
    crate::testing::instants::next_hour()
}

pub fn trigger(name: &str, kind: TriggerKind) -> Trigger {
    let def = TriggerDefinition {
        name: name.into(),
        kind,
        schedule: (kind == TriggerKind::Scheduled).then_some(Schedule::Interval {
            every_seconds: 60,
            recurring: true,
            start_at: None,
            end_at: None,
        }),
        payload: (kind == TriggerKind::Scheduled).then(|| json!({"k": name})),
        payload_schema: (kind == TriggerKind::Api).then(|| json!({"type": "object"})),
        target: None,
    };
    Trigger::create(def, new_id(), t0())
}

pub fn event(trigger: Option<&Trigger>, source: EventSource, fired_at: DateTime<Utc>) -> Event {
    Event {
        id: new_id(),
        trigger_id: trigger.map(|t| t.id.clone()),
        trigger_name: trigger.map_or("ad hoc".into(), |t| t.name.clone()),
        kind: trigger.map_or(TriggerKind::Api, |t| t.kind),
        source,
        is_test: source == EventSource::ManualTest,
        scheduled_for: (source == EventSource::Schedule).then_some(fired_at),
        fired_at,
        payload: json!({"at": fired_at.timestamp_millis()}),
        status: EventStatus::Success,
        attempts: Vec::new(),
        next_attempt_at: None,
        delivery_series: 1,
        reason: None,
    }
}

/// Per-trigger stats at `now` under the default lifecycle.
pub async fn stats_at(
    store: &dyn crate::ports::EventStore,
    now: DateTime<Utc>,
) -> Vec<crate::ports::TriggerStats> {
    let l = crate::domain::lifecycle::Lifecycle::default();
    let (active, archived) = (
        crate::domain::lifecycle::EventState::Active,
        crate::domain::lifecycle::EventState::Archived,
    );
    store
        .event_stats(now, l.window(active, now), l.window(archived, now))
        .await
        .expect("stats")
}

/// Records `e` as a plain firing: no dedupe key, no completion, no delivery.
pub async fn put(store: &dyn Store, e: &Event) {
    store
        .record_event(NewEvent {
            event: e.clone(),
            json: None,
            dedupe_key: None,
            complete: None,
            delivery: None,
        })
        .await
        .expect("record event");
}

async fn list_all(store: &dyn Store, mut q: EventQuery) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let page = store.list_events(&q).await.expect("list events");
        assert!(page.items.len() <= q.limit, "page larger than limit");
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

fn query(after: DateTime<Utc>, until: Option<DateTime<Utc>>, limit: usize) -> EventQuery {
    EventQuery {
        window: crate::domain::lifecycle::FiredWindow { after, until },
        now: None,
        trigger_id: None,
        source: None,
        is_test: None,
        limit,
        cursor: None,
    }
}

pub async fn ping_answers(store: &dyn Store) {
    store.ping().await.expect("ping");
}
