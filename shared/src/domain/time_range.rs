//! The range of instants the platform accepts, and time arithmetic that cannot overflow.

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};

/// The first instant any input may name: the Unix epoch.
pub fn earliest() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

/// The last instant any input may name: the end of year 9999, the last year every store,
/// client library and EventBridge Scheduler writes with four digits.
pub fn latest() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map_or(DateTime::<Utc>::MAX_UTC, |t| t.and_utc())
}

/// Whether `t` lies in [`earliest`] ..= [`latest`].
pub fn contains(t: DateTime<Utc>) -> bool {
    (earliest()..=latest()).contains(&t)
}

/// The message a field outside the range gets.
pub fn out_of_range_message() -> String {
    "must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z".into()
}

/// `t + d`, or `None` when that leaves chrono's range (it would panic).
pub fn add(t: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    t.checked_add_signed(d)
}

/// `t - d`, or `None` when that leaves chrono's range (it would panic).
pub fn sub(t: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    t.checked_sub_signed(d)
}

/// `t + d`, held at chrono's limits instead of overflowing: for instants only displayed or
/// compared (an event's `expires_at`), where a stored row from elsewhere must not panic a read.
pub fn add_saturating(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    add(t, d).unwrap_or(if d < Duration::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// `t - d`, held at chrono's limits (see [`add_saturating`]).
pub fn sub_saturating(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    sub(t, d).unwrap_or(if d < Duration::zero() {
        DateTime::<Utc>::MAX_UTC
    } else {
        DateTime::<Utc>::MIN_UTC
    })
}

/// A duration of `secs` seconds, or `None` beyond what chrono can hold (where
/// `Duration::seconds` would panic).
pub fn seconds(secs: i64) -> Option<Duration> {
    Duration::try_seconds(secs)
}

/// `t` rounded up to a whole multiple of `unit` (a whole `t` stays as it is).
pub fn ceil(t: DateTime<Utc>, unit: Duration) -> DateTime<Utc> {
    match t.duration_trunc(unit) {
        Ok(floor) if floor == t => t,
        Ok(floor) => floor + unit,
        Err(_) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_1970_to_9999() {
        assert_eq!(earliest().to_rfc3339(), "1970-01-01T00:00:00+00:00");
        assert_eq!(latest().to_rfc3339(), "9999-12-31T23:59:59+00:00");
        assert!(contains(latest()));
        assert!(!contains(latest() + Duration::seconds(1)));
        assert!(!contains(earliest() - Duration::milliseconds(1)));
    }

    #[test]
    fn arithmetic_at_the_limits_does_not_panic() {
        let max = DateTime::<Utc>::MAX_UTC;
        let min = DateTime::<Utc>::MIN_UTC;
        assert_eq!(add(max, Duration::seconds(1)), None);
        assert_eq!(sub(min, Duration::seconds(1)), None);
        assert_eq!(add_saturating(max, Duration::days(1)), max);
        assert_eq!(add_saturating(min, -Duration::days(1)), min);
        assert_eq!(sub_saturating(min, Duration::days(1)), min);
        assert_eq!(seconds(i64::MAX), None);
        assert_eq!(seconds(9_223_372_036_854_776), None);
        assert_eq!(seconds(60), Some(Duration::minutes(1)));
    }
}
