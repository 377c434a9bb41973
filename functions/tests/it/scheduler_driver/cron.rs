//! EventBridge Scheduler's `cron(minutes hours day-of-month month day-of-week year)`, evaluated
//! here on its own terms (not with the platform's cron code, which this checks): fields as the
//! Scheduler documentation defines them (`,` `-` `*` `?` `/`, month and day names, day-of-week
//! 1 = SUN .. 7 = SAT, `L` in either day field, `d#n` in day-of-week), matched on the wall-clock
//! time of the schedule's zone. Daylight saving as documented: a local time that does not exist
//! (spring forward) is skipped, one that occurs twice (fall back) runs once, at its first instant.

use chrono::{
    DateTime, Datelike, Duration, DurationRound, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Which values of one field match, indexed by value.
type Set = Vec<bool>;

#[derive(Debug)]
enum DayOfMonth {
    Any,
    Days(Set),
    Last,
}

#[derive(Debug)]
enum DayOfWeek {
    Any,
    /// 1 = Sunday .. 7 = Saturday.
    Days(Set),
    /// The n-th such weekday of the month (`d#n`).
    Nth(u32, u32),
    /// The last such weekday of the month (`dL`).
    Last(u32),
}

#[derive(Debug)]
pub struct Cron {
    minute: Set,
    hour: Set,
    dom: DayOfMonth,
    month: Set,
    dow: DayOfWeek,
    year: Set,
}

fn value(token: &str, names: &[&str], base: u32) -> u32 {
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(token))
        .map(|i| i as u32 + base)
        .or_else(|| token.parse().ok())
        .unwrap_or_else(|| panic!("the driver's cron evaluator does not know {token:?}"))
}

/// A list of `*`, `n`, `a-b`, each optionally `/step`, over `min..=max`.
fn set(field: &str, min: u32, max: u32, names: &[&str], base: u32) -> Set {
    let mut out = vec![false; max as usize + 1];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().expect("a step")),
            None => (part, 1),
        };
        let (lo, hi) = match range.split_once('-') {
            _ if range == "*" => (min, max),
            Some((a, b)) => (value(a, names, base), value(b, names, base)),
            // `n/step` runs from n to the end of the range.
            None if step > 1 => (value(range, names, base), max),
            None => {
                let v = value(range, names, base);
                (v, v)
            }
        };
        assert!(
            min <= lo && lo <= hi && hi <= max && step > 0,
            "cron field {field:?} out of range {min}-{max}"
        );
        for v in (lo..=hi).step_by(step as usize) {
            out[v as usize] = true;
        }
    }
    out
}

impl Cron {
    /// Parses `cron(...)` as EventBridge Scheduler reads it; panics on what it does not cover.
    pub fn parse(expression: &str) -> Self {
        let inner = expression
            .strip_prefix("cron(")
            .and_then(|e| e.strip_suffix(')'))
            .unwrap_or_else(|| panic!("not a cron expression: {expression}"));
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [minute, hour, dom, month, dow, year] = fields[..] else {
            panic!("EventBridge cron has 6 fields: {expression}");
        };
        // Exactly one of the two day fields is `?`.
        assert!(
            (dom == "?") != (dow == "?"),
            "EventBridge needs `?` in exactly one day field: {expression}"
        );
        let dom = match dom {
            "?" | "*" => DayOfMonth::Any,
            "L" => DayOfMonth::Last,
            _ => DayOfMonth::Days(set(dom, 1, 31, &[], 0)),
        };
        let dow = match dow {
            "?" | "*" => DayOfWeek::Any,
            _ if dow.contains('#') => {
                let (d, n) = dow.split_once('#').expect("d#n");
                DayOfWeek::Nth(value(d, &DAYS, 1), n.parse().expect("n in d#n"))
            }
            _ if dow.len() > 1 && dow.ends_with('L') => {
                DayOfWeek::Last(value(dow.trim_end_matches('L'), &DAYS, 1))
            }
            _ => DayOfWeek::Days(set(dow, 1, 7, &DAYS, 1)),
        };
        Cron {
            minute: set(minute, 0, 59, &[], 0),
            hour: set(hour, 0, 23, &[], 0),
            dom,
            month: set(month, 1, 12, &MONTHS, 1),
            dow,
            year: set(year, 1970, 2199, &[], 0),
        }
    }

    /// Whether the wall-clock minute `t` matches.
    fn matches(&self, t: NaiveDateTime) -> bool {
        let date = t.date();
        let last_day = last_day_of_month(date);
        let weekday = date.weekday().num_days_from_sunday() + 1;
        let dom = match &self.dom {
            DayOfMonth::Any => true,
            DayOfMonth::Days(s) => s[date.day() as usize],
            DayOfMonth::Last => date.day() == last_day,
        };
        let dow = match &self.dow {
            DayOfWeek::Any => true,
            DayOfWeek::Days(s) => s[weekday as usize],
            DayOfWeek::Nth(d, n) => weekday == *d && (date.day() - 1) / 7 + 1 == *n,
            DayOfWeek::Last(d) => weekday == *d && date.day() + 7 > last_day,
        };
        let year = usize::try_from(date.year()).is_ok_and(|y| self.year.get(y) == Some(&true));
        t.second() == 0
            && self.minute[t.minute() as usize]
            && self.hour[t.hour() as usize]
            && self.month[date.month() as usize]
            && dom
            && dow
            && year
    }

    /// The occurrences in `from..=until` (UTC instants) in zone `tz`: every minute whose local
    /// wall time matches, at its first instant only.
    pub fn occurrences(
        &self,
        tz: Tz,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let minute = Duration::minutes(1);
        let mut t = from.duration_trunc(minute).expect("minute");
        if t < from {
            t += minute;
        }
        while t <= until {
            let local = t.with_timezone(&tz).naive_local();
            // Nonexistent local times are never produced by a UTC instant; a repeated one is
            // taken at its earliest instant only.
            if self.matches(local)
                && tz
                    .from_local_datetime(&local)
                    .earliest()
                    .map(|d| d.to_utc())
                    == Some(t)
            {
                out.push(t);
            }
            t += minute;
        }
        out
    }
}

fn last_day_of_month(date: NaiveDate) -> u32 {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .expect("a month has a last day")
        .day()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn run(expr: &str, tz: &str, from: &str, until: &str) -> Vec<DateTime<Utc>> {
        Cron::parse(expr).occurrences(tz.parse().unwrap(), t(from), t(until))
    }

    #[test]
    fn day_of_week_counts_from_sunday_as_one() {
        // 2026-11-23 is a Monday.
        assert_eq!(
            run(
                "cron(0 9 ? * 2 *)",
                "UTC",
                "2026-11-20T00:00:00Z",
                "2026-11-30T23:59:00Z"
            ),
            vec![t("2026-11-23T09:00:00Z"), t("2026-11-30T09:00:00Z")]
        );
        assert_eq!(
            run(
                "cron(0 9 ? * MON-TUE *)",
                "UTC",
                "2026-11-22T00:00:00Z",
                "2026-11-24T23:59:00Z"
            ),
            vec![t("2026-11-23T09:00:00Z"), t("2026-11-24T09:00:00Z")]
        );
        assert_eq!(
            run(
                "cron(0 9 ? * 1,7 *)",
                "UTC",
                "2026-11-20T00:00:00Z",
                "2026-11-23T23:59:00Z"
            ),
            vec![t("2026-11-21T09:00:00Z"), t("2026-11-22T09:00:00Z")]
        );
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(
            run(
                "cron(0/20 10-11 * NOV ? *)",
                "UTC",
                "2026-11-24T10:00:00Z",
                "2026-11-24T11:59:00Z"
            )
            .len(),
            6
        );
        assert_eq!(
            run(
                "cron(5,35 10 * * ? *)",
                "UTC",
                "2026-11-24T10:05:00Z",
                "2026-11-24T10:35:00Z"
            ),
            vec![t("2026-11-24T10:05:00Z"), t("2026-11-24T10:35:00Z")]
        );
        assert!(
            run(
                "cron(0 10 * JAN ? *)",
                "UTC",
                "2026-11-24T00:00:00Z",
                "2026-11-25T00:00:00Z"
            )
            .is_empty()
        );
        assert!(
            run(
                "cron(0 10 * * ? 2027)",
                "UTC",
                "2026-11-24T00:00:00Z",
                "2026-11-25T00:00:00Z"
            )
            .is_empty()
        );
    }

    #[test]
    fn last_and_nth_days() {
        assert_eq!(
            run(
                "cron(0 0 L * ? *)",
                "UTC",
                "2027-02-01T00:00:00Z",
                "2027-03-05T00:00:00Z"
            ),
            vec![t("2027-02-28T00:00:00Z")]
        );
        // The second Tuesday of December 2026 is the 8th; its last Friday the 25th.
        assert_eq!(
            run(
                "cron(0 0 ? * 3#2 *)",
                "UTC",
                "2026-12-01T00:00:00Z",
                "2026-12-31T00:00:00Z"
            ),
            vec![t("2026-12-08T00:00:00Z")]
        );
        assert_eq!(
            run(
                "cron(0 0 ? * FRIL *)",
                "UTC",
                "2026-12-01T00:00:00Z",
                "2026-12-31T00:00:00Z"
            ),
            vec![t("2026-12-25T00:00:00Z")]
        );
    }

    #[test]
    fn wall_clock_in_the_zone_across_daylight_saving() {
        // New York springs forward at 02:00 local on 2026-03-08: 02:30 does not exist.
        assert_eq!(
            run(
                "cron(30 2 * * ? *)",
                "America/New_York",
                "2026-03-07T00:00:00Z",
                "2026-03-09T23:59:00Z"
            ),
            vec![t("2026-03-07T07:30:00Z"), t("2026-03-09T06:30:00Z")]
        );
        // It falls back at 02:00 local on 2026-11-01: 01:30 happens twice and runs once, at
        // its first instant (EDT, 05:30Z), not again at 06:30Z.
        assert_eq!(
            run(
                "cron(30 1 * * ? *)",
                "America/New_York",
                "2026-11-01T00:00:00Z",
                "2026-11-01T12:00:00Z"
            ),
            vec![t("2026-11-01T05:30:00Z")]
        );
        // Berlin in winter is UTC+1.
        assert_eq!(
            run(
                "cron(0 9 ? * MON-FRI *)",
                "Europe/Berlin",
                "2026-11-24T00:00:00Z",
                "2026-11-24T23:59:00Z"
            ),
            vec![t("2026-11-24T08:00:00Z")]
        );
    }
}
