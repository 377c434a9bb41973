//! What the fire handler's tests share: fresh tables and a schedule group on moto, a manual
//! clock, and the scheduler adapter over them.

use std::sync::Arc;

use etp::aws::dynamo::{DynamoStore, Tables};
use etp::aws::scheduler::{EventBridgeScheduler, ScheduleTarget};
use etp::clock::ManualClock;
use etp::testing::fixtures::t0;
use etp::testing::moto;

pub struct AwsFixture {
    pub store: Arc<DynamoStore>,
    pub client: aws_sdk_scheduler::Client,
    pub group: String,
    pub clock: Arc<ManualClock>,
    pub scheduler: Arc<EventBridgeScheduler>,
}

/// Uniquely named tables and schedule group, so tests share one moto server; the clock
/// starts at [`t0`].
pub async fn aws_fixture() -> AwsFixture {
    aws_fixture_via(moto::endpoint(), Arc::new(ManualClock::new(t0()))).await
}

/// [`aws_fixture`] with its clients sent to `endpoint` (moto itself, or something in front of
/// it) and with `clock`.
pub async fn aws_fixture_via(endpoint: &str, clock: Arc<ManualClock>) -> AwsFixture {
    let suffix = etp::domain::new_id();
    let tables = Tables::named("etp", &suffix);
    let dynamo = moto::dynamo_client();
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        dynamo.config().to_builder().endpoint_url(endpoint).build(),
    );
    DynamoStore::create_tables(&dynamo, &tables).await.unwrap();
    let store = Arc::new(DynamoStore::new(dynamo, tables));
    let client = moto::scheduler_client().await;
    let client = aws_sdk_scheduler::Client::from_conf(
        client.config().to_builder().endpoint_url(endpoint).build(),
    );
    let group = format!("etp-{suffix}");
    client
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .unwrap();
    let scheduler = Arc::new(EventBridgeScheduler::new(
        client.clone(),
        ScheduleTarget {
            group: group.clone(),
            role_arn: "arn:aws:iam::123456789012:role/etp-scheduler".into(),
            fire_function_arn: "arn:aws:lambda:us-east-1:123456789012:function:etp-fire".into(),
            dead_letter_arn: "arn:aws:sqs:us-east-1:123456789012:etp-fire-dlq".into(),
        },
        clock.clone(),
    ));
    AwsFixture {
        store,
        client,
        group,
        clock,
        scheduler,
    }
}
