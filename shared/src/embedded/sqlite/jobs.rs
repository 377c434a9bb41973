//! The local timer's jobs and the delivery queue's due times: the tables only the embedded
//! timer and delivery worker use.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{SqliteStore, from_ms, ms, unavailable};
use crate::ports::StoreError;

/// A job the local timer keeps: when it is due and, for test runs, the definition to fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerJob {
    pub key: String,
    pub due_ms: i64,
    pub generation: i64,
    pub test_run: Option<String>,
}

impl SqliteStore {
    /// Events whose delivery is due at `now`, earliest first (the local delivery queue).
    pub async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let now = ms(now);
        self.read_now(|c| {
            c.prepare_cached(
                "SELECT event_id FROM deliveries WHERE due_ms IS NOT NULL AND due_ms <= ?1
                 ORDER BY due_ms LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![now, limit as i64], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(unavailable)
        })
    }

    /// When the earliest pending delivery is due.
    pub async fn next_delivery_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let due: Option<i64> = self.read_now(|c| {
            c.prepare_cached("SELECT min(due_ms) FROM deliveries WHERE due_ms IS NOT NULL")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(unavailable)
        })?;
        Ok(due.and_then(from_ms))
    }

    pub async fn timer_jobs(&self) -> Result<Vec<TimerJob>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare("SELECT key, due_ms, generation, test_run FROM timer_jobs")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(TimerJob {
                        key: r.get(0)?,
                        due_ms: r.get(1)?,
                        generation: r.get(2)?,
                        test_run: r.get(3)?,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)
        })
        .await
    }

    /// Writes a job, replacing any with the same key.
    pub async fn put_timer_job(&self, job: TimerJob) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO timer_jobs (key, due_ms, generation, test_run) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(key) DO UPDATE SET due_ms = ?2, generation = ?3, test_run = ?4",
                params![job.key, job.due_ms, job.generation, job.test_run],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    /// Moves a job to `next` (or removes it) only if it is still generation `generation`, so a firing
    /// that finishes after the API rescheduled the trigger cannot undo that change.
    pub async fn advance_timer_job(
        &self,
        key: String,
        generation: i64,
        next: Option<(i64, i64)>,
    ) -> Result<bool, StoreError> {
        self.write(move |c| {
            let changed = match next {
                Some((due_ms, new_generation)) => {
                    c.prepare_cached(
                        "UPDATE timer_jobs SET due_ms = ?3, generation = ?4
                         WHERE key = ?1 AND generation = ?2",
                    )
                    .and_then(|mut st| st.execute(params![key, generation, due_ms, new_generation]))
                }
                None => c
                    .prepare_cached("DELETE FROM timer_jobs WHERE key = ?1 AND generation = ?2")
                    .and_then(|mut st| st.execute(params![key, generation])),
            }
            .map_err(unavailable)?;
            Ok(changed == 1)
        })
        .await
    }

    pub async fn delete_timer_job(&self, key: String) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute("DELETE FROM timer_jobs WHERE key = ?1", params![key])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}
