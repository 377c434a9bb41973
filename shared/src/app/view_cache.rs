//! Rendered reads (one trigger's view, a page of triggers or of events), kept only while exact:
//! nothing they read has been written since (the store's write counts) and `now` is before the
//! first instant any of it reads differently (a trigger's next firing or the end of its pause;
//! the next event to be archived or to expire).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::{EventFilter, JoinedPage};
use crate::domain::trigger::{Trigger, TriggerKind};
use crate::supervise::lock;

/// Entries kept at most per map; a full map is emptied (a miss costs one store read). Bounded so
/// the cache stays within a few MiB however many triggers are stored or pages are read (a page
/// is at most a few tens of KB).
const MAX_VIEWS: usize = 4_096;
const MAX_PAGES: usize = 256;

/// One trigger's view as `GET /triggers/{id}` answers it.
#[derive(Debug)]
pub struct RenderedView {
    /// The view as JSON (UTF-8), shared as is by every response that serves it.
    pub json: Arc<[u8]>,
    pub etag: String,
}

/// A listing page's identity: the query without its instant (which `Kept` checks).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PageKey {
    pub kind: Option<TriggerKind>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// A value rendered from the triggers as they were at write count `writes`, the same for every
/// read in `[from, until)`.
#[derive(Debug, Clone)]
pub(super) struct Kept<T> {
    pub writes: u64,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub value: Arc<T>,
}

impl<T> Kept<T> {
    /// `value`, rendered at `now` under write count `writes`, exact until `until`.
    pub fn new(
        writes: u64,
        now: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        value: &Arc<T>,
    ) -> Self {
        Self {
            writes,
            from: now,
            until,
            value: value.clone(),
        }
    }

    fn at(&self, writes: u64, now: DateTime<Utc>) -> Option<Arc<T>> {
        (self.writes == writes && self.from <= now && self.until.is_none_or(|u| now < u))
            .then(|| self.value.clone())
    }
}

#[derive(Debug, Default)]
pub(super) struct ViewCache {
    /// Stored triggers as read (with their secrets: this is the process that stores them).
    triggers: Mutex<HashMap<String, Kept<Trigger>>>,
    views: Mutex<HashMap<String, Kept<RenderedView>>>,
    pages: Mutex<HashMap<PageKey, Kept<JoinedPage>>>,
    /// Keyed by the listing's filter (its `Debug` form: every field, cursor included).
    event_pages: Mutex<HashMap<EventFilter, Kept<JoinedPage>>>,
}

fn find<K, Q, T>(
    map: &Mutex<HashMap<K, Kept<T>>>,
    key: &Q,
    writes: u64,
    now: DateTime<Utc>,
) -> Option<Arc<T>>
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ?Sized,
{
    lock(map).get(key).and_then(|k| k.at(writes, now))
}

fn keep<K, T>(map: &Mutex<HashMap<K, Kept<T>>>, max: usize, key: K, kept: Kept<T>)
where
    K: std::hash::Hash + Eq,
{
    let mut map = lock(map);
    if map.len() >= max {
        map.clear();
    }
    map.insert(key, kept);
}

impl ViewCache {
    pub fn trigger(&self, id: &str, writes: u64) -> Option<Arc<Trigger>> {
        find(&self.triggers, id, writes, DateTime::<Utc>::MIN_UTC)
    }

    /// A stored trigger does not change with time: it is kept until the next trigger write.
    pub fn keep_trigger(&self, id: &str, writes: u64, trigger: Arc<Trigger>) {
        let kept = Kept::new(writes, DateTime::<Utc>::MIN_UTC, None, &trigger);
        keep(&self.triggers, MAX_VIEWS, id.to_string(), kept);
    }

    pub fn view(&self, id: &str, writes: u64, now: DateTime<Utc>) -> Option<Arc<RenderedView>> {
        find(&self.views, id, writes, now)
    }

    pub fn keep_view(&self, id: &str, kept: Kept<RenderedView>) {
        keep(&self.views, MAX_VIEWS, id.to_string(), kept);
    }

    pub fn page(&self, key: &PageKey, writes: u64, now: DateTime<Utc>) -> Option<Arc<JoinedPage>> {
        find(&self.pages, key, writes, now)
    }

    pub fn keep_page(&self, key: PageKey, kept: Kept<JoinedPage>) {
        keep(&self.pages, MAX_PAGES, key, kept);
    }

    pub fn events_page(
        &self,
        key: &EventFilter,
        writes: u64,
        now: DateTime<Utc>,
    ) -> Option<Arc<JoinedPage>> {
        find(&self.event_pages, key, writes, now)
    }

    pub fn keep_events_page(&self, key: EventFilter, kept: Kept<JoinedPage>) {
        keep(&self.event_pages, MAX_PAGES, key, kept);
    }
}
