//! The occurrences audit on both stores: a pause, a skip, a missed stretch and a restart (a new
//! App over the same store), read back through the App as every runtime does.

use std::sync::Arc;

use chrono::Duration;
use etp::app::App;
use etp::clock::{Clock, ManualClock};
use etp::config::Settings;
use etp::domain::occurrence::{OccurrenceStatus, SkipReason};
use etp::domain::trigger::{TriggerDefinition, TriggerStatus};
use etp::firing::fire_scheduled;
use etp::ports::{Store, TriggerQuery};
use etp::testing::contract::t0;
use etp::testing::{RecordingQueue, RecordingScheduler};
use serde_json::json;

fn app(store: Arc<dyn Store>, clock: Arc<ManualClock>) -> App {
    App::new(
        store,
        Arc::new(RecordingScheduler::default()),
        Arc::new(RecordingQueue::default()),
        clock as Arc<dyn Clock>,
        Settings::default(),
    )
}

async fn pause_skip_miss_and_restart(store: Arc<dyn Store>) {
    let clock = Arc::new(ManualClock::new(t0()));
    let occ = |m: i64| t0() + Duration::minutes(m);
    let first = app(store.clone(), clock.clone());
    let def: TriggerDefinition = serde_json::from_value(json!({"name": "audited",
        "kind": "scheduled", "schedule": {"type": "interval", "every_seconds": 60}}))
    .unwrap();
    let t = first.create_trigger(def).await.unwrap();
    let fire = |m: i64| {
        let store = store.clone();
        let clock = clock.clone();
        let id = t.id.clone();
        async move {
            fire_scheduled(store.as_ref(), clock.as_ref(), &id, occ(m))
                .await
                .unwrap()
        }
    };
    clock.set(occ(1));
    fire(1).await;
    clock.set(occ(1) + Duration::seconds(30));
    let until = occ(3) + Duration::seconds(30);
    first
        .set_paused(&t.id, Some(Some(until)), None)
        .await
        .unwrap();
    // Listed as paused until the end, as active from it.
    let listed = |status, at| {
        let store = store.clone();
        async move {
            store
                .list_triggers(&TriggerQuery {
                    status: Some(status),
                    now: Some(at),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!(
        listed(TriggerStatus::Paused, until - Duration::seconds(1)).await,
        1
    );
    assert_eq!(listed(TriggerStatus::Active, until).await, 1);
    clock.set(occ(4) + Duration::seconds(2));
    fire(4).await;
    first.skip_occurrence(&t.id, occ(5), None).await.unwrap();
    // Down from 5 to 30: a new App over the same store, as after a restart.
    drop(first);
    clock.set(occ(30));
    let second = app(store.clone(), clock.clone());
    fire(30).await;
    let audit = second.occurrences(&t.id, t0(), occ(31), 100).await.unwrap();
    let fates: Vec<_> = audit
        .occurrences
        .iter()
        .map(|o| (o.status, o.reason))
        .collect();
    use OccurrenceStatus::*;
    use SkipReason::*;
    let mut want = vec![
        (Fired, None),
        (Skipped, Some(Paused)),
        (Skipped, Some(Paused)),
        (Fired, None),
        (Skipped, Some(SkippedByUser)),
    ];
    // 6 to 19 lie beyond the 10-minute grace of the catch-up at 30; 20 to 29 were folded in.
    want.extend((6..20).map(|_| (Skipped, Some(MissedBeyondGrace))));
    want.extend((20..30).map(|_| (Skipped, Some(Coalesced))));
    want.push((Fired, None));
    want.push((Upcoming, None));
    assert_eq!(fates, want);
    assert_eq!(audit.occurrences[3].lateness_seconds, Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = etp::embedded::SqliteStore::open(&dir.path().join("etp.sqlite3")).unwrap();
    pause_skip_miss_and_restart(Arc::new(store)).await;
}

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_on_dynamodb() {
    use etp::aws::dynamo::{DynamoStore, Tables};
    let client = etp::testing::moto::dynamo_client();
    let tables = Tables::named("occ", &etp::domain::new_id());
    DynamoStore::create_tables(&client, &tables)
        .await
        .expect("create tables");
    pause_skip_miss_and_restart(Arc::new(DynamoStore::new(client, tables))).await;
}
