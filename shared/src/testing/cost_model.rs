//! The AWS cost of every API route and of the firing and delivery paths, measured: each
//! operation runs once through the real adapters against moto, every DynamoDB and EventBridge
//! Scheduler call it makes is counted,
//! and capacity units follow from the sizes of the items read and written (DynamoDB's rules,
//! indexes and transactions included). The README's cost table and the bench print this.

use std::sync::Arc;

use chrono::Duration;
use serde::Serialize;
use serde_json::json;

use super::capacity::{UnsizedWrite, index_entries, index_write_units, item_size, write_units};
use super::fixtures::WebhookReceiver;
use super::moto;
use crate::app::{App, EventFilter};
use crate::aws::dynamo::{DynamoStore, Tables};
use crate::aws::scheduler::{EventBridgeScheduler, ScheduleTarget};
use crate::clock::{Clock, ManualClock};
use crate::config::Settings;
use crate::delivery::{Deliverer, Sender};
use crate::domain::delivery::RetrySchedule;
use crate::domain::egress::EgressPolicy;
use crate::domain::lifecycle::EventState;
use crate::domain::schedule::Schedule;
use crate::domain::target::Target;
use crate::domain::trigger::{TriggerDefinition, TriggerKind};
use crate::firing::fire_scheduled;
use crate::ports::TriggerQuery;

/// What one operation cost.
#[derive(Debug, Clone, Serialize)]
pub struct OperationCost {
    pub operation: String,
    /// Each call, in the order sent.
    pub calls: Vec<String>,
    pub items_read: usize,
    pub read_units: f64,
    pub items_written: usize,
    pub write_units: usize,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

struct Meter {
    /// Uncounted: reads items back to size updates.
    client: aws_sdk_dynamodb::Client,
    calls: moto::CallLog,
    out: Vec<OperationCost>,
}

impl Meter {
    /// Sums what was sent since the last record under `operation`. An update's size is the
    /// item's size after it (our updates grow or keep items), read back without counting.
    async fn record(&mut self, operation: &str) -> Result<(), String> {
        let costs = self.calls.take_costs();
        let ops = self.calls.take_ops();
        let mut cost = OperationCost {
            operation: operation.into(),
            calls: ops,
            items_read: 0,
            read_units: 0.0,
            items_written: 0,
            write_units: 0,
        };
        for c in &costs {
            cost.items_read += c.items_read;
            cost.read_units += c.read_units;
            cost.items_written += c.items_written;
            cost.write_units += c.write_units;
            for w in &c.unsized_writes {
                cost.write_units += self.sized(w).await?;
            }
        }
        self.out.push(cost);
        Ok(())
    }

    async fn sized(&self, w: &UnsizedWrite) -> Result<usize, String> {
        let transactional = w.transactional;
        let found = self
            .client
            .get_item()
            .table_name(&w.table)
            .set_key(Some(w.key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?
            .item;
        // A deleted item: its size before is not seen; one unit, as the least it costs.
        let Some(item) = found else {
            return Ok(write_units(0, transactional));
        };
        let size = item_size(&item);
        Ok(write_units(size, transactional) + index_entries(item.keys()) * index_write_units(size))
    }
}

/// Runs every operation once on fresh tables (moto must be reachable) and returns its cost.
pub async fn measure() -> Result<Vec<OperationCost>, String> {
    let (client, calls) = moto::counting_dynamo_client();
    let suffix = crate::domain::new_id();
    let tables = Tables::named("cost", &suffix);
    DynamoStore::create_tables(&client, &tables)
        .await
        .map_err(err)?;
    let store = Arc::new(DynamoStore::new(client.clone(), tables.clone()));
    // A manual clock 20 minutes into an hour ahead of the real one (moto's scheduler reads the
    // real clock): no window edge or hour boundary moves while the operations run, so every
    // run reads and writes the same items.
    let clock = Arc::new(ManualClock::new(
        crate::testing::instants::next_hour() + Duration::minutes(20),
    ));
    // The scheduler adapter on moto, its calls counted with the store's.
    let scheduler_client = moto::counting_scheduler_client(&calls).await;
    let group = format!("cost-{suffix}");
    scheduler_client
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .map_err(err)?;
    let scheduler = Arc::new(EventBridgeScheduler::new(
        scheduler_client,
        ScheduleTarget {
            group,
            role_arn: "arn:aws:iam::123456789012:role/etp-scheduler".into(),
            fire_function_arn: "arn:aws:lambda:us-east-1:123456789012:function:etp-fire".into(),
            dead_letter_arn: "arn:aws:sqs:us-east-1:123456789012:etp-fire-dlq".into(),
        },
        clock.clone(),
    ));
    let queue = scheduler.clone();
    let settings = Settings {
        stats_cache_ttl: std::time::Duration::ZERO,
        egress: EgressPolicy::with_allowed("127.0.0.1/32")?,
        ..Settings::default()
    };
    let app = Arc::new(App::new(
        store.clone(),
        scheduler.clone(),
        queue.clone(),
        clock.clone(),
        settings,
    ));
    let rx = WebhookReceiver::start(|_, hit| {
        Box::pin(async move {
            use axum::response::IntoResponse;
            // The first request fails, so one attempt is a retry.
            if hit == 1 {
                axum::http::StatusCode::SERVICE_UNAVAILABLE
            } else {
                axum::http::StatusCode::OK
            }
            .into_response()
        })
    })
    .await;
    let sender = Sender::new(EgressPolicy::with_allowed("127.0.0.1/32")?).map_err(err)?;
    let deliverer = Deliverer::new(
        store.clone(),
        clock.clone(),
        queue.clone(),
        Arc::new(sender),
        RetrySchedule::default(),
    )
    .with_early_slack(Duration::hours(1));
    let mut m = Meter {
        client: moto::dynamo_client(),
        calls,
        out: Vec::new(),
    };
    m.calls.take();

    let api_def = |target: Option<Target>| TriggerDefinition {
        name: "cost api".into(),
        kind: TriggerKind::Api,
        schedule: None,
        payload: None,
        payload_schema: Some(json!({"type": "object"})),
        target,
    };
    let api = app.create_trigger(api_def(None)).await.map_err(err)?;
    m.record("create trigger").await?;
    let cron = app
        .create_trigger(TriggerDefinition {
            name: "cost cron".into(),
            kind: TriggerKind::Scheduled,
            schedule: Some(Schedule::Cron {
                expression: "0 3 * * *".into(),
                timezone: "Europe/Berlin".into(),
                start_at: None,
                end_at: None,
            }),
            payload: Some(json!({"report": "daily"})),
            payload_schema: None,
            target: None,
        })
        .await
        .map_err(err)?;
    m.record("create scheduled trigger (cron)").await?;
    app.get_trigger(&api.id).await.map_err(err)?;
    m.record("get trigger").await?;
    app.list_trigger_views_json(&TriggerQuery {
        limit: 50,
        ..Default::default()
    })
    .await
    .map_err(err)?;
    m.record("list triggers (page of 50)").await?;
    let hooked = app
        .replace_trigger(
            &api.id,
            api_def(Some(Target {
                url: rx.url("hook"),
                headers: Default::default(),
                timeout_ms: Some(5_000),
                max_attempts: None,
                pause_after_failures: None,
            })),
            None,
        )
        .await
        .map_err(err)?;
    m.record("update trigger").await?;
    app.set_paused(&cron.id, Some(None), None)
        .await
        .map_err(err)?;
    m.record("pause trigger").await?;
    app.set_paused(&cron.id, None, None).await.map_err(err)?;
    m.record("resume trigger").await?;

    for i in 0..130 {
        app.fire(&hooked.id, json!({"n": i}), None)
            .await
            .map_err(err)?;
    }
    m.calls.take();
    let fired = app
        .fire(&hooked.id, json!({"n": -1}), None)
        .await
        .map_err(err)?;
    m.record("fire an api trigger with a webhook target")
        .await?;
    let event_id = fired.event.event.id.clone();
    deliverer.deliver(&event_id).await.map_err(err)?;
    m.record("delivery attempt that fails (retry queued)")
        .await?;
    deliverer.deliver(&event_id).await.map_err(err)?;
    m.record("delivery attempt that succeeds").await?;
    let plain = app.create_trigger(api_def(None)).await.map_err(err)?;
    m.calls.take();
    app.fire(&plain.id, json!({"n": 1}), None)
        .await
        .map_err(err)?;
    m.record("fire an api trigger").await?;
    app.fire(&plain.id, json!({"n": 2}), Some("cost-key"))
        .await
        .map_err(err)?;
    m.record("fire with Idempotency-Key").await?;
    app.fire(&plain.id, json!({"n": 2}), Some("cost-key"))
        .await
        .map_err(err)?;
    m.record("fire, replayed Idempotency-Key").await?;
    let once = app
        .create_trigger(TriggerDefinition {
            name: "cost once".into(),
            kind: TriggerKind::Scheduled,
            schedule: Some(Schedule::At {
                at: clock.now() + Duration::days(1),
            }),
            payload: None,
            payload_schema: None,
            target: None,
        })
        .await
        .map_err(err)?;
    m.calls.take();
    let due = once
        .schedule
        .as_ref()
        .and_then(|s| s.next_after(clock.now()))
        .ok_or("no occurrence")?;
    fire_scheduled(store.as_ref(), clock.as_ref(), &once.id, due)
        .await
        .map_err(err)?;
    m.record("scheduled firing, one-time trigger").await?;
    app.test_trigger(&plain.id, Some(json!({"n": 3})))
        .await
        .map_err(err)?;
    m.record("test-fire a stored trigger").await?;

    let page = |trigger_id: Option<String>| EventFilter {
        state: EventState::Active,
        trigger_id,
        source: None,
        is_test: None,
        limit: 50,
        cursor: None,
        ..Default::default()
    };
    app.list_event_views_json(page(None)).await.map_err(err)?;
    m.record("first events page of a process (looks for the old layout once)")
        .await?;
    let first = app.list_event_views_json(page(None)).await.map_err(err)?;
    m.record("list events (active, page of 50)").await?;
    if let Some(cursor) = first.next_cursor.clone() {
        app.list_event_views_json(EventFilter {
            cursor: Some(cursor),
            ..page(None)
        })
        .await
        .map_err(err)?;
        m.record("next events page (active, 50)").await?;
    }
    app.list_event_views_json(page(Some(hooked.id.clone())))
        .await
        .map_err(err)?;
    m.record("list events of one trigger (page of 50)").await?;
    app.get_event(&event_id).await.map_err(err)?;
    m.record("get event").await?;
    app.stats().await.map_err(err)?;
    m.record("stats, first (builds the snapshot from the counters)")
        .await?;
    app.stats().await.map_err(err)?;
    m.record("stats").await?;
    let restarted = Arc::new(App::new(
        Arc::new(DynamoStore::new(client, tables)),
        scheduler.clone(),
        queue.clone(),
        clock.clone(),
        Settings {
            stats_cache_ttl: std::time::Duration::ZERO,
            ..Settings::default()
        },
    ));
    restarted.stats().await.map_err(err)?;
    m.record("stats, first read of a new process (the stored snapshot)")
        .await?;
    app.delete_trigger(&cron.id, None).await.map_err(err)?;
    m.record("delete trigger").await?;
    Ok(m.out)
}

/// The README's cost table row of one measured operation.
pub fn readme_row(c: &OperationCost) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for call in &c.calls {
        match counts.iter_mut().find(|(op, _)| op == call) {
            Some((_, n)) => *n += 1,
            None => counts.push((call.clone(), 1)),
        }
    }
    let calls = counts
        .iter()
        .map(|(op, n)| {
            if *n == 1 {
                op.clone()
            } else {
                format!("{n} {op}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "| {} | {} | {} | {} | {} |",
        c.operation,
        if calls.is_empty() {
            "none".into()
        } else {
            calls
        },
        c.read_units,
        c.write_units,
        c.items_read + c.items_written,
    )
}
