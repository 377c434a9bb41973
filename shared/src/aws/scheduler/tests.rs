//! The mapping to EventBridge Scheduler, pinned: expressions, plans, inputs and names.

use std::collections::BTreeSet;

use chrono::Datelike;

use super::*;
use crate::domain::schedule::Schedule;
use crate::domain::trigger::{TriggerDefinition, TriggerKind, TriggerStatus};
use crate::firing::FireInput;
use serde_json::json;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const ID: &str = "01jexample0000000000000000";

fn trigger(schedule: Schedule, status: TriggerStatus) -> Trigger {
    let def = TriggerDefinition {
        name: "nightly".into(),
        kind: TriggerKind::Scheduled,
        schedule: Some(schedule),
        payload: Some(json!({"k": 1})),
        payload_schema: None,
        target: None,
    };
    let mut trigger = Trigger::create(def, ID.into(), t("2026-11-24T10:00:00Z"));
    trigger.status = status;
    trigger
}

fn spec(schedule: Schedule, status: TriggerStatus, now: &str) -> ScheduleSpec {
    match plan(&trigger(schedule, status), t(now)).unwrap() {
        Plan::Put(spec) => spec,
        other => panic!("expected a schedule, got {other:?}"),
    }
}

fn cron(expr: &str) -> Result<String, SchedulerError> {
    cron_expression(expr)
}

fn unsupported_of(r: Result<String, SchedulerError>) -> (String, String) {
    match r {
        Err(SchedulerError::Unsupported { field, message }) => (field, message),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

fn cron_schedule(expr: &str, tz: &str) -> Schedule {
    Schedule::Cron {
        expression: expr.into(),
        timezone: tz.into(),
        start_at: None,
        end_at: None,
    }
}

#[test]
fn rate_uses_the_largest_whole_unit_and_singular_for_one() {
    assert_eq!(rate_expression(60).unwrap(), "rate(1 minute)");
    assert_eq!(rate_expression(120).unwrap(), "rate(2 minutes)");
    assert_eq!(rate_expression(5400).unwrap(), "rate(90 minutes)");
    assert_eq!(rate_expression(3600).unwrap(), "rate(1 hour)");
    assert_eq!(rate_expression(7200).unwrap(), "rate(2 hours)");
    assert_eq!(rate_expression(90_000).unwrap(), "rate(25 hours)");
    assert_eq!(rate_expression(86_400).unwrap(), "rate(1 day)");
    assert_eq!(rate_expression(7 * 86_400).unwrap(), "rate(7 days)");
    assert_eq!(rate_expression(86_400 + 60).unwrap(), "rate(1441 minutes)");
}

#[test]
fn sub_minute_or_ragged_rates_are_refused_naming_the_limit() {
    for every in [1, 30, 59, 90, 61, 3601] {
        let (field, message) = unsupported_of(rate_expression(every));
        assert_eq!(field, "schedule.every_seconds");
        assert!(message.contains("at most once a minute"), "{message}");
        assert!(message.contains("multiple of 60 seconds"), "{message}");
        assert!(message.contains(&format!("(got {every})")), "{message}");
    }
    assert_eq!(
        unsupported_of(rate_expression(90)).1,
        "EventBridge Scheduler fires at most once a minute: use a multiple of 60 seconds (got 90)"
    );
}

#[test]
fn at_is_utc_to_the_second() {
    assert_eq!(
        at_expression(t("2026-11-24T10:00:05Z")),
        "at(2026-11-24T10:00:05)"
    );
    assert_eq!(
        at_expression(t("2027-01-02T03:04:05+02:00")),
        "at(2027-01-02T01:04:05)"
    );
}

#[test]
fn cron_places_question_mark_in_exactly_one_day_field() {
    assert_eq!(cron("*/5 * * * *").unwrap(), "cron(*/5 * * * ? *)");
    assert_eq!(cron("0 0 1 * *").unwrap(), "cron(0 0 1 * ? *)");
    assert_eq!(cron("0 0 1,15 * ?").unwrap(), "cron(0 0 1,15 * ? *)");
    assert_eq!(cron("0 0 L * *").unwrap(), "cron(0 0 L * ? *)");
    assert_eq!(cron("0 9 * * MON-FRI").unwrap(), "cron(0 9 ? * MON-FRI *)");
    assert_eq!(cron("0 9 ? * MON").unwrap(), "cron(0 9 ? * MON *)");
    assert_eq!(
        cron("30 8 * JAN,JUL *").unwrap(),
        "cron(30 8 * JAN,JUL ? *)"
    );
    assert_eq!(cron("0 12 1-7 */2 *").unwrap(), "cron(0 12 1-7 */2 ? *)");
}

#[test]
fn cron_refuses_restricting_both_day_fields() {
    let (field, message) = unsupported_of(cron("0 0 1 * MON"));
    assert_eq!(field, "schedule.expression");
    assert!(
        message.contains("both day-of-month and day-of-week"),
        "{message}"
    );
    unsupported_of(cron("0 0 1-7 * 1"));
}

#[test]
fn cron_shifts_numeric_days_of_week() {
    assert_eq!(cron("0 0 * * 0").unwrap(), "cron(0 0 ? * 1 *)");
    assert_eq!(cron("0 0 * * 7").unwrap(), "cron(0 0 ? * 1 *)");
    assert_eq!(cron("0 0 * * 6").unwrap(), "cron(0 0 ? * 7 *)");
    assert_eq!(cron("0 9 * * 1-5").unwrap(), "cron(0 9 ? * 2-6 *)");
    assert_eq!(cron("0 9 * * 0,6").unwrap(), "cron(0 9 ? * 1,7 *)");
    assert_eq!(cron("0 9 * * 1,3,5").unwrap(), "cron(0 9 ? * 2,4,6 *)");
    // Friday to Sunday: 7 is Sunday, which EventBridge numbers 1.
    assert_eq!(cron("0 9 * * 5-7").unwrap(), "cron(0 9 ? * 1,6-7 *)");
    assert_eq!(cron("0 9 * * 0-6").unwrap(), "cron(0 9 ? * 1-7 *)");
    // Steps are not allowed in EventBridge's day-of-week: expanded into the days they select.
    assert_eq!(cron("0 9 * * */2").unwrap(), "cron(0 9 ? * 1,3,5,7 *)");
    assert_eq!(cron("0 9 * * 1/2").unwrap(), "cron(0 9 ? * 1-2,4,6 *)");
    assert_eq!(cron("0 9 * * 1-5/2").unwrap(), "cron(0 9 ? * 2,4,6 *)");
    assert_eq!(cron("0 9 * * MON-FRI/2").unwrap(), "cron(0 9 ? * 2,4,6 *)");
    // A mix of names and numbers is normalized to numbers.
    assert_eq!(cron("0 9 * * MON,3").unwrap(), "cron(0 9 ? * 2,4 *)");
    assert_eq!(cron("0 9 * * mon-fri").unwrap(), "cron(0 9 ? * MON-FRI *)");
}

#[test]
fn cron_nth_and_last_weekday() {
    assert_eq!(cron("0 9 * * 5#2").unwrap(), "cron(0 9 ? * 6#2 *)");
    assert_eq!(cron("0 9 * * FRI#2").unwrap(), "cron(0 9 ? * FRI#2 *)");
    assert_eq!(cron("0 9 * * 5L").unwrap(), "cron(0 9 ? * 6L *)");
    assert_eq!(cron("0 9 * * 0#1").unwrap(), "cron(0 9 ? * 1#1 *)");
    let (_, message) = unsupported_of(cron("0 9 * * 1#1,5#3"));
    assert!(message.contains("only term"), "{message}");
}

#[test]
fn cron_with_seconds_only_at_second_zero() {
    assert_eq!(cron("0 0 9 * * *").unwrap(), "cron(0 9 * * ? *)");
    assert_eq!(cron("00 30 9 * * 1").unwrap(), "cron(30 9 ? * 2 *)");
    for expr in ["*/15 * * * * *", "30 0 9 * * *", "0-5 * * * * *"] {
        let (field, message) = unsupported_of(cron(expr));
        assert_eq!(field, "schedule.expression");
        assert!(message.contains("seconds field must be 0"), "{message}");
    }
}

/// Days from Sunday an EventBridge day-of-week field selects (numbers, ranges, lists only).
fn eventbridge_days(field: &str) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for part in field.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        for n in a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap() {
            out.insert(n - 1);
        }
    }
    out
}

/// The mapped day-of-week selects exactly the weekdays the domain's own cron fires on.
#[test]
fn day_of_week_mapping_agrees_with_the_domain() {
    for dow in [
        "0", "7", "1-5", "0,6", "5-7", "*/2", "1/2", "1-5/2", "*/3", "2-6/2", "MON,3", "3/1",
    ] {
        let expr = format!("0 9 * * {dow}");
        let mapped = cron(&expr).unwrap();
        let eb_dow = mapped.split_whitespace().nth(4).unwrap();
        let schedule = cron_schedule(&expr, "UTC");
        let mut fired = BTreeSet::new();
        let mut at = t("2026-11-22T00:00:00Z");
        while let Some(next) = schedule.next_after(at) {
            if next > t("2026-12-06T00:00:00Z") {
                break;
            }
            fired.insert(next.weekday().num_days_from_sunday());
            at = next;
        }
        assert_eq!(eventbridge_days(eb_dow), fired, "{expr} -> {mapped}");
    }
}

#[test]
fn api_triggers_have_no_schedule() {
    let def = TriggerDefinition {
        name: "hook".into(),
        kind: TriggerKind::Api,
        schedule: None,
        payload: None,
        payload_schema: Some(json!({"type": "object"})),
        target: None,
    };
    let trigger = Trigger::create(def, ID.into(), t("2026-11-24T10:00:00Z"));
    assert_eq!(
        plan(&trigger, t("2026-11-24T10:00:00Z")).unwrap(),
        Plan::Nothing
    );
}

#[test]
fn one_time_at_fires_once_and_deletes_itself() {
    let s = spec(
        Schedule::At {
            at: t("2026-11-24T12:30:00Z"),
        },
        TriggerStatus::Active,
        "2026-11-24T10:00:00Z",
    );
    assert_eq!(
        s,
        ScheduleSpec {
            expression: "at(2026-11-24T12:30:00)".into(),
            at: Some(t("2026-11-24T12:30:00Z")),
            timezone: "UTC".into(),
            start_date: None,
            end_date: None,
            enabled: true,
            delete_after_completion: true,
            input: format!(
                r#"{{"trigger_id":"{ID}","scheduled_time":"<aws.scheduler.scheduled-time>"}}"#
            ),
        }
    );
}

#[test]
fn completed_or_exhausted_triggers_lose_their_schedule() {
    let at = Schedule::At {
        at: t("2026-11-24T12:30:00Z"),
    };
    assert_eq!(
        plan(
            &trigger(at.clone(), TriggerStatus::Completed),
            t("2026-11-24T10:00:00Z")
        )
        .unwrap(),
        Plan::Delete
    );
    assert_eq!(
        plan(
            &trigger(at.clone(), TriggerStatus::Active),
            t("2026-11-24T12:30:00Z")
        )
        .unwrap(),
        Plan::Delete
    );
    // Paused but with nothing left to fire: no disabled schedule lingers either.
    assert_eq!(
        plan(
            &trigger(at, TriggerStatus::Paused),
            t("2026-11-24T13:00:00Z")
        )
        .unwrap(),
        Plan::Delete
    );
    let ended = Schedule::Interval {
        every_seconds: 60,
        recurring: true,
        start_at: Some(t("2026-11-24T10:00:00Z")),
        end_at: Some(t("2026-11-24T10:05:00Z")),
    };
    assert_eq!(
        plan(
            &trigger(ended, TriggerStatus::Active),
            t("2026-11-24T10:05:00Z")
        )
        .unwrap(),
        Plan::Delete
    );
}

#[test]
fn paused_is_disabled_and_active_is_enabled() {
    let at = Schedule::At {
        at: t("2026-11-24T12:30:00Z"),
    };
    assert!(!spec(at.clone(), TriggerStatus::Paused, "2026-11-24T10:00:00Z").enabled);
    assert!(spec(at, TriggerStatus::Active, "2026-11-24T10:00:00Z").enabled);
}

#[test]
fn a_pause_with_an_end_is_an_enabled_schedule_starting_then() {
    let now = t("2026-11-24T10:00:00Z");
    let until = t("2026-11-26T08:30:00Z");
    let paused = |schedule| {
        let t = trigger(schedule, TriggerStatus::Active).paused(now, Some(until));
        match plan(&t, now).unwrap() {
            Plan::Put(spec) => spec,
            other => panic!("expected a schedule, got {other:?}"),
        }
    };
    let c = paused(cron_schedule("0 9 * * *", "Europe/Berlin"));
    assert!(c.enabled);
    assert_eq!(c.start_date, Some(until));
    let r = paused(Schedule::Interval {
        every_seconds: 3600,
        recurring: true,
        start_at: Some(t("2026-11-24T10:00:00Z")),
        end_at: None,
    });
    assert!(r.enabled);
    assert_eq!(r.start_date, Some(t("2026-11-26T09:00:00Z")));
    // A one-time occurrence inside the pause never fires: nothing is left to schedule.
    let during = trigger(
        Schedule::At {
            at: t("2026-11-25T12:00:00Z"),
        },
        TriggerStatus::Active,
    )
    .paused(now, Some(until));
    assert_eq!(plan(&during, now).unwrap(), Plan::Delete);
}

#[test]
fn non_recurring_interval_is_one_at_after_its_start() {
    let s = spec(
        Schedule::Interval {
            every_seconds: 90,
            recurring: false,
            start_at: Some(t("2026-11-24T10:00:00Z")),
            end_at: None,
        },
        TriggerStatus::Active,
        "2026-11-24T10:00:10Z",
    );
    // Any whole second works for a single firing; only recurrence needs whole minutes.
    assert_eq!(s.expression, "at(2026-11-24T10:01:30)");
    assert_eq!(s.timezone, "UTC");
    assert!(s.delete_after_completion);
    assert_eq!((s.start_date, s.end_date), (None, None));
}

#[test]
fn recurring_interval_starts_on_the_domain_grid() {
    let s = spec(
        Schedule::Interval {
            every_seconds: 600,
            recurring: true,
            start_at: Some(t("2026-11-24T10:00:07Z")),
            end_at: Some(t("2026-11-25T10:00:07Z")),
        },
        TriggerStatus::Active,
        "2026-11-24T10:25:00Z",
    );
    assert_eq!(s.expression, "rate(10 minutes)");
    assert_eq!(s.start_date, Some(t("2026-11-24T10:30:07Z")));
    // EndDate is exclusive on AWS: one second after the inclusive end_at.
    assert_eq!(s.end_date, Some(t("2026-11-25T10:00:08Z")));
    assert!(s.delete_after_completion);

    let open = spec(
        Schedule::Interval {
            every_seconds: 3600,
            recurring: true,
            start_at: Some(t("2026-11-24T10:00:00Z")),
            end_at: None,
        },
        TriggerStatus::Active,
        "2026-11-24T10:00:00Z",
    );
    // The first firing is one interval after the start, as in the domain.
    assert_eq!(open.start_date, Some(t("2026-11-24T11:00:00Z")));
    assert_eq!(open.end_date, None);
    assert!(!open.delete_after_completion);
}

#[test]
fn recurring_sub_minute_interval_is_unsupported() {
    let r = plan(
        &trigger(
            Schedule::Interval {
                every_seconds: 30,
                recurring: true,
                start_at: Some(t("2026-11-24T10:00:00Z")),
                end_at: None,
            },
            TriggerStatus::Active,
        ),
        t("2026-11-24T10:00:00Z"),
    );
    assert!(
        matches!(r, Err(SchedulerError::Unsupported { ref field, .. }) if field == "schedule.every_seconds")
    );
}

#[test]
fn cron_passes_its_zone_through_across_dst() {
    // Berlin leaves summer time on 2026-10-25: EventBridge evaluates in the zone itself.
    let s = spec(
        cron_schedule("30 2 * * *", "Europe/Berlin"),
        TriggerStatus::Active,
        "2026-10-24T12:00:00Z",
    );
    assert_eq!(s.expression, "cron(30 2 * * ? *)");
    assert_eq!(s.timezone, "Europe/Berlin");
    let ny = spec(
        cron_schedule("0 9 * * 1-5", "America/New_York"),
        TriggerStatus::Active,
        "2026-03-07T12:00:00Z",
    );
    assert_eq!(ny.expression, "cron(0 9 ? * 2-6 *)");
    assert_eq!(ny.timezone, "America/New_York");
    assert!(!ny.delete_after_completion);
}

#[test]
fn cron_window_sends_only_a_future_start() {
    let windowed = |start: &str| Schedule::Cron {
        expression: "0 * * * *".into(),
        timezone: "Asia/Tokyo".into(),
        start_at: Some(t(start)),
        end_at: Some(t("2026-12-31T00:00:00Z")),
    };
    let future = spec(
        windowed("2026-12-01T00:00:00Z"),
        TriggerStatus::Active,
        "2026-11-24T10:00:00Z",
    );
    assert_eq!(future.start_date, Some(t("2026-12-01T00:00:00Z")));
    // EndDate is exclusive: an occurrence exactly at end_at (00:00) still fires.
    assert_eq!(future.end_date, Some(t("2026-12-31T00:00:01Z")));
    assert!(future.delete_after_completion);
    let past = spec(
        windowed("2026-11-01T00:00:00Z"),
        TriggerStatus::Active,
        "2026-11-24T10:00:00Z",
    );
    assert_eq!(past.start_date, None);
}

#[test]
fn occurrence_input_is_a_fire_input_once_the_placeholder_is_filled() {
    let input = occurrence_input(ID);
    let filled = input.replace(SCHEDULED_TIME_PLACEHOLDER, "2026-11-24T10:00:00Z");
    let parsed: FireInput = serde_json::from_str(&filled).unwrap();
    assert_eq!(
        parsed,
        FireInput::Occurrence {
            trigger_id: ID.into(),
            scheduled_time: t("2026-11-24T10:00:00Z"),
        }
    );
}

#[test]
fn test_run_input_names_the_stored_run_and_deletes_after_firing() {
    let s = test_run_spec("01jrun00000000000000000000", t("2026-11-24T10:05:00Z")).unwrap();
    assert_eq!(s.expression, "at(2026-11-24T10:05:00)");
    assert!(s.delete_after_completion && s.enabled);
    assert_eq!(
        s.input,
        r#"{"test_run_id":"01jrun00000000000000000000","scheduled_time":"<aws.scheduler.scheduled-time>"}"#,
        "the definition and its secret stay in the store"
    );
    let filled = s
        .input
        .replace(SCHEDULED_TIME_PLACEHOLDER, "2026-11-24T10:05:00Z");
    assert_eq!(
        serde_json::from_str::<FireInput>(&filled).unwrap(),
        FireInput::TestRun {
            test_run_id: "01jrun00000000000000000000".into(),
            scheduled_time: t("2026-11-24T10:05:00Z"),
        }
    );
}

#[test]
fn every_input_is_the_fire_functions_own_type() {
    let delivery: FireInput = serde_json::from_str(&delivery_input("01jev")).unwrap();
    assert_eq!(
        delivery,
        FireInput::Delivery {
            delivery_event_id: "01jev".into()
        }
    );
}

#[test]
fn names_follow_eventbridge_rules() {
    assert!(checked_name(ID.into()).is_ok());
    assert!(checked_name(format!("test-{ID}")).is_ok());
    assert!(checked_name("a".repeat(65)).is_err());
    assert!(checked_name("bad name".into()).is_err());
    assert!(checked_name(String::new()).is_err());
}

#[test]
fn dates_keep_milliseconds() {
    let d = aws_time(t("2026-11-24T10:00:00.250Z"));
    assert_eq!(
        d.to_millis().unwrap(),
        t("2026-11-24T10:00:00.250Z").timestamp_millis()
    );
}

#[test]
fn a_one_time_spec_too_soon_moves_later_and_names_its_own_time() {
    let s = spec(
        Schedule::At {
            at: t("2026-11-24T10:00:05Z"),
        },
        TriggerStatus::Active,
        "2026-11-24T10:00:00Z",
    );
    assert_eq!(s.at, Some(t("2026-11-24T10:00:05Z")));
    // Ahead of the earliest: written as planned, the placeholder left for EventBridge.
    assert_eq!(not_before(&s, t("2026-11-24T10:00:05Z")), s);
    // Too soon: written at the earliest, the input naming the occurrence it stands for.
    let moved = not_before(&s, t("2026-11-24T10:00:09Z"));
    assert_eq!(moved.expression, "at(2026-11-24T10:00:09)");
    assert_eq!(moved.at, s.at);
    assert_eq!(
        serde_json::from_str::<FireInput>(&moved.input).unwrap(),
        FireInput::Occurrence {
            trigger_id: ID.into(),
            scheduled_time: t("2026-11-24T10:00:05Z"),
        }
    );
    // A delivery's input has no time to keep.
    let delivery = one_time_spec(t("2026-11-24T10:00:05Z"), delivery_input("01jev"));
    assert_eq!(
        not_before(&delivery, t("2026-11-24T10:00:09Z")).input,
        delivery.input
    );
    // Recurring schedules are never moved.
    let every = spec(
        Schedule::Interval {
            every_seconds: 60,
            recurring: true,
            start_at: Some(t("2026-11-24T10:00:00Z")),
            end_at: None,
        },
        TriggerStatus::Active,
        "2026-11-24T10:00:00Z",
    );
    assert_eq!(every.at, None);
    assert_eq!(not_before(&every, t("2026-11-24T12:00:00Z")), every);
}

#[test]
fn a_one_time_write_is_repeated_later_only_when_it_may_have_come_too_late() {
    let at = t("2026-11-24T10:00:05Z");
    // Answered before its time: it arrived before it, too.
    assert!(!may_have_arrived_late(at, t("2026-11-24T10:00:04.999Z")));
    assert!(may_have_arrived_late(at, at));
    assert!(may_have_arrived_late(at, t("2026-11-24T10:00:08Z")));
    // Refused: another round only when it would say a later time (now + 2 s, rounded up).
    assert_eq!(
        later_at(at, at, t("2026-11-24T10:00:04.500Z")),
        Some(t("2026-11-24T10:00:07Z"))
    );
    assert_eq!(later_at(at, at, t("2026-11-24T10:00:02Z")), None);
    // A far time refused for another reason is not retried.
    let far = t("2026-11-25T10:00:00Z");
    assert_eq!(later_at(far, far, t("2026-11-24T10:00:00Z")), None);
}
