//! Scheduler cases: many triggers due in the same second, and a sustained firing rate.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::server::Server;

#[derive(Debug, Clone, Serialize)]
pub struct Lateness {
    pub firings: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    pub due_together: usize,
    pub lateness: Lateness,
    /// From the due second to the last firing.
    pub drain_ms: f64,
    /// Every lateness sample, for the histogram.
    #[serde(skip)]
    pub samples: Vec<f64>,
    /// Server CPU per firing over the burst, in µs: the SQLite writer thread's, and that of
    /// every other thread (the async workers that run the timer, and the checkpointer).
    pub writer_us_per_firing: f64,
    pub other_us_per_firing: f64,
}

/// The writer thread's name as the kernel keeps it (15 bytes at most).
const WRITER_THREAD: &str = "etp-sqlite-writ";

/// CPU ms of the writer thread and of the rest of the server.
fn split_cpu(server: &Server) -> (f64, f64) {
    let (total, writer) = server.cpu_ms(WRITER_THREAD);
    (writer, total - writer)
}

/// Waits until the server has been idle for half a second (its CPU barely moved), at most
/// `limit`: the end of a burst's work, before anything reads its events.
async fn quiet(server: &Server, limit: Duration) {
    let started = std::time::Instant::now();
    let mut last = split_cpu(server);
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = split_cpu(server);
        // Under 5% of a core in the last half second.
        if (now.0 + now.1) - (last.0 + last.1) < 25.0 {
            return;
        }
        last = now;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Sustained {
    pub triggers: usize,
    pub seconds: u64,
    pub expected: usize,
    pub lateness: Lateness,
    /// p99 lateness in the first and last tenth of the run: growth means a backlog.
    pub first_p99_ms: f64,
    pub last_p99_ms: f64,
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn lateness_of(e: &Value) -> Option<(DateTime<Utc>, f64)> {
    let s = time(&e["scheduled_for"])?;
    let f = time(&e["fired_at"])?;
    Some((s, (f - s).num_microseconds()? as f64 / 1000.0))
}

fn summarize(mut samples: Vec<f64>) -> Lateness {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    Lateness {
        firings: samples.len(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: samples.last().copied().unwrap_or(0.0),
    }
}

/// Creates `bodies` through the API, 64 at a time.
async fn create_all(server: &Arc<Server>, bodies: Vec<Value>) -> Result<(), String> {
    let mut bodies = bodies.into_iter().peekable();
    while bodies.peek().is_some() {
        let mut set = tokio::task::JoinSet::new();
        for body in bodies.by_ref().take(64) {
            let server = server.clone();
            set.spawn(async move {
                server
                    .call(reqwest::Method::POST, "/triggers", Some(&body))
                    .await
            });
        }
        while let Some(r) = set.join_next().await {
            r.map_err(|e| e.to_string())??;
        }
    }
    Ok(())
}

/// `n` one-time triggers all due in the same second.
pub async fn burst(server: &Arc<Server>, n: usize) -> Result<Burst, String> {
    // Long enough to create them all first (creating runs at several thousand a second).
    let lead = 5 + (n / 2_000) as i64;
    let due =
        (Utc::now() + chrono::Duration::seconds(lead)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let bodies = (0..n)
        .map(|i| {
            json!({"name": format!("burst {i}"), "kind": "scheduled",
                   "schedule": {"type": "at", "at": due}})
        })
        .collect();
    create_all(server, bodies).await?;
    let due_at = time(&json!(due)).ok_or("bad due time")?;
    // The server's CPU from just before the due second until its work is done: what the burst
    // cost, whatever this VM's speed (lateness alone does not say which part is the limit).
    let before = (due_at - Utc::now()).num_milliseconds() - 500;
    tokio::time::sleep(Duration::from_millis(before.max(0) as u64)).await;
    let cpu_before = split_cpu(server);
    let wait = (due_at - Utc::now()).num_milliseconds().max(0) as u64 + 3_000;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    quiet(server, Duration::from_secs(60)).await;
    let cpu_after = split_cpu(server);
    // A burst that takes longer than that to drain is waited for (its lateness says how long).
    let mut mine: Vec<(DateTime<Utc>, f64)> = Vec::new();
    for _ in 0..12 {
        let events = server.all_events("source=schedule").await?;
        mine = events
            .iter()
            .filter_map(lateness_of)
            .filter(|(s, _)| *s == due_at)
            .collect();
        if mine.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if mine.len() != n {
        return Err(format!("{} of {n} burst triggers fired", mine.len()));
    }
    let samples: Vec<f64> = mine.iter().map(|(_, l)| *l).collect();
    let lateness = summarize(samples.clone());
    let per_firing = |before: f64, after: f64| (after - before) * 1000.0 / n.max(1) as f64;
    Ok(Burst {
        due_together: n,
        drain_ms: lateness.max_ms,
        lateness,
        samples,
        writer_us_per_firing: per_firing(cpu_before.0, cpu_after.0),
        other_us_per_firing: per_firing(cpu_before.1, cpu_after.1),
    })
}

/// `triggers` triggers firing every second for `seconds`: `triggers` firings per second.
pub async fn sustained(
    server: &Arc<Server>,
    triggers: usize,
    seconds: u64,
) -> Result<Sustained, String> {
    let start = (Utc::now() + chrono::Duration::seconds(5 + (triggers / 1_000) as i64))
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    let end = (time(&json!(start)).ok_or("bad start")? + chrono::Duration::seconds(seconds as i64))
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    let bodies = (0..triggers)
        .map(|i| {
            json!({"name": format!("steady {i}"), "kind": "scheduled",
                   "schedule": {"type": "interval", "every_seconds": 1,
                                "start_at": start, "end_at": end}})
        })
        .collect();
    create_all(server, bodies).await?;
    let end_at = time(&json!(end)).ok_or("bad end")?;
    let start_at = time(&json!(start)).ok_or("bad start")?;
    let wait = (end_at - Utc::now()).num_milliseconds().max(0) as u64 + 3_000;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let events = server.all_events("source=schedule").await?;
    let mine: Vec<(DateTime<Utc>, f64)> = events
        .iter()
        .filter_map(lateness_of)
        .filter(|(s, _)| *s > start_at && *s <= end_at)
        .collect();
    let tenth = chrono::Duration::seconds((seconds as i64 / 10).max(1));
    let window = |from: DateTime<Utc>, to: DateTime<Utc>| {
        summarize(
            mine.iter()
                .filter(|(s, _)| *s > from && *s <= to)
                .map(|(_, l)| *l)
                .collect(),
        )
        .p99_ms
    };
    Ok(Sustained {
        triggers,
        seconds,
        expected: triggers * seconds as usize,
        first_p99_ms: window(start_at, start_at + tenth),
        last_p99_ms: window(end_at - tenth, end_at),
        lateness: summarize(mine.iter().map(|(_, l)| *l).collect()),
    })
}
