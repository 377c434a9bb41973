//! Schedules pinned by example: intervals, cron in zones across DST, windows, validation.

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
    s.validate(t(now), &ScheduleLimits::default(), "schedule", &mut checks);
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
