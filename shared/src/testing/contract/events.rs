//! The contract for events: idempotent recording, lifecycle listings, counts and purging.

use super::*;
use crate::ports::Completion;

pub async fn recording_is_idempotent_per_key(store: &dyn Store) {
    let t = trigger("idem", TriggerKind::Scheduled);
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    let first = event(Some(&t), EventSource::Schedule, t0());
    let second = event(Some(&t), EventSource::Schedule, t0() + Duration::seconds(1));
    let key = Some(format!("schedule:{}:1", t.id));
    let a = store
        .record_event(NewEvent {
            event: first.clone(),
            json: None,
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
            json: None,
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
            json: None,
            dedupe_key: None,
            complete: Some(Completion::of(&t, t0())),
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
            json: None,
            dedupe_key: None,
            complete: Some(Completion::of(&u, t0())),
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
    EventQuery {
        now: Some(now),
        ..query(w.after, w.until, limit)
    }
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
            now,
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
            now,
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

/// `since`/`until` reach the store as a narrower `fired_at` window: exact to the millisecond
/// across hours, with a trigger filter and across pages (what the repair filters rely on).
pub async fn events_list_by_a_narrow_window(store: &dyn Store) {
    let a = trigger("narrow a", TriggerKind::Api);
    let b = trigger("narrow b", TriggerKind::Api);
    let mut all = Vec::new();
    for i in 0..12 {
        // Every 20 minutes: the window spans hour partitions.
        let at = t0() + Duration::minutes(20 * i) + Duration::milliseconds(i);
        let e = event(Some(if i % 2 == 0 { &a } else { &b }), EventSource::Api, at);
        put(store, &e).await;
        all.push(e);
    }
    let (from, to) = (&all[2], &all[9]);
    // [from, to): after = from - 1 ms, until = to - 1 ms, as the app narrows.
    let after = from.fired_at - Duration::milliseconds(1);
    let until = to.fired_at - Duration::milliseconds(1);
    let mut want: Vec<&Event> = all
        .iter()
        .filter(|e| e.fired_at >= from.fired_at && e.fired_at < to.fired_at)
        .collect();
    want.reverse();
    for limit in [1, 3, 50] {
        let got = list_all(store, query(after, Some(until), limit)).await;
        assert_eq!(
            ids(&got),
            want.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            "page size {limit}"
        );
        let only_a = list_all(
            store,
            EventQuery {
                trigger_id: Some(a.id.clone()),
                ..query(after, Some(until), limit)
            },
        )
        .await;
        let want_a: Vec<String> = want
            .iter()
            .filter(|e| e.trigger_id.as_deref() == Some(a.id.as_str()))
            .map(|e| e.id.clone())
            .collect();
        assert_eq!(ids(&only_a), want_a, "one trigger, page size {limit}");
    }
    let empty = list_all(store, query(until, Some(until), 10)).await;
    assert_eq!(empty, Vec::<Event>::new(), "an empty window lists nothing");
}
