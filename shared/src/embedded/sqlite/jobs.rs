//! The local timer's jobs and the delivery queue's due times: the tables only the embedded
//! timer and delivery worker use.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter};

use super::{SqliteStore, bare, encode, from_ms, ms, note_trigger_write, unavailable};
use crate::domain::trigger::Trigger;
use crate::ports::{DeliveryBacklog, JobMove, StoreError, TimerJob, TimerJobs};

#[async_trait]
impl TimerJobs for SqliteStore {
    async fn timer_jobs(&self) -> Result<Vec<TimerJob>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare("SELECT key, due_ms, generation FROM timer_jobs")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(TimerJob {
                        key: r.get(0)?,
                        due_ms: r.get(1)?,
                        generation: r.get(2)?,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)
        })
        .await
    }

    async fn put_timer_jobs(&self, jobs: Vec<TimerJob>) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let mut st = c
                .prepare_cached(
                    "INSERT INTO timer_jobs (key, due_ms, generation) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key) DO UPDATE SET due_ms = ?2, generation = ?3, test_run = NULL",
                )
                .map_err(unavailable)?;
            for job in &jobs {
                st.execute(params![job.key, job.due_ms, job.generation])
                    .map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    /// Only where still at `generation`, so a firing that finishes after the API rescheduled
    /// the trigger cannot undo that change.
    ///
    /// Without a savepoint (see [`bare`]): these statements fail only on a storage error, and
    /// a savepoint copied every page they touched into a sub-journal. Should the batch roll back,
    /// those jobs fire their occurrence once more after a restart, recording nothing new.
    async fn advance_timer_jobs(&self, moves: Vec<JobMove>) -> Result<(), StoreError> {
        self.write_bare(move |c| {
            bare(c, |c| {
                for m in &moves {
                    match m.next {
                        Some((due_ms, new_generation)) => c
                            .prepare_cached(
                                "UPDATE timer_jobs SET due_ms = ?3, generation = ?4
                             WHERE key = ?1 AND generation = ?2",
                            )
                            .and_then(|mut st| {
                                st.execute(params![m.key, m.generation, due_ms, new_generation])
                            }),
                        None => c
                            .prepare_cached(
                                "DELETE FROM timer_jobs WHERE key = ?1 AND generation = ?2",
                            )
                            .and_then(|mut st| st.execute(params![m.key, m.generation])),
                    }
                    .map_err(unavailable)?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn delete_timer_job(&self, key: String) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM timer_jobs WHERE key = ?1")
                .and_then(|mut st| st.execute(params![key]))
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    /// In one transaction, so the bytes are never lost between the two steps.
    async fn quarantine_trigger(
        &self,
        stand_in: Trigger,
        reason: String,
    ) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO quarantined_triggers (id, body, reason)
                 SELECT id, body, ?2 FROM triggers WHERE id = ?1",
                params![stand_in.id, reason],
            )
            .map_err(unavailable)?;
            note_trigger_write();
            c.execute(
                "UPDATE triggers SET status = ?2, version = ?3, body = ?4 WHERE id = ?1",
                params![
                    stand_in.id,
                    stand_in.status.as_str(),
                    stand_in.version as i64,
                    encode(&stand_in)?
                ],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl DeliveryBacklog for SqliteStore {
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip_hosts: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        // A logged firing's delivery row is written after its answer (the intake log).
        self.settled().await;
        let now = ms(now);
        // At most CONCURRENCY / PER_HOST hosts are ever skipped: a short list of parameters.
        let skip = (0..skip_hosts.len())
            .map(|i| format!("?{}", i + 3))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT event_id, host FROM deliveries WHERE due_ms IS NOT NULL AND due_ms <= ?1
             AND host NOT IN ({skip}) ORDER BY due_ms LIMIT ?2"
        );
        self.read_now(|c| {
            let mut params: Vec<SqlValue> = vec![
                SqlValue::Integer(now),
                SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
            ];
            params.extend(skip_hosts.iter().map(|h| SqlValue::Text(h.clone())));
            c.prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_map(params_from_iter(params), |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<Vec<(String, String)>>>()
                })
                .map_err(unavailable)
        })
    }

    async fn next_delivery_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.settled().await;
        let due: Option<i64> = self.read_now(|c| {
            c.prepare_cached("SELECT min(due_ms) FROM deliveries WHERE due_ms IS NOT NULL")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(unavailable)
        })?;
        Ok(due.and_then(from_ms))
    }

    async fn postpone_delivery(
        &self,
        event_id: &str,
        due: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let (id, due) = (event_id.to_string(), due.map(ms));
        self.write(move |c| {
            c.execute(
                "UPDATE deliveries SET due_ms = ?2 WHERE event_id = ?1",
                params![id, due],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}
