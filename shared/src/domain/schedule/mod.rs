//! Schedules and next-fire computation: the one place that knows when a trigger fires.

use chrono::{DateTime, Datelike, Duration, LocalResult, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::time_range;
use super::validation::Checks;

/// Longest interval accepted: ten years.
pub const MAX_EVERY_SECONDS: u64 = 10 * 365 * 24 * 3600;
/// Bound on candidates examined per cron lookup, so a pathological pattern cannot spin.
const CRON_SEARCH_LIMIT: usize = 10_000;

/// When a scheduled trigger fires. Times are whole seconds in UTC (any offset is accepted on input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// Once, at `at`.
    At { at: DateTime<Utc> },
    /// Every `every_seconds` after `start_at` (default: when the trigger was written); the first
    /// firing is one interval after the start. Non-recurring fires once, one interval after start.
    Interval {
        #[serde(deserialize_with = "crate::domain::integral::whole")]
        every_seconds: u64,
        #[serde(default = "recurring_default")]
        recurring: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_at: Option<DateTime<Utc>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end_at: Option<DateTime<Utc>>,
    },
    /// A 5-field (or 6-field, with seconds first) cron expression evaluated in an IANA zone.
    /// A local time skipped by a DST change does not fire; one that occurs twice fires once.
    Cron {
        expression: String,
        timezone: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_at: Option<DateTime<Utc>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end_at: Option<DateTime<Utc>>,
    },
}

fn recurring_default() -> bool {
    true
}

fn whole_second(t: &DateTime<Utc>) -> bool {
    t.nanosecond() == 0
}

fn truncate_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

/// Longest cron expression accepted: far beyond any real one, short enough to parse at once.
pub const MAX_CRON_CHARS: usize = 256;

/// Parses a cron expression the way every runtime must: 5 fields, or 6 with seconds first.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    if expression.chars().count() > MAX_CRON_CHARS {
        return Err(format!("must be at most {MAX_CRON_CHARS} characters"));
    }
    let fields = expression.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, got {fields}"
        ));
    }
    Cron::new(expression)
        .with_seconds_optional()
        .parse()
        .map_err(|e| format!("invalid cron expression: {e}"))
}

pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name:?}; use an IANA name such as Europe/Berlin"))
}

/// How far ahead a schedule may start unless configured otherwise (`ETP_MAX_SCHEDULE_AHEAD`).
pub const DEFAULT_MAX_AHEAD_DAYS: i64 = 3_653;

/// The configurable bounds a schedule is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleLimits {
    /// How far after now `at` and `start_at` may lie.
    pub max_ahead: Duration,
}

impl Default for ScheduleLimits {
    fn default() -> Self {
        Self {
            max_ahead: Duration::days(DEFAULT_MAX_AHEAD_DAYS),
        }
    }
}

fn rfc3339_secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Schedule {
    /// Fires at most once.
    pub fn is_one_time(&self) -> bool {
        matches!(
            self,
            Schedule::At { .. }
                | Schedule::Interval {
                    recurring: false,
                    ..
                }
        )
    }

    /// Pins what the client left open to the moment the schedule is written, so later reads and
    /// firings agree on the anchor.
    pub fn resolved(mut self, now: DateTime<Utc>) -> Self {
        if let Schedule::Interval { start_at, .. } = &mut self {
            start_at.get_or_insert_with(|| truncate_to_second(now));
        }
        self
    }

    /// Checks the schedule against the rules; `prefix` names the field in errors. Every instant
    /// lies in the accepted range, a start is at most `limits.max_ahead` away, and the schedule
    /// has a next occurrence that can be computed: whatever passes here cannot overflow later.
    pub fn validate(
        &self,
        now: DateTime<Utc>,
        limits: &ScheduleLimits,
        prefix: &str,
        checks: &mut Checks,
    ) {
        let f = |name: &str| format!("{prefix}.{name}");
        let horizon = time_range::add(now, limits.max_ahead).unwrap_or_else(time_range::latest);
        let before = checks.len();
        let check_time =
            |checks: &mut Checks, name: &str, t: &Option<DateTime<Utc>>, start: bool| {
                let Some(t) = t else { return };
                if !time_range::contains(*t) {
                    checks.fail(f(name), time_range::out_of_range_message());
                    return;
                }
                checks.check(whole_second(t), &f(name), || {
                    "must be a whole second (no fractional part)".into()
                });
                if start {
                    checks.check(*t <= horizon, &f(name), || {
                        format!(
                            "must be at most {} days ahead (until {}; ETP_MAX_SCHEDULE_AHEAD)",
                            limits.max_ahead.num_days(),
                            rfc3339_secs(horizon)
                        )
                    });
                }
            };
        match self {
            Schedule::At { at } => {
                check_time(checks, "at", &Some(*at), true);
                checks.check(*at > now, &f("at"), || {
                    format!("must be in the future (now is {})", rfc3339_secs(now))
                });
            }
            Schedule::Interval {
                every_seconds,
                start_at,
                end_at,
                ..
            } => {
                checks.check(*every_seconds >= 1, &f("every_seconds"), || {
                    "must be at least 1".into()
                });
                checks.check(
                    *every_seconds <= MAX_EVERY_SECONDS,
                    &f("every_seconds"),
                    || format!("must be at most {MAX_EVERY_SECONDS} (ten years)"),
                );
                check_time(checks, "start_at", start_at, true);
                check_time(checks, "end_at", end_at, false);
                self.check_window(now, prefix, checks);
            }
            Schedule::Cron {
                expression,
                timezone,
                start_at,
                end_at,
            } => {
                check_time(checks, "start_at", start_at, true);
                check_time(checks, "end_at", end_at, false);
                // Whether it ever fires is judged below, with the window.
                if let Err(e) = parse_cron(expression) {
                    checks.fail(f("expression"), e);
                }
                if let Err(e) = parse_timezone(timezone) {
                    checks.fail(f("timezone"), e);
                }
                self.check_window(now, prefix, checks);
            }
        }
        if checks.len() > before {
            return;
        }
        // Everything is in range: the schedule must also fire, at an instant that can be computed.
        let resolved = self.clone().resolved(now);
        if resolved.next_after(now).is_none() {
            let (field, message) = match self {
                Schedule::At { .. } => (f("at"), "never fires".to_string()),
                Schedule::Interval {
                    end_at: Some(_), ..
                }
                | Schedule::Cron {
                    end_at: Some(_), ..
                } => (
                    f("end_at"),
                    "the schedule has no occurrence between now (or start_at) and end_at".into(),
                ),
                Schedule::Interval { .. } => (
                    f("every_seconds"),
                    "the next occurrence would be after 9999-12-31T23:59:59Z".into(),
                ),
                Schedule::Cron { .. } => (
                    f("expression"),
                    format!(
                        "never fires within the schedule's window (cron schedules are computed \
                         until the end of {CRON_LAST_YEAR})"
                    ),
                ),
            };
            checks.fail(field, message);
        }
    }

    /// Why a stored schedule cannot fire, if it cannot: what validation would refuse today
    /// regardless of the time (instants out of range, intervals out of bounds, an unreadable
    /// cron or zone). Stored rows from older versions or damaged files meet this at start-up.
    pub fn stored_problem(&self) -> Option<String> {
        let instants: Vec<(&str, &DateTime<Utc>)> = match self {
            Schedule::At { at } => vec![("at", at)],
            Schedule::Interval {
                start_at, end_at, ..
            }
            | Schedule::Cron {
                start_at, end_at, ..
            } => [("start_at", start_at), ("end_at", end_at)]
                .into_iter()
                .filter_map(|(n, t)| t.as_ref().map(|t| (n, t)))
                .collect(),
        };
        for (name, t) in instants {
            if !time_range::contains(*t) {
                return Some(format!(
                    "schedule.{name} {} {}",
                    t.to_rfc3339(),
                    time_range::out_of_range_message()
                ));
            }
        }
        match self {
            Schedule::Interval { every_seconds, .. }
                if !(1..=MAX_EVERY_SECONDS).contains(every_seconds) =>
            {
                Some(format!(
                    "schedule.every_seconds {every_seconds} must be 1 to {MAX_EVERY_SECONDS}"
                ))
            }
            Schedule::Cron {
                expression,
                timezone,
                ..
            } => parse_cron(expression)
                .err()
                .map(|e| format!("schedule.expression: {e}"))
                .or_else(|| {
                    parse_timezone(timezone)
                        .err()
                        .map(|e| format!("schedule.timezone: {e}"))
                }),
            _ => None,
        }
    }

    /// `end_at` must be after the start and in the future.
    fn check_window(&self, now: DateTime<Utc>, prefix: &str, checks: &mut Checks) {
        let (start_at, end_at) = match self {
            Schedule::At { .. } => return,
            Schedule::Interval {
                start_at, end_at, ..
            }
            | Schedule::Cron {
                start_at, end_at, ..
            } => (start_at, end_at),
        };
        let Some(end) = end_at else { return };
        if let Some(start) = start_at
            && end <= start
        {
            checks.fail(format!("{prefix}.end_at"), "must be after start_at");
        }
        if *end <= now {
            checks.fail(format!("{prefix}.end_at"), "must be in the future");
        }
    }

    /// The first occurrence strictly after `after`, or `None` when the schedule is exhausted or
    /// its next occurrence lies beyond the accepted range. Never panics, whatever is stored.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_unbounded(after)
            .filter(|t| *t <= time_range::latest())
    }

    fn next_unbounded(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::At { at } => (*at > after).then_some(*at),
            Schedule::Interval {
                every_seconds,
                recurring,
                start_at,
                end_at,
            } => {
                let start = (*start_at)?.timestamp_millis();
                let every_ms = i64::try_from(*every_seconds).ok()?.checked_mul(1000)?;
                if every_ms <= 0 {
                    return None;
                }
                let elapsed = after.timestamp_millis().checked_sub(start)?;
                let k = if elapsed < 0 {
                    1
                } else {
                    elapsed / every_ms + 1
                };
                if !*recurring && k > 1 {
                    return None;
                }
                let next =
                    DateTime::from_timestamp_millis(start.checked_add(every_ms.checked_mul(k)?)?)?;
                end_at.is_none_or(|end| next <= end).then_some(next)
            }
            Schedule::Cron {
                expression,
                timezone,
                start_at,
                end_at,
            } => {
                let cron = parse_cron(expression).ok()?;
                let tz = parse_timezone(timezone).ok()?;
                // `start_at` itself is a valid occurrence, so search from just before it.
                let from = match start_at {
                    Some(s) if *s > after => time_range::sub(*s, Duration::milliseconds(1))?,
                    _ => after,
                };
                next_cron(&cron, tz, from, *end_at)
            }
        }
    }

    /// The latest occurrence in `[from, to]`, if any: the one a catch-up fires.
    pub fn latest_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if let Schedule::Interval {
            every_seconds,
            recurring,
            start_at: Some(start),
            end_at,
        } = self
        {
            // Closed form: a long outage must not cost one step per missed interval.
            let to = end_at.map_or(to, |e| e.min(to));
            let every_ms = i64::try_from(*every_seconds).ok()?.checked_mul(1000)?;
            if every_ms <= 0 {
                return None;
            }
            let start_ms = start.timestamp_millis();
            let k = to
                .timestamp_millis()
                .checked_sub(start_ms)?
                .div_euclid(every_ms);
            let k = if *recurring { k } else { k.min(1) };
            if k < 1 {
                return None;
            }
            let t =
                DateTime::from_timestamp_millis(start_ms.checked_add(every_ms.checked_mul(k)?)?)?;
            return (t >= from).then_some(t);
        }
        let mut latest = None;
        let mut cursor = time_range::sub(from, Duration::milliseconds(1))?;
        for _ in 0..CRON_SEARCH_LIMIT {
            match self.next_after(cursor) {
                Some(t) if t <= to => {
                    latest = Some(t);
                    cursor = t;
                }
                _ => break,
            }
        }
        latest
    }
}

/// `t` as wall-clock time in `tz`, or `None` where that leaves chrono's range.
fn local_wall_time(t: DateTime<Utc>, tz: Tz) -> Option<chrono::NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    t.naive_utc().checked_add_offset(offset)
}

/// The last year the cron library computes occurrences in: a cron schedule ends there.
pub const CRON_LAST_YEAR: i32 = 4999;

/// Next cron occurrence strictly after `after` in `tz`. The pattern is matched on local wall-clock
/// time, then mapped to an instant: local times that do not exist are skipped and repeated ones
/// take their first instant (EventBridge Scheduler's rule). Occurrences are found from 1970 to
/// the end of [`CRON_LAST_YEAR`] (the cron library's own limit); `None` beyond.
fn next_cron(
    cron: &Cron,
    tz: Tz,
    after: DateTime<Utc>,
    end_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    // Before the accepted range there is nothing to find, and near chrono's limits the cron
    // library's date arithmetic would overflow.
    let after = after.max(time_range::earliest() - Duration::milliseconds(1));
    if after.year() > CRON_LAST_YEAR {
        return None;
    }
    // Walk local wall-clock time as if it were UTC, which has no DST gaps or folds.
    let mut wall = Utc.from_utc_datetime(&local_wall_time(truncate_to_second(after), tz)?);
    for _ in 0..CRON_SEARCH_LIMIT {
        wall = cron.find_next_occurrence(&wall, false).ok()?;
        let instant = match tz.from_local_datetime(&wall.naive_utc()) {
            LocalResult::None => continue,
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        };
        if instant <= after {
            continue;
        }
        if instant > time_range::latest() {
            return None;
        }
        return end_at.is_none_or(|end| instant <= end).then_some(instant);
    }
    None
}

#[cfg(test)]
mod tests;
