//! The event lifecycle: active, then archived, then gone, decided from `fired_at` at read time.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::time_range;

/// The longest retention accepted: windows far beyond it would only overflow time arithmetic.
const MAX_RETENTION_DAYS: i64 = 36_525;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    Active,
    Archived,
}

/// The half-open range of `fired_at` values an event listing covers: `(after, until]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiredWindow {
    pub after: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

impl FiredWindow {
    pub fn contains(&self, fired_at: DateTime<Utc>) -> bool {
        fired_at > self.after && self.until.is_none_or(|u| fired_at <= u)
    }
}

/// How long events stay active and how long they are kept at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    pub active_for: Duration,
    pub retain_for: Duration,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            active_for: Duration::hours(2),
            retain_for: Duration::hours(48),
        }
    }
}

impl Lifecycle {
    pub fn new(active_for: Duration, retain_for: Duration) -> Result<Self, &'static str> {
        if active_for <= Duration::zero() {
            return Err("the active window must be longer than zero");
        }
        if retain_for <= active_for {
            return Err("retention must be longer than the active window");
        }
        if retain_for > Duration::days(MAX_RETENTION_DAYS) {
            return Err("retention must be at most 100 years");
        }
        Ok(Self {
            active_for,
            retain_for,
        })
    }

    /// The state of an event at `now`; `None` once it has expired (age >= retention).
    pub fn state(&self, fired_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<EventState> {
        let age = now.signed_duration_since(fired_at);
        if age < self.active_for {
            Some(EventState::Active)
        } else if age < self.retain_for {
            Some(EventState::Archived)
        } else {
            None
        }
    }

    pub fn archives_at(&self, fired_at: DateTime<Utc>) -> DateTime<Utc> {
        time_range::add_saturating(fired_at, self.active_for)
    }

    pub fn expires_at(&self, fired_at: DateTime<Utc>) -> DateTime<Utc> {
        time_range::add_saturating(fired_at, self.retain_for)
    }

    /// Events fired at or before this instant have expired.
    pub fn expired_at_or_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        time_range::sub_saturating(now, self.retain_for)
    }

    /// The `fired_at` range holding exactly the events in `state` at `now`.
    pub fn window(&self, state: EventState, now: DateTime<Utc>) -> FiredWindow {
        match state {
            EventState::Active => FiredWindow {
                after: time_range::sub_saturating(now, self.active_for),
                until: None,
            },
            EventState::Archived => FiredWindow {
                after: time_range::sub_saturating(now, self.retain_for),
                until: Some(time_range::sub_saturating(now, self.active_for)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_exact() {
        let l = Lifecycle::default();
        let fired = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |d: Duration| l.state(fired, fired + d);
        assert_eq!(at(Duration::zero()), Some(EventState::Active));
        assert_eq!(at(Duration::minutes(119)), Some(EventState::Active));
        assert_eq!(
            at(Duration::hours(2) - Duration::milliseconds(1)),
            Some(EventState::Active)
        );
        assert_eq!(at(Duration::hours(2)), Some(EventState::Archived));
        assert_eq!(
            at(Duration::minutes(47 * 60 + 59)),
            Some(EventState::Archived)
        );
        assert_eq!(at(Duration::hours(48)), None);
        for d in [0, 60, 7199, 7200, 7201, 172_799, 172_800] {
            let now = fired + Duration::seconds(d);
            for state in [EventState::Active, EventState::Archived] {
                assert_eq!(
                    l.window(state, now).contains(fired),
                    l.state(fired, now) == Some(state),
                    "age {d}s, {state:?}"
                );
            }
        }
    }

    #[test]
    fn windows_must_nest() {
        assert!(Lifecycle::new(Duration::hours(2), Duration::hours(1)).is_err());
        assert!(Lifecycle::new(Duration::zero(), Duration::hours(1)).is_err());
        assert!(Lifecycle::new(Duration::seconds(90), Duration::seconds(300)).is_ok());
    }
}
