//! The store contract suite on the DynamoDB adapter against moto, plus the adapter's own promises.

#![cfg(feature = "aws")]

use aws_sdk_dynamodb::types::{KeyType, ProjectionType, TimeToLiveStatus};
use chrono::Duration;
use etp::aws::dynamo::{DynamoStore, Tables};
use etp::domain::event::EventSource;
use etp::domain::trigger::{TriggerKind, TriggerStatus};
use etp::ports::{Completion, EventStore, NewEvent, Recorded, TriggerStore};
use etp::testing::contract::{event, t0, trigger};
use etp::testing::moto;

/// Fresh, uniquely named tables per test, so tests run in parallel on one moto server.
fn unique_tables() -> Tables {
    let suffix = etp::domain::new_id();
    Tables::named("etp", &suffix)
}

async fn dynamo_with(client: aws_sdk_dynamodb::Client) -> (DynamoStore, Tables) {
    let tables = unique_tables();
    DynamoStore::create_tables(&client, &tables)
        .await
        .expect("create tables");
    (DynamoStore::new(client, tables.clone()), tables)
}

async fn dynamo() -> (DynamoStore, Tables) {
    dynamo_with(moto::dynamo_client()).await
}

etp::store_contract_tests!(dynamo());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_costs_at_most_two_writes() {
    let (client, calls) = moto::counting_dynamo_client();
    let (store, _tables) = dynamo_with(client).await;
    let t = trigger("once", TriggerKind::Scheduled);
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    calls.take();

    let first = event(Some(&t), EventSource::Schedule, t0());
    let key = Some(format!("schedule:{}:1", t.id));
    let written = store
        .record_event(NewEvent {
            event: first.clone(),
            json: None,
            dedupe_key: key.clone(),
            complete: Some(Completion::of(&t, t0())),
            delivery: None,
        })
        .await
        .expect("record");
    assert_eq!(written, Recorded::Written(first.clone()));
    assert_eq!(calls.take(), ["TransactWriteItems", "UpdateItem"]);

    let plain = event(Some(&t), EventSource::Api, t0());
    store
        .record_event(NewEvent {
            event: plain,
            json: None,
            dedupe_key: None,
            complete: None,
            delivery: None,
        })
        .await
        .expect("record");
    assert_eq!(calls.take(), ["TransactWriteItems"]);

    let again = event(Some(&t), EventSource::Schedule, t0() + Duration::seconds(1));
    let dup = store
        .record_event(NewEvent {
            event: again,
            json: None,
            dedupe_key: key,
            complete: None,
            delivery: None,
        })
        .await
        .expect("record again");
    assert_eq!(dup, Recorded::Duplicate(first));
    // Moto, like AWS, returns the marker in the cancellation reasons: no read back needed.
    assert_eq!(calls.take(), ["TransactWriteItems"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_finishes_an_interrupted_completion() {
    let (store, _tables) = dynamo().await;
    let t = trigger("once", TriggerKind::Scheduled);
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    let key = Some(format!("schedule:{}:1", t.id));
    let first = event(Some(&t), EventSource::Schedule, t0());
    // The first delivery wrote the event but stopped before completing the trigger.
    store
        .record_event(NewEvent {
            event: first.clone(),
            json: None,
            dedupe_key: key.clone(),
            complete: None,
            delivery: None,
        })
        .await
        .expect("record");
    let redelivered = store
        .record_event(NewEvent {
            event: event(Some(&t), EventSource::Schedule, t0()),
            json: None,
            dedupe_key: key,
            complete: Some(Completion::of(&t, t0())),
            delivery: None,
        })
        .await
        .expect("record again");
    assert_eq!(redelivered, Recorded::Duplicate(first));
    let done = store
        .get_trigger(&t.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(done.status, TriggerStatus::Completed);
    assert_eq!(done.version, t.version + 1);
    assert_eq!(done.updated_at, t0());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_match_the_template() {
    let client = moto::dynamo_client();
    let (_store, tables) = dynamo_with(client.clone()).await;
    let describe = |name: String| {
        let client = client.clone();
        async move {
            client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .expect("describe")
                .table
                .expect("table")
        }
    };
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        schema
            .iter()
            .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
            .collect::<Vec<_>>()
    };
    let key = |name: &str, t: KeyType| (name.to_string(), t);

    let triggers = describe(tables.triggers.clone()).await;
    assert_eq!(keys(triggers.key_schema()), [key("pk", KeyType::Hash)]);
    let by_id = &triggers.global_secondary_indexes()[0];
    assert_eq!(by_id.index_name(), Some("by_id"));
    assert_eq!(
        keys(by_id.key_schema()),
        [key("list_pk", KeyType::Hash), key("pk", KeyType::Range)]
    );

    let events = describe(tables.events.clone()).await;
    assert_eq!(
        keys(events.key_schema()),
        [key("pk", KeyType::Hash), key("sk", KeyType::Range)]
    );
    let mut indexes: Vec<_> = events
        .global_secondary_indexes()
        .iter()
        .map(|i| {
            assert_eq!(
                i.projection().and_then(|p| p.projection_type()),
                Some(&ProjectionType::All)
            );
            (
                i.index_name().unwrap_or_default().to_string(),
                keys(i.key_schema()),
            )
        })
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        [
            (
                "by_trigger".to_string(),
                vec![
                    key("trigger_key", KeyType::Hash),
                    key("lc_sk", KeyType::Range)
                ]
            ),
            (
                "lifecycle".to_string(),
                vec![key("lc_pk", KeyType::Hash), key("lc_sk", KeyType::Range)]
            ),
        ]
    );
    let mut types: Vec<_> = events
        .attribute_definitions()
        .iter()
        .map(|a| {
            (
                a.attribute_name().to_string(),
                a.attribute_type().as_str().to_string(),
            )
        })
        .collect();
    types.sort();
    assert!(types.iter().all(|(_, t)| t == "S"), "{types:?}");

    let stats = describe(tables.stats.clone()).await;
    assert_eq!(
        keys(stats.key_schema()),
        [key("pk", KeyType::Hash), key("sk", KeyType::Range)]
    );
    assert!(stats.global_secondary_indexes().is_empty());

    for table in [&tables.events, &tables.stats] {
        let ttl = client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .expect("describe ttl")
            .time_to_live_description
            .expect("ttl");
        assert_eq!(ttl.attribute_name(), Some("expires_at"));
        assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    }
}

/// Many events over every window edge, compared page by page (cursors included) and in stats
/// with the SQLite adapter, which keeps everything in one indexed table: the reference.
#[cfg(feature = "embedded")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_and_stats_match_the_sqlite_adapter() {
    use etp::domain::event::Event;
    use etp::domain::lifecycle::{EventState, Lifecycle};
    use etp::ports::{EventQuery, Store};

    let (dynamo, _tables) = dynamo().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = etp::embedded::SqliteStore::open(&dir.path().join("etp.sqlite3")).expect("open");
    let a = trigger("a", TriggerKind::Api);
    let b = trigger("b", TriggerKind::Scheduled);
    let now = t0() + Duration::hours(60) + Duration::minutes(17) + Duration::milliseconds(2_345);
    // A fixed linear congruential sequence: varied, but the same on every run.
    let mut seed = 0x2545_f491_u64;
    let mut next = |m: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % m
    };
    let mut events: Vec<Event> = Vec::new();
    for i in 0..100 {
        let age_ms = next(52 * 3_600_000) as i64;
        let (tr, source) = match next(4) {
            0 | 1 => (Some(&a), EventSource::Api),
            2 => (Some(&b), EventSource::Schedule),
            _ => (None, EventSource::ManualTest),
        };
        let mut e = event(tr, source, now - Duration::milliseconds(age_ms));
        if i % 17 == 0
            && let Some(prev) = events.last()
        {
            e.fired_at = prev.fired_at; // same millisecond as another event
        }
        events.push(e);
    }
    for store in [&dynamo as &dyn Store, &sqlite] {
        for e in &events {
            etp::testing::contract::put(store, e).await;
        }
    }
    let l = Lifecycle::default();
    let mut total_pages = 0;
    // Filters: 0 none, 1 trigger a, 2 source, 3 tests only, 4 no tests. Small pages where the
    // window is small; moto answers the fan-out of sparse pages one query at a time.
    let cases = [
        (EventState::Active, [(0, 2), (1, 3), (2, 1), (3, 2), (4, 3)]),
        (
            EventState::Archived,
            [(0, 12), (1, 6), (2, 10), (3, 5), (4, 45)],
        ),
    ];
    for (state, filters) in cases {
        for (filter, limit) in filters {
            let mut q = EventQuery {
                window: l.window(state, now),
                // Half of the cases as of a clock, half finding the newest hour themselves.
                now: (limit % 2 == 0).then_some(now),
                trigger_id: (filter == 1).then(|| a.id.clone()),
                source: (filter == 2).then_some(EventSource::Schedule),
                is_test: match filter {
                    3 => Some(true),
                    4 => Some(false),
                    _ => None,
                },
                limit,
                cursor: None,
            };
            let mut pages = 0;
            loop {
                let want = sqlite.list_events(&q).await.expect("sqlite list");
                let got = dynamo.list_events(&q).await.expect("dynamo list");
                assert_eq!(
                    got, want,
                    "{state:?}, filter {filter}, limit {limit}, page {pages}"
                );
                pages += 1;
                match want.next_cursor {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
            total_pages += pages;
        }
    }
    assert!(
        total_pages > 25,
        "cursors were exercised: {total_pages} pages"
    );
    let (act, arch) = (
        l.window(EventState::Active, now),
        l.window(EventState::Archived, now),
    );
    same_stats(&dynamo, &sqlite, now, act, arch).await;
    let cutoff = l.expired_at_or_before(now);
    let purged = dynamo.purge_events(cutoff).await.expect("dynamo purge");
    assert_eq!(
        purged,
        sqlite.purge_events(cutoff).await.expect("sqlite purge")
    );
    assert!(purged > 0, "some events were old enough to purge");
    for e in &events {
        assert_eq!(
            dynamo.get_event(&e.id).await.expect("get").is_some(),
            e.fired_at > cutoff,
            "{e:?}"
        );
    }
    same_stats(&dynamo, &sqlite, now, act, arch).await;
}

/// Equal stats, except that `last_fired_at` is last-writer-wins per counter item: with writes
/// out of `fired_at` order (this test writes in random order; firings write at their own
/// `fired_at`, so barely) it may be older than the newest event, never newer.
#[cfg(feature = "embedded")]
async fn same_stats(
    dynamo: &DynamoStore,
    sqlite: &etp::embedded::SqliteStore,
    now: chrono::DateTime<chrono::Utc>,
    active: etp::domain::lifecycle::FiredWindow,
    archived: etp::domain::lifecycle::FiredWindow,
) {
    let got = dynamo
        .event_stats(now, active, archived)
        .await
        .expect("dynamo stats");
    let want = sqlite
        .event_stats(now, active, archived)
        .await
        .expect("sqlite stats");
    assert_eq!(got.len(), want.len(), "{got:?}\n{want:?}");
    for (g, w) in got.iter().zip(&want) {
        assert!(g.last_fired_at <= w.last_fired_at, "{g:?}\n{w:?}");
        let g = etp::ports::TriggerStats {
            last_fired_at: w.last_fired_at,
            ..g.clone()
        };
        assert_eq!(&g, w);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_table_lists_nothing() {
    use etp::domain::lifecycle::{EventState, Lifecycle};
    use etp::ports::EventQuery;

    let (store, _tables) = dynamo().await;
    let l = Lifecycle::default();
    for state in [EventState::Active, EventState::Archived] {
        let page = store
            .list_events(&EventQuery {
                window: l.window(state, t0()),
                now: Some(t0()),
                trigger_id: None,
                source: None,
                is_test: None,
                limit: 10,
                cursor: None,
            })
            .await
            .expect("list");
        assert!(page.items.is_empty() && page.next_cursor.is_none());
    }
    let (act, arch) = (
        l.window(EventState::Active, t0()),
        l.window(EventState::Archived, t0()),
    );
    assert!(
        store
            .event_stats(t0(), act, arch)
            .await
            .expect("stats")
            .is_empty()
    );
    assert_eq!(store.purge_events(t0()).await.expect("purge"), 0);
}

/// Trigger writes spread over the listing's shards, and a trigger written before sharding
/// (under the old single key) is still listed, in id order with the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_listing_is_sharded_and_keeps_older_items() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use etp::ports::TriggerQuery;

    let client = moto::dynamo_client();
    let (store, tables) = dynamo_with(client.clone()).await;
    let mut ids = Vec::new();
    for n in 0..12 {
        let t = trigger(&format!("t{n}"), TriggerKind::Scheduled);
        store.insert_trigger(&t, u64::MAX).await.expect("insert");
        ids.push(t.id);
    }
    // One item as an older version wrote it: its listing key is the single "trigger".
    let old = client
        .get_item()
        .table_name(&tables.triggers)
        .key("pk", AttributeValue::S(ids[5].clone()))
        .send()
        .await
        .expect("get")
        .item
        .expect("item");
    let mut legacy = old.clone();
    legacy.insert("list_pk".into(), AttributeValue::S("trigger".into()));
    client
        .put_item()
        .table_name(&tables.triggers)
        .set_item(Some(legacy))
        .send()
        .await
        .expect("put the old-layout item");

    let scanned = client
        .scan()
        .table_name(&tables.triggers)
        .send()
        .await
        .expect("scan (test only)");
    let keys: std::collections::HashSet<String> = scanned
        .items()
        .iter()
        .filter_map(|i| i.get("list_pk").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    assert!(keys.len() >= 3, "writes spread over shards: {keys:?}");

    // Pages of 5 walk every id once, in order, the old-layout one included.
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_triggers(&TriggerQuery {
                limit: 5,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .expect("list");
        listed.extend(page.items.into_iter().map(|t| t.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
}

/// What one scheduled firing and one delivery attempt cost in write units, from the sizes of
/// the items the adapter actually wrote (moto reports no consumed capacity): the figures the
/// README's cost table is derived from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_units_of_a_firing_follow_from_its_item_sizes() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use etp::domain::delivery::DeliveryPlan;
    use etp::domain::target::{Secret, Target};
    use etp::testing::capacity::{index_write_units, item_size, write_units};

    let client = moto::dynamo_client();
    let (store, tables) = dynamo_with(client.clone()).await;
    let raw = |pk: String, sk: &str| {
        let client = client.clone();
        let table = tables.events.clone();
        let sk = sk.to_string();
        async move {
            client
                .get_item()
                .table_name(table)
                .key("pk", AttributeValue::S(pk))
                .key("sk", AttributeValue::S(sk))
                .send()
                .await
                .expect("get")
                .item
                .expect("item written")
        }
    };

    // A scheduled firing with a 200-byte payload, delivered to a target (so the event carries
    // its delivery plan), written the way the fire function writes it.
    let mut t = trigger("priced", TriggerKind::Scheduled);
    t.payload = Some(serde_json::json!({"data": "x".repeat(190)}));
    store.insert_trigger(&t, u64::MAX).await.expect("insert");
    let mut e = event(Some(&t), EventSource::Schedule, t0());
    e.payload = t.payload.clone().unwrap();
    let plan = DeliveryPlan {
        target: Target {
            url: "https://example.com/hooks/etp".into(),
            headers: Default::default(),
            timeout_ms: None,
            max_attempts: None,
            pause_after_failures: None,
        },
        secret: Secret::generate(),
    };
    let dedupe = format!("schedule:{}:{}", t.id, t0().timestamp_millis());
    store
        .record_event(NewEvent {
            event: e.clone(),
            json: None,
            dedupe_key: Some(dedupe.clone()),
            complete: None,
            delivery: Some(plan),
        })
        .await
        .expect("record");

    let event_item = raw(format!("EV#{}", e.id), "EV").await;
    let marker = raw(format!("DK#{dedupe}"), "DK").await;
    let (event_size, marker_size) = (item_size(&event_item), item_size(&marker));
    // The transaction: event, marker and hour counter (a counter is far below 1 KB).
    let transaction = write_units(event_size, true) + write_units(marker_size, true) + 2;
    // The event is in two indexes (lifecycle, by_trigger); the marker and counter in none.
    let indexes = 2 * index_write_units(event_size);
    let firing = transaction + indexes;
    // A delivery attempt: claiming it and recording it each update the event item (billed
    // on the larger of its sizes before and after), and each update rewrites the item's entry
    // in both indexes (projection ALL). Measured on a real claim and a real 503 attempt.
    assert!(
        store
            .claim_attempt(&e.id, 0, t0(), t0() + Duration::seconds(25))
            .await
            .expect("claim")
    );
    let claimed_size = item_size(&raw(format!("EV#{}", e.id), "EV").await);
    let mut after = e.clone();
    after.attempts.push(etp::domain::delivery::Attempt {
        number: 1,
        series: 1,
        at: t0(),
        status_code: Some(503),
        error: None,
        detail: None,
        duration_ms: 87,
        response_body: Some("service unavailable".into()),
    });
    after.next_attempt_at = Some(t0() + Duration::seconds(5));
    store
        .record_attempt(&after, 0)
        .await
        .expect("record attempt");
    let recorded_size = item_size(&raw(format!("EV#{}", e.id), "EV").await);
    let update = |before: usize, after: usize| {
        write_units(before.max(after), false) + 2 * index_write_units(after)
    };
    let attempt = update(event_size, claimed_size) + update(claimed_size, recorded_size);
    eprintln!(
        "write units: event item {event_size} B, marker {marker_size} B; one firing {firing} WRU \
         ({transaction} transaction + {indexes} index); one delivery attempt {attempt} WRU \
         (event item {claimed_size} B claimed, {recorded_size} B recorded)"
    );
    assert!(
        event_size < 1024 - 100 && marker_size < 1024,
        "small firings stay under 1 KB"
    );
    assert_eq!(firing, 8, "the README's per-firing figure");
    assert_eq!(attempt, 8, "the README's per-attempt figure");
}

/// Events written before the lifecycle index had one partition per hour (each hour split four
/// ways, counters under `CT#`) are still listed, counted and purged after an upgrade; a page of
/// the current layout is one Query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_the_sharded_layout_are_still_listed_counted_and_purged() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use etp::domain::lifecycle::{EventState, Lifecycle};
    use etp::ports::EventQuery;

    let (client, calls) = moto::counting_dynamo_client();
    let (store, tables) = dynamo_with(client.clone()).await;
    let (a, b) = (
        trigger("current", TriggerKind::Api),
        trigger("legacy", TriggerKind::Api),
    );
    let now = t0() + Duration::minutes(5);
    let current = event(Some(&a), EventSource::Api, t0());
    let legacy = event(Some(&b), EventSource::Api, t0() + Duration::seconds(1));
    for e in [&current, &legacy] {
        etp::testing::contract::put(&store, e).await;
    }
    let l = Lifecycle::default();
    let list = |store: DynamoStore, limit: usize| async move {
        let page = store
            .list_events(&EventQuery {
                window: l.window(EventState::Active, now),
                now: Some(now),
                trigger_id: None,
                source: None,
                is_test: None,
                limit,
                cursor: None,
            })
            .await
            .expect("list");
        page.items.into_iter().map(|e| e.id).collect::<Vec<_>>()
    };
    calls.take();
    // A full page (one of two events) is one Query; the first listing of a process also
    // looks for legacy counters, once per shard.
    assert_eq!(
        list(store.clone(), 1).await,
        std::slice::from_ref(&legacy.id)
    );
    let queries = calls.take();
    assert_eq!(queries.len(), 1 + 4, "{queries:?}");
    list(store.clone(), 1).await;
    assert_eq!(calls.take(), ["Query"], "a page of the current layout");
    // In an hour's last minute the first round also reads the next hour (writers' clocks may
    // be ahead): still one round, two Queries.
    let late = t0() + Duration::minutes(59) + Duration::seconds(30);
    let page = store
        .list_events(&EventQuery {
            window: l.window(EventState::Active, late),
            now: Some(late),
            trigger_id: None,
            source: None,
            is_test: None,
            limit: 1,
            cursor: None,
        })
        .await
        .expect("list");
    assert_eq!(page.items[0].id, legacy.id);
    assert_eq!(calls.take(), ["Query", "Query"]);

    // Rewrite the second event as the sharded layout wrote it: its lifecycle partition split by
    // shard, its counter under `CT#` in the events table.
    let hour = t0().timestamp_millis().div_euclid(3_600_000);
    let scan = |table: String| {
        let client = client.clone();
        async move {
            client
                .scan()
                .table_name(table)
                .send()
                .await
                .expect("scan (test only)")
                .items
                .unwrap_or_default()
        }
    };
    let counter = scan(tables.stats.clone())
        .await
        .into_iter()
        .find(|i| {
            i["pk"].as_s().is_ok_and(|pk| pk.starts_with("CH#"))
                && i["sk"].as_s().is_ok_and(|sk| sk.ends_with(&b.id))
        })
        .expect("the legacy event's counter");
    let counter_pk = counter["pk"].as_s().expect("pk").clone();
    let shard = counter_pk["CH#".len()..].to_string();
    client
        .delete_item()
        .table_name(&tables.stats)
        .key("pk", counter["pk"].clone())
        .key("sk", counter["sk"].clone())
        .send()
        .await
        .expect("delete");
    let mut old_counter = counter.clone();
    old_counter.insert("pk".into(), AttributeValue::S(format!("CT#{shard}")));
    let mut old_event = scan(tables.events.clone())
        .await
        .into_iter()
        .find(|i| {
            i["pk"]
                .as_s()
                .is_ok_and(|pk| *pk == format!("EV#{}", legacy.id))
        })
        .expect("the legacy event");
    old_event.insert("lc_pk".into(), AttributeValue::S(format!("{hour}#{shard}")));
    for item in [old_counter, old_event] {
        client
            .put_item()
            .table_name(&tables.events)
            .set_item(Some(item))
            .send()
            .await
            .expect("put the sharded-layout item");
    }

    // A new process (a new store) finds the legacy counter and reads both layouts.
    let upgraded = DynamoStore::new(client.clone(), tables.clone());
    assert_eq!(
        list(upgraded.clone(), 10).await,
        [legacy.id.clone(), current.id.clone()]
    );
    let stats = upgraded
        .event_stats(
            now,
            l.window(EventState::Active, now),
            l.window(EventState::Archived, now),
        )
        .await
        .expect("stats");
    let counted: Vec<_> = stats
        .iter()
        .map(|s| (s.trigger_name.as_str(), s.active))
        .collect();
    assert_eq!(counted.len(), 2, "{stats:?}");
    assert!(counted.contains(&("legacy", 1)) && counted.contains(&("current", 1)));
    let purged = upgraded
        .purge_events(t0() + Duration::hours(49))
        .await
        .expect("purge");
    assert_eq!(purged, 2);
    assert!(upgraded.get_event(&legacy.id).await.expect("get").is_none());
}

/// The stats counts, moved from read to read as the clock runs (events crossing both window
/// edges, late commits within the settle time, a jump that forces a rebuild), always equal the
/// SQLite adapter's exact counts, in the process that moves them and in a new process that
/// starts from the stored snapshot; once they exist a read costs a few Queries, none of counters.
#[cfg(feature = "embedded")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_snapshot_moves_exactly_and_cheaply() {
    use etp::domain::event::Event;
    use etp::domain::lifecycle::{EventState, Lifecycle};
    use etp::ports::Store;

    let (client, calls) = moto::counting_dynamo_client();
    let (dynamo, tables) = dynamo_with(client.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = etp::embedded::SqliteStore::open(&dir.path().join("etp.sqlite3")).expect("open");
    let l = Lifecycle::new(Duration::minutes(10), Duration::minutes(30)).expect("lifecycle");
    let triggers: Vec<_> = (0..3)
        .map(|i| trigger(&format!("t{i}"), TriggerKind::Api))
        .collect();
    let mut seed = 0x9e37_79b9_u64;
    let mut next = |m: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % m
    };
    let mut now = t0();
    let mut reads = 0;
    for step in 0..45 {
        // 20 s to 3 min a step; one long jump (past the longest move) forces a rebuild.
        let by = if step == 30 {
            40 * 60
        } else {
            20 + next(160) as i64
        };
        let before = now;
        now += Duration::seconds(by);
        for _ in 0..next(4) {
            // Fired since the last read, some of them committing up to 50 s late.
            let span = (now - before).num_milliseconds().max(1) as u64;
            let mut fired = before + Duration::milliseconds(1 + next(span) as i64);
            if next(3) == 0 {
                fired -= Duration::seconds(next(50) as i64);
            }
            let tr = &triggers[next(3) as usize];
            let e: Event = event(Some(tr), EventSource::Api, fired.min(now));
            for store in [&dynamo as &dyn Store, &sqlite] {
                etp::testing::contract::put(store, &e).await;
            }
        }
        calls.take();
        same_stats(
            &dynamo,
            &sqlite,
            now,
            l.window(EventState::Active, now),
            l.window(EventState::Archived, now),
        )
        .await;
        let made = calls.take();
        let queries = made.iter().filter(|c| c.as_str() == "Query").count();
        if step > 0 && step != 30 {
            reads += 1;
            // The snapshot, and one Query per hour partition of each swept span.
            assert!(queries <= 7, "step {step}: {made:?}");
        }
        if step % 4 == 3 {
            // A process that starts now moves the stored snapshot instead.
            let fresh = DynamoStore::new(client.clone(), tables.clone());
            same_stats(
                &fresh,
                &sqlite,
                now,
                l.window(EventState::Active, now),
                l.window(EventState::Archived, now),
            )
            .await;
        }
    }
    assert!(reads > 40);
}

/// The README's cost table is this measurement: every route's DynamoDB calls, and the read
/// and write units of the items they read and wrote (sized by DynamoDB's rules).
#[cfg(feature = "embedded")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_cost_table_is_the_measured_one() {
    let measured = etp::testing::cost_model::measure().await.expect("measure");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let mut missing = Vec::new();
    for m in &measured {
        let row = etp::testing::cost_model::readme_row(m);
        eprintln!("{row}");
        // A rebuild reads one counter per shard, hour and trigger, and an event's shard comes
        // from its random id: that row's read units and item count vary by a few.
        let found = if m.operation.starts_with("stats, first (builds") {
            let cells: Vec<&str> = row.split(" | ").collect();
            readme.lines().any(|l| {
                let got: Vec<&str> = l.split(" | ").collect();
                got.len() == cells.len() && got[..2] == cells[..2] && got[3] == cells[3]
            })
        } else {
            readme.contains(&row)
        };
        if !found {
            missing.push(row);
        }
    }
    assert!(
        missing.is_empty(),
        "README rows differ from the measurement; replace them with:\n{}",
        missing.join("\n")
    );
}

/// A stored snapshot that cannot be read (torn, corrupt, or from a future format) is rebuilt
/// from the counters: the answer stays exact and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stats_snapshot_is_rebuilt() {
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;

    let client = moto::dynamo_client();
    let (store, tables) = dynamo_with(client.clone()).await;
    let t = trigger("snapshot", TriggerKind::Api);
    for s in 0..3 {
        let e = event(Some(&t), EventSource::Api, t0() + Duration::seconds(s));
        etp::testing::contract::put(&store, &e).await;
    }
    let now = t0() + Duration::minutes(10);
    let stats =
        |store: DynamoStore| async move { etp::testing::contract::stats_at(&store, now).await };
    let first = stats(store.clone()).await;
    assert_eq!(first[0].active, 3);
    for (data, parts) in [(b"not deflate".to_vec(), "1"), (Vec::new(), "3")] {
        client
            .put_item()
            .table_name(&tables.stats)
            .item("pk", AttributeValue::S("ST".into()))
            .item("sk", AttributeValue::S("ST#0000".into()))
            .item("generation", AttributeValue::S("x".into()))
            .item("parts", AttributeValue::N(parts.into()))
            .item("data", AttributeValue::B(Blob::new(data)))
            .send()
            .await
            .expect("put a corrupt snapshot");
        // A new process reads the stored snapshot.
        let fresh = DynamoStore::new(client.clone(), tables.clone());
        assert_eq!(stats(fresh).await, first);
    }
}
