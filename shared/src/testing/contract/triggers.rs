//! The contract for triggers: writes, versions, listings and the trigger quota.

use super::*;

pub async fn trigger_round_trip(store: &dyn Store) {
    let t = trigger("round trip", TriggerKind::Scheduled);
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    assert_eq!(
        store.get_trigger(&t.id).await.expect("get"),
        Some(t.clone())
    );
    assert_eq!(store.get_trigger("missing").await.expect("get"), None);
    // Read together (a burst's due triggers): each as alone, in the order asked.
    let u = trigger("round trip too", TriggerKind::Api);
    store.insert_trigger(&u, u64::MAX).await.expect("insert");
    assert_eq!(
        store
            .get_triggers(&[&u.id, "missing", &t.id, &u.id])
            .await
            .expect("get several"),
        vec![Some(u.clone()), None, Some(t), Some(u)]
    );
    assert_eq!(store.get_triggers(&[]).await.expect("get none"), vec![]);
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

/// A pause whose `paused_until` has passed is listed as active from that instant on, by every
/// store, though its stored status says `paused` until a write.
pub async fn a_pause_with_an_end_is_listed_by_its_status_at_now(store: &dyn Store) {
    let t0 = t0();
    let until = t0 + chrono::Duration::minutes(10);
    let held = trigger("held", TriggerKind::Scheduled).paused(t0, Some(until));
    let stopped = trigger("stopped", TriggerKind::Scheduled).paused(t0, None);
    let running = trigger("running", TriggerKind::Scheduled);
    for t in [&held, &stopped, &running] {
        store.insert_trigger(t, 100).await.expect("insert");
    }
    let names = |status, now| async move {
        let page = store
            .list_triggers(&TriggerQuery {
                status: Some(status),
                now: Some(now),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        let mut names: Vec<_> = page.items.into_iter().map(|t| t.name).collect();
        names.sort();
        names
    };
    let before = until - chrono::Duration::milliseconds(1);
    assert_eq!(names(TriggerStatus::Active, before).await, ["running"]);
    assert_eq!(
        names(TriggerStatus::Paused, before).await,
        ["held", "stopped"]
    );
    assert_eq!(
        names(TriggerStatus::Active, until).await,
        ["held", "running"]
    );
    assert_eq!(names(TriggerStatus::Paused, until).await, ["stopped"]);
    let stored = store
        .get_trigger(&held.id)
        .await
        .expect("get")
        .expect("held");
    assert_eq!(stored.paused_until, Some(until));
    assert_eq!(stored.status_at(until), TriggerStatus::Active);
}
