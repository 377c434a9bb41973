//! Event log use cases: one event, and listings by lifecycle state, as seen now.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::view_cache::Kept;
use super::{App, AppError, AppResult, EventFilter, JoinedPage};
use crate::domain::event::{Event, EventStatus, EventView};
use crate::domain::lifecycle::{EventState, FiredWindow};
use crate::domain::validation::ValidationError;
use crate::ports::{EventQuery, Page, cursor};

/// Events read at most per request by a listing filtered on `status`: the outcome is not a
/// key, so the page is read by key range and filtered here. A page that finds fewer matches
/// than asked for still returns a cursor when the range goes on.
pub const STATUS_SCAN: usize = 250;

/// The first whole millisecond at or after `t` (stores keep milliseconds).
fn ceil_ms(t: DateTime<Utc>) -> i64 {
    let ms = t.timestamp_millis();
    if t.timestamp_subsec_nanos() % 1_000_000 == 0 {
        ms
    } else {
        ms.saturating_add(1)
    }
}

/// The lifecycle window narrowed to `[since, until)`, as the stores' `(after, until]`.
fn narrow(
    mut w: FiredWindow,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> FiredWindow {
    let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC);
    if let Some(since) = since {
        w.after = w.after.max(at(ceil_ms(since).saturating_sub(1)));
    }
    if let Some(until) = until {
        let last = at(ceil_ms(until).saturating_sub(1));
        w.until = Some(w.until.map_or(last, |u| u.min(last)));
    }
    w
}

/// [`narrow`], refusing an `until` that is not later than `since`.
pub(super) fn narrow_checked(
    w: FiredWindow,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> AppResult<FiredWindow> {
    if let (Some(since), Some(until)) = (since, until)
        && until <= since
    {
        return Err(ValidationError::field("until", "must be later than since").into());
    }
    Ok(narrow(w, since, until))
}

impl App {
    pub async fn get_event(&self, id: &str) -> AppResult<EventView> {
        let event = self.store.get_event(id).await?;
        event
            .and_then(|e| EventView::at(e, &self.settings.lifecycle, self.now()))
            .ok_or_else(|| AppError::NotFound {
                what: "event",
                id: id.to_string(),
            })
    }

    /// The store query for `filter` as of `now`.
    fn event_query(&self, filter: EventFilter, now: DateTime<Utc>) -> AppResult<EventQuery> {
        let window = self.settings.lifecycle.window(filter.state, now);
        Ok(EventQuery {
            window: narrow_checked(window, filter.since, filter.until)?,
            now: Some(now),
            trigger_id: filter.trigger_id,
            source: filter.source,
            is_test: filter.is_test,
            limit: filter.limit,
            cursor: filter.cursor,
        })
    }

    /// One page of events with outcome `status`: [`STATUS_SCAN`] events of the window read,
    /// the matching ones kept; the cursor goes on after the last match kept, or after the last
    /// event read when the matches did not fill the page.
    async fn events_by_status(
        &self,
        filter: EventFilter,
        status: EventStatus,
        now: DateTime<Utc>,
    ) -> AppResult<Page<Event>> {
        let limit = filter.limit.max(1);
        let mut query = self.event_query(filter, now)?;
        query.limit = STATUS_SCAN.max(limit);
        let read = self.store.list_events(&query).await?;
        let mut items: Vec<Event> = read
            .items
            .into_iter()
            .filter(|e| e.status == status)
            .collect();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|e| cursor::encode_event(e.fired_at.timestamp_millis(), &e.id))
        } else {
            read.next_cursor
        };
        Ok(Page { items, next_cursor })
    }

    /// One page of events as seen now.
    pub async fn list_events(&self, filter: EventFilter) -> AppResult<Page<EventView>> {
        let now = self.now();
        let lifecycle = self.settings.lifecycle;
        let page = match filter.status {
            Some(status) => self.events_by_status(filter, status, now).await?,
            None => {
                let query = self.event_query(filter, now)?;
                self.store.list_events(&query).await?
            }
        };
        Ok(Page {
            items: page
                .items
                .into_iter()
                .filter_map(|e| EventView::at(e, &lifecycle, now))
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// One page of events as the JSON of their views (see [`EventView::json_at`]): listings
    /// send the stored JSON with the read-time fields added, without decoding it. Pages are
    /// served from the view cache while exact: no write since, and no event has changed state
    /// (the earliest active one archived, the earliest archived one expired).
    pub async fn list_event_views_json(&self, filter: EventFilter) -> AppResult<Arc<JoinedPage>> {
        let mut joined = JoinedPage::default();
        if filter.status.is_some() {
            // Filtered pages are decoded anyway, to read each outcome.
            let page = self.list_events(filter).await?;
            for v in &page.items {
                joined.push(
                    &serde_json::to_string(v).map_err(|e| AppError::Internal(e.to_string()))?,
                );
            }
            joined.next_cursor = page.next_cursor;
            return Ok(Arc::new(joined));
        }
        // Read before the store: a page read across a write is filed under the older count.
        let writes = self.store.event_writes();
        let now = self.now();
        if let Some(w) = writes
            && let Some(hit) = self.views.events_page(&filter, w, now)
        {
            return Ok(hit);
        }
        let key = filter.clone();
        let lifecycle = self.settings.lifecycle;
        let query = self.event_query(filter, now)?;
        let page = self.store.list_events_json(&query).await?;
        for e in &page.items {
            if let Some(json) = EventView::json_at(&e.json, e.fired_at, &lifecycle, now) {
                joined.push(&json);
            }
        }
        joined.next_cursor = page.next_cursor;
        let value = Arc::new(joined);
        if let Some(writes) = writes {
            let window = |state| lifecycle.window(state, now).after;
            let archives = self
                .store
                .earliest_fired_from(window(EventState::Active))
                .await?
                .map(|t| lifecycle.archives_at(t));
            let expires = self
                .store
                .earliest_fired_from(window(EventState::Archived))
                .await?
                .map(|t| lifecycle.expires_at(t));
            let until = archives.into_iter().chain(expires).min();
            if until.is_none_or(|u| u > now) {
                self.views
                    .keep_events_page(key, Kept::new(writes, now, until, &value));
            }
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_until_narrow_the_window_to_whole_milliseconds() {
        let t = |s: &str| crate::domain::timestamp::parse(s).unwrap();
        let w = FiredWindow {
            after: t("2026-11-24T08:00:00Z"),
            until: None,
        };
        let n = narrow(
            w,
            Some(t("2026-11-24T09:00:00Z")),
            Some(t("2026-11-24T09:30:00.0005Z")),
        );
        assert!(n.contains(t("2026-11-24T09:00:00Z")), "since is inclusive");
        assert!(!n.contains(t("2026-11-24T08:59:59.999Z")));
        assert!(n.contains(t("2026-11-24T09:30:00Z")));
        assert!(
            !n.contains(t("2026-11-24T09:30:00.001Z")),
            "until is exclusive"
        );
        let wide = narrow(w, Some(t("2026-11-24T07:00:00Z")), None);
        assert_eq!(wide, w, "never widens the lifecycle window");
    }
}
