//! Triggers: what a client defines, the rules it must follow, and what is stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::egress::EgressPolicy;
use super::schedule::Schedule;
use super::target::{Secret, Target};
use super::validation::{Checks, FieldError, ValidationError};

pub const MAX_NAME_CHARS: usize = 200;
/// Payload errors reported at most, so a huge bad payload cannot produce a huge error body.
const MAX_PAYLOAD_ERRORS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Scheduled,
    Api,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Scheduled => "scheduled",
            TriggerKind::Api => "api",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerStatus {
    Active,
    Paused,
    /// A one-time trigger that has fired.
    Completed,
}

impl TriggerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerStatus::Active => "active",
            TriggerStatus::Paused => "paused",
            TriggerStatus::Completed => "completed",
        }
    }
}

/// What a client sends to create or replace a trigger, or to test-run one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerDefinition {
    /// 1 to 200 characters.
    pub name: String,
    pub kind: TriggerKind,
    /// Required for `scheduled` triggers; not allowed for `api` triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Scheduled triggers: a static JSON object sent with every firing. In a test run of an
    /// `api` definition: the payload to fire with (checked against `payload_schema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    /// Required for `api` triggers: the JSON Schema each fired payload must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload_schema: Option<Value>,
    /// Where each firing is POSTed, signed with the trigger's secret; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

/// Why a definition is being checked: a test run of an api definition carries its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Store,
    TestRun,
}

impl TriggerDefinition {
    pub fn validate(
        &self,
        now: DateTime<Utc>,
        purpose: Purpose,
        egress: &EgressPolicy,
    ) -> Result<(), ValidationError> {
        let mut checks = Checks::default();
        if let Some(target) = &self.target {
            target.validate("target", egress, &mut checks);
        }
        let name_chars = self.name.trim().chars().count();
        checks.check((1..=MAX_NAME_CHARS).contains(&name_chars), "name", || {
            format!("must be 1 to {MAX_NAME_CHARS} characters (not counting surrounding spaces)")
        });
        checks.check(!self.name.chars().any(char::is_control), "name", || {
            "must not contain control characters".into()
        });
        match self.kind {
            TriggerKind::Scheduled => {
                match &self.schedule {
                    Some(s) => s.validate(now, "schedule", &mut checks),
                    None => checks.fail("schedule", "is required for scheduled triggers"),
                }
                if self.payload_schema.is_some() {
                    checks.fail("payload_schema", "is only for api triggers");
                }
                if let Some(p) = &self.payload {
                    checks.check(p.is_object(), "payload", || "must be a JSON object".into());
                }
            }
            TriggerKind::Api => {
                if self.schedule.is_some() {
                    checks.fail("schedule", "is only for scheduled triggers; api triggers fire through POST /triggers/{id}/fire");
                }
                let compiled = match &self.payload_schema {
                    None => {
                        checks.fail("payload_schema", "is required for api triggers");
                        None
                    }
                    Some(schema) => match compile_schema(schema) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            checks.fail("payload_schema", e);
                            None
                        }
                    },
                };
                match (purpose, &self.payload, compiled) {
                    (Purpose::Store, Some(_), _) => checks.fail(
                        "payload",
                        "api triggers receive their payload when fired; remove it here",
                    ),
                    (Purpose::TestRun, payload, Some(validator)) => {
                        let payload = payload.clone().unwrap_or(Value::Object(Default::default()));
                        for e in payload_errors(&validator, &payload) {
                            checks.fail(format!("payload{}", e.field), e.message);
                        }
                    }
                    _ => {}
                }
            }
        }
        checks.finish()
    }
}

/// Compiles a JSON Schema, explaining in words why it is not one.
pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err("must be a JSON Schema (an object or a boolean)".into());
    }
    jsonschema::validator_for(schema).map_err(|e| format!("is not a valid JSON Schema: {e}"))
}

/// Every way `payload` breaks the schema, each named by its JSON pointer (`/` for the root).
pub fn payload_errors(validator: &jsonschema::Validator, payload: &Value) -> Vec<FieldError> {
    validator
        .iter_errors(payload)
        .take(MAX_PAYLOAD_ERRORS)
        .map(|e| {
            let path = e.instance_path.to_string();
            let field = if path.is_empty() {
                "/".to_string()
            } else {
                path
            };
            FieldError::new(field, e.to_string())
        })
        .collect()
}

fn next_fire(
    status: TriggerStatus,
    schedule: Option<&Schedule>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match (status, schedule) {
        (TriggerStatus::Active, Some(s)) => s.next_after(now),
        _ => None,
    }
}

/// The fields of a trigger's JSON that decide its next firing, read without the rest (listings
/// add `next_fire_at` to the stored JSON instead of decoding and re-encoding it).
#[derive(Debug, Deserialize)]
pub struct FiringFields {
    pub status: TriggerStatus,
    #[serde(default)]
    pub schedule: Option<Schedule>,
}

impl FiringFields {
    /// The same as [`Trigger::next_fire_after`].
    pub fn next_fire_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_fire(self.status, self.schedule.as_ref(), now)
    }
}

/// A stored trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Trigger {
    pub id: String,
    pub name: String,
    pub kind: TriggerKind,
    pub status: TriggerStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(with = "super::timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "super::timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Increases on every change; the `ETag` of the trigger.
    pub version: u64,
    /// Signs deliveries. Kept by the stores beside the trigger, never in its JSON: shown once,
    /// when created or rotated.
    #[serde(skip)]
    #[schema(ignore)]
    pub secret: Option<Secret>,
}

impl Trigger {
    /// A new trigger from a validated definition.
    pub fn create(def: TriggerDefinition, id: String, now: DateTime<Utc>) -> Self {
        Self {
            id,
            name: def.name.trim().to_string(),
            kind: def.kind,
            status: TriggerStatus::Active,
            schedule: def.schedule.map(|s| s.resolved(now)),
            payload: def.payload,
            payload_schema: def.payload_schema,
            target: def.target,
            created_at: now,
            updated_at: now,
            version: 1,
            secret: Some(Secret::generate()),
        }
    }

    /// This trigger with its definition replaced; only future firings see the change. A completed
    /// trigger given a schedule that fires again becomes active again.
    pub fn replaced(&self, def: TriggerDefinition, now: DateTime<Utc>) -> Self {
        let mut next = Trigger::create(def, self.id.clone(), now);
        next.created_at = self.created_at;
        next.version = self.version + 1;
        next.secret = self.secret.clone();
        next.status = match self.status {
            TriggerStatus::Paused => TriggerStatus::Paused,
            _ => TriggerStatus::Active,
        };
        next
    }

    pub fn with_status(&self, status: TriggerStatus, now: DateTime<Utc>) -> Self {
        Self {
            status,
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }

    /// The definition this trigger was made from (for test runs and edits).
    pub fn definition(&self) -> TriggerDefinition {
        TriggerDefinition {
            name: self.name.clone(),
            kind: self.kind,
            schedule: self.schedule.clone(),
            payload: self.payload.clone(),
            payload_schema: self.payload_schema.clone(),
            target: self.target.clone(),
        }
    }

    /// When the trigger fires next, if it is active and its schedule has a future occurrence.
    pub fn next_fire_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_fire(self.status, self.schedule.as_ref(), now)
    }

    /// This trigger with a new signing secret.
    pub fn with_new_secret(&self, now: DateTime<Utc>) -> Self {
        Self {
            secret: Some(Secret::generate()),
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn fields(v: Value, purpose: Purpose) -> Vec<String> {
        let def: TriggerDefinition = serde_json::from_value(v).unwrap();
        match def.validate(now(), purpose, &EgressPolicy::default()) {
            Ok(()) => vec![],
            Err(e) => e.errors.into_iter().map(|f| f.field).collect(),
        }
    }

    #[test]
    fn scheduled_needs_a_schedule_and_no_schema() {
        assert_eq!(
            fields(json!({"name":"x","kind":"scheduled"}), Purpose::Store),
            ["schedule"]
        );
        assert_eq!(
            fields(
                json!({"name":"x","kind":"scheduled","schedule":{"type":"interval","every_seconds":5},
                       "payload_schema":{},"payload":[1]}),
                Purpose::Store
            ),
            ["payload_schema", "payload"]
        );
    }

    #[test]
    fn api_needs_a_valid_schema() {
        assert_eq!(
            fields(json!({"name":"x","kind":"api"}), Purpose::Store),
            ["payload_schema"]
        );
        assert_eq!(
            fields(
                json!({"name":"x","kind":"api","payload_schema":{"type":"nope"}}),
                Purpose::Store
            ),
            ["payload_schema"]
        );
        assert_eq!(
            fields(
                json!({"name":"x","kind":"api","payload_schema":{"type":"object"},"payload":{}}),
                Purpose::Store
            ),
            ["payload"]
        );
        assert!(
            fields(
                json!({"name":"x","kind":"api","payload_schema":{"type":"object"}}),
                Purpose::Store
            )
            .is_empty()
        );
    }

    #[test]
    fn test_run_payload_is_checked_against_the_schema() {
        let schema =
            json!({"type":"object","required":["n"],"properties":{"n":{"type":"integer"}}});
        assert_eq!(
            fields(
                json!({"name":"x","kind":"api","payload_schema":schema,"payload":{"n":"one"}}),
                Purpose::TestRun
            ),
            ["payload/n"]
        );
        assert!(
            fields(
                json!({"name":"x","kind":"api","payload_schema":schema,"payload":{"n":1}}),
                Purpose::TestRun
            )
            .is_empty()
        );
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(
            fields(
                json!({"name":"  ","kind":"api","payload_schema":true}),
                Purpose::Store
            ),
            ["name"]
        );
        let long = "é".repeat(201);
        assert_eq!(
            fields(
                json!({"name":long,"kind":"api","payload_schema":true}),
                Purpose::Store
            ),
            ["name"]
        );
        let max = "é".repeat(200);
        assert!(
            fields(
                json!({"name":max,"kind":"api","payload_schema":true}),
                Purpose::Store
            )
            .is_empty()
        );
    }
}
