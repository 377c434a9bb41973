//! The scheduler port on EventBridge Scheduler.
