//! Scheduled test runs: a definition that was never stored as a trigger, waiting to fire once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::target::Secret;
use super::trigger::TriggerDefinition;

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
