//! Triggers on SQLite: rows, writes with version checks, listings, and unreadable rows.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::{
    Filter, SqliteStore, decode, encode, from_ms, ms, note_trigger_write, text, unavailable,
};
use crate::domain::target::{RetiringSecret, Secret};
use crate::domain::trigger::{Trigger, TriggerKind, TriggerStatus};
use crate::ports::{Page, StoreError, TriggerJson, TriggerQuery, TriggerStore, cursor};

/// A stored trigger row as a trigger; an unreadable body becomes [`Trigger::unreadable`].
fn trigger_from_row(id: &str, kind: &str, version: i64, body: &str) -> Trigger {
    decode::<Trigger>(body).unwrap_or_else(|e| {
        tracing::error!(trigger_id = id, error = %e, "stored trigger is unreadable; shown as broken");
        let kind = match kind {
            "api" => TriggerKind::Api,
            _ => TriggerKind::Scheduled,
        };
        Trigger::unreadable(
            id,
            kind,
            u64::try_from(version).unwrap_or(0),
            "its stored definition could not be read; PUT a new definition or DELETE it".into(),
        )
    })
}

/// Inserts (`expected` = None) or replaces at `expected` version; returns rows changed.
pub(super) fn write_trigger(
    c: &Connection,
    t: &Trigger,
    expected: Option<u64>,
) -> Result<(), StoreError> {
    let body = encode(t)?;
    note_trigger_write();
    let (sql, expected) = match expected {
        None => (
            "INSERT INTO triggers (id, kind, status, version, body)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO NOTHING",
            None,
        ),
        Some(v) => (
            "UPDATE triggers SET kind = ?2, status = ?3, version = ?4, body = ?5
             WHERE id = ?1 AND version = ?6",
            Some(v as i64),
        ),
    };
    let (kind, status, version) = (t.kind.as_str(), t.status.as_str(), t.version as i64);
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&t.id, &kind, &status, &version, &body];
    values.extend(expected.as_ref().map(|v| v as &dyn rusqlite::ToSql));
    let changed = c
        .prepare_cached(sql)
        .and_then(|mut st| st.execute(values.as_slice()))
        .map_err(unavailable)?;
    // What the body never holds: the secrets and the target's header values. A stand-in
    // (no secret) leaves the row of the trigger it stands in for as it was.
    if changed == 1
        && let Some(secret) = &t.secret
    {
        let headers = t
            .target
            .as_ref()
            .filter(|target| !target.headers.is_empty())
            .map(|target| encode(&target.headers))
            .transpose()?;
        let retiring = t.retiring_secret.as_ref();
        c.prepare_cached(
            "INSERT INTO trigger_secrets (id, secret, retiring, retiring_until_ms, headers)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET secret = ?2, retiring = ?3, retiring_until_ms = ?4,
               headers = ?5",
        )
        .and_then(|mut st| {
            st.execute(params![
                t.id,
                secret.expose(),
                retiring.map(|r| r.secret.expose()),
                retiring.map(|r| ms(r.until)),
                headers
            ])
        })
        .map_err(unavailable)?;
    }
    match (changed, expected) {
        (1, _) => Ok(()),
        (_, None) => Err(StoreError::AlreadyExists),
        (_, Some(_)) => Err(StoreError::VersionConflict),
    }
}

/// The `counters` row that counts stored triggers (for `ETP_MAX_TRIGGERS`).
const TRIGGERS: &str = "triggers";

/// The value of counter `name` (0 when it has no row yet).
pub(super) fn counter(c: &Connection, name: &str) -> Result<u64, StoreError> {
    let n: Option<i64> = c
        .prepare_cached("SELECT n FROM counters WHERE name = ?1")
        .and_then(|mut st| st.query_row(params![name], |r| r.get(0)).optional())
        .map_err(unavailable)?;
    Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

pub(super) fn add_to_counter(c: &Connection, name: &str, by: i64) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO counters (name, n) VALUES (?1, max(?2, 0))
         ON CONFLICT(name) DO UPDATE SET n = max(n + ?2, 0)",
    )
    .and_then(|mut st| st.execute(params![name, by]))
    .map_err(unavailable)?;
    Ok(())
}

impl SqliteStore {
    /// One page of trigger rows: id, kind, version and body.
    #[allow(clippy::type_complexity)]
    fn trigger_rows(
        &self,
        query: &TriggerQuery,
    ) -> Result<Page<(String, String, i64, String)>, StoreError> {
        let mut f = Filter::default();
        if let Some(cursor) = &query.cursor {
            f.add("id > ?", [text(&cursor::decode(cursor)?)]);
        }
        if let Some(kind) = query.kind {
            f.add("kind = ?", [text(kind.as_str())]);
        }
        // A pause whose end has passed is over: the stored status says `paused` until a write.
        const RESUMED: &str = "julianday(json_extract(body, '$.paused_until')) <= julianday(?)";
        match (
            query.status,
            query
                .now
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        ) {
            (Some(TriggerStatus::Active), Some(now)) => f.add(
                &format!("(status = 'active' OR (status = 'paused' AND {RESUMED}))"),
                [text(&now)],
            ),
            (Some(TriggerStatus::Paused), Some(now)) => f.add(
                &format!("(status = 'paused' AND NOT coalesce({RESUMED}, 0))"),
                [text(&now)],
            ),
            (Some(status), _) => f.add("status = ?", [text(status.as_str())]),
            (None, _) => {}
        }
        let limit = query.limit.max(1);
        let sql = format!(
            "SELECT id, kind, version, body FROM triggers {} ORDER BY id LIMIT {}",
            f.sql(),
            limit + 1
        );
        let rows: Vec<(String, String, i64, String)> = self.read_now(|c| {
            let mut stmt = c.prepare_cached(&sql).map_err(unavailable)?;
            let rows = stmt
                .query_map(params_from_iter(f.params), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<_>>().map_err(unavailable)
        })?;
        Ok(Page::from_overfetch(rows, limit, |(id, ..)| {
            cursor::encode(id)
        }))
    }
}

/// A trigger's row with its secrets' (see [`read_trigger_row`]).
struct TriggerRow {
    kind: String,
    version: i64,
    body: String,
    secret: Option<String>,
    retiring: Option<String>,
    retiring_until_ms: Option<i64>,
    headers: Option<String>,
}

impl TriggerRow {
    fn into_trigger(self, id: &str) -> Result<Trigger, StoreError> {
        let mut t = trigger_from_row(id, &self.kind, self.version, &self.body);
        t.secret = self.secret.map(Secret::from_stored);
        t.retiring_secret = self
            .retiring
            .zip(self.retiring_until_ms.and_then(from_ms))
            .map(|(s, until)| RetiringSecret {
                secret: Secret::from_stored(s),
                until,
            });
        if let (Some(target), Some(headers)) = (t.target.as_mut(), self.headers) {
            target.headers = decode(&headers)?;
        }
        Ok(t)
    }
}

/// The row of trigger `id` and its secrets, if it is stored.
fn read_trigger_row(c: &Connection, id: &str) -> Result<Option<TriggerRow>, StoreError> {
    c.prepare_cached(
        "SELECT t.kind, t.version, t.body, s.secret, s.retiring, s.retiring_until_ms, s.headers
         FROM triggers t LEFT JOIN trigger_secrets s ON s.id = t.id WHERE t.id = ?1",
    )
    .and_then(|mut s| {
        s.query_row(params![id], |r| {
            Ok(TriggerRow {
                kind: r.get(0)?,
                version: r.get(1)?,
                body: r.get(2)?,
                secret: r.get(3)?,
                retiring: r.get(4)?,
                retiring_until_ms: r.get(5)?,
                headers: r.get(6)?,
            })
        })
        .optional()
    })
    .map_err(unavailable)
}

#[async_trait]
impl TriggerStore for SqliteStore {
    async fn insert_trigger(&self, trigger: &Trigger, max_triggers: u64) -> Result<(), StoreError> {
        let t = trigger.clone();
        self.write(move |c| {
            let stored = counter(c, TRIGGERS)?;
            if stored >= max_triggers {
                return Err(StoreError::QuotaExceeded {
                    what: "triggers",
                    limit: max_triggers,
                });
            }
            write_trigger(c, &t, None)?;
            add_to_counter(c, TRIGGERS, 1)
        })
        .await
    }

    async fn get_trigger(&self, id: &str) -> Result<Option<Trigger>, StoreError> {
        let row = self.read_now(|c| read_trigger_row(c, id))?;
        row.map(|row| row.into_trigger(id)).transpose()
    }

    async fn get_triggers(&self, ids: &[&str]) -> Result<Vec<Option<Trigger>>, StoreError> {
        // One read transaction for all: a new one would see the writer's latest commit and
        // drop the connection's page cache, which a burst's commits do every few milliseconds.
        let rows = self.read_now(|c| {
            let tx = c.unchecked_transaction().map_err(unavailable)?;
            let rows = ids
                .iter()
                .map(|id| read_trigger_row(&tx, id))
                .collect::<Result<Vec<_>, _>>()?;
            tx.finish().map_err(unavailable)?;
            Ok(rows)
        })?;
        rows.into_iter()
            .zip(ids)
            .map(|(row, id)| row.map(|row| row.into_trigger(id)).transpose())
            .collect()
    }

    async fn list_triggers(&self, query: &TriggerQuery) -> Result<Page<Trigger>, StoreError> {
        Ok(self
            .trigger_rows(query)?
            .try_map(|(id, kind, version, body)| {
                Ok::<_, StoreError>(trigger_from_row(&id, &kind, version, &body))
            })?)
    }

    /// The stored bodies as they are: [`migrate`] keeps them in the current encoding.
    async fn list_triggers_json(
        &self,
        query: &TriggerQuery,
    ) -> Result<Page<TriggerJson>, StoreError> {
        self.trigger_rows(query)?
            .try_map(|(id, _, _, json)| Ok(TriggerJson { id, json }))
    }

    async fn replace_trigger(
        &self,
        trigger: &Trigger,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let t = trigger.clone();
        self.write(move |c| write_trigger(c, &t, Some(expected_version)))
            .await
    }

    async fn delete_trigger(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            note_trigger_write();
            let n = c
                .prepare_cached("DELETE FROM triggers WHERE id = ?1")
                .and_then(|mut st| st.execute(params![id]))
                .map_err(unavailable)?;
            c.prepare_cached("DELETE FROM trigger_secrets WHERE id = ?1")
                .and_then(|mut st| st.execute(params![id]))
                .map_err(unavailable)?;
            if n == 1 {
                add_to_counter(c, TRIGGERS, -1)?;
            }
            Ok(n == 1)
        })
        .await
    }

    fn trigger_writes(&self) -> Option<u64> {
        Some(
            self.inner
                .trigger_writes
                .load(std::sync::atomic::Ordering::Acquire),
        )
    }

    /// Counted on the kind and status columns (both indexed), bounded by `ETP_MAX_TRIGGERS`.
    async fn trigger_counts(
        &self,
    ) -> Result<Option<Vec<(TriggerKind, TriggerStatus, u64)>>, StoreError> {
        self.read_now(|c| {
            let mut stmt = c
                .prepare_cached("SELECT kind, status, COUNT(*) FROM triggers GROUP BY kind, status")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(unavailable)?;
            let mut counts = Vec::new();
            for row in rows {
                let (kind, status, n) = row.map_err(unavailable)?;
                let kind = match kind.as_str() {
                    "api" => TriggerKind::Api,
                    _ => TriggerKind::Scheduled,
                };
                let status = match status.as_str() {
                    "active" => TriggerStatus::Active,
                    "paused" => TriggerStatus::Paused,
                    "completed" => TriggerStatus::Completed,
                    _ => TriggerStatus::Broken,
                };
                counts.push((kind, status, u64::try_from(n).unwrap_or(0)));
            }
            Ok(Some(counts))
        })
    }
}
