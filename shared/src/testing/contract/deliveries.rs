//! The contract for what is kept beside triggers and events: secrets, delivery attempts and test runs.

use super::*;

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
    // A read of several carries the secrets too, the retiring one with them.
    let together = store.get_triggers(&[&t.id]).await.expect("get several");
    assert_eq!(together, vec![Some(got)]);
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
            pause_after_failures: None,
        },
        secret: Secret::generate(),
    };
    store
        .record_event(NewEvent {
            event: e.clone(),
            json: None,
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
        series: 1,
        at: t0(),
        status_code: Some(503),
        error: None,
        detail: None,
        duration_ms: 12,
        response_body: Some("busy".into()),
    });
    after.next_attempt_at = Some(t0() + Duration::seconds(5));
    // Claims: one holder per attempt until it lapses or the attempt is recorded.
    let lease = t0() + Duration::seconds(11);
    assert!(
        store
            .claim_attempt(&e.id, 0, t0(), lease)
            .await
            .expect("claim")
    );
    assert!(
        !store
            .claim_attempt(&e.id, 0, t0(), lease)
            .await
            .expect("claim"),
        "a second invocation of the same attempt stands down"
    );
    assert!(
        !store
            .claim_attempt(&e.id, 1, t0(), lease)
            .await
            .expect("claim"),
        "an attempt not next is not claimed"
    );
    assert!(
        store
            .claim_attempt(
                &e.id,
                0,
                lease + Duration::seconds(1),
                lease + Duration::seconds(12)
            )
            .await
            .expect("claim"),
        "a lapsed claim (its holder crashed) can be taken over"
    );
    store
        .record_attempt(&after, 0)
        .await
        .expect("first attempt");
    assert!(
        store
            .claim_attempt(&e.id, 1, t0() + Duration::seconds(5), lease)
            .await
            .expect("claim"),
        "recording the attempt ends its claim: the retry is claimable at once"
    );
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

pub async fn redelivery_starts_one_new_series(store: &dyn Store) {
    use crate::domain::delivery::{Attempt, DeliveryPlan};
    use crate::domain::target::{Secret, Target};
    let t = trigger("redeliver", TriggerKind::Api);
    let plan = |url: &str| DeliveryPlan {
        target: Target {
            url: url.into(),
            headers: Default::default(),
            timeout_ms: Some(1000),
            max_attempts: Some(0),
            pause_after_failures: None,
        },
        secret: Secret::generate(),
    };
    let mut e = event(Some(&t), EventSource::Api, t0());
    e.status = EventStatus::Pending;
    e.next_attempt_at = Some(t0());
    store
        .record_event(NewEvent {
            event: e.clone(),
            json: None,
            dedupe_key: None,
            complete: None,
            delivery: Some(plan("https://example.com/old")),
        })
        .await
        .expect("record");
    let again = e.clone().redelivered(t0());
    assert!(
        matches!(
            store
                .redeliver(&again, &plan("https://example.com/new"), 0)
                .await,
            Err(StoreError::VersionConflict)
        ),
        "not while the first series is pending"
    );
    let mut failed = e.clone();
    failed.attempts.push(Attempt {
        number: 1,
        series: 1,
        at: t0(),
        status_code: Some(404),
        error: None,
        detail: None,
        duration_ms: 3,
        response_body: None,
    });
    failed.status = EventStatus::Failure;
    failed.next_attempt_at = None;
    store.record_attempt(&failed, 0).await.expect("attempt");
    let listed = list_all(store, query(t0() - Duration::hours(1), None, 10)).await;
    assert_eq!(listed, vec![failed.clone()], "listings show the outcome");

    let later = t0() + Duration::minutes(1);
    let next = failed.clone().redelivered(later);
    assert_eq!(
        (next.delivery_series, next.status),
        (2, EventStatus::Pending)
    );
    let new_plan = plan("https://example.com/new");
    assert!(
        matches!(
            store.redeliver(&next, &new_plan, 0).await,
            Err(StoreError::VersionConflict)
        ),
        "an attempt recorded since the read wins"
    );
    store
        .redeliver(&next, &new_plan, 1)
        .await
        .expect("redeliver");
    assert_eq!(
        store.get_delivery(&e.id).await.expect("get"),
        Some((next.clone(), new_plan.clone())),
        "the new series, with the new plan"
    );
    assert!(
        matches!(
            store.redeliver(&next, &new_plan, 1).await,
            Err(StoreError::VersionConflict)
        ),
        "one new series per settled outcome"
    );
    assert!(
        store
            .claim_attempt(&e.id, 1, later, later + Duration::seconds(11))
            .await
            .expect("claim"),
        "the new series' first attempt can be claimed"
    );
    // An event recorded without a target can be delivered once its trigger has one.
    let plain = event(Some(&t), EventSource::Api, t0());
    put(store, &plain).await;
    let first = plain.clone().redelivered(later);
    store
        .redeliver(&first, &new_plan, 0)
        .await
        .expect("first delivery");
    assert_eq!(
        store.get_delivery(&plain.id).await.expect("get"),
        Some((first, new_plan))
    );
}
