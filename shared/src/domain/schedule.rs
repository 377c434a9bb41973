//! Schedules and next-fire computation: the one place that knows when a trigger fires.

use chrono::{DateTime, Duration, LocalResult, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

/// Parses a cron expression the way every runtime must: 5 fields, or 6 with seconds first.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
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

    /// Checks the schedule against the rules; `prefix` names the field in errors.
    pub fn validate(&self, now: DateTime<Utc>, prefix: &str, checks: &mut Checks) {
        let f = |name: &str| format!("{prefix}.{name}");
        let check_time = |checks: &mut Checks, name: &str, t: &Option<DateTime<Utc>>| {
            if let Some(t) = t {
                checks.check(whole_second(t), &f(name), || {
                    "must be a whole second (no fractional part)".into()
                });
            }
        };
        match self {
            Schedule::At { at } => {
                checks.check(whole_second(at), &f("at"), || {
                    "must be a whole second (no fractional part)".into()
                });
                checks.check(*at > now, &f("at"), || {
                    format!(
                        "must be in the future (now is {})",
                        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
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
                check_time(checks, "start_at", start_at);
                check_time(checks, "end_at", end_at);
                self.check_window(now, prefix, checks);
            }
            Schedule::Cron {
                expression,
                timezone,
                start_at,
                end_at,
            } => {
                check_time(checks, "start_at", start_at);
                check_time(checks, "end_at", end_at);
                let cron = parse_cron(expression).map_err(|e| checks.fail(f("expression"), e));
                let tz = parse_timezone(timezone).map_err(|e| checks.fail(f("timezone"), e));
                let window_ok = self.check_window(now, prefix, checks);
                if let (Ok(cron), Ok(tz), true) = (cron, tz, window_ok) {
                    let from = start_at.map_or(now, |s| s.max(now));
                    if next_cron(&cron, tz, from, *end_at).is_none() {
                        checks.fail(f("expression"), "never fires within the schedule's window");
                    }
                }
            }
        }
    }

    /// `end_at` must be after the start and in the future; returns whether it is.
    fn check_window(&self, now: DateTime<Utc>, prefix: &str, checks: &mut Checks) -> bool {
        let (start_at, end_at) = match self {
            Schedule::At { .. } => return true,
            Schedule::Interval {
                start_at, end_at, ..
            }
            | Schedule::Cron {
                start_at, end_at, ..
            } => (start_at, end_at),
        };
        let Some(end) = end_at else { return true };
        let mut ok = true;
        if let Some(start) = start_at
            && end <= start
        {
            checks.fail(format!("{prefix}.end_at"), "must be after start_at");
            ok = false;
        }
        if *end <= now {
            checks.fail(format!("{prefix}.end_at"), "must be in the future");
            ok = false;
        }
        ok
    }

    /// The first occurrence strictly after `after`, or `None` when the schedule is exhausted.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::At { at } => (*at > after).then_some(*at),
            Schedule::Interval {
                every_seconds,
                recurring,
                start_at,
                end_at,
            } => {
                let start = (*start_at)?;
                let every = Duration::seconds(i64::try_from(*every_seconds).ok()?);
                let elapsed = (after - start).num_milliseconds();
                let k = if elapsed < 0 {
                    1
                } else {
                    elapsed / every.num_milliseconds() + 1
                };
                if !*recurring && k > 1 {
                    return None;
                }
                let next = start + every * i32::try_from(k).ok()?;
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
                    Some(s) if *s > after => *s - Duration::milliseconds(1),
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
            let k = (to - *start).num_milliseconds().div_euclid(every_ms);
            let k = if *recurring { k } else { k.min(1) };
            if k < 1 {
                return None;
            }
            let t = *start + Duration::milliseconds(every_ms.checked_mul(k)?);
            return (t >= from).then_some(t);
        }
        let mut latest = None;
        let mut cursor = from - Duration::milliseconds(1);
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

/// Next cron occurrence strictly after `after` in `tz`. The pattern is matched on local wall-clock
/// time, then mapped to an instant: local times that do not exist are skipped and repeated ones
/// take their first instant (EventBridge Scheduler's rule).
fn next_cron(
    cron: &Cron,
    tz: Tz,
    after: DateTime<Utc>,
    end_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    // Walk local wall-clock time as if it were UTC, which has no DST gaps or folds.
    let mut wall =
        Utc.from_utc_datetime(&truncate_to_second(after).with_timezone(&tz).naive_local());
    for _ in 0..CRON_SEARCH_LIMIT {
        wall = cron.find_next_occurrence(&wall, false).ok()?;
        let instant = match tz.from_local_datetime(&wall.naive_utc()) {
            LocalResult::None => continue,
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        };
        if instant <= after {
            continue;
        }
        return end_at.is_none_or(|end| instant <= end).then_some(instant);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(expr: &str, tz: &str) -> Schedule {
        Schedule::Cron {
            expression: expr.into(),
            timezone: tz.into(),
            start_at: None,
            end_at: None,
        }
    }

    fn interval(every: u64, recurring: bool, start: &str) -> Schedule {
        Schedule::Interval {
            every_seconds: every,
            recurring,
            start_at: Some(t(start)),
            end_at: None,
        }
    }

    fn validate(s: &Schedule, now: &str) -> Vec<String> {
        let mut checks = Checks::default();
        s.validate(t(now), "schedule", &mut checks);
        match checks.finish() {
            Ok(()) => vec![],
            Err(e) => e.errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn at_fires_once_at_its_instant() {
        let s = Schedule::At {
            at: t("2026-11-24T10:00:00Z"),
        };
        assert_eq!(
            s.next_after(t("2026-11-24T09:00:00Z")),
            Some(t("2026-11-24T10:00:00Z"))
        );
        assert_eq!(s.next_after(t("2026-11-24T10:00:00Z")), None);
        assert!(s.is_one_time());
    }

    #[test]
    fn recurring_interval_steps_from_its_start() {
        let s = interval(60, true, "2026-11-24T10:00:00Z");
        assert_eq!(
            s.next_after(t("2026-11-24T09:00:00Z")),
            Some(t("2026-11-24T10:01:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-11-24T10:00:30Z")),
            Some(t("2026-11-24T10:01:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-11-24T10:01:00Z")),
            Some(t("2026-11-24T10:02:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-11-24T10:59:59.999Z")),
            Some(t("2026-11-24T11:00:00Z"))
        );
    }

    #[test]
    fn non_recurring_interval_fires_once_after_the_delay() {
        let s = interval(600, false, "2026-11-24T10:00:00Z");
        assert_eq!(
            s.next_after(t("2026-11-24T10:00:00Z")),
            Some(t("2026-11-24T10:10:00Z"))
        );
        assert_eq!(s.next_after(t("2026-11-24T10:10:00Z")), None);
        assert!(s.is_one_time());
    }

    #[test]
    fn interval_stops_at_end() {
        let s = Schedule::Interval {
            every_seconds: 60,
            recurring: true,
            start_at: Some(t("2026-11-24T10:00:00Z")),
            end_at: Some(t("2026-11-24T10:02:00Z")),
        };
        assert_eq!(
            s.next_after(t("2026-11-24T10:01:00Z")),
            Some(t("2026-11-24T10:02:00Z"))
        );
        assert_eq!(s.next_after(t("2026-11-24T10:02:00Z")), None);
    }

    #[test]
    fn interval_anchor_defaults_to_write_time() {
        let s = Schedule::Interval {
            every_seconds: 5,
            recurring: true,
            start_at: None,
            end_at: None,
        }
        .resolved(t("2026-11-24T10:00:00.700Z"));
        assert_eq!(
            s.next_after(t("2026-11-24T10:00:00.700Z")),
            Some(t("2026-11-24T10:00:05Z"))
        );
    }

    #[test]
    fn cron_in_a_zone() {
        let s = cron("0 9 * * MON-FRI", "Europe/Berlin");
        // Tuesday 2026-11-24: 09:00 CET = 08:00 UTC.
        assert_eq!(
            s.next_after(t("2026-11-24T07:00:00Z")),
            Some(t("2026-11-24T08:00:00Z"))
        );
        // Friday evening -> Monday morning.
        assert_eq!(
            s.next_after(t("2026-11-27T09:00:00Z")),
            Some(t("2026-11-30T08:00:00Z"))
        );
    }

    #[test]
    fn cron_with_seconds() {
        let s = cron("*/15 * * * * *", "UTC");
        assert_eq!(
            s.next_after(t("2026-11-24T10:00:00Z")),
            Some(t("2026-11-24T10:00:15Z"))
        );
    }

    #[test]
    fn cron_skips_a_local_time_that_does_not_exist() {
        // Berlin springs forward at 02:00 on 2026-03-29: 02:30 does not exist that day.
        let s = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            s.next_after(t("2026-03-28T12:00:00Z")),
            Some(t("2026-03-30T00:30:00Z"))
        );
    }

    #[test]
    fn cron_fires_once_for_a_repeated_local_time() {
        // Berlin falls back at 03:00 CEST on 2026-10-25: 02:30 occurs twice, fires at the first.
        let s = cron("30 2 * * *", "Europe/Berlin");
        let first = s.next_after(t("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, t("2026-10-25T00:30:00Z"));
        assert_eq!(s.next_after(first), Some(t("2026-10-26T01:30:00Z")));
    }

    #[test]
    fn cron_respects_start_and_end() {
        let s = Schedule::Cron {
            expression: "0 * * * *".into(),
            timezone: "UTC".into(),
            start_at: Some(t("2026-11-24T12:00:00Z")),
            end_at: Some(t("2026-11-24T13:00:00Z")),
        };
        assert_eq!(
            s.next_after(t("2026-11-24T09:30:00Z")),
            Some(t("2026-11-24T12:00:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-11-24T12:00:00Z")),
            Some(t("2026-11-24T13:00:00Z"))
        );
        assert_eq!(s.next_after(t("2026-11-24T13:00:00Z")), None);
    }

    #[test]
    fn latest_between_finds_the_newest_missed_occurrence() {
        let s = interval(60, true, "2026-11-24T10:00:00Z");
        assert_eq!(
            s.latest_between(t("2026-11-24T10:00:30Z"), t("2026-11-24T10:05:30Z")),
            Some(t("2026-11-24T10:05:00Z"))
        );
        assert_eq!(
            s.latest_between(t("2026-11-24T10:05:30Z"), t("2026-11-24T10:05:50Z")),
            None
        );
        let c = cron("*/10 * * * *", "UTC");
        assert_eq!(
            c.latest_between(t("2026-11-24T10:00:00Z"), t("2026-11-24T10:35:00Z")),
            Some(t("2026-11-24T10:30:00Z"))
        );
        let once = interval(60, false, "2026-11-24T10:00:00Z");
        assert_eq!(
            once.latest_between(t("2026-11-24T09:00:00Z"), t("2026-11-24T12:00:00Z")),
            Some(t("2026-11-24T10:01:00Z"))
        );
    }

    #[test]
    fn validation_names_each_bad_field() {
        let now = "2026-11-24T10:00:00Z";
        let past = Schedule::At {
            at: t("2026-11-24T09:00:00Z"),
        };
        assert_eq!(validate(&past, now), ["schedule.at"]);
        let zero = interval(0, true, now);
        assert_eq!(validate(&zero, now), ["schedule.every_seconds"]);
        assert_eq!(
            validate(&cron("61 * * * *", "UTC"), now),
            ["schedule.expression"]
        );
        assert_eq!(
            validate(&cron("0 9 * *", "UTC"), now),
            ["schedule.expression"]
        );
        assert_eq!(
            validate(&cron("0 9 * * *", "Mars/Olympus"), now),
            ["schedule.timezone"]
        );
        assert_eq!(
            validate(&cron("0 0 30 2 *", "UTC"), now),
            ["schedule.expression"]
        );
        let ended = Schedule::Interval {
            every_seconds: 10,
            recurring: true,
            start_at: None,
            end_at: Some(t("2026-11-24T09:00:00Z")),
        };
        assert_eq!(validate(&ended, now), ["schedule.end_at"]);
        assert!(validate(&cron("0 9 * * MON-FRI", "Europe/Berlin"), now).is_empty());
    }

    #[test]
    fn unknown_fields_and_types_are_rejected() {
        let bad: Result<Schedule, _> =
            serde_json::from_str(r#"{"type":"at","at":"2026-11-24T10:00:00Z","every":1}"#);
        assert!(bad.is_err());
        let bad: Result<Schedule, _> = serde_json::from_str(r#"{"type":"weekly"}"#);
        assert!(bad.is_err());
        let ok: Schedule =
            serde_json::from_str(r#"{"type":"at","at":"2026-11-24T11:00:00+01:00"}"#).unwrap();
        assert_eq!(
            ok,
            Schedule::At {
                at: t("2026-11-24T10:00:00Z")
            }
        );
    }
}
