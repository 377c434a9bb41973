//! Store work on DynamoDB: every operation's calls and capacity units (the README's cost
//! table, measured by the library against moto), and the stats at production scale.

use std::time::Instant;

use chrono::Utc;
use etp::aws::dynamo::{DynamoStore, Tables};
use etp::domain::lifecycle::{EventState, Lifecycle};
use etp::ports::EventStore;
use etp::testing::moto;
use serde::Serialize;

pub use etp::testing::cost_model::OperationCost as StoreCost;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Every operation once on warm tables, with its calls and capacity units.
pub async fn costs() -> Result<Vec<StoreCost>, String> {
    etp::testing::cost_model::measure().await
}

/// `GET /events/stats` over a long log: one firing per trigger and hour (48 h of hour
/// counters), with the snapshot an earlier read stored. Measured: a new process's first read
/// (the stored snapshot, then the events that crossed an edge since) and a later one (its own
/// moved counts). A rebuild from the counters is not run at this size: moto's Query reads the
/// whole table on every call, which would take hours here (see the cost table for its cost).
#[derive(Debug, Clone, Serialize)]
pub struct StatsAtScale {
    pub triggers: usize,
    pub hours: usize,
    pub seed_s: f64,
    pub first_ms: f64,
    pub first_read_units: f64,
    pub first_calls: usize,
    pub read_ms: f64,
    pub read_units: f64,
    pub read_calls: usize,
    pub snapshot_bytes: usize,
}

pub async fn stats_at_scale(triggers: usize, hours: usize) -> Result<StatsAtScale, String> {
    let (client, calls) = moto::counting_dynamo_client();
    let tables = Tables::named("bench", &etp::domain::new_id());
    DynamoStore::create_tables(&client, &tables)
        .await
        .map_err(err)?;
    let l = Lifecycle::default();
    let windows = |at| {
        (
            l.window(EventState::Active, at),
            l.window(EventState::Archived, at),
        )
    };
    let now = Utc::now();
    let hour_now = now.timestamp_millis().div_euclid(3_600_000);
    let ids: Vec<String> = (0..triggers).map(|_| etp::domain::new_id()).collect();
    let mut firings = Vec::with_capacity(triggers * hours);
    for h in 1..=hours as i64 {
        let hour = hour_now - h;
        for (i, id) in ids.iter().enumerate() {
            let fired = hour * 3_600_000 + (i as i64 % 3_600) * 1_000;
            firings.push((id.clone(), format!("trigger {i}"), hour, fired));
        }
    }
    let seeded = Instant::now();
    let (active, archived) = windows(now);
    DynamoStore::new(client.clone(), tables.clone())
        .seed_stats_history(&firings, now, active, archived)
        .await
        .map_err(err)?;
    let seed_s = seeded.elapsed().as_secs_f64();

    // A process that starts now.
    let store = DynamoStore::new(client, tables);
    let read = |at: chrono::DateTime<Utc>| {
        let store = &store;
        let (active, archived) = windows(at);
        async move { store.event_stats(at, active, archived).await.map_err(err) }
    };
    calls.take();
    let t = Instant::now();
    let first = read(Utc::now()).await?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let costs = calls.take_costs();
    let first_calls = calls.take_ops().len();
    let first_read_units = costs.iter().map(|c| c.read_units).sum();
    let snapshot_bytes = costs
        .iter()
        .filter(|c| c.op == "GetItem")
        .map(|c| c.bytes_read)
        .sum();
    if first.len() != triggers {
        return Err(format!(
            "stats listed {} of {triggers} triggers",
            first.len()
        ));
    }
    let t = Instant::now();
    read(Utc::now()).await?;
    let read_ms = t.elapsed().as_secs_f64() * 1e3;
    let costs = calls.take_costs();
    let read_calls = calls.take_ops().len();
    let read_units = costs.iter().map(|c| c.read_units).sum();
    Ok(StatsAtScale {
        triggers,
        hours,
        seed_s,
        first_ms,
        first_read_units,
        first_calls,
        read_ms,
        read_units,
        read_calls,
        snapshot_bytes,
    })
}
