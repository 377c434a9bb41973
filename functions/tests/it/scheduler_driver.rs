//! EventBridge Scheduler's documented behaviour, emulated over the schedules the platform
//! writes to moto (which stores schedules but never runs them), driving the real fire handler
//! with a manual clock:
//!
//! - **Expressions**: `at()`, `rate()` from its `StartDate`, and 6-field `cron()` in the
//!   schedule's `ScheduleExpressionTimezone`, evaluated by the driver's own evaluator
//!   (`scheduler_driver/cron.rs`: local wall time, a nonexistent local time skipped, a repeated
//!   one run once at its first instant), from the later of its `StartDate` and when it was
//!   written. `StartDate` inclusive, `EndDate` exclusive; a DISABLED schedule does not run.
//! - **Timing**: one-minute precision (an invocation lands anywhere in the scheduled minute, so
//!   up to 59 s before a seconds-precision `at()`), one in ten up to two minutes late, at least
//!   once (one in four twice, concurrently); a completed `at()` is deleted
//!   (`ActionAfterCompletion` DELETE).
//! - **The schedule's RetryPolicy** (read from GetSchedule's target): per seed some invocations
//!   cannot be delivered to the Lambda (throttling), 1 to 3 times in a row; Scheduler retries
//!   them with exponential backoff while `MaximumRetryAttempts` and `MaximumEventAgeInSeconds`
//!   allow, else the invocation goes to the dead-letter queue (asserted never to happen with the
//!   policy the platform writes). The retried invocation arrives late, out of order.
//! - **Lambda's asynchronous retries**: a failed run is retried twice, about 1 and 2 min later.
//! - **Writes judged on arrival** (`scheduler_driver/front.rs`, an HTTP front door before moto):
//!   one schedule write in four arrives 1 to 8 s after it was sent; a `StartDate` over five
//!   minutes old is refused (ValidationException); an `at()` already past when it arrives is,
//!   per seed, refused with ValidationException or accepted and never run (AWS does not
//!   document which). The platform writes such an `at()` when a write stalls (delivery retries,
//!   and a one-time trigger edited two seconds before its time, every run).
//! - **Isolation**: the front door sends the driver's DynamoDB requests to moto one at a time,
//!   so each is atomic as on DynamoDB (moto's threaded server does not isolate transactions),
//!   and duplicate invocations of an occurrence or a delivery run concurrently.
//!
//! It proves one event per occurrence (none lost, none doubled), exactly-once delivery, nothing
//! left pending and nothing dead-lettered. Seeded: the seed is printed, and `ETP_DRIVER_SEED`
//! replays one. Draws depend on the seed and on instants relative to `t0`, not on the date: the
//! fate of a past `at()`, the throttling rate, forced stalls and every draw about a trigger's
//! occurrences replay exactly; delivery retries are timed by the platform's own (unseeded)
//! jitter, so the draws about them, and the manual clock after them, vary between runs.

mod cron;
mod front;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Datelike, Duration, DurationRound, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use etp::clock::{Clock, ManualClock};
use etp::delivery::{Deliverer, SCHEDULER_EARLY_SLACK, Sender};
use etp::domain::delivery::RetrySchedule;
use etp::domain::egress::EgressPolicy;
use etp::domain::event::{Event, EventStatus};
use etp::domain::lifecycle::FiredWindow;
use etp::domain::schedule::Schedule;
use etp::domain::target::Target;
use etp::domain::trigger::{Trigger, TriggerDefinition, TriggerKind, TriggerStatus};
use etp::firing::FireInput;
use etp::ports::{EventQuery, EventStore, Scheduler, TriggerStore};
use etp::testing::fixtures::{WebhookReceiver, t0};
use etp::testing::moto;
use functions::handle_fire;

use crate::helpers::{AwsFixture, aws_fixture_via};
use cron::Cron;
use front::{Front, PastAt};

/// A stable pseudo-random number for (seed, what, when relative to `t0`, salt): the same
/// invocation gets the same draw however often the schedules are listed, and a seed replays a
/// run whatever the date (names hold fresh ids, so only a stable label of them goes in).
pub(crate) fn draw(seed: u64, label: &str, since_t0: i64, salt: u8) -> u64 {
    let mut h = DefaultHasher::new();
    (seed, label, since_t0, salt).hash(&mut h);
    h.finish()
}

/// What Scheduler's retry policy allows: `MaximumRetryAttempts`, `MaximumEventAgeInSeconds`.
#[derive(Debug, Clone, Copy)]
struct Policy {
    max_retries: u32,
    max_age: Duration,
}

/// One invocation the emulated scheduler makes (and its retries).
#[derive(Debug, Clone)]
struct Invocation {
    schedule: String,
    label: String,
    scheduled: DateTime<Utc>,
    at: DateTime<Utc>,
    input: String,
    one_time: bool,
    twice: bool,
    policy: Policy,
    /// Listed from the schedules just now: listed again next round unless it runs now.
    fresh: bool,
    /// Deliveries to the Lambda that failed so far (Scheduler's retries).
    refused: u32,
    /// Failed runs Lambda retried so far.
    lambda_retries: u32,
}

impl Invocation {
    fn since_t0(&self) -> i64 {
        (self.scheduled - t0()).num_seconds()
    }
}

fn aws_time(t: &aws_sdk_scheduler::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).expect("a schedule date in range")
}

/// The occurrences of one schedule up to `until`, as EventBridge computes them.
fn occurrences(
    expression: &str,
    zone: &str,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    written: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    // EndDate is exclusive: "the date before which the schedule can invoke its target".
    let in_window = |t: &DateTime<Utc>| *t <= until && end.is_none_or(|e| *t < e);
    if expression.starts_with("at(") {
        let at = front::at_instant(expression, zone).expect("at() as the platform writes it");
        return [at].into_iter().filter(in_window).collect();
    }
    if expression.starts_with("cron(") {
        let tz: Tz = zone.parse().expect("an IANA zone");
        let from = start.map_or(written, |s| s.max(written));
        return Cron::parse(expression)
            .occurrences(tz, from, until)
            .into_iter()
            .filter(in_window)
            .collect();
    }
    let rate = expression
        .strip_prefix("rate(")
        .and_then(|e| e.strip_suffix(')'))
        .unwrap_or_else(|| panic!("the driver emulates at(), rate() and cron(), not {expression}"));
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
        .take_while(in_window)
        .collect()
}

/// What the driver works with.
struct Driver {
    seed: u64,
    client: aws_sdk_scheduler::Client,
    group: String,
    front: Front,
    labels: Arc<HashMap<String, String>>,
}

fn label_of(labels: &HashMap<String, String>, name: &str) -> String {
    if name.starts_with("dlv-") {
        "delivery".into()
    } else if name.starts_with("test-") {
        "test run".into()
    } else {
        labels
            .get(name)
            .cloned()
            .unwrap_or_else(|| "schedule".into())
    }
}

impl Driver {
    async fn pending(
        &self,
        until: DateTime<Utc>,
        done: &HashSet<(String, i64)>,
    ) -> Vec<Invocation> {
        let seed = self.seed;
        let mut out = Vec::new();
        for name in self.names().await {
            let Ok(s) = self
                .client
                .get_schedule()
                .group_name(&self.group)
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
            let written = self
                .front
                .written(&name)
                .unwrap_or_else(|| panic!("{name} was written past the front door"));
            if written.expression == expression && written.never_runs {
                continue;
            }
            let target = s.target().expect("target");
            let input = target.input().expect("input").to_string();
            let retry = target.retry_policy();
            let policy = Policy {
                // AWS's defaults when the schedule sets none: 185 attempts, 24 hours.
                max_retries: retry
                    .and_then(|r| r.maximum_retry_attempts())
                    .map_or(185, |n| n as u32),
                max_age: Duration::seconds(
                    retry
                        .and_then(|r| r.maximum_event_age_in_seconds())
                        .map_or(86_400, i64::from),
                ),
            };
            let label = label_of(&self.labels, &name);
            for scheduled in occurrences(
                expression,
                s.schedule_expression_timezone().unwrap_or("UTC"),
                s.start_date().map(aws_time),
                s.end_date().map(aws_time),
                written.arrived,
                until,
            ) {
                if done.contains(&(name.clone(), scheduled.timestamp())) {
                    continue;
                }
                let since = (scheduled - t0()).num_seconds();
                // Anywhere in the scheduled minute; one in ten up to two minutes late.
                let minute = scheduled
                    .duration_trunc(Duration::minutes(1))
                    .expect("minute");
                let mut at = minute + Duration::seconds((draw(seed, &label, since, 0) % 60) as i64);
                if draw(seed, &label, since, 1) % 10 == 0 {
                    at += Duration::seconds((draw(seed, &label, since, 2) % 120) as i64);
                }
                out.push(Invocation {
                    schedule: name.clone(),
                    label: label.clone(),
                    scheduled,
                    at,
                    input: input.replace(
                        "<aws.scheduler.scheduled-time>",
                        &scheduled.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    ),
                    one_time: expression.starts_with("at("),
                    twice: draw(seed, &label, since, 3) % 4 == 0,
                    policy,
                    fresh: true,
                    refused: 0,
                    lambda_retries: 0,
                });
            }
        }
        out
    }

    async fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_schedules()
                .group_name(&self.group)
                .set_next_token(token)
                .send()
                .await
                .expect("list schedules");
            names.extend(
                page.schedules()
                    .iter()
                    .filter_map(|s| s.name().map(str::to_string)),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return names;
            }
        }
    }

    /// How many deliveries of `inv` to the Lambda in a row fail (as when Lambda throttles): per
    /// seed, one invocation in `one_in` is refused 1 to 3 times. The policy the platform writes
    /// allows 5 retries within an hour, so every one is delivered in the end.
    fn refusals(&self, inv: &Invocation, one_in: u64) -> u32 {
        if draw(self.seed, &inv.label, inv.since_t0(), 10) % one_in == 0 {
            1 + (draw(self.seed, &inv.label, inv.since_t0(), 11) % 3) as u32
        } else {
            0
        }
    }

    /// Scheduler's wait before its `k`-th retry: exponential from 20 s, with jitter.
    fn backoff(&self, inv: &Invocation, k: u32) -> Duration {
        let base = 20_000 * (1i64 << (k - 1).min(10));
        let jitter = (draw(self.seed, &inv.label, inv.since_t0(), 12 + k as u8) % 1000) as i64;
        Duration::milliseconds(base / 2 + base * jitter / 1000)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_firings_and_retries_survive_the_schedulers_real_timing() {
    let seed = std::env::var("ETP_DRIVER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("scheduler driver seed: {seed} (ETP_DRIVER_SEED={seed} replays it)");
    let fate = if draw(seed, "fate", 0, 0) % 2 == 0 {
        PastAt::Rejected
    } else {
        PastAt::NeverRuns
    };
    // One invocation in 3 to 7 cannot be delivered at first.
    let refused_one_in = 3 + draw(seed, "throttling", 0, 0) % 5;
    eprintln!(
        "seed {seed}: an at() past on arrival is {fate:?}; one invocation in {refused_one_in} \
         is refused by the Lambda at first"
    );

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
    // Every 2 minutes, its window ending exactly on its 10th occurrence, delivered to a hook.
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
            pause_after_failures: None,
        }),
    );
    // An `at()` with seconds, which Scheduler may run up to 59 s early.
    let once = define(
        "once",
        Schedule::At {
            at: t0() + Duration::seconds(330),
        },
        None,
    );
    // A cron in New York at :05 and :35 of the two local hours from t0 on, on their local days
    // (numbered as standard cron does, Sunday 0), from a minute after t0 until the 4th candidate.
    let ny: Tz = "America/New_York".parse().unwrap();
    let local = |t: DateTime<Utc>| t.with_timezone(&ny);
    let list = |values: BTreeSet<u32>| {
        values
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let hours = BTreeSet::from([local(t0()).hour(), local(t0() + Duration::hours(1)).hour()]);
    let days = BTreeSet::from([
        local(t0()).weekday().num_days_from_sunday(),
        local(t0() + Duration::hours(1))
            .weekday()
            .num_days_from_sunday(),
    ]);
    let cron_expression = format!("5,35 {} * * {}", list(hours), list(days));
    let cron = define(
        "new york",
        Schedule::Cron {
            expression: cron_expression.clone(),
            timezone: "America/New_York".into(),
            start_at: Some(t0() + Duration::minutes(1)),
            end_at: Some(t0() + Duration::minutes(95)),
        },
        None,
    );
    // Each candidate fires unless its local wall time occurred before (fall back): only the
    // first instant of a repeated local time runs, and that one is a candidate or precedes t0.
    let cron_expected: Vec<_> = [5, 35, 65, 95]
        .map(|m| t0() + Duration::minutes(m))
        .into_iter()
        .filter(|c| ny.from_local_datetime(&local(*c).naive_local()).earliest() == Some(local(*c)))
        .collect();
    // A one-time trigger, edited at `edit_at` to fire two seconds later; the write stalls, so
    // its at() is past when it arrives.
    let edited = define(
        "edited",
        Schedule::At {
            at: t0() + Duration::minutes(50),
        },
        None,
    );
    let edit_at = t0() + Duration::seconds(7 * 60 + 30);

    let labels: Arc<HashMap<String, String>> = Arc::new(
        [
            (&every, "every"),
            (&once, "once"),
            (&cron, "cron"),
            (&edited, "edited"),
        ]
        .into_iter()
        .map(|(t, l)| (t.id.clone(), l.to_string()))
        .collect(),
    );
    let clock = Arc::new(ManualClock::new(t0()));
    let front = Front::start(moto::endpoint(), clock.clone(), seed, t0(), fate, {
        let labels = labels.clone();
        move |name| label_of(&labels, name)
    })
    .await;
    let AwsFixture {
        store,
        client,
        group,
        clock,
        scheduler,
    } = aws_fixture_via(&front.endpoint, clock).await;
    // Wired as the fire function wires it (functions/src/env.rs).
    let deliverer = Deliverer::new(
        store.clone(),
        clock.clone(),
        scheduler.clone(),
        Arc::new(Sender::new(EgressPolicy::with_allowed("127.0.0.1/32").unwrap()).unwrap()),
        RetrySchedule::default(),
    )
    .with_early_slack(SCHEDULER_EARLY_SLACK);
    let driver = Driver {
        seed,
        client: client.clone(),
        group: group.clone(),
        front: front.clone(),
        labels,
    };

    // The first delivery retry (due about 5 s after its failed attempt) is written 8 s late.
    front.stall_next("dlv-", Duration::seconds(8));
    for t in [&every, &once, &cron, &edited] {
        store.insert_trigger(t, u64::MAX).await.unwrap();
        scheduler.schedule(t).await.unwrap();
    }

    // Long enough for the last occurrence's whole retry schedule (5 retries, about 43 min),
    // with Scheduler's and Lambda's retries on top.
    let horizon = t0() + Duration::hours(3);
    let mut done = HashSet::new();
    let mut edit: Option<DateTime<Utc>> = None;
    let mut dead_lettered: Vec<String> = Vec::new();
    let (mut refusals, mut lambda_retries, mut duplicates) = (0, 0, 0);
    // Invocations waiting for a retry: Scheduler's (delivery refused) or Lambda's (run failed).
    let mut waiting: Vec<Invocation> = Vec::new();
    loop {
        let mut due = driver.pending(horizon, &done).await;
        due.append(&mut waiting);
        due.sort_by_key(|i| (i.at, i.scheduled));
        if edit.is_none() && due.first().is_none_or(|i| i.at > edit_at) {
            waiting = due.into_iter().filter(|i| !i.fresh).collect();
            clock.set(edit_at.max(clock.now()));
            let at = etp::domain::time_range::ceil(clock.now(), Duration::seconds(1))
                + Duration::seconds(2);
            let current = store.get_trigger(&edited.id).await.unwrap().unwrap();
            let next = current.replaced(
                TriggerDefinition {
                    schedule: Some(Schedule::At { at }),
                    ..current.definition()
                },
                clock.now(),
            );
            store.replace_trigger(&next, current.version).await.unwrap();
            front.stall_next(&edited.id, Duration::seconds(3 + (seed % 3) as i64));
            scheduler
                .schedule(&next)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: editing a one-time trigger failed: {e}"));
            edit = Some(at);
            continue;
        }
        let mut due = due.into_iter();
        let Some(mut next) = due.next() else {
            break;
        };
        waiting.extend(due.filter(|i| !i.fresh));
        clock.set(next.at.max(clock.now()));
        if next.fresh {
            done.insert((next.schedule.clone(), next.scheduled.timestamp()));
            next.fresh = false;
        }

        // Delivery to the Lambda, retried by Scheduler per the schedule's policy.
        if next.lambda_retries == 0 && next.refused < driver.refusals(&next, refused_one_in) {
            refusals += 1;
            next.refused += 1;
            let retry_at = clock.now() + driver.backoff(&next, next.refused);
            let age = retry_at - next.scheduled;
            if next.refused > next.policy.max_retries || age > next.policy.max_age {
                dead_lettered.push(format!(
                    "{} ({}) for {} after {} refusals",
                    next.schedule, next.label, next.scheduled, next.refused
                ));
            } else {
                next.at = retry_at;
                waiting.push(next);
            }
            continue;
        }

        let input: FireInput = serde_json::from_str(&next.input).expect("schedule input");
        let runs = if next.twice { 2 } else { 1 };
        duplicates += runs - 1;
        // Duplicates run at the same moment: the front door keeps each store request atomic.
        let fire = || handle_fire(store.as_ref(), clock.as_ref(), &deliverer, input.clone());
        let reports = futures_util::future::join_all((0..runs).map(|_| fire())).await;
        let mut failed = false;
        for report in reports {
            match report {
                Ok(_) => {}
                Err(e) if next.lambda_retries < 2 => {
                    eprintln!("seed {seed}: invocation failed ({e}); Lambda retries it");
                    failed = true;
                }
                Err(e) => panic!("seed {seed}: failed after Lambda's retries: {e}"),
            }
        }
        if next.one_time && next.lambda_retries == 0 {
            // Delivered to the Lambda: the one-time schedule is complete (ActionAfterCompletion
            // DELETE), whatever the run does.
            let _ = client
                .delete_schedule()
                .group_name(&group)
                .name(&next.schedule)
                .send()
                .await;
        }
        if failed {
            lambda_retries += 1;
            next.lambda_retries += 1;
            next.at = clock.now() + Duration::minutes(i64::from(next.lambda_retries));
            next.twice = false;
            waiting.push(next);
        }
    }
    let tally = front.tally();
    eprintln!(
        "seed {seed}: {refusals} deliveries refused and retried by Scheduler, {lambda_retries} \
         runs retried by Lambda, {duplicates} duplicate runs; front door: {tally:?}"
    );

    assert!(
        dead_lettered.is_empty(),
        "seed {seed}: dead-lettered: {dead_lettered:?}"
    );
    // Exactly one event per occurrence, the one on the window's end included.
    let expected: Vec<_> = (1..=10)
        .map(|k| t0() + Duration::seconds(120 * k))
        .collect();
    // What the store holds, not what the runs reported: a run that failed after recording
    // its event reported nothing.
    let mut events: HashMap<String, Vec<Event>> = HashMap::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_events(&EventQuery {
                window: FiredWindow {
                    after: t0() - Duration::minutes(1),
                    until: None,
                },
                now: Some(clock.now()),
                trigger_id: None,
                source: None,
                is_test: None,
                limit: 100,
                cursor,
            })
            .await
            .unwrap();
        for e in page.items {
            events
                .entry(e.trigger_id.clone().unwrap_or_default())
                .or_default()
                .push(e);
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let every_events: Vec<String> = events
        .get(&every.id)
        .map(|v| v.iter().map(|e| e.id.clone()).collect())
        .unwrap_or_default();
    let mut take = |t: &Trigger| {
        let mut v: Vec<_> = events
            .remove(&t.id)
            .unwrap_or_default()
            .iter()
            .map(|e| e.scheduled_for.expect("a scheduled event"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(take(&every), expected, "seed {seed}");
    assert_eq!(
        take(&once),
        vec![t0() + Duration::seconds(330)],
        "seed {seed}"
    );
    assert_eq!(
        take(&cron),
        cron_expected,
        "seed {seed}: {cron_expression} in America/New_York"
    );
    let edit = edit.expect("the edit happened");
    assert_eq!(take(&edited), vec![edit], "seed {seed}: the edited trigger");
    assert!(events.is_empty(), "seed {seed}: {events:?}");
    for t in [&once, &cron, &edited] {
        let now = store.get_trigger(&t.id).await.unwrap().unwrap();
        assert_eq!(
            now.status,
            TriggerStatus::Completed,
            "seed {seed}: {}",
            t.name
        );
    }
    // The edit's at() was past on arrival, and so was the first delivery retry's.
    for label in ["edited", "delivery"] {
        assert!(
            tally.past_at.iter().any(|(l, f)| l == label && *f == fate),
            "seed {seed}: no {label} at() was past on arrival: {tally:?}"
        );
    }
    // Nothing waits on a schedule that never runs.
    for name in driver.names().await {
        let written = front
            .written(&name)
            .expect("written through the front door");
        assert!(
            !written.never_runs,
            "seed {seed}: {name} waits on {} which never runs",
            written.expression
        );
    }

    // The front door refuses a StartDate over five minutes old, as AWS does (checked at the end,
    // when the manual clock is far enough ahead that the date is still future by the real one).
    let old_start = client
        .create_schedule()
        .name("old-start")
        .group_name(&group)
        .schedule_expression("rate(1 hour)")
        .start_date(aws_sdk_scheduler::primitives::DateTime::from_secs(
            (clock.now() - Duration::minutes(6)).timestamp(),
        ))
        .flexible_time_window(
            aws_sdk_scheduler::types::FlexibleTimeWindow::builder()
                .mode(aws_sdk_scheduler::types::FlexibleTimeWindowMode::Off)
                .build()
                .unwrap(),
        )
        .target(
            aws_sdk_scheduler::types::Target::builder()
                .arn("arn:aws:lambda:us-east-1:123456789012:function:etp-fire")
                .role_arn("arn:aws:iam::123456789012:role/etp-scheduler")
                .build()
                .unwrap(),
        )
        .send()
        .await;
    assert!(
        old_start
            .as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_validation_exception()),
        "{old_start:?}"
    );
    assert_eq!(front.tally().old_start_rejected, 1, "seed {seed}");

    // Every event delivered exactly once (one 2xx per webhook-id), none left pending.
    let mut answered: HashMap<String, Vec<bool>> = HashMap::new();
    for (n, seen) in rx.seen("hook").iter().enumerate() {
        let id = seen.headers["webhook-id"].to_str().unwrap().to_string();
        answered.entry(id).or_default().push((n + 1) % 3 != 1);
    }
    for id in &every_events {
        let e = store.get_event(id).await.unwrap().expect("the event");
        assert_ne!(
            e.status,
            EventStatus::Pending,
            "seed {seed}: left pending: {e:?}"
        );
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
