//! Store work per operation on DynamoDB: the adapter against moto's server, every request
//! counted by an SDK interceptor.

use std::sync::Arc;

use chrono::Utc;
use etp::app::{App, EventFilter};
use etp::aws::dynamo::{DynamoStore, Tables};
use etp::clock::SystemClock;
use etp::config::Settings;
use etp::domain::lifecycle::EventState;
use etp::domain::schedule::Schedule;
use etp::domain::trigger::{TriggerDefinition, TriggerKind};
use etp::firing::fire_scheduled;
use etp::testing::{RecordingScheduler, moto};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, Serialize)]
pub struct StoreCost {
    pub operation: String,
    pub calls: Vec<String>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs each operation once on warm tables and records the calls it made.
pub async fn costs(events: usize) -> Result<Vec<StoreCost>, String> {
    let (client, calls) = moto::counting_dynamo_client();
    let suffix = etp::domain::new_id();
    let tables = Tables {
        triggers: format!("bench-triggers-{suffix}"),
        events: format!("bench-events-{suffix}"),
    };
    DynamoStore::create_tables(&client, &tables)
        .await
        .map_err(err)?;
    let store = Arc::new(DynamoStore::new(client, tables));
    let clock = Arc::new(SystemClock);
    let app = Arc::new(App::new(
        store.clone(),
        Arc::new(RecordingScheduler::default()),
        Arc::new(etp::testing::RecordingQueue::default()),
        clock.clone(),
        Settings::default(),
    ));
    let mut out = Vec::new();
    let mut record = |operation: &str| {
        out.push(StoreCost {
            operation: operation.into(),
            calls: calls.take(),
        })
    };
    calls.take();

    let api = app
        .create_trigger(TriggerDefinition {
            name: "bench api".into(),
            kind: TriggerKind::Api,
            schedule: None,
            payload: None,
            payload_schema: Some(json!({"type": "object"})),
            target: None,
        })
        .await
        .map_err(err)?;
    record("create trigger");
    let once = app
        .create_trigger(TriggerDefinition {
            name: "bench once".into(),
            kind: TriggerKind::Scheduled,
            schedule: Some(Schedule::At {
                at: chrono::DateTime::from_timestamp(Utc::now().timestamp() + 86_400, 0)
                    .ok_or("bad time")?,
            }),
            payload: None,
            payload_schema: None,
            target: None,
        })
        .await
        .map_err(err)?;
    calls.take();
    for i in 0..events {
        app.fire(&api.id, json!({"n": i}), None)
            .await
            .map_err(err)?;
    }
    calls.take();
    app.fire(&api.id, json!({"n": -1}), None)
        .await
        .map_err(err)?;
    record("fire an api trigger");
    app.fire(&api.id, json!({"n": -2}), Some("bench-key"))
        .await
        .map_err(err)?;
    record("fire with Idempotency-Key");
    app.fire(&api.id, json!({"n": -2}), Some("bench-key"))
        .await
        .map_err(err)?;
    record("fire, replayed Idempotency-Key");
    let due = once
        .schedule
        .as_ref()
        .and_then(|s| s.next_after(Utc::now()))
        .ok_or("no occurrence")?;
    fire_scheduled(store.as_ref(), clock.as_ref(), &once.id, due)
        .await
        .map_err(err)?;
    record("scheduled firing, one-time trigger");
    let page = |trigger_id: Option<String>| EventFilter {
        state: EventState::Active,
        trigger_id,
        source: None,
        is_test: None,
        limit: 50,
        cursor: None,
    };
    let first = app.list_events(page(None)).await.map_err(err)?;
    record("list page (active, 50)");
    if let Some(cursor) = first.next_cursor {
        app.list_events(EventFilter {
            cursor: Some(cursor),
            ..page(None)
        })
        .await
        .map_err(err)?;
        record("next list page (active, 50)");
    }
    app.list_events(page(Some(api.id.clone())))
        .await
        .map_err(err)?;
    record("list page of one trigger (50)");
    app.stats().await.map_err(err)?;
    record("stats");
    Ok(out)
}
