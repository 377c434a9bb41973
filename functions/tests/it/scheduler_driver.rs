//! EventBridge Scheduler's documented behaviour, emulated over the schedules the platform
//! writes to moto (which stores schedules but never fires them), driving the real fire
//! handler: one-minute precision (an invocation lands anywhere in the scheduled minute, so up
//! to 59 s before a seconds-precision `at()`), sometimes late, at least once (sometimes twice,
//! concurrently), `StartDate` inclusive and `EndDate` exclusive, completed `at()` schedules
//! deleted. Seeded: the seed is printed, and `ETP_DRIVER_SEED` replays one.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Duration, DurationRound, NaiveDateTime, Utc};
use etp::clock::Clock;
use etp::delivery::{Deliverer, SCHEDULER_EARLY_SLACK, Sender};
use etp::domain::delivery::RetrySchedule;
use etp::domain::egress::EgressPolicy;
use etp::domain::event::EventStatus;
use etp::domain::schedule::Schedule;
use etp::domain::target::Target;
use etp::domain::trigger::{Trigger, TriggerDefinition, TriggerKind, TriggerStatus};
use etp::firing::FireInput;
use etp::ports::{EventStore, Scheduler, TriggerStore};
use etp::testing::fixtures::{WebhookReceiver, t0};
use functions::handle_fire;

use crate::helpers::{AwsFixture, aws_fixture};

/// One invocation the emulated scheduler makes.
struct Invocation {
    schedule: String,
    scheduled: DateTime<Utc>,
    at: DateTime<Utc>,
    input: String,
    one_time: bool,
    twice: bool,
}

/// A stable pseudo-random number for (seed, kind of schedule, occurrence): the same invocation
/// gets the same timing however often the schedules are listed, and a seed replays a run
/// (schedule names hold fresh ids, so only their kind goes in).
fn draw(seed: u64, schedule: &str, scheduled: DateTime<Utc>, salt: u8) -> u64 {
    let kind = if schedule.starts_with("dlv-") {
        "delivery"
    } else {
        "occurrence"
    };
    let mut h = DefaultHasher::new();
    (seed, kind, scheduled.timestamp(), salt).hash(&mut h);
    h.finish()
}

fn aws_time(t: &aws_sdk_scheduler::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).expect("a schedule date in range")
}

/// The occurrences of one schedule up to `until`, as EventBridge computes them.
fn occurrences(
    expression: &str,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    if let Some(at) = expression
        .strip_prefix("at(")
        .and_then(|e| e.strip_suffix(')'))
    {
        let at = NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S")
            .expect("at() as the platform writes it")
            .and_utc();
        return vec![at].into_iter().filter(|t| *t <= until).collect();
    }
    let rate = expression
        .strip_prefix("rate(")
        .and_then(|e| e.strip_suffix(')'))
        .unwrap_or_else(|| panic!("the driver emulates at() and rate() only, not {expression}"));
    let (n, unit) = rate.split_once(' ').expect("rate(N unit)");
    let every = n.parse::<i64>().expect("rate count")
        * match unit.trim_end_matches('s') {
            "minute" => 60,
            "hour" => 3600,
            "day" => 86_400,
            other => panic!("rate unit {other}"),
        };
    let start = start.expect("the platform sends a StartDate with every rate()");
    (0..)
        .map(|k| start + Duration::seconds(k * every))
        // EndDate is exclusive: "the date before which the schedule can invoke its target".
        .take_while(|t| *t <= until && end.is_none_or(|e| *t < e))
        .collect()
}

async fn pending(
    client: &aws_sdk_scheduler::Client,
    group: &str,
    seed: u64,
    until: DateTime<Utc>,
    done: &HashSet<(String, i64)>,
) -> Vec<Invocation> {
    let listed = client
        .list_schedules()
        .group_name(group)
        .send()
        .await
        .expect("list schedules");
    let mut out = Vec::new();
    for summary in listed.schedules() {
        let name = summary.name().expect("name").to_string();
        let Ok(s) = client
            .get_schedule()
            .group_name(group)
            .name(&name)
            .send()
            .await
        else {
            continue; // deleted meanwhile
        };
        if s.state().map(|s| s.as_str()) == Some("DISABLED") {
            continue;
        }
        let expression = s.schedule_expression().expect("expression");
        let input = s
            .target()
            .and_then(|t| t.input())
            .expect("input")
            .to_string();
        for scheduled in occurrences(
            expression,
            s.start_date().map(aws_time),
            s.end_date().map(aws_time),
            until,
        ) {
            if done.contains(&(name.clone(), scheduled.timestamp())) {
                continue;
            }
            // Anywhere in the scheduled minute; one in ten up to two minutes late.
            let minute = scheduled
                .duration_trunc(Duration::minutes(1))
                .expect("minute");
            let mut at = minute + Duration::seconds((draw(seed, &name, scheduled, 0) % 60) as i64);
            if draw(seed, &name, scheduled, 1) % 10 == 0 {
                at += Duration::seconds((draw(seed, &name, scheduled, 2) % 120) as i64);
            }
            out.push(Invocation {
                schedule: name.clone(),
                scheduled,
                at,
                input: input.replace(
                    "<aws.scheduler.scheduled-time>",
                    &scheduled.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                ),
                one_time: expression.starts_with("at("),
                twice: draw(seed, &name, scheduled, 3) % 4 == 0,
            });
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_firings_and_retries_survive_the_schedulers_real_timing() {
    let seed = std::env::var("ETP_DRIVER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("scheduler driver seed: {seed} (ETP_DRIVER_SEED={seed} replays it)");

    // Every third request to the receiver fails: retries go through one-time schedules.
    let rx = WebhookReceiver::start(|_, hit| {
        Box::pin(async move {
            if hit % 3 == 1 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
            .into_response()
        })
    })
    .await;

    let AwsFixture {
        store,
        client,
        group,
        clock,
        scheduler,
    } = aws_fixture().await;
    // Wired as the fire function wires it (functions/src/env.rs).
    let deliverer = Deliverer::new(
        store.clone(),
        clock.clone(),
        scheduler.clone(),
        Arc::new(Sender::new(EgressPolicy::with_allowed("127.0.0.1/32").unwrap()).unwrap()),
        RetrySchedule::default(),
    )
    .with_early_slack(SCHEDULER_EARLY_SLACK);

    // Every 2 minutes, its window ending exactly on its 10th occurrence; and one `at()` with
    // seconds, which Scheduler may run up to 59 s early.
    let define = |name: &str, schedule: Schedule, target: Option<Target>| {
        Trigger::create(
            TriggerDefinition {
                name: name.into(),
                kind: TriggerKind::Scheduled,
                schedule: Some(schedule),
                payload: None,
                payload_schema: None,
                target,
            },
            etp::domain::new_id(),
            t0(),
        )
    };
    let every = define(
        "every two minutes",
        Schedule::Interval {
            every_seconds: 120,
            recurring: true,
            start_at: Some(t0()),
            end_at: Some(t0() + Duration::minutes(20)),
        },
        Some(Target {
            url: rx.url("hook"),
            headers: Default::default(),
            // Generous: on 2 cores other test binaries may starve the receiver for a while;
            // a timed-out attempt is retried, but must not run out of retries.
            timeout_ms: Some(10_000),
            max_attempts: None,
        }),
    );
    let once = define(
        "once",
        Schedule::At {
            at: t0() + Duration::seconds(330),
        },
        None,
    );
    for t in [&every, &once] {
        store.insert_trigger(t, u64::MAX).await.unwrap();
        scheduler.schedule(t).await.unwrap();
    }

    // Long enough for the last occurrence's whole retry schedule (5 retries, about 43 min).
    let horizon = t0() + Duration::hours(2);
    let mut done = HashSet::new();
    let mut fired: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    let mut event_ids: Vec<String> = Vec::new();
    // Failed invocations Lambda retries (asynchronous invocation: twice, about 1 and 2
    // minutes later), with how many retries each has had.
    let mut retries: Vec<(Invocation, u32)> = Vec::new();
    loop {
        let mut due: Vec<(Invocation, u32)> = pending(&client, &group, seed, horizon, &done)
            .await
            .into_iter()
            .map(|i| (i, 0))
            .collect();
        due.append(&mut retries);
        due.sort_by_key(|(i, _)| (i.at, i.scheduled));
        let mut due = due.into_iter();
        let Some((next, retried)) = due.next() else {
            break;
        };
        retries.extend(due.filter(|(_, r)| *r > 0));
        clock.set(next.at.max(clock.now()));
        done.insert((next.schedule.clone(), next.scheduled.timestamp()));
        let input: FireInput = serde_json::from_str(&next.input).expect("schedule input");
        let runs = if next.twice { 2 } else { 1 };
        let fire = || handle_fire(store.as_ref(), clock.as_ref(), &deliverer, input.clone());
        // Delivery duplicates run at the same moment. Occurrence duplicates run back to back:
        // moto's transactions are not isolated (a cancelled one can roll back a concurrent
        // one's writes), which DynamoDB's serializable transactions never do.
        let reports = if matches!(input, FireInput::Delivery { .. }) {
            futures_util::future::join_all((0..runs).map(|_| fire())).await
        } else {
            let mut out = Vec::new();
            for _ in 0..runs {
                out.push(fire().await);
            }
            out
        };
        let mut failed = false;
        for report in reports {
            let report = match report {
                Ok(r) => r,
                Err(e) if retried < 2 => {
                    eprintln!("seed {seed}: invocation failed ({e}); Lambda retries it");
                    failed = true;
                    continue;
                }
                Err(e) => panic!("seed {seed}: failed after Lambda's retries: {e}"),
            };
            if report.outcome == "fired"
                && let FireInput::Occurrence { trigger_id, .. } = &input
            {
                fired
                    .entry(trigger_id.clone())
                    .or_default()
                    .push(next.scheduled);
                event_ids.extend(report.event_id.clone());
            }
        }
        if failed {
            let at = clock.now() + Duration::minutes(i64::from(retried) + 1);
            retries.push((
                Invocation {
                    at,
                    twice: false,
                    ..next
                },
                retried + 1,
            ));
            continue;
        }
        if next.one_time {
            // ActionAfterCompletion DELETE.
            let _ = client
                .delete_schedule()
                .group_name(&group)
                .name(&next.schedule)
                .send()
                .await;
        }
    }

    // Exactly one event per occurrence, the one on the window's end included.
    let expected: Vec<_> = (1..=10)
        .map(|k| t0() + Duration::seconds(120 * k))
        .collect();
    let mut every_fired = fired.remove(&every.id).unwrap_or_default();
    every_fired.sort();
    assert_eq!(every_fired, expected, "seed {seed}");
    assert_eq!(
        fired.remove(&once.id),
        Some(vec![t0() + Duration::seconds(330)]),
        "seed {seed}"
    );
    let once_now = store.get_trigger(&once.id).await.unwrap().unwrap();
    assert_eq!(once_now.status, TriggerStatus::Completed, "seed {seed}");

    // Every event delivered exactly once (one 2xx per webhook-id), none left pending.
    let mut answered: HashMap<String, Vec<bool>> = HashMap::new();
    for (n, seen) in rx.seen("hook").iter().enumerate() {
        let id = seen.headers["webhook-id"].to_str().unwrap().to_string();
        answered.entry(id).or_default().push((n + 1) % 3 != 1);
    }
    for id in event_ids.iter().filter(|id| !answered.contains_key(*id)) {
        let e = store.get_event(id).await.unwrap();
        eprintln!("seed {seed}: never delivered: {e:?}");
    }
    assert_eq!(
        answered.len(),
        10,
        "seed {seed}: one delivery series per event"
    );
    for (id, outcomes) in &answered {
        let successes = outcomes.iter().filter(|ok| **ok).count();
        assert_eq!(
            successes, 1,
            "seed {seed}: event {id} answered {outcomes:?}"
        );
        assert_eq!(
            outcomes.last(),
            Some(&true),
            "seed {seed}: {id} {outcomes:?}"
        );
        let event = store.get_event(id).await.unwrap().unwrap();
        assert_eq!(event.status, EventStatus::Success, "seed {seed}: {id}");
        assert_eq!(event.attempts.len(), outcomes.len(), "seed {seed}: {id}");
    }
}
