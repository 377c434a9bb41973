//! Seeds a data directory straight through the SQLite store, with a progress bar.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use etp::domain::event::{Event, EventSource, EventStatus};
use etp::domain::new_id;
use etp::domain::trigger::{Trigger, TriggerDefinition, TriggerKind};
use etp::embedded::SqliteStore;
use etp::ports::{EventStore, NewEvent, TriggerStore};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

/// Writes in flight at once: enough for the store's group commit to batch them.
const IN_FLIGHT: usize = 2_000;

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>16} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

/// Waits for every write in flight, counting each on the bar.
async fn drain<T: 'static, E: std::fmt::Display + 'static>(
    pending: &mut tokio::task::JoinSet<Result<T, E>>,
    progress: &ProgressBar,
) -> Result<(), String> {
    while let Some(done) = pending.join_next().await {
        done.map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        progress.inc(1);
    }
    Ok(())
}

/// `triggers` api triggers and `events` events spread evenly over the last 47.9 hours, so the
/// log holds both active and archived events.
pub async fn seed(
    dir: &Path,
    triggers: usize,
    events: usize,
    now: DateTime<Utc>,
) -> Result<Vec<String>, String> {
    let store = SqliteStore::open(&dir.join("etp.sqlite3")).map_err(|e| e.to_string())?;
    let mut ids = Vec::with_capacity(triggers);
    for i in 0..triggers {
        let def = TriggerDefinition {
            name: format!("seeded {i}"),
            kind: TriggerKind::Api,
            schedule: None,
            payload: None,
            payload_schema: Some(json!({"type": "object"})),
            target: None,
        };
        let t = Trigger::create(def, new_id(), now);
        store
            .insert_trigger(&t, u64::MAX)
            .await
            .map_err(|e| e.to_string())?;
        ids.push(t.id);
    }
    let span_ms = Duration::minutes(47 * 60 + 54).num_milliseconds();
    let progress = bar(events as u64, "seeding events");
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..events {
        let trigger_id = ids[i % ids.len().max(1)].clone();
        // Oldest first, as firings arrive.
        let age = Duration::milliseconds(span_ms * (events - 1 - i) as i64 / events.max(1) as i64);
        let event = Event {
            id: new_id(),
            trigger_id: Some(trigger_id),
            trigger_name: format!("seeded {}", i % ids.len().max(1)),
            kind: TriggerKind::Api,
            source: EventSource::Api,
            is_test: false,
            scheduled_for: None,
            fired_at: now - age,
            payload: json!({"n": i}),
            status: EventStatus::Success,
            attempts: Vec::new(),
            next_attempt_at: None,
            delivery_series: 1,
            reason: None,
        };
        let store = store.clone();
        pending.spawn(async move {
            store
                .record_event(NewEvent {
                    event,
                    json: None,
                    dedupe_key: None,
                    complete: None,
                    delivery: None,
                })
                .await
        });
        if pending.len() >= IN_FLIGHT {
            drain(&mut pending, &progress).await?;
        }
    }
    drain(&mut pending, &progress).await?;
    progress.finish();
    Ok(ids)
}

/// `total` triggers straight through the store: `scheduled` of them scheduled (a third each
/// hourly from tomorrow, weekdays at 09:00 in Berlin, and once in 30 days, so none fires while
/// the cases run), the rest api triggers.
pub async fn mixed_triggers(
    dir: &Path,
    total: usize,
    scheduled: usize,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let store = SqliteStore::open(&dir.join("etp.sqlite3")).map_err(|e| e.to_string())?;
    let tomorrow = etp::testing::instants::rfc3339(now + Duration::days(1));
    let in_30_days = etp::testing::instants::rfc3339(now + Duration::days(30));
    let progress = bar(total as u64, "seeding triggers");
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..total {
        let def = if i % (total / scheduled.max(1)).max(1) == 0 {
            match i % 3 {
                0 => json!({"name": format!("hourly {i}"), "kind": "scheduled",
                    "schedule": {"type": "interval", "every_seconds": 3600, "start_at": tomorrow}}),
                1 => json!({"name": format!("weekdays {i}"), "kind": "scheduled",
                    "schedule": {"type": "cron", "expression": "0 9 * * MON-FRI",
                                 "timezone": "Europe/Berlin"}}),
                _ => json!({"name": format!("once {i}"), "kind": "scheduled",
                    "schedule": {"type": "at", "at": in_30_days}}),
            }
        } else {
            json!({"name": format!("api {i}"), "kind": "api",
                   "payload_schema": {"type": "object", "required": ["n"]}})
        };
        let def: TriggerDefinition = serde_json::from_value(def).map_err(|e| e.to_string())?;
        let t = Trigger::create(def, new_id(), now);
        let store = store.clone();
        pending.spawn(async move { store.insert_trigger(&t, u64::MAX).await });
        if pending.len() >= IN_FLIGHT {
            drain(&mut pending, &progress).await?;
        }
    }
    drain(&mut pending, &progress).await?;
    progress.finish();
    Ok(())
}
