//! The AWS delivery path: the fire function's handler on DynamoDB and EventBridge Scheduler (both
//! moto's server) with a receiver on loopback. The first attempt is made inline; the retry is a
//! one-time schedule whose input, handed back to the handler, completes the delivery.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Duration;
use etp::delivery::{Deliverer, Sender};
use etp::domain::delivery::RetrySchedule;
use etp::domain::egress::EgressPolicy;
use etp::domain::event::EventStatus;
use etp::domain::schedule::Schedule;
use etp::domain::target::Target;
use etp::domain::trigger::{Trigger, TriggerDefinition, TriggerKind};
use etp::firing::FireInput;
use etp::ports::{EventStore, TriggerStore};
use etp::testing::fixtures::{WebhookReceiver, t0};
use functions::handle_fire;

use crate::helpers::{AwsFixture, aws_fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fire_function_delivers_and_schedules_its_retry_on_eventbridge() {
    // 503 on the first request, 200 after.
    let rx = WebhookReceiver::start(|_, hit| {
        Box::pin(async move {
            match hit {
                1 => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::OK,
            }
            .into_response()
        })
    })
    .await;
    let hook = rx.url("hook");

    let AwsFixture {
        store,
        client: scheduler_client,
        group,
        clock,
        scheduler: queue,
    } = aws_fixture().await;
    let sender = Sender::new(EgressPolicy::with_allowed("127.0.0.1/32").unwrap()).unwrap();
    let deliverer = Deliverer::new(
        store.clone(),
        clock.clone(),
        queue,
        Arc::new(sender),
        RetrySchedule::default(),
    );

    let trigger = Trigger::create(
        TriggerDefinition {
            name: "hooked".into(),
            kind: TriggerKind::Scheduled,
            schedule: Some(Schedule::Interval {
                every_seconds: 60,
                recurring: true,
                start_at: None,
                end_at: None,
            }),
            payload: None,
            payload_schema: None,
            target: Some(Target {
                url: hook,
                headers: Default::default(),
                timeout_ms: Some(2000),
                max_attempts: None,
                pause_after_failures: None,
            }),
        },
        etp::domain::new_id(),
        t0(),
    );
    store.insert_trigger(&trigger, u64::MAX).await.unwrap();
    let occurrence = FireInput::Occurrence {
        trigger_id: trigger.id.clone(),
        scheduled_time: t0() + Duration::seconds(60),
    };
    clock.set(t0() + Duration::seconds(60));

    // The scheduled firing: recorded, first attempt inline (503), retry scheduled.
    let report = handle_fire(
        store.as_ref(),
        clock.as_ref(),
        &deliverer,
        occurrence.clone(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, "fired");
    assert_eq!(report.delivery, Some("retry_scheduled"));
    let event_id = report.event_id.clone().unwrap();
    let event = store.get_event(&event_id).await.unwrap().unwrap();
    assert_eq!(event.status, EventStatus::Pending);
    assert_eq!(event.attempts[0].status_code, Some(503));
    let due = event.next_attempt_at.unwrap();

    // The retry is a one-time schedule that hands the event id back to the fire function.
    let listed = scheduler_client
        .list_schedules()
        .group_name(&group)
        .send()
        .await
        .unwrap();
    let names: Vec<String> = listed
        .schedules()
        .iter()
        .filter_map(|s| s.name().map(str::to_string))
        .collect();
    let expected = format!("dlv-{event_id}-{}", due.timestamp_millis());
    assert_eq!(names, std::slice::from_ref(&expected));
    let schedule = scheduler_client
        .get_schedule()
        .group_name(&group)
        .name(&expected)
        .send()
        .await
        .unwrap();
    // `at()` has whole seconds: the due time rounded up, never down into the past.
    let at = etp::domain::time_range::ceil(due, Duration::seconds(1));
    assert_eq!(
        schedule.schedule_expression(),
        Some(format!("at({})", at.format("%Y-%m-%dT%H:%M:%S")).as_str())
    );
    let input = schedule.target().and_then(|t| t.input()).unwrap();
    let retry: FireInput = serde_json::from_str(input).unwrap();
    assert_eq!(
        retry,
        FireInput::Delivery {
            delivery_event_id: event_id.clone()
        }
    );

    // The schedule fires: the delivery completes.
    clock.set(due);
    let report = handle_fire(store.as_ref(), clock.as_ref(), &deliverer, retry.clone())
        .await
        .unwrap();
    assert_eq!(report.delivery, Some("delivered"));
    let event = store.get_event(&event_id).await.unwrap().unwrap();
    assert_eq!(event.status, EventStatus::Success);
    assert_eq!(event.attempts.len(), 2);

    // Lambda may deliver either invocation twice: nothing is sent again.
    let again = handle_fire(store.as_ref(), clock.as_ref(), &deliverer, retry)
        .await
        .unwrap();
    assert_eq!(again.delivery, Some("nothing_to_do"));
    let replay = handle_fire(store.as_ref(), clock.as_ref(), &deliverer, occurrence)
        .await
        .unwrap();
    assert_eq!(replay.outcome, "already_fired");
    let ids: Vec<String> = rx
        .seen("hook")
        .iter()
        .map(|s| s.header("webhook-id").unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, [event_id.clone(), event_id]);
}
