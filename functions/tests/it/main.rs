//! The Lambda functions' integration tests in one binary (one link, one moto server): the fire
//! handler's delivery path on moto, EventBridge Scheduler's timing emulated over it, and the
//! real binaries end to end.

mod delivery_aws;
mod e2e;
mod helpers;
mod scheduler_driver;
