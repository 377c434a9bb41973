//! The per-key totals row (`trigger_event_totals`) as the writer reads and moves it: written
//! through at once, or, for a batch's logged firings, held on the writer thread and written
//! once per key before the batch commits.
//!
//! Why: under 32 clients firing one trigger, a batch holds hundreds of its firings, and each
//! rewrote the same row (an upsert, a fifth of the writer's time per firing). Readers see only
//! committed rows, so a row written once before the commit is all they can tell apart.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::unavailable;
use crate::ports::StoreError;

/// A key's totals: its newest trigger name and event time, its highest rank, and the id of its
/// last event at that time (`None`: not known, a row from an earlier version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Totals {
    pub name: String,
    pub last_fired: i64,
    pub last_seq: i64,
    pub last_id: Option<String>,
}

impl Totals {
    /// The row once an event `id` of rank `highest` fired at `fired` is counted: exactly what
    /// [`count`]'s upsert makes of it (the newest name wins; `last_id` follows the last
    /// event, and an unknown one stays unknown until a later millisecond).
    fn count(row: &mut Option<Self>, name: &str, fired: i64, highest: i64, id: &str) {
        let Some(t) = row else {
            *row = Some(Self {
                name: name.to_string(),
                last_fired: fired,
                last_seq: highest,
                last_id: Some(id.to_string()),
            });
            return;
        };
        t.last_seq = highest;
        // In place: the strings keep their buffers.
        if fired >= t.last_fired && t.name != name {
            name.clone_into(&mut t.name);
        }
        match &mut t.last_id {
            Some(last) if fired > t.last_fired || (fired == t.last_fired && id > last.as_str()) => {
                id.clone_into(last);
            }
            None if fired > t.last_fired => t.last_id = Some(id.to_string()),
            _ => {}
        }
        t.last_fired = t.last_fired.max(fired);
    }
}

/// A key's row as the batch sees it, and whether the table still holds an older one.
struct Held {
    row: Option<Totals>,
    dirty: bool,
}

thread_local! {
    /// Set on the writer thread while it runs a logged firing's write.
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// Rows read or moved by the current batch's logged firings.
    static HELD: RefCell<HashMap<String, Held>> = RefCell::new(HashMap::new());
}

/// Runs `f` with totals held rather than written (the writer, for a logged firing's write).
pub(super) fn deferring<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DEFERRING.set(false);
        }
    }
    DEFERRING.set(true);
    let _reset = Reset;
    f()
}

/// Writes the rows held by this thread and forgets them: before any other write reads the
/// table, and before the batch commits. On an error the batch must not commit.
pub(super) fn flush(conn: &Connection) -> Result<(), StoreError> {
    let held = HELD.with_borrow_mut(std::mem::take);
    for (key, held) in held {
        let (Some(t), true) = (held.row, held.dirty) else {
            continue;
        };
        conn.prepare_cached(
            "INSERT INTO trigger_event_totals
               (trigger_key, trigger_name, last_fired_ms, last_seq, last_id)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(trigger_key) DO UPDATE SET trigger_name = excluded.trigger_name,
               last_fired_ms = excluded.last_fired_ms, last_seq = excluded.last_seq,
               last_id = excluded.last_id",
        )
        .and_then(|mut st| st.execute(params![key, t.name, t.last_fired, t.last_seq, t.last_id]))
        .map_err(unavailable)?;
    }
    Ok(())
}

/// Forgets the rows held by this thread unwritten (their batch was rolled back).
pub(super) fn forget() {
    HELD.with_borrow_mut(HashMap::clear);
}

fn select(tx: &Connection, key: &str) -> Result<Option<Totals>, StoreError> {
    tx.prepare_cached(
        "SELECT trigger_name, last_fired_ms, last_seq, last_id FROM trigger_event_totals
         WHERE trigger_key = ?1",
    )
    .and_then(|mut st| {
        st.query_row(params![key], |r| {
            Ok(Totals {
                name: r.get(0)?,
                last_fired: r.get(1)?,
                last_seq: r.get(2)?,
                last_id: r.get(3)?,
            })
        })
        .optional()
    })
    .map_err(unavailable)
}

/// What `look` makes of `key`'s totals row as this write sees it.
pub(super) fn read<R>(
    tx: &Connection,
    key: &str,
    look: impl FnOnce(Option<&Totals>) -> R,
) -> Result<R, StoreError> {
    if !DEFERRING.get() {
        return Ok(look(select(tx, key)?.as_ref()));
    }
    hold(tx, key)?;
    Ok(HELD.with_borrow(|h| look(h.get(key).and_then(|held| held.row.as_ref()))))
}

/// Makes sure `key`'s row is held (read from the table on first use).
fn hold(tx: &Connection, key: &str) -> Result<(), StoreError> {
    if HELD.with_borrow(|h| h.contains_key(key)) {
        return Ok(());
    }
    let row = select(tx, key)?;
    HELD.with_borrow_mut(|h| h.insert(key.to_string(), Held { row, dirty: false }));
    Ok(())
}

/// Counts a just-inserted event in its key's totals row.
pub(super) fn count(
    tx: &Connection,
    key: &str,
    fired: i64,
    name: &str,
    highest: i64,
    id: &str,
) -> Result<(), StoreError> {
    if DEFERRING.get() {
        hold(tx, key)?;
        HELD.with_borrow_mut(|h| {
            if let Some(held) = h.get_mut(key) {
                Totals::count(&mut held.row, name, fired, highest, id);
                held.dirty = true;
            }
        });
        return Ok(());
    }
    // Written through: one upsert.
    tx.prepare_cached(
        "INSERT INTO trigger_event_totals
           (trigger_key, trigger_name, last_fired_ms, last_seq, last_id)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(trigger_key) DO UPDATE SET last_seq = ?4,
           trigger_name = CASE WHEN ?3 >= last_fired_ms THEN ?2 ELSE trigger_name END,
           last_id = CASE WHEN ?3 > last_fired_ms THEN ?5
             WHEN ?3 = last_fired_ms AND ?5 > last_id THEN ?5 ELSE last_id END,
           last_fired_ms = max(last_fired_ms, ?3)",
    )
    .and_then(|mut st| st.execute(params![key, name, fired, highest, id]))
    .map_err(unavailable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE trigger_event_totals (
                trigger_key TEXT PRIMARY KEY, trigger_name TEXT NOT NULL,
                last_fired_ms INTEGER NOT NULL, last_seq INTEGER NOT NULL, last_id TEXT
             ) WITHOUT ROWID;",
        )
        .unwrap();
        conn
    }

    /// Held rows end up exactly as the upsert leaves them, for every order of arrival: later,
    /// same millisecond (higher and lower id), earlier, and an unknown `last_id`.
    #[test]
    fn held_rows_match_the_upsert() {
        let firings: &[(&str, i64, &str, i64, &str)] = &[
            ("a", 10, "n1", 1, "01b"),
            ("a", 12, "n2", 2, "01c"),
            ("a", 12, "n3", 3, "01d"),
            ("a", 12, "n4", 4, "01a"),
            ("a", 11, "n5", 5, "01e"),
            ("b", 5, "m1", 1, "01x"),
            ("c", 7, "k1", 9, "01z"),
            ("c", 7, "k2", 10, "01zz"),
        ];
        let direct = table();
        let held = table();
        for conn in [&direct, &held] {
            // A row from an earlier version: no last_id.
            conn.execute(
                "INSERT INTO trigger_event_totals VALUES ('c', 'old', 7, 8, NULL)",
                [],
            )
            .unwrap();
        }
        for &(key, fired, name, highest, id) in firings {
            count(&direct, key, fired, name, highest, id).unwrap();
            deferring(|| count(&held, key, fired, name, highest, id)).unwrap();
            assert_eq!(
                deferring(|| read(&held, key, |t| t.cloned())).unwrap(),
                select(&direct, key).unwrap(),
                "after {id}"
            );
        }
        // Nothing reached the table before the flush.
        assert_eq!(select(&held, "a").unwrap(), None);
        flush(&held).unwrap();
        for key in ["a", "b", "c"] {
            assert_eq!(select(&held, key).unwrap(), select(&direct, key).unwrap());
        }
        assert!(HELD.with_borrow(HashMap::is_empty), "a flush forgets");
    }

    #[test]
    fn forgotten_rows_are_never_written() {
        let conn = table();
        deferring(|| count(&conn, "a", 1, "n", 1, "01a")).unwrap();
        forget();
        flush(&conn).unwrap();
        assert_eq!(select(&conn, "a").unwrap(), None);
    }
}
