//! Scheduled test runs on DynamoDB: an item each in the triggers table (`TR#<id>`), listed
//! through `by_id` under their own key, counted for the quota in the same transaction.

use async_trait::async_trait;

use super::{BY_ID, DynamoStore, Item, decode, encode, get_s, n, query_until, s, sdk_error};
use crate::domain::target::Secret;
use crate::domain::test_run::ScheduledTestRun;
use crate::ports::{Page, StoreError, TestRunStore, cursor};

/// The `by_id` hash key under which test runs are listed (triggers use their own).
const TEST_RUN_LIST: &str = "test-run";
/// The item counting waiting test runs (for `ETP_MAX_PENDING_TEST_RUNS`).
const TEST_RUN_COUNT: &str = "COUNT#test-runs";

fn run_key(id: &str) -> String {
    format!("TR#{id}")
}

#[async_trait]
impl TestRunStore for DynamoStore {
    async fn insert_test_run(
        &self,
        run: &ScheduledTestRun,
        max_pending: u64,
    ) -> Result<(), StoreError> {
        let mut item = Item::from([
            ("pk".into(), s(run_key(&run.id))),
            ("list_pk".into(), s(TEST_RUN_LIST)),
            ("body".into(), s(encode(run)?)),
            (
                "scheduled_ms".into(),
                n(run.scheduled_for.timestamp_millis()),
            ),
        ]);
        if let Some(secret) = &run.secret {
            item.insert("secret".into(), s(secret.expose()));
        }
        self.insert_counted(item, TEST_RUN_COUNT, ("scheduled test runs", max_pending))
            .await
    }

    async fn get_test_run(&self, id: &str) -> Result<Option<ScheduledTestRun>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.triggers)
            .key("pk", s(run_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item
            .map(|item| {
                let mut run: ScheduledTestRun = decode(get_s(&item, "body")?)?;
                run.secret = get_s(&item, "secret")
                    .ok()
                    .map(|v| Secret::from_stored(v.to_string()));
                Ok(run)
            })
            .transpose()
    }

    async fn list_test_runs(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ScheduledTestRun>, StoreError> {
        let limit = limit.max(1);
        let mut key = "list_pk = :list".to_string();
        let mut q = self
            .client
            .query()
            .table_name(&self.tables.triggers)
            .index_name(BY_ID)
            .expression_attribute_values(":list", s(TEST_RUN_LIST))
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        if let Some(cursor) = cursor {
            key.push_str(" AND pk > :after");
            q = q.expression_attribute_values(":after", s(run_key(&cursor::decode(cursor)?)));
        }
        let rows = query_until(q.key_condition_expression(key), Some(limit + 1), |_| true).await?;
        let runs = rows
            .iter()
            .map(|i| decode::<ScheduledTestRun>(get_s(i, "body")?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(runs, limit, |r| cursor::encode(&r.id)))
    }

    async fn delete_test_run(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_counted(&run_key(id), TEST_RUN_COUNT).await
    }
}
