//! Creates the three tables exactly as `template.yaml` declares them (tests create their own).

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use super::{BY_ID, BY_TRIGGER, LIFECYCLE, Tables, sdk_error, unavailable};
use crate::ports::StoreError;

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(unavailable)
}

fn string_attr(name: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(unavailable)
}

fn index(name: &str, hash: &str, range: &str) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(unavailable)
}

pub(super) async fn create(client: &Client, tables: &Tables) -> Result<(), StoreError> {
    client
        .create_table()
        .table_name(&tables.triggers)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attr("pk")?)
        .attribute_definitions(string_attr("list_pk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .global_secondary_indexes(index(BY_ID, "list_pk", "pk")?)
        .send()
        .await
        .map_err(|e| sdk_error("CreateTable", e))?;
    client
        .create_table()
        .table_name(&tables.events)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attr("pk")?)
        .attribute_definitions(string_attr("sk")?)
        .attribute_definitions(string_attr("lc_pk")?)
        .attribute_definitions(string_attr("lc_sk")?)
        .attribute_definitions(string_attr("trigger_key")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(index(LIFECYCLE, "lc_pk", "lc_sk")?)
        .global_secondary_indexes(index(BY_TRIGGER, "trigger_key", "lc_sk")?)
        .send()
        .await
        .map_err(|e| sdk_error("CreateTable", e))?;
    client
        .create_table()
        .table_name(&tables.stats)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attr("pk")?)
        .attribute_definitions(string_attr("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .send()
        .await
        .map_err(|e| sdk_error("CreateTable", e))?;
    for table in [&tables.events, &tables.stats] {
        // TTL can only be switched on once the table is ACTIVE (instant on moto, seconds on AWS).
        wait_active(client, table).await?;
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .map_err(unavailable)?,
            )
            .send()
            .await
            .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
    }
    wait_active(client, &tables.triggers).await
}

async fn wait_active(client: &Client, table: &str) -> Result<(), StoreError> {
    for _ in 0..120 {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTable", e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(unavailable(format!("table {table} did not become ACTIVE")))
}
