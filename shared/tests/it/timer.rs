//! The local timer driven by a manual clock: due firings, catch-up after downtime, one-time
//! completion, pause, and restarts that keep every job.

use etp::testing::fixtures::t0;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use etp::app::App;
use etp::clock::{Clock, ManualClock};
use etp::config::Settings;
use etp::domain::event::EventSource;
use etp::domain::lifecycle::{EventState, Lifecycle};
use etp::domain::schedule::Schedule;
use etp::domain::trigger::{TriggerDefinition, TriggerKind, TriggerStatus};
use etp::embedded::{LocalTimer, SqliteStore};
use etp::ports::{EventQuery, EventStore};

struct Rig {
    clock: Arc<ManualClock>,
    store: SqliteStore,
    timer: LocalTimer,
    app: App,
    dir: tempfile::TempDir,
}

async fn rig_at(dir: tempfile::TempDir, clock: Arc<ManualClock>) -> Rig {
    let store = SqliteStore::open(&dir.path().join("etp.sqlite3")).unwrap();
    let timer = LocalTimer::open(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(etp::testing::RecordingQueue::default()),
        clock.clone(),
        Duration::minutes(10),
    )
    .await
    .unwrap();
    let app = App::new(
        Arc::new(store.clone()),
        Arc::new(timer.clone()),
        Arc::new(etp::testing::RecordingQueue::default()),
        clock.clone() as Arc<dyn Clock>,
        Settings::default(),
    );
    Rig {
        clock,
        store,
        timer,
        app,
        dir,
    }
}

async fn rig() -> Rig {
    rig_at(
        tempfile::tempdir().unwrap(),
        Arc::new(ManualClock::new(t0())),
    )
    .await
}

fn every(seconds: u64) -> TriggerDefinition {
    TriggerDefinition {
        name: "tick".into(),
        kind: TriggerKind::Scheduled,
        schedule: Some(Schedule::Interval {
            every_seconds: seconds,
            recurring: true,
            start_at: None,
            end_at: None,
        }),
        payload: Some(serde_json::json!({"hello": "world"})),
        payload_schema: None,
        target: None,
    }
}

impl Rig {
    async fn scheduled_for(&self) -> Vec<DateTime<Utc>> {
        let now = self.clock.now();
        let page = self
            .store
            .list_events(&EventQuery {
                window: Lifecycle::default().window(EventState::Active, now),
                now: Some(now),
                trigger_id: None,
                source: Some(EventSource::Schedule),
                is_test: None,
                limit: 200,
                cursor: None,
            })
            .await
            .unwrap();
        let mut times: Vec<_> = page.items.iter().filter_map(|e| e.scheduled_for).collect();
        times.sort();
        times
    }
}

#[tokio::test]
async fn fires_each_occurrence_once_when_due() {
    let r = rig().await;
    let t = r.app.create_trigger(every(60)).await.unwrap();
    assert_eq!(r.timer.due(&t.id), Some(t0() + Duration::seconds(60)));
    r.clock.set(t0() + Duration::seconds(59));
    assert_eq!(r.timer.run_due().await, 0, "nothing early");
    r.clock.set(t0() + Duration::seconds(60));
    assert_eq!(r.timer.run_due().await, 1);
    assert_eq!(r.timer.run_due().await, 0, "an occurrence fires once");
    r.clock.set(t0() + Duration::seconds(120));
    r.timer.run_due().await;
    assert_eq!(
        r.scheduled_for().await,
        vec![t0() + Duration::seconds(60), t0() + Duration::seconds(120)]
    );
    assert_eq!(r.timer.due(&t.id), Some(t0() + Duration::seconds(180)));
}

#[tokio::test]
async fn missed_occurrences_coalesce_into_one_catch_up() {
    let r = rig().await;
    let t = r.app.create_trigger(every(60)).await.unwrap();
    // Down from 10:00 to 10:05:30: five occurrences missed, one catch-up for 10:05.
    r.clock.set(t0() + Duration::seconds(330));
    r.timer.run_due().await;
    assert_eq!(r.scheduled_for().await, vec![t0() + Duration::minutes(5)]);
    assert_eq!(r.timer.due(&t.id), Some(t0() + Duration::minutes(6)));
}

#[tokio::test]
async fn occurrences_older_than_the_grace_window_are_skipped() {
    let r = rig().await;
    let t = r
        .app
        .create_trigger(TriggerDefinition {
            schedule: Some(Schedule::At {
                at: t0() + Duration::minutes(1),
            }),
            ..every(1)
        })
        .await
        .unwrap();
    r.clock.set(t0() + Duration::minutes(30));
    r.timer.run_due().await;
    assert!(
        r.scheduled_for().await.is_empty(),
        "20 minutes late is past the grace"
    );
    assert_eq!(r.timer.due(&t.id), None);
}

#[tokio::test]
async fn one_time_triggers_complete() {
    let r = rig().await;
    let t = r
        .app
        .create_trigger(TriggerDefinition {
            schedule: Some(Schedule::Interval {
                every_seconds: 600,
                recurring: false,
                start_at: None,
                end_at: None,
            }),
            ..every(1)
        })
        .await
        .unwrap();
    r.clock.set(t0() + Duration::minutes(10));
    r.timer.run_due().await;
    let done = r.app.get_trigger(&t.id).await.unwrap();
    assert_eq!(done.status, TriggerStatus::Completed);
    assert_eq!(r.timer.due(&t.id), None);
    assert_eq!(r.scheduled_for().await, vec![t0() + Duration::minutes(10)]);
}

#[tokio::test]
async fn paused_and_deleted_triggers_do_not_fire() {
    let r = rig().await;
    let a = r.app.create_trigger(every(60)).await.unwrap();
    let b = r.app.create_trigger(every(60)).await.unwrap();
    r.app.set_paused(&a.id, Some(None), None).await.unwrap();
    r.app.delete_trigger(&b.id, None).await.unwrap();
    r.clock.set(t0() + Duration::minutes(3));
    r.timer.run_due().await;
    assert!(r.scheduled_for().await.is_empty());
    r.app.set_paused(&a.id, None, None).await.unwrap();
    assert_eq!(r.timer.due(&a.id), Some(t0() + Duration::minutes(4)));
}

#[tokio::test]
async fn a_pause_with_an_end_and_a_skip_move_the_timer() {
    let r = rig().await;
    let a = r.app.create_trigger(every(60)).await.unwrap();
    let until = t0() + Duration::seconds(150);
    r.app
        .set_paused(&a.id, Some(Some(until)), None)
        .await
        .unwrap();
    // Nothing runs to resume it: the job waits for the first occurrence from `until`.
    assert_eq!(r.timer.due(&a.id), Some(t0() + Duration::minutes(3)));
    r.app
        .skip_occurrence(&a.id, t0() + Duration::minutes(3), None)
        .await
        .unwrap();
    assert_eq!(r.timer.due(&a.id), Some(t0() + Duration::minutes(4)));
    r.clock.set(t0() + Duration::minutes(4));
    r.timer.run_due().await;
    assert_eq!(r.scheduled_for().await, vec![t0() + Duration::minutes(4)]);
}

#[tokio::test]
async fn jobs_survive_a_restart_and_fire_once() {
    let r = rig().await;
    let t = r.app.create_trigger(every(60)).await.unwrap();
    r.clock.set(t0() + Duration::seconds(60));
    r.timer.run_due().await;
    let (dir, clock) = (r.dir, r.clock);
    drop((r.timer, r.app, r.store));
    // Reopened two and a half minutes later: the 10:02 and 10:03 occurrences were missed.
    clock.set(t0() + Duration::seconds(210));
    let again = rig_at(dir, clock).await;
    assert_eq!(again.timer.due(&t.id), Some(t0() + Duration::seconds(120)));
    again.timer.run_due().await;
    again.timer.run_due().await;
    assert_eq!(
        again.scheduled_for().await,
        vec![t0() + Duration::seconds(60), t0() + Duration::seconds(180)]
    );
}

#[tokio::test]
async fn test_runs_fire_once_without_a_trigger() {
    let r = rig().await;
    let run = r.app.test_definition(every(30)).await.unwrap();
    let etp::app::TestRunOutcome::Scheduled { scheduled_for, .. } = run else {
        panic!("scheduled definitions fire later");
    };
    r.clock.set(scheduled_for);
    assert_eq!(r.timer.run_due().await, 1);
    r.clock.advance(Duration::minutes(5));
    assert_eq!(r.timer.run_due().await, 0, "once only");
    let events = r
        .app
        .list_events(etp::app::EventFilter {
            state: EventState::Active,
            trigger_id: None,
            source: None,
            is_test: Some(true),
            limit: 10,
            cursor: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1);
    assert_eq!(events.items[0].event.trigger_id, None);
    assert_eq!(events.items[0].event.scheduled_for, Some(scheduled_for));
    assert!(
        r.app
            .list_triggers(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn triggers_without_a_job_get_one_at_start_and_keep_it() {
    use etp::ports::TimerJobs;
    let r = rig().await;
    // More than one page of the start-up scan (500), so the batched write covers several.
    let mut ids = Vec::new();
    for _ in 0..520 {
        ids.push(r.app.create_trigger(every(60)).await.unwrap().id);
    }
    // As after a restore of the triggers alone: the rows are there, their jobs are not.
    for id in &ids {
        r.store
            .delete_timer_job(format!("trigger:{id}"))
            .await
            .unwrap();
    }
    assert!(r.store.timer_jobs().await.unwrap().is_empty());
    let (dir, clock) = (r.dir, r.clock);
    drop((r.timer, r.app, r.store));
    let again = rig_at(dir, clock.clone()).await;
    for id in &ids {
        assert_eq!(again.timer.due(id), Some(t0() + Duration::seconds(60)));
    }
    assert_eq!(again.store.timer_jobs().await.unwrap().len(), ids.len());
    again.clock.set(t0() + Duration::seconds(60));
    assert_eq!(again.timer.run_due().await, ids.len());
}
