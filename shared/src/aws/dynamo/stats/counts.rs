//! Counts as of where the window edges stood, moved exactly by the events that crossed an
//! edge since, and their compressed stored form.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::super::{from_ms, trigger_id_of, unavailable};
use crate::ports::{StoreError, TriggerStats};

/// Where the windows stood for a set of counts: events fired in `(active_after, upto]` are
/// active, in `(retain_after, active_after]` archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Cuts {
    pub(super) upto: i64,
    pub(super) active_after: i64,
    pub(super) retain_after: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Active,
    Archived,
}

impl Cuts {
    pub(super) fn class(&self, fired: i64) -> Option<Class> {
        if fired > self.upto || fired <= self.retain_after {
            None
        } else if fired > self.active_after {
            Some(Class::Active)
        } else {
            Some(Class::Archived)
        }
    }

    /// Whether every edge of `self` is at or after the same edge of `other`.
    pub(super) fn not_before(&self, other: &Cuts) -> bool {
        self.upto >= other.upto
            && self.active_after >= other.active_after
            && self.retain_after >= other.retain_after
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Row {
    pub(super) name: String,
    pub(super) active: i64,
    pub(super) archived: i64,
    pub(super) last_fired_ms: i64,
}

impl Row {
    pub(super) fn add(&mut self, class: Class, by: i64) {
        match class {
            Class::Active => self.active += by,
            Class::Archived => self.archived += by,
        }
    }
}

/// Per-trigger counts as of some cuts; keyed by trigger key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) cuts: Cuts,
    /// When these counts were last computed from the counters rather than moved.
    pub(super) rebuilt_ms: i64,
    pub(super) rows: BTreeMap<String, Row>,
}

/// The stored form: columns compress far better than rows (ids share their time prefix).
#[derive(Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) cuts: Cuts,
    pub(super) rebuilt_ms: i64,
    pub(super) keys: Vec<String>,
    pub(super) names: Vec<String>,
    pub(super) active: Vec<i64>,
    pub(super) archived: Vec<i64>,
    pub(super) last: Vec<i64>,
}

/// The one field of a stored event body a crossing needs.
#[derive(Deserialize)]
pub(super) struct Named {
    pub(super) trigger_name: String,
}

/// One event that may have crossed an edge: its trigger key, fired time, and name if stored.
pub(super) struct Crossing {
    pub(super) key: String,
    pub(super) fired_ms: i64,
    pub(super) name: Option<String>,
}

impl Counts {
    pub(super) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let rows = &self.rows;
        let stored = Stored {
            cuts: self.cuts,
            rebuilt_ms: self.rebuilt_ms,
            keys: rows.keys().cloned().collect(),
            names: rows.values().map(|r| r.name.clone()).collect(),
            active: rows.values().map(|r| r.active).collect(),
            archived: rows.values().map(|r| r.archived).collect(),
            last: rows.values().map(|r| r.last_fired_ms).collect(),
        };
        let json = serde_json::to_vec(&stored).map_err(unavailable)?;
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&json).map_err(unavailable)?;
        z.finish().map_err(unavailable)
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut json = Vec::new();
        flate2::read::DeflateDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(|e| StoreError::Corrupt(format!("stats snapshot: {e}")))?;
        let s: Stored = serde_json::from_slice(&json)
            .map_err(|e| StoreError::Corrupt(format!("stats snapshot: {e}")))?;
        let n = s.keys.len();
        if [
            s.names.len(),
            s.active.len(),
            s.archived.len(),
            s.last.len(),
        ] != [n; 4]
        {
            return Err(StoreError::Corrupt("stats snapshot columns differ".into()));
        }
        let mut rows = BTreeMap::new();
        for (i, key) in s.keys.into_iter().enumerate() {
            rows.insert(
                key,
                Row {
                    name: s.names[i].clone(),
                    active: s.active[i],
                    archived: s.archived[i],
                    last_fired_ms: s.last[i],
                },
            );
        }
        Ok(Counts {
            cuts: s.cuts,
            rebuilt_ms: s.rebuilt_ms,
            rows,
        })
    }

    /// Moves the counts from their cuts to `to` (every edge at or after the old one), given
    /// every event fired in the spans the edges swept.
    pub(super) fn moved(&self, to: Cuts, crossings: &[Crossing]) -> Counts {
        let mut rows = self.rows.clone();
        for c in crossings {
            let (was, is) = (self.cuts.class(c.fired_ms), to.class(c.fired_ms));
            if was == is {
                continue;
            }
            let row = rows.entry(c.key.clone()).or_default();
            if let Some(was) = was {
                row.add(was, -1);
            }
            if let Some(is) = is {
                row.add(is, 1);
                if c.fired_ms >= row.last_fired_ms {
                    row.last_fired_ms = c.fired_ms;
                    if let Some(name) = &c.name {
                        row.name.clone_from(name);
                    }
                }
            }
        }
        rows.retain(|key, r| {
            if r.active < 0 || r.archived < 0 {
                tracing::warn!(
                    key,
                    active = r.active,
                    archived = r.archived,
                    "stats drifted"
                );
            }
            r.active > 0 || r.archived > 0
        });
        Counts {
            cuts: to,
            rebuilt_ms: self.rebuilt_ms,
            rows,
        }
    }

    pub(super) fn into_stats(self) -> Vec<TriggerStats> {
        let mut out: Vec<TriggerStats> = self
            .rows
            .into_iter()
            .map(|(key, r)| TriggerStats {
                trigger_id: trigger_id_of(&key),
                trigger_name: r.name,
                active: r.active.max(0).unsigned_abs(),
                archived: r.archived.max(0).unsigned_abs(),
                last_fired_at: from_ms(r.last_fired_ms),
            })
            .collect();
        // Ad-hoc test runs (no trigger id) first, then by id, as the SQLite adapter orders them.
        out.sort_by(|a, b| a.trigger_id.cmp(&b.trigger_id));
        out
    }
}

/// The spans of fired times whose class may differ between `from` and `to`, merged.
pub(super) fn swept(from: &Cuts, to: &Cuts) -> Vec<(i64, i64)> {
    let mut spans = vec![
        (from.retain_after, to.retain_after),
        (from.active_after, to.active_after),
        (from.upto, to.upto),
    ];
    spans.retain(|(lo, hi)| lo < hi);
    spans.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (lo, hi) in spans {
        match merged.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuts(upto: i64, active_after: i64, retain_after: i64) -> Cuts {
        Cuts {
            upto,
            active_after,
            retain_after,
        }
    }

    fn crossing(key: &str, fired_ms: i64) -> Crossing {
        Crossing {
            key: key.into(),
            fired_ms,
            name: Some(format!("{key} at {fired_ms}")),
        }
    }

    /// Counts moved across every edge equal counts computed at the new cuts from scratch.
    #[test]
    fn moving_counts_equals_counting_again() {
        let fired: Vec<(&str, i64)> = (0..200)
            .map(|i| (if i % 3 == 0 { "a" } else { "b" }, i * 7))
            .collect();
        let count_at = |c: Cuts| {
            let mut rows: BTreeMap<String, Row> = BTreeMap::new();
            for (key, f) in &fired {
                if let Some(class) = c.class(*f) {
                    let row = rows.entry(key.to_string()).or_default();
                    row.add(class, 1);
                    if *f >= row.last_fired_ms {
                        row.last_fired_ms = *f;
                        row.name = format!("{key} at {f}");
                    }
                }
            }
            Counts {
                cuts: c,
                rebuilt_ms: 0,
                rows,
            }
        };
        for (from, to) in [
            (cuts(500, 400, 100), cuts(560, 460, 160)),
            (cuts(500, 400, 100), cuts(1400, 1300, 1000)),
            (cuts(500, 400, 100), cuts(500, 450, 100)),
            (cuts(300, 300, 0), cuts(900, 880, 850)),
        ] {
            let crossings: Vec<Crossing> = swept(&from, &to)
                .into_iter()
                .flat_map(|(lo, hi)| {
                    fired
                        .iter()
                        .filter(move |(_, f)| *f > lo && *f <= hi)
                        .map(|(k, f)| crossing(k, *f))
                })
                .collect();
            assert_eq!(
                count_at(from).moved(to, &crossings),
                count_at(to),
                "{from:?} -> {to:?}"
            );
        }
    }

    #[test]
    fn swept_spans_merge_when_they_overlap() {
        assert_eq!(
            swept(&cuts(50, 40, 10), &cuts(60, 50, 20)),
            vec![(10, 20), (40, 60)]
        );
        assert_eq!(swept(&cuts(5, 4, 1), &cuts(5, 4, 1)), vec![]);
    }

    #[test]
    fn the_snapshot_round_trips_compressed() {
        let mut rows = BTreeMap::new();
        for i in 0..1000 {
            rows.insert(
                crate::domain::new_id(),
                Row {
                    name: format!("trigger {i}"),
                    active: i % 5,
                    archived: i,
                    last_fired_ms: 1_700_000_000_000 + i,
                },
            );
        }
        let counts = Counts {
            cuts: cuts(3, 2, 1),
            rebuilt_ms: 9,
            rows,
        };
        let bytes = counts.encode().unwrap();
        assert!(
            bytes.len() < 40 * 1000,
            "{} bytes for 1000 rows",
            bytes.len()
        );
        assert_eq!(Counts::decode(&bytes).unwrap(), counts);
        assert!(Counts::decode(b"not deflate").is_err());
    }
}
