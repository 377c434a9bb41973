//! The database layout: tables, indexes, connection settings and the migrations that bring an
//! older data directory up to date.

use std::path::Path;

use rusqlite::{Connection, params};

use super::{decode, encode};
use crate::domain::event::Event;
use crate::domain::target::Secret;
use crate::domain::test_run::ScheduledTestRun;
use crate::domain::trigger::{Trigger, TriggerDefinition};

/// The encoding of trigger and event bodies, kept in `PRAGMA user_version`: listings serve the
/// stored JSON as it is, so a change to the JSON shape of `Trigger` or `Event` must raise this
/// (the test `body_format_is_current` fails until it does); [`migrate`] then rewrites every body.
pub(super) const BODY_FORMAT: i64 = 2;

/// Tables; indexes come after [`migrate`], which may add the columns they cover.
pub(super) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS triggers (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
    version INTEGER NOT NULL, body TEXT NOT NULL
) WITHOUT ROWID;
-- seq: the event's rank among its trigger's events in (fired_ms, id) order, 1 for the first
-- ever recorded; purges leave the survivors' ranks alone, so counts are differences of ranks.
-- dedupe_key: unique where set (see DEDUPE_INDEX).
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, trigger_key TEXT NOT NULL, source TEXT NOT NULL,
    is_test INTEGER NOT NULL, fired_ms INTEGER NOT NULL, dedupe_key TEXT,
    body TEXT NOT NULL, seq INTEGER NOT NULL DEFAULT 0
);
-- One row per trigger key with events: the newest name and time, and the highest seq.
-- last_id: the id of the key's last event at last_fired_ms when known (NULL: not known), so a
-- firing in the same millisecond as the last one takes its rank without a lookup.
CREATE TABLE IF NOT EXISTS trigger_event_totals (
    trigger_key TEXT PRIMARY KEY, trigger_name TEXT NOT NULL, last_fired_ms INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, last_id TEXT
) WITHOUT ROWID;
-- What a trigger's body never holds: its signing secret, the one a rotation replaced (signing
-- beside it until retiring_until_ms) and its target's header values (JSON; write-only).
CREATE TABLE IF NOT EXISTS trigger_secrets (
    id TEXT PRIMARY KEY, secret TEXT NOT NULL, retiring TEXT, retiring_until_ms INTEGER,
    headers TEXT
) WITHOUT ROWID;
-- host: the target's, so one slow host cannot take every delivery slot.
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT PRIMARY KEY, due_ms INTEGER, plan TEXT NOT NULL, host TEXT NOT NULL DEFAULT '',
    claim_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(due_ms) WHERE due_ms IS NOT NULL;
-- Bodies of triggers that could not be read at start-up, as they were (see quarantine_trigger).
CREATE TABLE IF NOT EXISTS quarantined_triggers (
    id TEXT PRIMARY KEY, body TEXT NOT NULL, reason TEXT NOT NULL
) WITHOUT ROWID;
-- Scheduled test runs waiting for their time (the timer's job holds only the id).
CREATE TABLE IF NOT EXISTS test_runs (
    id TEXT PRIMARY KEY, scheduled_ms INTEGER NOT NULL, body TEXT NOT NULL, secret TEXT
) WITHOUT ROWID;
-- Running counts that quotas check without counting rows (name -> n).
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
-- Scoped API keys by the SHA-256 of the key (the key itself is never kept); last_used_ms
-- apart from the body, so marking a key used rewrites one column.
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, body TEXT NOT NULL, last_used_ms INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timer_jobs (
    key TEXT PRIMARY KEY, due_ms INTEGER NOT NULL, generation INTEGER NOT NULL, test_run TEXT
) WITHOUT ROWID;
";

pub(super) const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS triggers_by_kind ON triggers(kind, id);
CREATE INDEX IF NOT EXISTS triggers_by_status ON triggers(status, id);
-- Time order for global listings and purges.
CREATE INDEX IF NOT EXISTS events_by_fired ON events(fired_ms, id);
-- Per-trigger listings; seq makes it covering for the stats' rank lookups.
CREATE INDEX IF NOT EXISTS events_by_trigger_seq ON events(trigger_key, fired_ms, id, seq);
";

/// Dedupe keys are unique where set. Most events have none, and a `UNIQUE` column would still
/// index each of them (a NULL entry per firing: an eighth of the writer's insert time).
/// Databases from earlier versions keep their `UNIQUE` column, which enforces the same.
const DEDUPE_INDEX: &str = "CREATE UNIQUE INDEX IF NOT EXISTS events_by_dedupe_key
    ON events(dedupe_key) WHERE dedupe_key IS NOT NULL;";

/// Brings a database written by an earlier version to the current layout, in one transaction:
/// per-trigger ranks replace the per-hour counters, whose stats cost grew with the log.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let has_seq: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('events') WHERE name = 'seq'",
        [],
        |r| r.get(0),
    )?;
    let has_host: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('deliveries') WHERE name = 'host'",
        [],
        |r| r.get(0),
    )?;
    let has_claim: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('deliveries') WHERE name = 'claim_ms'",
        [],
        |r| r.get(0),
    )?;
    let has_last_id: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('trigger_event_totals') WHERE name = 'last_id'",
        [],
        |r| r.get(0),
    )?;
    let secret_columns: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('trigger_secrets') WHERE name = 'headers'",
        [],
        |r| r.get(0),
    )?;
    // The UNIQUE column of earlier versions (its index's origin is 'u').
    let unique_dedupe: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_index_list('events') WHERE origin = 'u'",
        [],
        |r| r.get(0),
    )?;
    let tx = conn.transaction()?;
    if !unique_dedupe {
        tx.execute_batch(DEDUPE_INDEX)?;
    }
    if secret_columns == 0 {
        tx.execute_batch(
            "ALTER TABLE trigger_secrets ADD COLUMN retiring TEXT;
             ALTER TABLE trigger_secrets ADD COLUMN retiring_until_ms INTEGER;
             ALTER TABLE trigger_secrets ADD COLUMN headers TEXT;",
        )?;
    }
    if !has_host {
        tx.execute_batch("ALTER TABLE deliveries ADD COLUMN host TEXT NOT NULL DEFAULT '';")?;
    }
    if !has_claim {
        tx.execute_batch("ALTER TABLE deliveries ADD COLUMN claim_ms INTEGER;")?;
    }
    if !has_last_id {
        tx.execute_batch("ALTER TABLE trigger_event_totals ADD COLUMN last_id TEXT;")?;
    }
    if !has_seq {
        tracing::info!("migrating the event log to per-trigger ranks (once)");
        tx.execute_batch(
            "ALTER TABLE events ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
             WITH ranked AS (SELECT id, ROW_NUMBER() OVER
                 (PARTITION BY trigger_key ORDER BY fired_ms, id) AS r FROM events)
             UPDATE events SET seq = ranked.r FROM ranked WHERE ranked.id = events.id;
             INSERT OR REPLACE INTO trigger_event_totals
                 (trigger_key, trigger_name, last_fired_ms, last_seq)
             SELECT trigger_key, json_extract(body, '$.trigger_name'), fired_ms, MAX(seq)
             FROM events GROUP BY trigger_key;",
        )?;
    }
    tx.execute_batch(
        "DROP TABLE IF EXISTS event_counts;
         DROP INDEX IF EXISTS events_by_time;
         DROP INDEX IF EXISTS events_by_trigger;",
    )?;
    // The trigger count starts from the rows there are (once; a constant false WHERE skips
    // the scan when the counter exists).
    tx.execute_batch(
        "INSERT OR IGNORE INTO counters (name, n)
         SELECT 'triggers', COUNT(*) FROM triggers
         WHERE NOT EXISTS (SELECT 1 FROM counters WHERE name = 'triggers');",
    )?;
    move_test_runs_out_of_timer_jobs(&tx)?;
    let format: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if format < BODY_FORMAT {
        if format < 2 {
            move_header_values_aside(&tx)?;
        }
        reencode::<Trigger>(&tx, "triggers")?;
        reencode::<Event>(&tx, "events")?;
        tx.execute_batch(&format!("PRAGMA user_version = {BODY_FORMAT};"))?;
    }
    tx.commit()
}

/// Format 1 kept a target's header values in the trigger's body, which listings send as is;
/// they now live in `trigger_secrets.headers` and bodies carry the names only. Copies each
/// body's values over before the bodies are rewritten.
fn move_header_values_aside(tx: &Connection) -> rusqlite::Result<()> {
    let rows: Vec<(String, String)> = tx
        .prepare("SELECT id, body FROM triggers WHERE body LIKE '%\"headers\"%'")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, body) in rows {
        let Ok(t) = decode::<Trigger>(&body) else {
            continue;
        };
        let Some(headers) = t.target.map(|t| t.headers).filter(|h| !h.is_empty()) else {
            continue;
        };
        let Ok(json) = encode(&headers) else { continue };
        tx.execute(
            "UPDATE trigger_secrets SET headers = ?2 WHERE id = ?1",
            params![id, json],
        )?;
    }
    Ok(())
}

/// Earlier versions kept a test run's definition (and secret) in its timer job; now the
/// `test_runs` table holds it and the job only the id. Moves each such run over, once; one
/// that cannot be read is logged and dropped (it could never have fired).
fn move_test_runs_out_of_timer_jobs(tx: &Connection) -> rusqlite::Result<()> {
    #[derive(serde::Deserialize)]
    struct Legacy {
        definition: TriggerDefinition,
        #[serde(default)]
        secret: Option<Secret>,
    }
    let legacy: Vec<(String, i64, String)> = tx
        .prepare("SELECT key, due_ms, test_run FROM timer_jobs WHERE test_run IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (key, due_ms, raw) in legacy {
        let id = key.trim_start_matches("test:").to_string();
        let parsed = serde_json::from_str::<Legacy>(&raw).or_else(|_| {
            serde_json::from_str::<TriggerDefinition>(&raw).map(|definition| Legacy {
                definition,
                secret: None,
            })
        });
        let when = chrono::DateTime::from_timestamp_millis(due_ms);
        match (parsed, when) {
            (Ok(l), Some(at)) => {
                let run = ScheduledTestRun {
                    id: id.clone(),
                    definition: l.definition,
                    scheduled_for: at,
                    created_at: at,
                    secret: None,
                };
                let body = serde_json::to_string(&run).unwrap_or_default();
                tx.execute(
                    "INSERT OR IGNORE INTO test_runs (id, scheduled_ms, body, secret)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, due_ms, body, l.secret.as_ref().map(Secret::expose)],
                )?;
                tx.execute(
                    "UPDATE timer_jobs SET test_run = NULL WHERE key = ?1",
                    params![key],
                )?;
            }
            _ => {
                tracing::error!(
                    key,
                    "dropping an unreadable test run left by an earlier version"
                );
                tx.execute("DELETE FROM timer_jobs WHERE key = ?1", params![key])?;
            }
        }
    }
    Ok(())
}

/// Rewrites every body of `table` (keyed by `id`) in the current encoding of `T`, so listings
/// can serve bodies as stored. Reads in key batches and writes between them, never while a read
/// is open on the table. An unreadable body stays as it is; reading that row reports it.
pub(super) fn reencode<T: serde::de::DeserializeOwned + serde::Serialize>(
    tx: &Connection,
    table: &str,
) -> rusqlite::Result<()> {
    let mut read = tx.prepare(&format!(
        "SELECT id, body FROM {table} WHERE id > ?1 ORDER BY id LIMIT 10000"
    ))?;
    let mut write = tx.prepare(&format!("UPDATE {table} SET body = ?2 WHERE id = ?1"))?;
    let (mut after, mut n) = (String::new(), 0u64);
    loop {
        let batch: Vec<(String, String)> = read
            .query_map(params![after], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let Some((last, _)) = batch.last() else { break };
        after = last.clone();
        for (id, body) in batch {
            let Ok(current) = decode::<T>(&body).and_then(|v| encode(&v)) else {
                tracing::warn!(table, id, "body not readable; left as it is");
                continue;
            };
            if current != body {
                write.execute(params![id, current])?;
                n += 1;
            }
        }
    }
    if n > 0 {
        tracing::info!(table, rows = n, "bodies rewritten in the current encoding");
    }
    Ok(())
}

pub(super) fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // NORMAL keeps every commit across a process crash (kill -9); only power loss can drop the
    // last few, which WAL then rolls back cleanly.
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;
         PRAGMA temp_store=MEMORY;",
    )?;
    Ok(conn)
}
