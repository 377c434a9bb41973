//! The stats snapshot cache: stats computed at one moment, their JSON rendered at most once,
//! served stale (for a bounded time) while one background task recomputes them.

use std::sync::Arc;
use std::time::Instant;

use super::{App, AppResult};
use crate::domain::lifecycle::EventState;
use crate::ports::TriggerStats;

/// How many TTLs old a stats snapshot may be and still be served while it is refreshed.
const STATS_MAX_STALENESS: u32 = 10;

/// Stats as computed at one moment, with their JSON rendered at most once however often served.
#[derive(Debug)]
pub struct StatsSnapshot {
    computed_at: Instant,
    pub items: Vec<TriggerStats>,
    json: std::sync::OnceLock<Arc<[u8]>>,
}

impl StatsSnapshot {
    /// `{"items":[...]}`, serialized on first use; shared, not copied, by every response.
    pub fn json(&self) -> Arc<[u8]> {
        self.json
            .get_or_init(|| {
                serde_json::to_vec(&serde_json::json!({ "items": &self.items }))
                    .unwrap_or_default()
                    .into()
            })
            .clone()
    }
}

impl App {
    async fn compute_stats(&self) -> AppResult<Arc<StatsSnapshot>> {
        let now = self.now();
        let lifecycle = self.settings.lifecycle;
        let items = self
            .store
            .event_stats(
                now,
                lifecycle.window(EventState::Active, now),
                lifecycle.window(EventState::Archived, now),
            )
            .await?;
        Ok(Arc::new(StatsSnapshot {
            computed_at: Instant::now(),
            items,
            json: std::sync::OnceLock::new(),
        }))
    }

    /// Per-trigger counts, from a cache that lives `ETP_STATS_CACHE_TTL` (zero: no cache).
    /// An expired snapshot younger than [`STATS_MAX_STALENESS`] TTLs is served while one
    /// background task recomputes it, so no request waits for a recomputation; an older or
    /// missing one is recomputed by one request while concurrent ones wait for its result.
    pub async fn stats(self: &Arc<Self>) -> AppResult<Arc<StatsSnapshot>> {
        let ttl = self.settings.stats_cache_ttl;
        if ttl.is_zero() {
            return self.compute_stats().await;
        }
        let cached = || {
            self.stats_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        if let Some(s) = cached() {
            let age = s.computed_at.elapsed();
            if age < ttl {
                return Ok(s);
            }
            if age < ttl * STATS_MAX_STALENESS {
                self.refresh_stats_in_background();
                return Ok(s);
            }
        }
        let _refreshing = self.stats_refresh.lock().await;
        // Someone may have refreshed while this request waited for the lock.
        if let Some(s) = cached()
            && s.computed_at.elapsed() < ttl
        {
            return Ok(s);
        }
        let fresh = self.compute_stats().await?;
        *self.stats_cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }

    fn refresh_stats_in_background(self: &Arc<Self>) {
        let Ok(refreshing) = self.stats_refresh.clone().try_lock_owned() else {
            return; // a refresh is already running
        };
        let app = self.clone();
        // A panic in the refresh is logged and counted by the hook; the lock guard is dropped
        // on unwinding, so the next request starts another refresh.
        tokio::spawn(async move {
            let _refreshing = refreshing;
            match app.compute_stats().await {
                Ok(fresh) => {
                    *app.stats_cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
                }
                Err(e) => tracing::error!(error = %e, "stats refresh failed"),
            }
        });
    }
}
