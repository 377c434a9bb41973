//! Trigger use cases: create, read, list, replace, pause and resume, rotate the secret, delete.
//! Every write tells the scheduler, and is undone when the scheduler cannot follow.

use chrono::{DateTime, Utc};

use std::sync::Arc;

use super::view_cache::{Kept, PageKey, RenderedView};
use super::{App, AppError, AppResult, JoinedPage, TriggerView};
use crate::domain::new_id;
use crate::domain::trigger::{Purpose, Trigger, TriggerDefinition, TriggerStatus};
use crate::domain::validation::ValidationError;
use crate::ports::{Page, StoreError, TriggerQuery};

/// The view of `trigger` as a reader at `now` sees it.
fn view_at(trigger: Trigger, now: DateTime<Utc>) -> TriggerView {
    TriggerView {
        next_fire_at: trigger.next_fire_after(now),
        trigger: trigger.as_seen_at(now),
        secret: None,
    }
}

impl App {
    pub fn view(&self, trigger: Trigger) -> TriggerView {
        view_at(trigger, self.now())
    }

    /// The view of a trigger just created or given a new secret: the one that shows it.
    pub fn view_with_secret(&self, trigger: Trigger) -> TriggerView {
        let secret = trigger.secret.as_ref().map(|s| s.expose().to_string());
        TriggerView {
            secret,
            ..self.view(trigger)
        }
    }

    pub async fn create_trigger(&self, def: TriggerDefinition) -> AppResult<Trigger> {
        let now = self.now();
        self.validate(&def, now, Purpose::Store).await?;
        let trigger = Trigger::create(def, new_id(), now);
        self.store
            .insert_trigger(&trigger, self.settings.limits.max_triggers)
            .await?;
        if let Err(e) = self.scheduler.schedule(&trigger).await {
            // Nothing half-written: a trigger that cannot be scheduled is not kept.
            if let Err(undo) = self.store.delete_trigger(&trigger.id).await {
                tracing::error!(trigger_id = %trigger.id, error = %undo, "could not undo trigger insert");
            }
            return Err(e.into());
        }
        tracing::info!(trigger_id = %trigger.id, kind = trigger.kind.as_str(), "trigger created");
        Ok(trigger)
    }

    pub async fn get_trigger(&self, id: &str) -> AppResult<Trigger> {
        self.load(id).await
    }

    pub async fn list_triggers(&self, query: &TriggerQuery) -> AppResult<Page<Trigger>> {
        Ok(self.store.list_triggers(query).await?)
    }

    /// One trigger's view as JSON, with its `ETag`. Served from the view cache while that is
    /// exact (see [`view_cache`](super::view_cache)).
    pub async fn trigger_view_json(&self, id: &str) -> AppResult<Arc<RenderedView>> {
        // Read before the store: a view read across a write is filed under the older count.
        let writes = self.store.trigger_writes();
        let now = self.now();
        if let Some(w) = writes
            && let Some(hit) = self.views.view(id, w, now)
        {
            return Ok(hit);
        }
        let trigger = self.load(id).await?;
        let until = trigger.view_changes_after(now);
        let etag = trigger.etag();
        let json = serde_json::to_vec(&view_at(trigger, now))
            .map_err(|e| AppError::Internal(format!("encoding a trigger view: {e}")))?;
        let value = Arc::new(RenderedView {
            json: Arc::from(json),
            etag,
        });
        if let Some(writes) = writes {
            self.views
                .keep_view(id, Kept::new(writes, now, until, &value));
        }
        Ok(value)
    }

    /// One page of triggers as the JSON of their views (see [`TriggerView::json_at`]) at
    /// `query.now` (now if unset). A stored body that cannot be read is shown as the store's
    /// broken stand-in for it. Pages not filtered by status are served from the view cache
    /// while exact; a status filter depends on every trigger's pause, so those are not kept.
    pub async fn list_trigger_views_json(
        &self,
        query: &TriggerQuery,
    ) -> AppResult<Arc<JoinedPage>> {
        let writes = self
            .store
            .trigger_writes()
            .filter(|_| query.status.is_none());
        let now = query.now.unwrap_or_else(|| self.now());
        let key = PageKey {
            kind: query.kind,
            limit: query.limit,
            cursor: query.cursor.clone(),
        };
        if let Some(w) = writes
            && let Some(hit) = self.views.page(&key, w, now)
        {
            return Ok(hit);
        }
        let page = self.store.list_triggers_json(query).await?;
        let mut joined = JoinedPage {
            items: String::with_capacity(page.items.iter().map(|t| t.json.len() + 48).sum()),
            next_cursor: page.next_cursor,
            ..Default::default()
        };
        let mut until: Option<DateTime<Utc>> = None;
        let mut exact = true;
        for t in page.items {
            match TriggerView::json_until(&t.json, now) {
                Some((json, changes)) => {
                    joined.push(&json);
                    until = until.into_iter().chain(changes).min();
                }
                None => {
                    exact = false;
                    if let Some(stand_in) = self.store.get_trigger(&t.id).await? {
                        let view = view_at(
                            Trigger {
                                secret: None,
                                ..stand_in
                            },
                            now,
                        );
                        joined.push(&serde_json::to_string(&view).map_err(|e| {
                            AppError::Internal(format!("encoding a trigger view: {e}"))
                        })?);
                    }
                }
            }
        }
        let value = Arc::new(joined);
        if let Some(writes) = writes.filter(|_| exact) {
            self.views
                .keep_page(key, Kept::new(writes, now, until, &value));
        }
        Ok(value)
    }

    /// Writes `next` over `current` and tells the scheduler; undoes the write if it cannot.
    async fn commit(&self, current: &Trigger, next: Trigger) -> AppResult<Trigger> {
        match self.store.replace_trigger(&next, current.version).await {
            Err(StoreError::VersionConflict) => {
                let latest = self.load(&current.id).await?;
                return Err(AppError::PreconditionFailed {
                    current: latest.etag(),
                });
            }
            other => other?,
        }
        if let Err(e) = self.scheduler.schedule(&next).await {
            let mut restore = current.clone();
            restore.version = next.version + 1;
            if let Err(undo) = self.store.replace_trigger(&restore, next.version).await {
                tracing::error!(trigger_id = %current.id, error = %undo, "could not undo trigger change");
            }
            return Err(e.into());
        }
        Ok(next)
    }

    pub async fn replace_trigger(
        &self,
        id: &str,
        def: TriggerDefinition,
        if_match: Option<&str>,
    ) -> AppResult<Trigger> {
        let current = self.load(id).await?;
        self.check_version(if_match, &current)?;
        let now = self.now();
        self.validate(&def, now, Purpose::Store).await?;
        if def.kind != current.kind {
            return Err(ValidationError::field(
                "kind",
                format!(
                    "cannot change from {} to {}; create a new trigger instead",
                    current.kind.as_str(),
                    def.kind.as_str()
                ),
            )
            .into());
        }
        let next = current.replaced(def, now);
        self.commit(&current, next).await
    }

    /// Pauses (`Some(until)`: until that instant, if given) or resumes (`None`) the trigger.
    pub async fn set_paused(
        &self,
        id: &str,
        pause: Option<Option<DateTime<Utc>>>,
        if_match: Option<&str>,
    ) -> AppResult<Trigger> {
        let current = self.load(id).await?;
        self.check_version(if_match, &current)?;
        let now = self.now();
        if let Some(Some(until)) = pause {
            self.check_ahead("until", until, now)?;
        }
        let status = current.status_at(now);
        let target = match (status, pause) {
            (TriggerStatus::Completed, _) => {
                return Err(AppError::Conflict(
                    "the trigger has completed; give it a new schedule with PUT to fire again"
                        .into(),
                ));
            }
            (TriggerStatus::Broken, _) => {
                return Err(AppError::Conflict(
                    "the trigger is broken (see `problem`); PUT a new definition or DELETE it"
                        .into(),
                ));
            }
            (TriggerStatus::Paused, Some(until)) if until == current.paused_until => {
                return Ok(current);
            }
            (TriggerStatus::Active, None) if current.status == TriggerStatus::Active => {
                return Ok(current);
            }
            (_, pause) => pause,
        };
        let next = match target {
            Some(until) => current.paused(now, until),
            None => current.resumed(now),
        };
        self.commit(&current, next).await
    }

    /// `at` (in `field`) must lie after `now` and at most `ETP_MAX_SCHEDULE_AHEAD` ahead.
    fn check_ahead(&self, field: &str, at: DateTime<Utc>, now: DateTime<Utc>) -> AppResult<()> {
        let horizon =
            crate::domain::time_range::add_saturating(now, self.settings.limits.schedule.max_ahead);
        if at <= now || at > horizon {
            return Err(ValidationError::field(
                field,
                format!(
                    "must be after now ({}) and at most ETP_MAX_SCHEDULE_AHEAD ahead ({})",
                    rfc3339(now),
                    rfc3339(horizon)
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Skips one upcoming occurrence of a scheduled trigger without pausing it.
    pub async fn skip_occurrence(
        &self,
        id: &str,
        at: DateTime<Utc>,
        if_match: Option<&str>,
    ) -> AppResult<Trigger> {
        let current = self.load(id).await?;
        self.check_version(if_match, &current)?;
        let now = self.now();
        let Some(schedule) = &current.schedule else {
            return Err(AppError::Conflict(
                "only scheduled triggers have occurrences to skip".into(),
            ));
        };
        self.check_ahead("scheduled_for", at, now)?;
        let is_occurrence = crate::domain::time_range::sub(at, chrono::Duration::milliseconds(1))
            .and_then(|before| schedule.next_after(before))
            == Some(at);
        if !is_occurrence {
            let next = schedule.next_after(now);
            return Err(ValidationError::field(
                "scheduled_for",
                format!(
                    "is not an occurrence of the schedule{}",
                    next.map(|n| format!(" (the next is {})", rfc3339(n)))
                        .unwrap_or_default()
                ),
            )
            .into());
        }
        if current.interruptions().is_skipped(at) {
            return Ok(current);
        }
        let next = current.skipping(at, now);
        self.commit(&current, next).await
    }

    /// Gives the trigger a new signing secret; deliveries from now on are signed with it.
    pub async fn rotate_secret(&self, id: &str, if_match: Option<&str>) -> AppResult<Trigger> {
        let current = self.load(id).await?;
        self.check_version(if_match, &current)?;
        let next = current.with_new_secret(self.now(), self.settings.secret_rotation_grace);
        match self.store.replace_trigger(&next, current.version).await {
            Err(StoreError::VersionConflict) => {
                let latest = self.load(id).await?;
                Err(AppError::PreconditionFailed {
                    current: latest.etag(),
                })
            }
            Err(e) => Err(e.into()),
            Ok(()) => {
                tracing::info!(trigger_id = %id, "signing secret rotated");
                Ok(next)
            }
        }
    }

    pub async fn delete_trigger(&self, id: &str, if_match: Option<&str>) -> AppResult<()> {
        let current = self.load(id).await?;
        self.check_version(if_match, &current)?;
        self.scheduler.unschedule(id).await?;
        if let Err(e) = self.store.delete_trigger(id).await {
            if let Err(undo) = self.scheduler.schedule(&current).await {
                tracing::error!(trigger_id = %id, error = %undo, "could not restore schedule");
            }
            return Err(e.into());
        }
        tracing::info!(trigger_id = %id, "trigger deleted");
        Ok(())
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
