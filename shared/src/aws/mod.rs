//! AWS adapters for the Lambda functions: DynamoDB store and EventBridge Scheduler.

pub mod dynamo;
pub mod scheduler;
