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

/// `GET /events/stats` over a long log: one counter per trigger and hour (what a trigger firing
/// every hour leaves), read once to build the snapshot and then as every later request reads.
#[derive(Debug, Clone, Serialize)]
pub struct StatsAtScale {
    pub triggers: usize,
    pub hours: usize,
    pub seed_s: f64,
    pub build_ms: f64,
    pub build_read_units: f64,
    pub read_ms: f64,
    pub read_units: f64,
    pub read_calls: usize,
    pub snapshot_bytes: usize,
}

pub async fn stats_at_scale(triggers: usize, hours: usize) -> Result<StatsAtScale, String> {
    let (client, calls) = moto::counting_dynamo_client();
    let suffix = etp::domain::new_id();
    let tables = Tables {
        triggers: format!("bench-triggers-{suffix}"),
        events: format!("bench-events-{suffix}"),
    };
    DynamoStore::create_tables(&client, &tables)
        .await
        .map_err(err)?;
    let store = DynamoStore::new(client, tables);
    let now = Utc::now();
    let hour_now = now.timestamp_millis().div_euclid(3_600_000);
    let ids: Vec<String> = (0..triggers).map(|_| etp::domain::new_id()).collect();
    let seeded = Instant::now();
    let mut counters = Vec::with_capacity(triggers * hours);
    for h in 0..hours as i64 {
        let hour = hour_now - h;
        for (i, id) in ids.iter().enumerate() {
            let last = hour * 3_600_000 + (i as i64 % 3_600) * 1_000;
            counters.push((id.clone(), format!("trigger {i}"), hour, 1, last));
        }
    }
    for chunk in counters.chunks(5_000) {
        store.seed_hour_counters(chunk).await.map_err(err)?;
    }
    let seed_s = seeded.elapsed().as_secs_f64();
    let l = Lifecycle::default();
    let read = |at: chrono::DateTime<Utc>| {
        let store = &store;
        async move {
            store
                .event_stats(
                    at,
                    l.window(EventState::Active, at),
                    l.window(EventState::Archived, at),
                )
                .await
                .map_err(err)
        }
    };
    calls.take();
    let t = Instant::now();
    let built = read(now).await?;
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let build_read_units: f64 = calls.take_costs().iter().map(|c| c.read_units).sum();
    calls.take_ops();
    if built.len() != triggers {
        return Err(format!(
            "stats listed {} of {triggers} triggers",
            built.len()
        ));
    }
    // A later request, as every one after the first reads.
    let t = Instant::now();
    read(Utc::now()).await?;
    let read_ms = t.elapsed().as_secs_f64() * 1e3;
    let costs = calls.take_costs();
    let read_calls = calls.take_ops().len();
    let read_units = costs.iter().map(|c| c.read_units).sum();
    let snapshot_bytes = costs
        .iter()
        .filter(|c| c.op == "Query")
        .map(|c| c.bytes_read)
        .max()
        .unwrap_or(0);
    Ok(StatsAtScale {
        triggers,
        hours,
        seed_s,
        build_ms,
        build_read_units,
        read_ms,
        read_units,
        read_calls,
        snapshot_bytes,
    })
}
