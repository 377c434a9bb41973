//! Scheduled test runs: a definition that was never stored as a trigger, waiting to fire once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use serde_json::Value;

use super::schedule::Schedule;
use super::target::{Secret, TargetView};
use super::trigger::{TriggerDefinition, TriggerKind};

/// A test run of a scheduled definition, waiting for its first occurrence. The store keeps it
/// (with its delivery secret beside it, never in its JSON), the scheduler only its id and time:
/// nothing of the definition travels in a timer or a schedule. Listed by `GET /test-runs`,
/// cancelled by `DELETE /test-runs/{id}`, gone once it has fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduledTestRun {
    pub id: String,
    pub definition: TriggerDefinition,
    /// When it fires: the definition's first occurrence after the request.
    #[serde(with = "super::timestamp")]
    pub scheduled_for: DateTime<Utc>,
    #[serde(with = "super::timestamp")]
    pub created_at: DateTime<Utc>,
    /// Signs the run's delivery, when the definition has a target (shown once, when created).
    #[serde(skip)]
    #[schema(ignore)]
    pub secret: Option<Secret>,
}

/// A waiting test run as readers see it: like a trigger's, its target shows header names
/// only (their values are write-only and stay in the store for the delivery).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TestRunView {
    pub id: String,
    pub definition: DefinitionView,
    #[serde(with = "super::timestamp")]
    pub scheduled_for: DateTime<Utc>,
    #[serde(with = "super::timestamp")]
    pub created_at: DateTime<Utc>,
}

/// A [`TriggerDefinition`] with its target as a [`TargetView`].
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DefinitionView {
    pub name: String,
    pub kind: TriggerKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetView>,
}

impl From<ScheduledTestRun> for TestRunView {
    fn from(run: ScheduledTestRun) -> Self {
        let d = run.definition;
        Self {
            id: run.id,
            definition: DefinitionView {
                target: d.target.as_ref().map(TargetView::from),
                name: d.name,
                kind: d.kind,
                schedule: d.schedule,
                payload: d.payload,
                payload_schema: d.payload_schema,
            },
            scheduled_for: run.scheduled_for,
            created_at: run.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::target::Target;

    #[test]
    fn a_listed_run_shows_header_names_not_values() {
        let definition: TriggerDefinition = serde_json::from_value(serde_json::json!({
            "name": "try", "kind": "scheduled",
            "schedule": {"type": "interval", "every_seconds": 60},
            "target": {"url": "https://example.com", "headers": {"authorization": "Bearer s3cret"}}
        }))
        .unwrap();
        assert!(matches!(&definition.target, Some(Target { headers, .. }) if !headers.is_empty()));
        let run = ScheduledTestRun {
            id: "r".into(),
            definition,
            scheduled_for: Utc::now(),
            created_at: Utc::now(),
            secret: None,
        };
        let json = serde_json::to_string(&TestRunView::from(run)).unwrap();
        assert!(
            json.contains("\"header_names\":[\"authorization\"]"),
            "{json}"
        );
        assert!(!json.contains("s3cret"), "{json}");
    }
}
