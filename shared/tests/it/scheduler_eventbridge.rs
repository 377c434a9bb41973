//! The EventBridge Scheduler adapter against moto's server: what moto reads back must be exactly
//! what the mapping intends. Moto accepts much that AWS rejects and keeps fields an update omits,
//! so the mapping itself is pinned by the unit tests in `aws::scheduler`.
#![cfg(all(feature = "aws", feature = "test-support"))]

use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;

use aws_sdk_scheduler::operation::get_schedule::{GetScheduleError, GetScheduleOutput};
use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindowMode, ScheduleState};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use etp::aws::scheduler::{EventBridgeScheduler, ScheduleTarget};
use etp::clock::{Clock as _, ManualClock};
use etp::domain::schedule::Schedule;
use etp::domain::trigger::{Trigger, TriggerDefinition, TriggerKind, TriggerStatus};
use etp::ports::{Scheduler, SchedulerError};
use etp::testing::instants::{at_expression, next_hour};
use etp::testing::moto;

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/etp-scheduler";
const FIRE_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:etp-fire";
const DLQ_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:etp-fire-dlq";
const PLACEHOLDER: &str = "<aws.scheduler.scheduled-time>";

/// The adapter's clock at the start of each test: moto checks schedule times against the real
/// clock, so test instants are built on a whole hour ahead of it, never on a literal date.
fn now() -> DateTime<Utc> {
    next_hour()
}

/// The adapter on this test binary's moto server (shared, so every test has its own group; the
/// group must exist: moto answers an HTML 500 without one), and the clock the adapter reads.
struct Fixture {
    client: aws_sdk_scheduler::Client,
    scheduler: EventBridgeScheduler,
    clock: Arc<ManualClock>,
    group: String,
}

fn target(group: &str) -> ScheduleTarget {
    ScheduleTarget {
        group: group.into(),
        role_arn: ROLE_ARN.into(),
        fire_function_arn: FIRE_ARN.into(),
        dead_letter_arn: DLQ_ARN.into(),
    }
}

async fn fixture(group: &str) -> Fixture {
    let client = moto::scheduler_client().await;
    client
        .create_schedule_group()
        .name(group)
        .send()
        .await
        .expect("create schedule group");
    let clock = Arc::new(ManualClock::new(now()));
    let scheduler = EventBridgeScheduler::new(client.clone(), target(group), clock.clone());
    Fixture {
        client,
        scheduler,
        clock,
        group: group.into(),
    }
}

impl Fixture {
    async fn get(&self, name: &str) -> Option<GetScheduleOutput> {
        match self
            .client
            .get_schedule()
            .group_name(&self.group)
            .name(name)
            .send()
            .await
        {
            Ok(out) => Some(out),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(GetScheduleError::ResourceNotFoundException(_))
                ) =>
            {
                None
            }
            Err(e) => panic!(
                "GetSchedule {name}: {}",
                aws_sdk_scheduler::error::DisplayErrorContext(&e)
            ),
        }
    }

    async fn must_get(&self, name: &str) -> GetScheduleOutput {
        self.get(name)
            .await
            .unwrap_or_else(|| panic!("schedule {name} is missing"))
    }

    async fn names(&self) -> Vec<String> {
        let out = self
            .client
            .list_schedules()
            .group_name(&self.group)
            .send()
            .await
            .expect("ListSchedules");
        out.schedules()
            .iter()
            .filter_map(|s| s.name().map(str::to_string))
            .collect()
    }
}

fn scheduled(id: &str, schedule: Schedule) -> Trigger {
    let def = TriggerDefinition {
        name: "nightly report".into(),
        kind: TriggerKind::Scheduled,
        schedule: Some(schedule),
        payload: Some(json!({"report": "sales"})),
        payload_schema: None,
        target: None,
    };
    Trigger::create(def, id.into(), now())
}

fn date(d: Option<&aws_sdk_scheduler::primitives::DateTime>) -> Option<DateTime<Utc>> {
    d.map(|d| DateTime::from_timestamp_millis(d.to_millis().unwrap()).unwrap())
}

fn occurrence_input(id: &str) -> String {
    format!(r#"{{"trigger_id":"{id}","scheduled_time":"{PLACEHOLDER}"}}"#)
}

/// The target every schedule must carry: the fire function through the scheduler role, the
/// explicit retry policy and the dead-letter queue.
fn assert_target(out: &GetScheduleOutput, group: &str, input: &str) {
    let target = out.target().expect("target");
    assert_eq!(target.arn(), FIRE_ARN);
    assert_eq!(target.role_arn(), ROLE_ARN);
    assert_eq!(target.input(), Some(input));
    let retry = target.retry_policy().expect("retry policy");
    assert_eq!(retry.maximum_retry_attempts(), Some(5));
    assert_eq!(retry.maximum_event_age_in_seconds(), Some(3600));
    assert_eq!(
        target.dead_letter_config().and_then(|d| d.arn()),
        Some(DLQ_ARN)
    );
    assert_eq!(
        out.flexible_time_window().map(|w| w.mode()),
        Some(&FlexibleTimeWindowMode::Off)
    );
    assert_eq!(out.group_name(), Some(group));
}

const ID_A: &str = "01kaaaaaaaaaaaaaaaaaaaaaaa";
const ID_B: &str = "01kbbbbbbbbbbbbbbbbbbbbbbb";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recurring_interval_reads_back_as_rate_on_the_domain_grid() {
    let f = fixture("etp-rate").await;
    let trigger = scheduled(
        ID_A,
        Schedule::Interval {
            every_seconds: 900,
            recurring: true,
            start_at: Some(now() - Duration::seconds(59 * 60 + 30)),
            end_at: Some(now() + Duration::days(5)),
        },
    );
    f.scheduler.schedule(&trigger).await.unwrap();

    let out = f.must_get(ID_A).await;
    assert_eq!(out.name(), Some(ID_A));
    assert_eq!(out.schedule_expression(), Some("rate(15 minutes)"));
    assert_eq!(out.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(out.state(), Some(&ScheduleState::Enabled));
    // Next occurrence after now on the grid (now - 59:30) + k * 15 min.
    assert_eq!(date(out.start_date()), Some(now() + Duration::seconds(30)));
    // EndDate is exclusive on AWS: one second after the inclusive end_at.
    assert_eq!(
        date(out.end_date()),
        Some(now() + Duration::days(5) + Duration::seconds(1))
    );
    assert_eq!(
        out.action_after_completion(),
        Some(&ActionAfterCompletion::Delete)
    );
    assert_target(&out, &f.group, &occurrence_input(ID_A));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_triggers_read_back_as_at_and_delete_after_completion() {
    let f = fixture("etp-one-time").await;
    let at = now() + Duration::days(30) + Duration::minutes(30);
    f.scheduler
        .schedule(&scheduled(ID_A, Schedule::At { at }))
        .await
        .unwrap();
    let delayed = Schedule::Interval {
        every_seconds: 45,
        recurring: false,
        start_at: Some(now()),
        end_at: None,
    };
    f.scheduler
        .schedule(&scheduled(ID_B, delayed))
        .await
        .unwrap();

    let expression = at_expression(at);
    let at = f.must_get(ID_A).await;
    assert_eq!(at.schedule_expression(), Some(expression.as_str()));
    assert_eq!(at.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(at.state(), Some(&ScheduleState::Enabled));
    assert_eq!(
        at.action_after_completion(),
        Some(&ActionAfterCompletion::Delete)
    );
    assert_eq!((at.start_date(), at.end_date()), (None, None));
    assert_target(&at, &f.group, &occurrence_input(ID_A));

    let once = f.must_get(ID_B).await;
    assert_eq!(
        once.schedule_expression(),
        Some(at_expression(now() + Duration::seconds(45)).as_str())
    );
    assert_eq!(
        once.action_after_completion(),
        Some(&ActionAfterCompletion::Delete)
    );
    assert_target(&once, &f.group, &occurrence_input(ID_B));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_reads_back_in_eventbridge_syntax_with_its_zone_and_window() {
    let f = fixture("etp-cron").await;
    let trigger = scheduled(
        ID_A,
        Schedule::Cron {
            expression: "0 9 * * 1-5".into(),
            timezone: "Europe/Berlin".into(),
            start_at: Some(now() + Duration::days(7)),
            end_at: Some(now() + Duration::days(120)),
        },
    );
    f.scheduler.schedule(&trigger).await.unwrap();

    let out = f.must_get(ID_A).await;
    assert_eq!(out.schedule_expression(), Some("cron(0 9 ? * 2-6 *)"));
    assert_eq!(out.schedule_expression_timezone(), Some("Europe/Berlin"));
    assert_eq!(out.state(), Some(&ScheduleState::Enabled));
    assert_eq!(date(out.start_date()), Some(now() + Duration::days(7)));
    assert_eq!(
        date(out.end_date()),
        Some(now() + Duration::days(120) + Duration::seconds(1))
    );
    assert_eq!(
        out.action_after_completion(),
        Some(&ActionAfterCompletion::Delete)
    );
    assert_target(&out, &f.group, &occurrence_input(ID_A));

    let open = scheduled(
        ID_B,
        Schedule::Cron {
            expression: "30 2 * * SUN".into(),
            timezone: "America/New_York".into(),
            start_at: None,
            end_at: None,
        },
    );
    f.scheduler.schedule(&open).await.unwrap();
    let out = f.must_get(ID_B).await;
    assert_eq!(out.schedule_expression(), Some("cron(30 2 ? * SUN *)"));
    assert_eq!(out.schedule_expression_timezone(), Some("America/New_York"));
    assert_eq!((out.start_date(), out.end_date()), (None, None));
    assert_eq!(
        out.action_after_completion(),
        Some(&ActionAfterCompletion::None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_edit_and_delete_follow_the_trigger() {
    let f = fixture("etp-lifecycle").await;
    let active = scheduled(
        ID_A,
        Schedule::Cron {
            expression: "*/5 * * * *".into(),
            timezone: "UTC".into(),
            start_at: None,
            end_at: None,
        },
    );
    f.scheduler.schedule(&active).await.unwrap();
    assert_eq!(
        f.must_get(ID_A).await.state(),
        Some(&ScheduleState::Enabled)
    );

    f.clock.advance(Duration::minutes(1));
    let paused = active.with_status(TriggerStatus::Paused, now());
    f.scheduler.schedule(&paused).await.unwrap();
    let out = f.must_get(ID_A).await;
    assert_eq!(out.state(), Some(&ScheduleState::Disabled));
    // The update sent the whole definition again, not just the state.
    assert_eq!(out.schedule_expression(), Some("cron(*/5 * * * ? *)"));
    assert_target(&out, &f.group, &occurrence_input(ID_A));

    let resumed = paused.with_status(TriggerStatus::Active, now());
    f.scheduler.schedule(&resumed).await.unwrap();
    assert_eq!(
        f.must_get(ID_A).await.state(),
        Some(&ScheduleState::Enabled)
    );

    // An edit replaces the expression (and everything else) in place.
    let mut def = resumed.definition();
    def.schedule = Some(Schedule::Interval {
        every_seconds: 7200,
        recurring: true,
        start_at: None,
        end_at: None,
    });
    let edited = resumed.replaced(def, f.clock.now());
    f.scheduler.schedule(&edited).await.unwrap();
    let out = f.must_get(ID_A).await;
    assert_eq!(out.schedule_expression(), Some("rate(2 hours)"));
    assert_eq!(out.schedule_expression_timezone(), Some("UTC"));
    // Re-anchored at the edit (now + 1 min), first firing one interval later.
    assert_eq!(
        date(out.start_date()),
        Some(now() + Duration::minutes(1) + Duration::hours(2))
    );
    assert_eq!(out.state(), Some(&ScheduleState::Enabled));
    assert_target(&out, &f.group, &occurrence_input(ID_A));
    assert_eq!(f.names().await, [ID_A]);

    // Completed: nothing left to fire, the schedule goes.
    let completed = edited.with_status(TriggerStatus::Completed, f.clock.now());
    f.scheduler.schedule(&completed).await.unwrap();
    assert!(f.get(ID_A).await.is_none());
    // Again: already gone is fine.
    f.scheduler.schedule(&completed).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_triggers_lose_their_schedule() {
    let f = fixture("etp-exhausted").await;
    let trigger = scheduled(
        ID_A,
        Schedule::At {
            at: now() + Duration::minutes(30),
        },
    );
    f.scheduler.schedule(&trigger).await.unwrap();
    assert!(f.get(ID_A).await.is_some());
    f.clock.set(now() + Duration::minutes(31));
    f.scheduler.schedule(&trigger).await.unwrap();
    assert!(f.get(ID_A).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedule_deletes_and_tolerates_a_missing_schedule() {
    let f = fixture("etp-unschedule").await;
    f.scheduler
        .schedule(&scheduled(
            ID_A,
            Schedule::At {
                at: now() + Duration::days(7),
            },
        ))
        .await
        .unwrap();
    f.scheduler
        .schedule(&scheduled(
            ID_B,
            Schedule::At {
                at: now() + Duration::days(8),
            },
        ))
        .await
        .unwrap();
    f.scheduler.unschedule(ID_A).await.unwrap();
    assert!(f.get(ID_A).await.is_none());
    assert!(f.get(ID_B).await.is_some(), "only the named schedule goes");
    f.scheduler.unschedule(ID_A).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_eventbridge_cannot_express_is_refused_and_nothing_is_created() {
    let f = fixture("etp-unsupported").await;
    for every in [30, 90, 3630] {
        let trigger = scheduled(
            ID_A,
            Schedule::Interval {
                every_seconds: every,
                recurring: true,
                start_at: None,
                end_at: None,
            },
        );
        match f.scheduler.schedule(&trigger).await {
            Err(SchedulerError::Unsupported { field, message }) => {
                assert_eq!(field, "schedule.every_seconds");
                assert_eq!(
                    message,
                    format!(
                        "EventBridge Scheduler fires at most once a minute: use a multiple of 60 \
                         seconds (got {every})"
                    )
                );
            }
            other => panic!("every {every}: expected Unsupported, got {other:?}"),
        }
    }
    for expression in ["0 0 1 * MON", "*/10 * * * * *"] {
        let trigger = scheduled(
            ID_A,
            Schedule::Cron {
                expression: expression.into(),
                timezone: "UTC".into(),
                start_at: None,
                end_at: None,
            },
        );
        match f.scheduler.schedule(&trigger).await {
            Err(SchedulerError::Unsupported { field, .. }) => {
                assert_eq!(field, "schedule.expression")
            }
            other => panic!("{expression}: expected Unsupported, got {other:?}"),
        }
    }
    assert!(f.names().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_triggers_have_no_schedule() {
    let f = fixture("etp-api").await;
    let def = TriggerDefinition {
        name: "webhook".into(),
        kind: TriggerKind::Api,
        schedule: None,
        payload: None,
        payload_schema: Some(json!({"type": "object"})),
        target: None,
    };
    let trigger = Trigger::create(def, ID_A.into(), now());
    f.scheduler.schedule(&trigger).await.unwrap();
    assert!(f.names().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_runs_are_one_time_schedules_naming_only_the_stored_run() {
    let f = fixture("etp-test-runs").await;
    let run_id = "01kcccccccccccccccccccccc0";
    let at = now() + Duration::hours(14);
    f.scheduler.schedule_test_run(run_id, at).await.unwrap();

    let name = format!("test-{run_id}");
    let out = f.must_get(&name).await;
    assert_eq!(out.schedule_expression(), Some(at_expression(at).as_str()));
    assert_eq!(out.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(
        out.action_after_completion(),
        Some(&ActionAfterCompletion::Delete)
    );
    assert_eq!(out.state(), Some(&ScheduleState::Enabled));
    let input = out.target().and_then(|t| t.input()).expect("input");
    let parsed: Value = serde_json::from_str(input).unwrap();
    // The definition and its delivery secret stay in the store: the input names the run only.
    assert_eq!(
        parsed,
        json!({"test_run_id": run_id, "scheduled_time": PLACEHOLDER})
    );
    assert_target(&out, &f.group, input);

    // Cancelled: the schedule goes, and cancelling again is fine.
    f.scheduler.unschedule_test_run(run_id).await.unwrap();
    assert!(f.get(&name).await.is_none());
    f.scheduler.unschedule_test_run(run_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflects_the_schedule_group() {
    let f = fixture("etp-health").await;
    assert!(f.scheduler.healthy().await);
    let elsewhere =
        EventBridgeScheduler::new(f.client.clone(), target("no-such-group"), f.clock.clone());
    assert!(!elsewhere.healthy().await);
    // The answer is reused for a while (GetScheduleGroup has a low account-wide rate limit):
    // the group appearing now is seen only after the cache expires.
    f.client
        .create_schedule_group()
        .name("no-such-group")
        .send()
        .await
        .unwrap();
    assert!(!elsewhere.healthy().await, "answered from the cache");
    let fresh =
        EventBridgeScheduler::new(f.client.clone(), target("no-such-group"), f.clock.clone());
    assert!(fresh.healthy().await);

    // A port nobody listens on: the call fails and health says so instead of erroring.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let config = moto::sdk_config()
        .await
        .into_builder()
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .build();
    let down = EventBridgeScheduler::new(
        aws_sdk_scheduler::Client::new(&config),
        target(&f.group),
        f.clock.clone(),
    );
    assert!(!down.healthy().await, "no server, not healthy");
}

/// A fixed date that the real clock has passed must fail loudly, naming the test, not pass
/// until the day moto starts to refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "a_past_instant_sent_to_moto_names_the_test` sent moto schedule")]
async fn a_past_instant_sent_to_moto_names_the_test() {
    let f = fixture("etp-past").await;
    f.clock.set(chrono::Utc::now() - Duration::days(1));
    let stale = scheduled(
        ID_A,
        Schedule::Interval {
            every_seconds: 3600,
            recurring: true,
            start_at: Some(f.clock.now()),
            end_at: None,
        },
    );
    let _ = f.scheduler.schedule(&stale).await;
}
