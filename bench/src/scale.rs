//! The local server at scale: a million stored triggers (a tenth of them scheduled), how long a
//! restart takes, how much memory it holds, and the listing's speed at that size.

use std::time::Instant;

use chrono::Utc;
use serde::Serialize;

use crate::server::Server;

#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub triggers: usize,
    pub scheduled: usize,
    pub seed_s: f64,
    /// The first start on the seeded data, which writes a timer job for each scheduled trigger.
    pub first_start_ms: f64,
    /// A restart: from the process starting to `/health` answering (timer jobs loaded, every
    /// scheduled trigger checked).
    pub startup_ms: f64,
    pub peak_rss_mib: f64,
    pub rss_mib: f64,
    /// The same server on an empty data directory.
    pub empty_rss_mib: f64,
}

impl Scale {
    /// Resident memory the stored triggers add, per trigger.
    pub fn bytes_per_trigger(&self) -> f64 {
        (self.rss_mib - self.empty_rss_mib).max(0.0) * 1024.0 * 1024.0 / self.triggers.max(1) as f64
    }
}

/// Seeds `dir`, starts the server on it twice, and returns the figures and the running server.
pub async fn restart(
    dir: &std::path::Path,
    triggers: usize,
    scheduled: usize,
) -> Result<(Scale, Server), String> {
    let empty_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let empty = Server::start(empty_dir.path(), &[]).await?;
    let empty_rss_mib = empty.rss_mib().unwrap_or(0.0);
    drop(empty);
    let began = Instant::now();
    crate::seed::mixed_triggers(dir, triggers, scheduled, Utc::now()).await?;
    let seed_s = began.elapsed().as_secs_f64();
    let began = Instant::now();
    let first = Server::start(dir, &[]).await?;
    let first_start_ms = began.elapsed().as_secs_f64() * 1000.0;
    drop(first);
    let began = Instant::now();
    let server = Server::start(dir, &[]).await?;
    let startup_ms = began.elapsed().as_secs_f64() * 1000.0;
    let scale = Scale {
        triggers,
        scheduled,
        seed_s,
        first_start_ms,
        startup_ms,
        peak_rss_mib: server.peak_rss_mib().unwrap_or(0.0),
        rss_mib: server.rss_mib().unwrap_or(0.0),
        empty_rss_mib,
    };
    Ok((scale, server))
}
