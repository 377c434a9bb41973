//! Property tests of schedules over the whole accepted input domain: nothing panics, accepted
//! schedules fire, occurrences strictly increase inside their window, and DST rules hold in
//! every zone.

use chrono::{DateTime, Datelike, LocalResult, TimeZone, Timelike, Utc};
use chrono_tz::{TZ_VARIANTS, Tz};
use proptest::prelude::*;

use super::schedule::{CRON_LAST_YEAR, MAX_EVERY_SECONDS, Schedule, ScheduleLimits};
use super::time_range;
use super::validation::Checks;

/// Instants across chrono's whole range, with the accepted range's edges and 2^63-ish
/// milliseconds well represented, at whole seconds or not.
fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp_millis();
    let max = DateTime::<Utc>::MAX_UTC.timestamp_millis();
    let latest = time_range::latest().timestamp_millis();
    prop_oneof![
        (min..=max),
        (0..=latest),
        (0..=latest).prop_map(|ms| ms - ms % 1000),
        Just(min),
        Just(max),
        Just(0),
        Just(latest),
        (latest - 86_400_000..=latest + 86_400_000),
    ]
    .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap_or_default())
}

/// "Now" as a running server sees it: anywhere in the accepted range, at millisecond precision.
fn any_now() -> impl Strategy<Value = DateTime<Utc>> {
    (0..=time_range::latest().timestamp_millis())
        .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap_or_default())
}

fn any_zone() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => (0..TZ_VARIANTS.len()).prop_map(|i| TZ_VARIANTS[i].name().to_string()),
        1 => "[A-Za-z/_+-]{0,20}",
    ]
}

/// One cron field: `*`, a step, a value, a range or a list, in or out of `lo..=hi`.
fn field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (1..=hi + 2).prop_map(|k| format!("*/{k}")),
        (lo..=hi + 1).prop_map(|v| v.to_string()),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{a},{b}")),
    ]
}

fn five_fields() -> impl Strategy<Value = String> {
    (
        field(0, 59),
        field(0, 23),
        field(1, 31),
        field(1, 12),
        prop_oneof![
            field(0, 6),
            Just("MON-FRI".to_string()),
            Just("SUN".to_string())
        ],
    )
        .prop_map(|(m, h, dom, mon, dow)| format!("{m} {h} {dom} {mon} {dow}"))
}

fn any_cron() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => five_fields(),
        1 => (field(0, 59), five_fields()).prop_map(|(s, rest)| format!("{s} {rest}")),
        1 => ".{0,30}",
    ]
}

fn any_window() -> impl Strategy<Value = (Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
    (
        proptest::option::of(any_instant()),
        proptest::option::of(any_instant()),
    )
}

fn any_schedule() -> impl Strategy<Value = Schedule> {
    let every = prop_oneof![
        1 => any::<u64>(),
        3 => 1..=MAX_EVERY_SECONDS,
        2 => 1u64..=7200,
    ];
    prop_oneof![
        any_instant().prop_map(|at| Schedule::At { at }),
        (every, any::<bool>(), any_window()).prop_map(
            |(every_seconds, recurring, (start_at, end_at))| Schedule::Interval {
                every_seconds,
                recurring,
                start_at,
                end_at,
            }
        ),
        (any_cron(), any_zone(), any_window()).prop_map(
            |(expression, timezone, (start_at, end_at))| Schedule::Cron {
                expression,
                timezone,
                start_at,
                end_at,
            }
        ),
    ]
}

/// A schedule likely to be accepted at `now`: whole-second instants within ten years of it,
/// intervals in bounds, well-formed crons in real zones.
fn plausible_at(now: DateTime<Utc>) -> impl Strategy<Value = Schedule> {
    let near = move || {
        (-3_650i64 * 86_400..=3_650 * 86_400).prop_map(move |secs| {
            let t = now.timestamp() + secs;
            DateTime::from_timestamp(t, 0).unwrap_or_default()
        })
    };
    let window = move || (proptest::option::of(near()), proptest::option::of(near()));
    let zone = (0..TZ_VARIANTS.len()).prop_map(|i| TZ_VARIANTS[i].name().to_string());
    prop_oneof![
        near().prop_map(|at| Schedule::At { at }),
        (1..=MAX_EVERY_SECONDS, any::<bool>(), window()).prop_map(
            |(every_seconds, recurring, (start_at, end_at))| Schedule::Interval {
                every_seconds,
                recurring,
                start_at,
                end_at,
            }
        ),
        (1u64..=86_400, any::<bool>(), window()).prop_map(
            |(every_seconds, recurring, (start_at, end_at))| Schedule::Interval {
                every_seconds,
                recurring,
                start_at,
                end_at,
            }
        ),
        (five_fields(), zone, window()).prop_map(|(expression, timezone, (start_at, end_at))| {
            Schedule::Cron {
                expression,
                timezone,
                start_at,
                end_at,
            }
        }),
    ]
}

fn now_and_plausible() -> impl Strategy<Value = (DateTime<Utc>, Schedule)> {
    any_now()
        .prop_map(|t| DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default())
        .prop_flat_map(|now| (Just(now), plausible_at(now)))
}

fn validate(s: &Schedule, now: DateTime<Utc>) -> bool {
    let mut checks = Checks::default();
    s.validate(now, &ScheduleLimits::default(), "schedule", &mut checks);
    checks.finish().is_ok()
}

fn window(s: &Schedule) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    match s {
        Schedule::At { .. } => (None, None),
        Schedule::Interval {
            start_at, end_at, ..
        }
        | Schedule::Cron {
            start_at, end_at, ..
        } => (*start_at, *end_at),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any schedule a client can send and any instant a stored row can hold: validation,
    /// next occurrence, catch-up and the stored-row check never panic or loop.
    #[test]
    fn nothing_panics(s in any_schedule(), now in any_now(), after in any_instant()) {
        let _ = validate(&s, now);
        let _ = s.stored_problem();
        let _ = s.next_after(after);
        let _ = s.latest_between(after, now);
        let resolved = s.clone().resolved(now);
        let _ = resolved.next_after(after);
    }

    /// What validation accepts fires: its next occurrences can be computed, strictly increase,
    /// stay in the accepted range and never pass `end_at` (nor precede `start_at`).
    #[test]
    fn accepted_schedules_fire_in_order_within_their_window(
        (now, s) in now_and_plausible(),
    ) {
        prop_assume!(validate(&s, now));
        let s = s.resolved(now);
        prop_assert!(s.stored_problem().is_none());
        let (start, end) = window(&s);
        let mut t = s.next_after(now);
        prop_assert!(t.is_some(), "accepted but never fires: {s:?} at {now}");
        let mut previous = now;
        for _ in 0..25 {
            let Some(next) = t else { break };
            prop_assert!(next > previous, "{s:?}: {next} after {previous}");
            prop_assert!(time_range::contains(next));
            prop_assert!(end.is_none_or(|e| next <= e), "{s:?}: {next} past end");
            if let Schedule::Cron { .. } = s {
                prop_assert!(start.is_none_or(|b| next >= b), "{s:?}: {next} before start");
            }
            if let (Schedule::Interval { every_seconds, .. }, Some(b)) = (&s, start) {
                let every = *every_seconds as i64 * 1000;
                prop_assert_eq!((next - b).num_milliseconds().rem_euclid(every), 0);
            }
            previous = next;
            t = s.next_after(next);
        }
    }

    /// A daily cron in any zone fires once per local day at that wall-clock time, at the first
    /// instant of a repeated local time, and skips only days where that time does not exist.
    #[test]
    fn daily_cron_keeps_dst_rules(
        zone in 0..TZ_VARIANTS.len(),
        hour in 0u32..24,
        minute in 0u32..60,
        from in (0i64..=253_402_300_799 - 40 * 86_400).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default()),
    ) {
        dst_rules_hold(TZ_VARIANTS[zone], hour, minute, from, 12)?;
    }
}

fn dst_rules_hold(
    tz: Tz,
    hour: u32,
    minute: u32,
    from: DateTime<Utc>,
    occurrences: usize,
) -> Result<(), TestCaseError> {
    let s = Schedule::Cron {
        expression: format!("{minute} {hour} * * *"),
        timezone: tz.name().to_string(),
        start_at: None,
        end_at: None,
    };
    let mut previous: Option<DateTime<Utc>> = None;
    let mut t = from;
    for _ in 0..occurrences {
        let Some(next) = s.next_after(t) else {
            // Cron occurrences are computed until the end of CRON_LAST_YEAR, no further.
            prop_assert!(t.year() >= CRON_LAST_YEAR, "{tz} stopped at {t}");
            return Ok(());
        };
        let local = next.with_timezone(&tz);
        prop_assert_eq!(
            (local.hour(), local.minute()),
            (hour, minute),
            "{} {}",
            tz,
            next
        );
        match tz.from_local_datetime(&local.naive_local()) {
            LocalResult::Single(x) => prop_assert_eq!(x.with_timezone(&Utc), next),
            LocalResult::Ambiguous(first, _) => {
                prop_assert_eq!(
                    first.with_timezone(&Utc),
                    next,
                    "{} fires at the first instant",
                    tz
                )
            }
            LocalResult::None => {
                prop_assert!(false, "{tz}: {next} is a local time that does not exist")
            }
        }
        if let Some(p) = previous {
            let (d0, d1) = (p.with_timezone(&tz).date_naive(), local.date_naive());
            prop_assert!(d1 > d0, "{tz}: twice on {d0}");
            // Every day skipped in between had no such local time (a DST gap).
            let mut d = d0.succ_opt().unwrap_or(d1);
            while d < d1 {
                let wall = d.and_hms_opt(hour, minute, 0).unwrap_or_default();
                prop_assert!(
                    matches!(tz.from_local_datetime(&wall), LocalResult::None),
                    "{tz}: skipped {d} although {wall} exists"
                );
                d = d.succ_opt().unwrap_or(d1);
            }
        }
        previous = Some(next);
        t = next;
    }
    Ok(())
}

/// Every zone, through a full year of DST changes at the hour most zones change (02:30).
#[test]
fn every_zone_keeps_dst_rules_for_a_year() {
    let from = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    for tz in TZ_VARIANTS {
        for (hour, minute) in [(2, 30), (0, 0)] {
            if let Err(e) = dst_rules_hold(tz, hour, minute, from, 366) {
                panic!("{tz} at {hour:02}:{minute:02}: {e}");
            }
        }
    }
}
