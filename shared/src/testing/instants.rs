//! Test instants derived from the real clock, for tests whose times reach something that reads
//! it (moto's scheduler, the OS timer, a browser): a literal date there is a time bomb.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};

/// How far ahead of the real clock the anchor is at least, so a test binary that starts just
/// before a whole hour still sends only future instants for its whole run.
const MARGIN: Duration = Duration::minutes(15);

/// A whole hour 15 to 75 minutes after the real time when this process first asked, then fixed
/// for the process, so every test of a binary shares one anchor. Instants built on it stay in
/// the future for anything reading the real clock while the tests run, and keep the
/// hour-aligned structure (hour buckets, minute grids) that fixed dates used to give.
pub fn next_hour() -> DateTime<Utc> {
    static ANCHOR: OnceLock<DateTime<Utc>> = OnceLock::new();
    *ANCHOR.get_or_init(|| ceil(Utc::now() + MARGIN, Duration::hours(1)))
}

pub use crate::domain::time_range::ceil;

/// `t` in the RFC 3339 form the API writes for whole seconds (`2026-11-24T10:00:00Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// `t` as EventBridge Scheduler's `at()` expression (UTC, whole seconds).
pub fn at_expression(t: DateTime<Utc>) -> String {
    format!("at({})", t.format("%Y-%m-%dT%H:%M:%S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_anchor_is_a_future_whole_hour_fixed_for_the_process() {
        use chrono::DurationRound;
        let a = next_hour();
        assert!(a > Utc::now() + Duration::minutes(5));
        assert!(a <= Utc::now() + Duration::minutes(75));
        assert_eq!(a.duration_trunc(Duration::hours(1)).unwrap(), a);
        assert_eq!(next_hour(), a);
    }

    #[test]
    fn ceil_keeps_whole_values() {
        let t = DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(ceil(t, Duration::hours(1)), t);
        assert_eq!(
            ceil(t + Duration::milliseconds(1), Duration::hours(1)),
            t + Duration::hours(1)
        );
    }
}
