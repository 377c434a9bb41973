//! Migrations and the stored body format.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::schema::BODY_FORMAT;
use super::{encode, ms};
use crate::domain::event::{Event, EventSource, EventStatus};
use crate::domain::lifecycle::{EventState, Lifecycle};
use crate::domain::trigger::{Trigger, TriggerKind};
use crate::ports::{EventQuery, EventStore, NewEvent, Recorded};
use crate::testing::contract::stats_at;

fn event(trigger: &str, fired_at: DateTime<Utc>) -> Event {
    Event {
        id: crate::domain::new_id(),
        trigger_id: Some(trigger.into()),
        trigger_name: format!("name of {trigger}"),
        kind: TriggerKind::Api,
        source: EventSource::Api,
        is_test: false,
        scheduled_for: None,
        fired_at,
        payload: serde_json::Value::Null,
        status: EventStatus::Success,
        attempts: Vec::new(),
        next_attempt_at: None,
        delivery_series: 1,
        reason: None,
    }
}

/// `event`, recorded with no dedupe key, completion or delivery.
fn plain(event: Event) -> NewEvent {
    NewEvent {
        event,
        json: None,
        dedupe_key: None,
        complete: None,
        delivery: None,
    }
}

/// Every event in `state` at `now` (default lifecycle), any trigger, a page of 10.
fn all_in(state: EventState, now: DateTime<Utc>) -> EventQuery {
    EventQuery {
        window: Lifecycle::default().window(state, now),
        now: Some(now),
        trigger_id: None,
        source: None,
        is_test: None,
        limit: 10,
        cursor: None,
    }
}

/// A data directory written by the version with per-hour counters opens with exact stats,
/// and new firings count on top of the migrated ranks.
#[tokio::test]
async fn a_database_with_hour_counters_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etp.sqlite3");
    let now = DateTime::parse_from_rfc3339("2026-11-24T12:34:56Z")
        .unwrap()
        .with_timezone(&Utc);
    {
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE events (
                id TEXT PRIMARY KEY, trigger_key TEXT NOT NULL, source TEXT NOT NULL,
                is_test INTEGER NOT NULL, fired_ms INTEGER NOT NULL, dedupe_key TEXT UNIQUE,
                body TEXT NOT NULL);
             CREATE INDEX events_by_time ON events(fired_ms, id);
             CREATE INDEX events_by_trigger ON events(trigger_key, fired_ms, id);
             CREATE TABLE event_counts (
                trigger_key TEXT NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL,
                last_fired_ms INTEGER NOT NULL, trigger_name TEXT NOT NULL,
                PRIMARY KEY (trigger_key, hour)) WITHOUT ROWID;",
        )
        .unwrap();
        // a: one active, two archived, one expired; b: one archived. Written out of order.
        for (key, age_min) in [
            ("a", 30),
            ("a", 3_000),
            ("b", 200),
            ("a", 125),
            ("a", 2_800),
        ] {
            let e = event(key, now - Duration::minutes(age_min));
            old.execute(
                "INSERT INTO events VALUES (?1, ?2, 'api', 0, ?3, NULL, ?4)",
                // Not the current encoding: the migration rewrites it.
                params![
                    e.id,
                    key,
                    ms(e.fired_at),
                    serde_json::to_string_pretty(&e).unwrap()
                ],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    let stats = || async {
        stats_at(&store, now)
            .await
            .into_iter()
            .map(|r| (r.trigger_id.unwrap(), r.active, r.archived))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        stats().await,
        vec![("a".to_string(), 1, 2), ("b".to_string(), 0, 1)]
    );
    store
        .record_event(plain(event("a", now - Duration::seconds(1))))
        .await
        .unwrap();
    assert_eq!(
        stats().await,
        vec![("a".to_string(), 2, 2), ("b".to_string(), 0, 1)]
    );
    drop(store);
    // Opening again does not migrate twice; bodies are served in the current encoding.
    let store = SqliteStore::open(&path).unwrap();
    let page = store
        .list_events_json(&all_in(EventState::Archived, now))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    for item in page.items {
        let event: Event = serde_json::from_str(&item.json).unwrap();
        assert_eq!(item.json, encode(&event).unwrap());
        assert_eq!(item.fired_at, event.fired_at);
    }
    // The old UNIQUE column still dedupes (no second index is added beside it).
    let keyed = |e: Event| NewEvent {
        dedupe_key: Some("a@1".into()),
        ..plain(e)
    };
    let first = store
        .record_event(keyed(event("a", now - Duration::seconds(1))))
        .await
        .unwrap();
    let again = store.record_event(keyed(event("a", now))).await.unwrap();
    assert!(matches!(first, Recorded::Written(_)));
    assert!(matches!(again, Recorded::Duplicate(e) if e.id == first.event().id));
}

/// A tripwire: listings send stored bodies as they are, so when `Event`'s JSON changes,
/// BODY_FORMAT must rise (then [`migrate`] rewrites old bodies) and this test with it.
#[test]
fn body_format_is_current() {
    let mut e = event("a", Utc::now());
    e.scheduled_for = Some(e.fired_at);
    e.next_attempt_at = Some(e.fired_at);
    let keys = |v: serde_json::Value| {
        let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.join(",")
    };
    let trigger: Trigger = serde_json::from_value(serde_json::json!({
        "id": "t", "name": "n", "kind": "scheduled", "status": "active",
        "schedule": {"type": "interval", "every_seconds": 60},
        "payload": {}, "payload_schema": {},
        "target": {"url": "https://example.com/hook", "headers": {"authorization": "Bearer x"}},
        "created_at": "2026-11-24T10:00:00Z", "updated_at": "2026-11-24T10:00:00Z",
        "version": 1
    }))
    .unwrap();
    assert_eq!(
        (
            BODY_FORMAT,
            keys(serde_json::to_value(&e).unwrap()),
            keys(serde_json::to_value(&trigger).unwrap()),
            keys(serde_json::to_value(&trigger).unwrap()["target"].clone()),
        ),
        (
            2,
            "attempts,fired_at,id,is_test,kind,next_attempt_at,payload,scheduled_for,source,\
             status,trigger_id,trigger_name"
                .to_string(),
            "created_at,id,kind,name,payload,payload_schema,schedule,status,target,updated_at,\
             version"
                .to_string(),
            // Header values are write-only: the body (and so every listing) has names only.
            "header_names,url".to_string(),
        )
    );
}

/// Every way a trigger row changes moves the count readers cache views under, and only those
/// do (an event written alone moves the other count).
#[tokio::test]
async fn every_trigger_write_moves_the_trigger_write_count() {
    use crate::domain::trigger::{TriggerDefinition, TriggerStatus};
    use crate::ports::{TimerJobs, TriggerStore};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("etp.sqlite3")).unwrap();
    let now = Utc::now();
    let def: TriggerDefinition = serde_json::from_value(serde_json::json!({
        "name": "api", "kind": "api", "payload_schema": {"type": "object"}}))
    .unwrap();
    let t = Trigger::create(def, crate::domain::new_id(), now);
    let count = || store.trigger_writes().unwrap();
    let mut seen = count();
    let mut moved = |what: &str| {
        let n = count();
        assert!(n > seen, "{what} did not move the trigger write count");
        seen = n;
    };
    store.insert_trigger(&t, 10).await.unwrap();
    moved("insert");
    let paused = t.with_status(TriggerStatus::Paused, now);
    store.replace_trigger(&paused, t.version).await.unwrap();
    moved("replace");
    store
        .quarantine_trigger(paused.clone(), "test".into())
        .await
        .unwrap();
    moved("quarantine");
    let events = store.event_writes().unwrap();
    let before = count();
    store.record_event(plain(event(&t.id, now))).await.unwrap();
    assert_eq!(
        count(),
        before,
        "an event alone leaves triggers as they were"
    );
    assert!(store.event_writes().unwrap() > events);
    store.delete_trigger(&t.id).await.unwrap();
    assert!(
        count() > before,
        "delete did not move the trigger write count"
    );
}

/// A process killed after acknowledging firings from the intake log and before committing
/// them: the next start records each once; unreadable lines (a torn last line, damage) are
/// skipped and their segment kept aside, and they stop nothing.
#[tokio::test]
async fn a_restart_records_logged_firings_that_never_committed() {
    use super::intake::IntakeRecord;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etp.sqlite3");
    let now = Utc::now();
    let committed = event("a", now - Duration::seconds(3));
    let (lost, also_lost) = (
        event("a", now - Duration::seconds(2)),
        event("b", now - Duration::seconds(1)),
    );
    {
        let store = SqliteStore::open(&path).unwrap();
        store.record_event(plain(committed.clone())).await.unwrap();
    }
    let intake = dir.path().join("etp.intake");
    let line = |e: &Event| {
        let mut l = serde_json::to_vec(&IntakeRecord {
            event: e,
            delivery: &None::<crate::domain::delivery::DeliveryPlan>,
        })
        .unwrap();
        l.push(b'\n');
        l
    };
    // The committed one is logged too (its segment was not deleted yet), then the two lost
    // ones; a damaged line sits between them and the last line is cut short.
    let mut segment = line(&committed);
    segment.extend(line(&lost));
    segment.extend(b"{\"event\": 42}\n");
    segment.extend(line(&also_lost));
    let torn = line(&event("c", now));
    segment.extend(&torn[..torn.len() / 2]);
    std::fs::write(intake.join("000000000007.log"), &segment).unwrap();

    let store = SqliteStore::open(&path).unwrap();
    for e in [&committed, &lost, &also_lost] {
        assert_eq!(store.get_event(&e.id).await.unwrap().as_ref(), Some(e));
    }
    let page = |store: SqliteStore| async move {
        let query = all_in(EventState::Active, now);
        store.list_events(&query).await.unwrap().items.len()
    };
    assert_eq!(page(store.clone()).await, 3, "each recorded once");
    let kept_aside = std::fs::read_dir(&intake)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("000000000007.") && n.ends_with(".rejected"))
        .count();
    assert_eq!(kept_aside, 1, "the damaged segment is kept aside");
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(page(store).await, 3, "a second start records nothing again");
}

/// The segment a killed process had open is its full preallocated size, zeros after the last
/// line: the next start records its lines and keeps nothing aside.
#[tokio::test]
async fn a_segment_left_open_by_a_killed_process_replays_cleanly() {
    use super::intake::IntakeRecord;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etp.sqlite3");
    drop(SqliteStore::open(&path).unwrap());
    let now = Utc::now();
    let logged = [event("a", now - Duration::seconds(1)), event("b", now)];
    let mut segment = Vec::new();
    for e in &logged {
        segment.extend(
            serde_json::to_vec(&IntakeRecord {
                event: e,
                delivery: &None::<crate::domain::delivery::DeliveryPlan>,
            })
            .unwrap(),
        );
        segment.push(b'\n');
    }
    segment.resize(1 << 20, 0);
    let intake = dir.path().join("etp.intake");
    std::fs::write(intake.join("000000000003.log"), &segment).unwrap();

    let store = SqliteStore::open(&path).unwrap();
    for e in &logged {
        assert_eq!(store.get_event(&e.id).await.unwrap().as_ref(), Some(e));
    }
    let left: Vec<String> = std::fs::read_dir(&intake)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(
        left.iter()
            .all(|n| !n.contains("rejected") && !n.starts_with("000000000003.")),
        "replayed and removed, nothing kept aside: {left:?}"
    );
}

/// Lines fill one segment after another (a line larger than a segment gets one of its own
/// size); segments whose lines have committed are deleted, and every firing is recorded once.
#[tokio::test]
async fn logged_firings_span_segments_and_committed_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etp.sqlite3");
    let store = SqliteStore::open(&path).unwrap();
    let intake = dir.path().join("etp.intake");
    let files = || std::fs::read_dir(&intake).unwrap().count();
    assert_eq!(files(), 0, "no segment before the first firing");
    let now = Utc::now();
    let mut ids = Vec::new();
    for i in 0..40 {
        let mut e = event("a", now);
        // 100 KB each, and one of 1.5 MiB: more than a segment holds.
        let size = if i == 20 { 3 << 19 } else { 100_000 };
        e.payload = serde_json::json!({ "fill": "x".repeat(size) });
        ids.push(e.id.clone());
        store.record_event(plain(e)).await.unwrap();
    }
    for id in &ids {
        assert!(
            store.get_event(id).await.unwrap().is_some(),
            "{id} recorded"
        );
    }
    // Closed segments are deleted when the next one opens, once their lines have committed
    // (the reads above waited for that). Five were taken (ten lines a segment, and one of its
    // own), some perhaps deleted already; a line larger than the last one's room opens the
    // sixth and leaves it alone.
    let mut e = event("a", now);
    e.payload = serde_json::json!({ "fill": "x".repeat(300_000) });
    store.record_event(plain(e)).await.unwrap();
    assert_eq!(files(), 1, "committed segments deleted");
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    let page = store
        .list_events(&EventQuery {
            limit: 200,
            ..all_in(EventState::Active, now)
        })
        .await
        .unwrap();
    assert_eq!(
        page.items.len(),
        41,
        "each recorded once, after a restart too"
    );
}

/// A logged firing is acknowledged before its commit, yet every read after the answer sees it.
#[tokio::test]
async fn reads_after_an_acknowledged_firing_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("etp.sqlite3")).unwrap();
    let now = Utc::now();
    let before = store.event_writes().unwrap();
    for i in 0..500 {
        let e = event(if i % 2 == 0 { "a" } else { "b" }, now);
        store.record_event(plain(e.clone())).await.unwrap();
        assert_eq!(store.get_event(&e.id).await.unwrap(), Some(e));
    }
    assert_eq!(store.event_writes().unwrap(), before + 500);
    let active: u64 = stats_at(&store, now).await.iter().map(|s| s.active).sum();
    assert_eq!(active, 500);
}

/// A logged firing whose transaction fails (here: an id already taken) holds up no reader:
/// reads after it answer, and see what did commit.
#[tokio::test]
async fn a_logged_firing_that_fails_to_commit_stalls_no_reader() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("etp.sqlite3")).unwrap();
    let e = event("a", Utc::now());
    store.record_event(plain(e.clone())).await.unwrap();
    store.record_event(plain(e.clone())).await.unwrap();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), store.get_event(&e.id));
    assert_eq!(read.await.expect("answered").unwrap(), Some(e));
}

/// A firing that fails after its event row is in (no savepoint to undo it alone) leaves
/// nothing half-written: its batch is rolled back, the caller hears of it, and the writer goes
/// on. A keyed firing takes the same path.
#[tokio::test]
async fn a_firing_that_fails_part_way_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etp.sqlite3");
    let store = SqliteStore::open(&path).unwrap();
    // The totals row comes after the event's insert: refused for trigger "boom" only.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON trigger_event_totals
             WHEN NEW.trigger_name = 'name of boom' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let now = Utc::now();
    let bad = event("boom", now);
    let keyed = NewEvent {
        dedupe_key: Some("boom@1".into()),
        ..plain(bad.clone())
    };
    assert!(store.record_event(keyed).await.is_err());
    assert!(
        store.record_event(plain(bad.clone())).await.is_ok(),
        "acknowledged from the log"
    );
    // A read waits until the logged firing's batch is done: a write queued with it would be
    // rolled back with it.
    assert_eq!(store.get_event(&bad.id).await.unwrap(), None);
    let good = event("fine", now);
    store.record_event(plain(good.clone())).await.unwrap();
    assert_eq!(store.get_event(&good.id).await.unwrap(), Some(good));
    let stats = stats_at(&store, now).await;
    assert_eq!(stats.len(), 1, "no totals for the failed firing: {stats:?}");
    assert_eq!(stats[0].active, 1);
}

/// Writes that arrive one at a time are no backlog: the writer checkpoints at its usual
/// threshold, so the write-ahead log stays a few MiB however many commits there are (here
/// about 60 MiB of log frames in all).
#[tokio::test]
async fn the_log_stays_small_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etp.sqlite3");
    let store = SqliteStore::open(&path).unwrap();
    let now = Utc::now();
    for i in 0..3_000 {
        let mut e = event(&format!("t{}", i % 50), now);
        e.payload = serde_json::json!("x".repeat(2_000));
        let new = NewEvent {
            dedupe_key: Some(format!("k{i}")),
            ..plain(e)
        };
        store.record_event(new).await.unwrap();
    }
    let wal = std::fs::metadata(path.with_extension("sqlite3-wal"))
        .unwrap()
        .len();
    // A third of what was written, so the log started over more than once. Not the threshold
    // itself: on a loaded machine the writer's checkpoint can find the checkpoint thread's still
    // running and skip, and the log then grows until the next one (it passed 8 MiB once in
    // four runs of the whole suite at once).
    assert!(wal <= 20 << 20, "write-ahead log grew to {wal} bytes");
}

/// A backlog raises the writer's checkpoint threshold and its end lowers it again.
#[test]
fn a_backlog_defers_the_writers_checkpoints() {
    let conn = Connection::open_in_memory().unwrap();
    let threshold = |c: &Connection| -> i64 {
        c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap()
    };
    let limit = |c: &Connection| -> i64 {
        c.query_row("PRAGMA journal_size_limit", [], |r| r.get(0))
            .unwrap()
    };
    let mut backlog = false;
    super::threads::checkpoint_for(&conn, true, &mut backlog);
    assert!(backlog);
    assert_eq!(
        threshold(&conn),
        i64::from(super::threads::BACKLOG_CHECKPOINT_PAGES)
    );
    assert_eq!(limit(&conn), -1, "a backlog keeps the log's size");
    super::threads::checkpoint_for(&conn, false, &mut backlog);
    assert!(!backlog);
    assert_eq!(threshold(&conn), i64::from(super::WRITER_CHECKPOINT_PAGES));
    assert_eq!(limit(&conn), super::threads::LOG_SIZE_LIMIT);
}

/// A log that grew past its limit (here a long read held it open while about 30 MiB of
/// firings were written) shrinks back to the limit when it next starts over, instead of
/// keeping its largest size on disk for good.
#[tokio::test]
async fn a_grown_log_gives_its_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etp.sqlite3");
    let wal = path.with_extension("sqlite3-wal");
    let store = SqliteStore::open(&path).unwrap();
    let now = Utc::now();
    let mut n = 0;
    let mut record = async || {
        let mut e = event(&format!("t{}", n % 50), now);
        e.payload = serde_json::json!("x".repeat(2_000));
        n += 1;
        // A keyed firing waits for its commit, so the log's size is known after each.
        let new = NewEvent {
            dedupe_key: Some(format!("k{n}")),
            ..plain(e)
        };
        store.record_event(new).await.unwrap();
    };
    record().await;
    let reader = Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN;").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    for _ in 0..1_500 {
        record().await;
    }
    let grown = std::fs::metadata(&wal).unwrap().len();
    assert!(
        grown > super::threads::LOG_SIZE_LIMIT as u64,
        "the held log grew to {grown} bytes only"
    );
    reader.execute_batch("COMMIT;").unwrap();
    drop(reader);
    for _ in 0..3_000 {
        record().await;
        if std::fs::metadata(&wal).unwrap().len() <= super::threads::LOG_SIZE_LIMIT as u64 {
            return;
        }
    }
    panic!(
        "the log kept {} bytes",
        std::fs::metadata(&wal).unwrap().len()
    );
}

/// A firing's log line is spliced from its encoded event and plan: it must be the very line
/// serde writes for the record, which is what a restart reads back.
#[test]
fn an_intake_line_is_the_records_json() {
    use super::intake::{IntakeRecord, intake_line};
    use crate::domain::delivery::DeliveryPlan;
    use crate::domain::target::{Secret, Target};
    let plan = DeliveryPlan {
        target: Target {
            url: "https://example.com/hook?q=\"x\"".into(),
            headers: Default::default(),
            timeout_ms: Some(1000),
            max_attempts: Some(2),
            pause_after_failures: None,
        },
        secret: Secret::generate(),
    };
    let mut e = event("a", Utc::now());
    e.payload = serde_json::json!({"quote": "\"", "line": "a\nb"});
    for delivery in [None, Some(plan)] {
        let mut expected = serde_json::to_vec(&IntakeRecord {
            event: &e,
            delivery: &delivery,
        })
        .unwrap();
        expected.push(b'\n');
        let plan_json = delivery.as_ref().map(|p| encode(p).unwrap());
        let line = intake_line(&encode(&e).unwrap(), plan_json.as_deref());
        assert_eq!(
            String::from_utf8(line).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }
}

/// Acknowledged firings that nobody reads are held back only briefly for company: they commit
/// on their own, and another connection sees them.
#[tokio::test]
async fn acknowledged_firings_commit_without_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etp.sqlite3");
    let store = SqliteStore::open(&path).unwrap();
    for _ in 0..100 {
        store
            .record_event(plain(event("a", Utc::now())))
            .await
            .unwrap();
    }
    let outside = Connection::open(&path).unwrap();
    let count = || -> i64 {
        outside
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while count() < 100 {
        assert!(std::time::Instant::now() < deadline, "never committed");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Firings in the same millisecond take their ranks in id order whichever commits first, also
/// over a totals row from a version that did not keep the last event's id.
#[tokio::test]
async fn same_millisecond_firings_rank_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etp.sqlite3");
    let store = SqliteStore::open(&path).unwrap();
    let at = Utc::now() - Duration::minutes(5);
    let record = |id: &'static str| {
        let store = &store;
        async move {
            let e = Event {
                id: id.into(),
                ..event("k", at)
            };
            store.record_event(plain(e)).await.unwrap();
            // Settles the intake log: every acknowledged firing has committed.
            store
                .list_events_json(&all_in(EventState::Active, Utc::now()))
                .await
                .unwrap();
        }
    };
    let ranks = || {
        Connection::open(&path)
            .unwrap()
            .prepare("SELECT id, seq FROM events ORDER BY fired_ms, id")
            .unwrap()
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
    };
    let in_order = |ranks: Vec<(String, i64)>| {
        ranks
            .iter()
            .enumerate()
            .all(|(i, (_, seq))| *seq == i as i64 + 1)
    };
    for id in ["e2", "e3", "e1", "e4"] {
        record(id).await;
    }
    assert!(in_order(ranks()), "{:?}", ranks());
    // A totals row as an earlier version left it: the last id is not known.
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE trigger_event_totals SET last_id = NULL", [])
        .unwrap();
    for id in ["e0", "e6", "e5"] {
        record(id).await;
    }
    let ranks = ranks();
    assert_eq!(ranks.len(), 7);
    assert!(in_order(ranks.clone()), "{ranks:?}");
    let stats = stats_at(&store, Utc::now());
    assert_eq!(
        stats
            .await
            .into_iter()
            .map(|r| (r.active, r.archived))
            .collect::<Vec<_>>(),
        vec![(7, 0)]
    );
}
