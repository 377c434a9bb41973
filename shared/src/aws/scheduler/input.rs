//! The `Input` each schedule hands the fire function: a [`FireInput`] serialized from the same
//! type the function deserializes, with the occurrence's time left as EventBridge's placeholder.

use serde::{Serialize, Serializer};

use crate::firing::FireInput;
use crate::ports::SchedulerError;

/// Scheduler substitutes the occurrence's time for this text when it invokes the target.
pub const SCHEDULED_TIME_PLACEHOLDER: &str = "<aws.scheduler.scheduled-time>";
/// EventBridge Scheduler's limit on a target's `Input`.
pub const MAX_INPUT_CHARS: usize = 8192;

/// Serializes as [`SCHEDULED_TIME_PLACEHOLDER`]: the `scheduled_time` of an input EventBridge
/// fills in.
#[derive(Debug, Clone, Copy)]
pub struct ScheduledTimePlaceholder;

impl Serialize for ScheduledTimePlaceholder {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(SCHEDULED_TIME_PLACEHOLDER)
    }
}

fn to_input(input: &FireInput<ScheduledTimePlaceholder>) -> Result<String, SchedulerError> {
    let text = serde_json::to_string(input)
        .map_err(|e| SchedulerError::Unavailable(format!("cannot serialize an input: {e}")))?;
    // Ids are ours and short; an input over the limit would be a bug here.
    if text.chars().count() > MAX_INPUT_CHARS {
        return Err(SchedulerError::Unavailable(format!(
            "schedule input over {MAX_INPUT_CHARS} characters"
        )));
    }
    Ok(text)
}

/// `{"trigger_id":"<id>","scheduled_time":"<aws.scheduler.scheduled-time>"}`.
pub fn occurrence_input(trigger_id: &str) -> String {
    to_input(&FireInput::Occurrence {
        trigger_id: trigger_id.to_string(),
        scheduled_time: ScheduledTimePlaceholder,
    })
    .unwrap_or_default()
}

/// `{"test_run_id":"<id>","scheduled_time":"<aws.scheduler.scheduled-time>"}`: the run's
/// definition and secret stay in the store.
pub fn test_run_input(run_id: &str) -> Result<String, SchedulerError> {
    to_input(&FireInput::TestRun {
        test_run_id: run_id.to_string(),
        scheduled_time: ScheduledTimePlaceholder,
    })
}

/// `{"delivery_event_id":"<id>"}`.
pub fn delivery_input(event_id: &str) -> String {
    to_input(&FireInput::Delivery {
        delivery_event_id: event_id.to_string(),
    })
    .unwrap_or_default()
}
