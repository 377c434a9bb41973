//! Scheduled test runs on SQLite: the definition and secret the timer's job points at.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, decode, encode, ms, unavailable};
use crate::domain::target::Secret;
use crate::domain::test_run::ScheduledTestRun;
use crate::ports::{Page, StoreError, TestRunStore, cursor};

#[async_trait]
impl TestRunStore for SqliteStore {
    async fn insert_test_run(
        &self,
        run: &ScheduledTestRun,
        max_pending: u64,
    ) -> Result<(), StoreError> {
        let (body, run) = (encode(run)?, run.clone());
        self.write(move |c| {
            // At most a few hundred rows: counting them is cheap.
            let waiting: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM test_runs")
                .and_then(|mut st| st.query_row([], |r| r.get(0)))
                .map_err(unavailable)?;
            if u64::try_from(waiting).unwrap_or(0) >= max_pending {
                return Err(StoreError::QuotaExceeded {
                    what: "scheduled test runs",
                    limit: max_pending,
                });
            }
            let inserted = c
                .prepare_cached(
                    "INSERT INTO test_runs (id, scheduled_ms, body, secret) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(id) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        run.id,
                        ms(run.scheduled_for),
                        body,
                        run.secret.as_ref().map(Secret::expose)
                    ])
                })
                .map_err(unavailable)?;
            if inserted == 1 {
                Ok(())
            } else {
                Err(StoreError::AlreadyExists)
            }
        })
        .await
    }

    async fn get_test_run(&self, id: &str) -> Result<Option<ScheduledTestRun>, StoreError> {
        let row: Option<(String, Option<String>)> = self.read_now(|c| {
            c.prepare_cached("SELECT body, secret FROM test_runs WHERE id = ?1")
                .and_then(|mut st| {
                    st.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(unavailable)
        })?;
        row.map(|(body, secret)| {
            let mut run: ScheduledTestRun = decode(&body)?;
            run.secret = secret.map(Secret::from_stored);
            Ok(run)
        })
        .transpose()
    }

    async fn list_test_runs(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ScheduledTestRun>, StoreError> {
        let after = cursor.map(cursor::decode).transpose()?.unwrap_or_default();
        let limit = limit.max(1);
        let rows: Vec<(String, String)> = self.read_now(|c| {
            c.prepare_cached("SELECT id, body FROM test_runs WHERE id > ?1 ORDER BY id LIMIT ?2")
                .and_then(|mut st| {
                    st.query_map(params![after, (limit + 1) as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(unavailable)
        })?;
        Page::from_overfetch(rows, limit, |(id, _)| cursor::encode(id))
            .try_map(|(_, body)| decode(&body))
    }

    async fn delete_test_run(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM test_runs WHERE id = ?1", params![id])
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }
}
