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
            trigger_quota_writes_nothing_beyond_it, test_runs_are_kept_listed_and_bounded);
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
    }
}

async fn put(store: &dyn Store, e: &Event) {
    store
        .record_event(NewEvent {
            event: e.clone(),
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
        trigger_id: None,
        source: None,
        is_test: None,
        limit,
        cursor: None,
    }
}

pub async fn trigger_round_trip(store: &dyn Store) {
    let t = trigger("round trip", TriggerKind::Scheduled);
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    assert_eq!(store.get_trigger(&t.id).await.expect("get"), Some(t));
    assert_eq!(store.get_trigger("missing").await.expect("get"), None);
}

pub async fn duplicate_trigger_insert_is_rejected(store: &dyn Store) {
    let t = trigger("dup", TriggerKind::Api);
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    let again = store.insert_trigger(&t, u64::MAX).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists)), "{again:?}");
}

pub async fn replace_checks_the_version(store: &dyn Store) {
    let t = trigger("v", TriggerKind::Scheduled);
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    let paused = t.with_status(TriggerStatus::Paused, t0() + Duration::seconds(1));
    store
        .replace_trigger(&paused, 1)
        .await
        .expect("replace at v1");
    let stale = t.with_status(TriggerStatus::Completed, t0());
    let r = store.replace_trigger(&stale, 1).await;
    assert!(matches!(r, Err(StoreError::VersionConflict)), "{r:?}");
    assert_eq!(store.get_trigger(&t.id).await.expect("get"), Some(paused));
    let r = store
        .replace_trigger(&trigger("ghost", TriggerKind::Api), 1)
        .await;
    assert!(matches!(r, Err(StoreError::VersionConflict)), "{r:?}");
}

pub async fn delete_keeps_events(store: &dyn Store) {
    let t = trigger("gone", TriggerKind::Api);
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    let e = event(Some(&t), EventSource::Api, t0());
    put(store, &e).await;
    assert!(store.delete_trigger(&t.id).await.expect("delete"));
    assert!(!store.delete_trigger(&t.id).await.expect("delete again"));
    assert_eq!(store.get_trigger(&t.id).await.expect("get"), None);
    assert_eq!(store.get_event(&e.id).await.expect("get event"), Some(e));
}

pub async fn triggers_page_and_filter(store: &dyn Store) {
    let mut made = Vec::new();
    for i in 0..5 {
        let kind = if i % 2 == 0 {
            TriggerKind::Scheduled
        } else {
            TriggerKind::Api
        };
        let t = trigger(&format!("t{i}"), kind);
        store.insert_trigger(&t, u64::MAX).await.expect("insert");
        made.push(t);
    }
    let paused = made[0].with_status(TriggerStatus::Paused, t0());
    store.replace_trigger(&paused, 1).await.expect("pause");
    made[0] = paused;
    let mut seen = Vec::new();
    let mut q = TriggerQuery {
        limit: 2,
        ..Default::default()
    };
    loop {
        let page = store.list_triggers(&q).await.expect("list");
        assert!(page.items.len() <= 2);
        seen.extend(page.items);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    let mut ids: Vec<_> = made.iter().map(|t| t.id.clone()).collect();
    ids.sort();
    assert_eq!(
        seen.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        ids,
        "id order, all pages"
    );
    let api = store
        .list_triggers(&TriggerQuery {
            kind: Some(TriggerKind::Api),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list api");
    assert_eq!(api.items.len(), 2);
    assert!(api.items.iter().all(|t| t.kind == TriggerKind::Api));
    let paused = store
        .list_triggers(&TriggerQuery {
            status: Some(TriggerStatus::Paused),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list paused");
    let without_secret = Trigger {
        secret: None,
        ..made[0].clone()
    };
    assert_eq!(
        paused.items,
        vec![without_secret],
        "listings carry no secrets"
    );
    let bad = store
        .list_triggers(&TriggerQuery {
            limit: 2,
            cursor: Some("not a cursor!".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(bad, Err(StoreError::InvalidCursor)), "{bad:?}");
}

pub async fn recording_is_idempotent_per_key(store: &dyn Store) {
    let t = trigger("idem", TriggerKind::Scheduled);
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    let first = event(Some(&t), EventSource::Schedule, t0());
    let second = event(Some(&t), EventSource::Schedule, t0() + Duration::seconds(1));
    let key = Some(format!("schedule:{}:1", t.id));
    let a = store
        .record_event(NewEvent {
            event: first.clone(),
            dedupe_key: key.clone(),
            complete: None,
            delivery: None,
        })
        .await
        .expect("first");
    assert_eq!(a, Recorded::Written(first.clone()));
    let b = store
        .record_event(NewEvent {
            event: second.clone(),
            dedupe_key: key,
            complete: None,
            delivery: None,
        })
        .await
        .expect("second");
    assert_eq!(b, Recorded::Duplicate(first.clone()));
    assert_eq!(store.get_event(&second.id).await.expect("get"), None);
    let all = list_all(store, query(t0() - Duration::hours(1), None, 10)).await;
    assert_eq!(all, vec![first]);
}

pub async fn recording_completes_one_time_triggers(store: &dyn Store) {
    let t = trigger("once", TriggerKind::Scheduled);
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    let e = event(Some(&t), EventSource::Schedule, t0());
    store
        .record_event(NewEvent {
            event: e,
            dedupe_key: None,
            complete: Some((t.id.clone(), t.version)),
            delivery: None,
        })
        .await
        .expect("record");
    let done = store
        .get_trigger(&t.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(done.status, TriggerStatus::Completed);
    assert_eq!(done.version, t.version + 1);
    // A completion based on a stale version leaves a changed trigger alone.
    let u = trigger("edited meanwhile", TriggerKind::Scheduled);
    store.insert_trigger(&u, u64::MAX).await.expect("insert");
    let edited = u.with_status(TriggerStatus::Active, t0());
    store.replace_trigger(&edited, 1).await.expect("edit");
    store
        .record_event(NewEvent {
            event: event(Some(&u), EventSource::Schedule, t0()),
            dedupe_key: None,
            complete: Some((u.id.clone(), 1)),
            delivery: None,
        })
        .await
        .expect("record");
    let still = store
        .get_trigger(&u.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(still.status, TriggerStatus::Active);
}

pub async fn events_list_by_window_newest_first(store: &dyn Store) {
    let t = trigger("window", TriggerKind::Api);
    let now = t0() + Duration::hours(50);
    let l = Lifecycle::default();
    let ages = [0, 60, 7_199, 7_200, 7_201, 172_799, 172_800, 180_000];
    let mut events = Vec::new();
    for age in ages {
        let e = event(Some(&t), EventSource::Api, now - Duration::seconds(age));
        put(store, &e).await;
        events.push(e);
    }
    for state in [EventState::Active, EventState::Archived] {
        let got = list_all(store, query_window(l, state, now, 3)).await;
        let mut want: Vec<_> = events
            .iter()
            .filter(|e| l.state(e.fired_at, now) == Some(state))
            .cloned()
            .collect();
        want.sort_by_key(|e| std::cmp::Reverse(e.fired_at));
        assert_eq!(ids(&got), ids(&want), "{state:?}");
    }
}

fn query_window(l: Lifecycle, state: EventState, now: DateTime<Utc>, limit: usize) -> EventQuery {
    let w = l.window(state, now);
    query(w.after, w.until, limit)
}

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

pub async fn events_page_and_filter(store: &dyn Store) {
    let a = trigger("a", TriggerKind::Api);
    let b = trigger("b", TriggerKind::Scheduled);
    let mut all = Vec::new();
    for i in 0..7 {
        let at = t0() + Duration::seconds(i);
        let (tr, source) = match i % 3 {
            0 => (Some(&a), EventSource::Api),
            1 => (Some(&b), EventSource::Schedule),
            _ => (None, EventSource::ManualTest),
        };
        let e = event(tr, source, at);
        put(store, &e).await;
        all.push(e);
    }
    // Two events in the same millisecond still page without loss or repeats.
    let twin = event(Some(&a), EventSource::Api, t0() + Duration::seconds(6));
    put(store, &twin).await;
    all.push(twin);
    let base = query(t0() - Duration::seconds(1), None, 2);
    let got = list_all(store, base.clone()).await;
    assert_eq!(got.len(), all.len());
    let mut unique = ids(&got);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "no repeats across pages");
    assert!(
        got.windows(2).all(|w| w[0].fired_at >= w[1].fired_at),
        "newest first"
    );
    let only_a = list_all(
        store,
        EventQuery {
            trigger_id: Some(a.id.clone()),
            ..base.clone()
        },
    )
    .await;
    assert_eq!(only_a.len(), 4);
    assert!(
        only_a
            .iter()
            .all(|e| e.trigger_id.as_deref() == Some(a.id.as_str()))
    );
    let tests = list_all(
        store,
        EventQuery {
            is_test: Some(true),
            ..base.clone()
        },
    )
    .await;
    assert_eq!(tests.len(), 2);
    assert!(tests.iter().all(|e| e.is_test && e.trigger_id.is_none()));
    let scheduled = list_all(
        store,
        EventQuery {
            source: Some(EventSource::Schedule),
            ..base.clone()
        },
    )
    .await;
    assert_eq!(scheduled.len(), 2);
    let bad = store
        .list_events(&EventQuery {
            cursor: Some("%%%".into()),
            ..base
        })
        .await;
    assert!(matches!(bad, Err(StoreError::InvalidCursor)), "{bad:?}");
}

pub async fn stats_count_per_trigger_exactly(store: &dyn Store) {
    let a = trigger("stats a", TriggerKind::Api);
    let b = trigger("stats b", TriggerKind::Scheduled);
    // Not on an hour boundary, so both window edges fall inside partial hours.
    let now = t0() + Duration::hours(60) + Duration::minutes(17) + Duration::seconds(23);
    let l = Lifecycle::default();
    let ages_a = [
        1, 3_600, 7_199, 7_200, 7_201, 100_000, 172_799, 172_800, 200_000,
    ];
    // Two firings in the same millisecond (ordered by id), written after an older one.
    let ages_b = [50_000, 10, 10];
    for age in ages_a {
        put(
            store,
            &event(Some(&a), EventSource::Api, now - Duration::seconds(age)),
        )
        .await;
    }
    for age in ages_b {
        put(
            store,
            &event(
                Some(&b),
                EventSource::Schedule,
                now - Duration::seconds(age),
            ),
        )
        .await;
    }
    put(
        store,
        &event(None, EventSource::ManualTest, now - Duration::seconds(5)),
    )
    .await;
    let stats = store
        .event_stats(
            l.window(EventState::Active, now),
            l.window(EventState::Archived, now),
        )
        .await
        .expect("stats");
    let of = |id: Option<&str>| {
        stats
            .iter()
            .find(|s| s.trigger_id.as_deref() == id)
            .cloned()
            .expect("row for trigger")
    };
    let sa = of(Some(&a.id));
    assert_eq!((sa.active, sa.archived), (3, 4), "a: {sa:?}");
    assert_eq!(sa.trigger_name, "stats a");
    assert_eq!(sa.last_fired_at, Some(now - Duration::seconds(1)));
    let sb = of(Some(&b.id));
    assert_eq!((sb.active, sb.archived), (2, 1), "b: {sb:?}");
    let adhoc = of(None);
    assert_eq!((adhoc.active, adhoc.archived), (1, 0));
}

pub async fn purge_deletes_only_expired(store: &dyn Store) {
    let t = trigger("purge", TriggerKind::Api);
    let now = t0() + Duration::hours(100);
    let l = Lifecycle::default();
    let old = event(Some(&t), EventSource::Api, now - Duration::hours(48));
    let older = event(Some(&t), EventSource::Api, now - Duration::hours(70));
    let kept = event(
        Some(&t),
        EventSource::Api,
        now - Duration::hours(48) + Duration::milliseconds(1),
    );
    for e in [&old, &older, &kept] {
        put(store, e).await;
    }
    let n = store
        .purge_events(l.expired_at_or_before(now))
        .await
        .expect("purge");
    assert!(n >= 2, "purged {n}");
    assert_eq!(store.get_event(&old.id).await.expect("get"), None);
    assert_eq!(store.get_event(&older.id).await.expect("get"), None);
    assert_eq!(store.get_event(&kept.id).await.expect("get"), Some(kept));
    let stats = store
        .event_stats(
            l.window(EventState::Active, now),
            l.window(EventState::Archived, now),
        )
        .await
        .expect("stats");
    let row = stats
        .iter()
        .find(|s| s.trigger_id.as_deref() == Some(t.id.as_str()))
        .expect("row");
    assert_eq!((row.active, row.archived), (0, 1));
}

pub async fn ping_answers(store: &dyn Store) {
    store.ping().await.expect("ping");
}

pub async fn secrets_are_kept_with_the_trigger(store: &dyn Store) {
    let t = trigger("secret", TriggerKind::Api);
    assert!(t.secret.is_some());
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    let got = store.get_trigger(&t.id).await.expect("get").expect("found");
    assert_eq!(got.secret, t.secret, "the secret survives a round trip");
    let rotated = got.with_new_secret(t0(), Duration::hours(24));
    store
        .replace_trigger(&rotated, got.version)
        .await
        .expect("rotate");
    let got = store.get_trigger(&t.id).await.expect("get").expect("found");
    assert_eq!(got.secret, rotated.secret);
    assert_ne!(got.secret, t.secret);
}

pub async fn deliveries_record_attempts_once(store: &dyn Store) {
    use crate::domain::delivery::{Attempt, DeliveryPlan};
    use crate::domain::target::{Secret, Target};
    let t = trigger("deliver", TriggerKind::Api);
    let mut e = event(Some(&t), EventSource::Api, t0());
    e.status = EventStatus::Pending;
    e.next_attempt_at = Some(t0());
    let plan = DeliveryPlan {
        target: Target {
            url: "https://example.com/hook".into(),
            headers: Default::default(),
            timeout_ms: Some(1000),
            max_attempts: Some(2),
        },
        secret: Secret::generate(),
    };
    store
        .record_event(NewEvent {
            event: e.clone(),
            dedupe_key: None,
            complete: None,
            delivery: Some(plan.clone()),
        })
        .await
        .expect("record");
    let plain = event(Some(&t), EventSource::Api, t0());
    put(store, &plain).await;
    assert_eq!(
        store.get_delivery(&plain.id).await.expect("get"),
        None,
        "no target, no delivery"
    );
    let (stored, got_plan) = store
        .get_delivery(&e.id)
        .await
        .expect("get")
        .expect("has a delivery");
    assert_eq!((stored.clone(), got_plan), (e.clone(), plan));
    let mut after = stored.clone();
    after.attempts.push(Attempt {
        number: 1,
        at: t0(),
        status_code: Some(503),
        error: None,
        detail: None,
        duration_ms: 12,
        response_body: Some("busy".into()),
    });
    after.next_attempt_at = Some(t0() + Duration::seconds(5));
    store
        .record_attempt(&after, 0)
        .await
        .expect("first attempt");
    assert!(
        matches!(
            store.record_attempt(&after, 0).await,
            Err(StoreError::VersionConflict)
        ),
        "a second writer of the same attempt loses"
    );
    let (now, _) = store
        .get_delivery(&e.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(now, after);
    assert_eq!(
        store.get_event(&e.id).await.expect("get event"),
        Some(after),
        "readers see the attempts"
    );
}

pub async fn trigger_quota_writes_nothing_beyond_it(store: &dyn Store) {
    let a = trigger("first", TriggerKind::Api);
    let b = trigger("second", TriggerKind::Api);
    // Stores shared by a test binary may hold other triggers: count from what is there.
    let before = list_all_triggers(store).await;
    let limit = before + 1;
    store
        .insert_trigger(&a, limit)
        .await
        .expect("under the quota");
    match store.insert_trigger(&b, limit).await {
        Err(StoreError::QuotaExceeded { what, limit: l }) => {
            assert_eq!((what, l), ("triggers", limit));
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert!(
        store.get_trigger(&b.id).await.expect("get").is_none(),
        "nothing half-written"
    );
    assert!(store.delete_trigger(&a.id).await.expect("delete"));
    assert!(!store.delete_trigger(&a.id).await.expect("delete again"));
    store
        .insert_trigger(&b, limit)
        .await
        .expect("a delete frees its place");
}

async fn list_all_triggers(store: &dyn Store) -> u64 {
    let mut n = 0;
    let mut cursor = None;
    loop {
        let page = store
            .list_triggers(&TriggerQuery {
                limit: 200,
                cursor,
                ..Default::default()
            })
            .await
            .expect("list");
        n += page.items.len() as u64;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return n,
        }
    }
}

pub async fn test_runs_are_kept_listed_and_bounded(store: &dyn Store) {
    use crate::domain::target::Secret;
    use crate::domain::test_run::ScheduledTestRun;
    let run = |name: &str| ScheduledTestRun {
        id: new_id(),
        definition: trigger(name, TriggerKind::Scheduled).definition(),
        scheduled_for: t0() + Duration::minutes(5),
        created_at: t0(),
        secret: Some(Secret::generate()),
    };
    let (a, b, c) = (run("a"), run("b"), run("c"));
    store.insert_test_run(&a, 2).await.expect("insert a");
    store.insert_test_run(&b, 2).await.expect("insert b");
    match store.insert_test_run(&c, 2).await {
        Err(StoreError::QuotaExceeded { limit: 2, .. }) => {}
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    let got = store.get_test_run(&a.id).await.expect("get").expect("kept");
    assert_eq!(got, a, "definition, time and secret come back");
    // Id (creation) order; two ids made in one millisecond order at random.
    let (first, second) = if a.id < b.id { (&a, &b) } else { (&b, &a) };
    let page = store.list_test_runs(1, None).await.expect("list");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, first.id);
    assert_eq!(page.items[0].secret, None, "listings carry no secret");
    let next = store
        .list_test_runs(10, page.next_cursor.as_deref())
        .await
        .expect("next page");
    assert_eq!(
        next.items.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&second.id]
    );
    assert!(store.delete_test_run(&a.id).await.expect("delete"));
    assert!(!store.delete_test_run(&a.id).await.expect("delete again"));
    assert!(store.get_test_run(&a.id).await.expect("get").is_none());
    store.insert_test_run(&c, 2).await.expect("room again");
    assert!(store.delete_test_run(&b.id).await.expect("delete b"));
    assert!(store.delete_test_run(&c.id).await.expect("delete c"));
}
