//! Event log use cases: one event, and listings by lifecycle state, as seen now.

use chrono::{DateTime, Utc};

use super::{App, AppError, AppResult, EventFilter};
use crate::domain::event::EventView;
use crate::ports::{EventQuery, Page};

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
    fn event_query(&self, filter: EventFilter, now: DateTime<Utc>) -> EventQuery {
        EventQuery {
            window: self.settings.lifecycle.window(filter.state, now),
            now: Some(now),
            trigger_id: filter.trigger_id,
            source: filter.source,
            is_test: filter.is_test,
            limit: filter.limit,
            cursor: filter.cursor,
        }
    }

    /// One page of events as seen now.
    pub async fn list_events(&self, filter: EventFilter) -> AppResult<Page<EventView>> {
        let now = self.now();
        let lifecycle = self.settings.lifecycle;
        let page = self
            .store
            .list_events(&self.event_query(filter, now))
            .await?;
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
    /// send the stored JSON with the read-time fields added, without decoding it.
    pub async fn list_event_views_json(&self, filter: EventFilter) -> AppResult<Page<String>> {
        let now = self.now();
        let lifecycle = self.settings.lifecycle;
        let page = self
            .store
            .list_events_json(&self.event_query(filter, now))
            .await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .filter_map(|e| EventView::json_at(&e.json, e.fired_at, &lifecycle, now))
                .collect(),
            next_cursor: page.next_cursor,
        })
    }
}
