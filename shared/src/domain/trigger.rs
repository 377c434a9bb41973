//! Triggers: what a client defines, the rules it must follow, and what is stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::limits::{Rules, json_size};
use super::payload_schema;
use super::schedule::Schedule;
use super::target::{RetiringSecret, Secret, Target, TargetView};
use super::validation::{Checks, ValidationError};

pub const MAX_NAME_CHARS: usize = 200;

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
    /// Its stored definition could not be read, or cannot fire (written by an older version, or
    /// damaged): `problem` says why. It never fires; PUT a new definition or DELETE it.
    Broken,
}

impl TriggerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerStatus::Active => "active",
            TriggerStatus::Paused => "paused",
            TriggerStatus::Completed => "completed",
            TriggerStatus::Broken => "broken",
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
    /// Checks the definition against every rule, reporting each field at fault. An api
    /// definition's schema is compiled here (and a test run's payload checked against it), so
    /// callers run this off the async workers, within the schema budget.
    pub fn validate(&self, rules: &Rules<'_>, purpose: Purpose) -> Result<(), ValidationError> {
        let limits = rules.limits;
        let mut checks = Checks::default();
        if let Some(target) = &self.target {
            target.validate("target", rules.egress, &mut checks);
        }
        let name_chars = self.name.chars().count();
        let blank = self.name.trim().is_empty();
        checks.check(
            (1..=MAX_NAME_CHARS).contains(&name_chars) && !blank,
            "name",
            || format!("must be 1 to {MAX_NAME_CHARS} characters, not all spaces"),
        );
        checks.check(!self.name.chars().any(char::is_control), "name", || {
            "must not contain control characters".into()
        });
        if let Some(p) = &self.payload {
            let size = json_size(p);
            checks.check(size <= limits.max_payload_bytes, "payload", || {
                format!(
                    "is {size} bytes as JSON; at most {} are accepted (ETP_MAX_PAYLOAD_BYTES)",
                    limits.max_payload_bytes
                )
            });
        }
        match self.kind {
            TriggerKind::Scheduled => {
                match &self.schedule {
                    Some(s) => s.validate(rules.now, &limits.schedule, "schedule", &mut checks),
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
                    Some(schema) => match payload_schema::compile(schema, limits) {
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
                    (Purpose::TestRun, payload, Some(validator)) if checks.is_empty() => {
                        let payload = payload.clone().unwrap_or(Value::Object(Default::default()));
                        for e in payload_schema::payload_errors(&validator, &payload) {
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

fn next_fire(
    status: TriggerStatus,
    schedule: Option<&Schedule>,
    plan: Interruptions<'_>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let schedule = schedule?;
    // A pause with an end resumes by itself: its next firing is the first occurrence from then.
    let after = match (status, plan.paused_until) {
        (TriggerStatus::Active, _) => now,
        (TriggerStatus::Paused, Some(until)) => now.max(super::time_range::sub_saturating(
            until,
            chrono::Duration::milliseconds(1),
        )),
        _ => return None,
    };
    plan.next_unskipped(schedule, after)
}

/// The first instant after `now` at which what a reader sees of a trigger can change with no
/// write: its next firing passes, or its pause ends. Until then every read shows the same status
/// and `next_fire_at` (the next firing is the first kept occurrence after a fixed instant, so it
/// stays put until it is reached). `None`: nothing changes before a write.
/// `next` is the next firing at `now`.
pub fn view_changes(
    status: TriggerStatus,
    paused_until: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let resumes = match (status, paused_until) {
        (TriggerStatus::Paused, Some(until)) if until > now => Some(until),
        _ => None,
    };
    next.into_iter().chain(resumes).min()
}

/// What interrupts a schedule, as a trigger (or its stored JSON) holds it: a pause with an
/// end, occurrences skipped one by one, and the recent pauses.
#[derive(Debug, Clone, Copy)]
pub struct Interruptions<'a> {
    pub paused_until: Option<DateTime<Utc>>,
    pub skipped: &'a [DateTime<Utc>],
    pub pauses: &'a [PauseSpan],
}

/// One pause: from when, and until when (`None` while it lasts with no end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PauseSpan {
    #[serde(with = "super::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub from: DateTime<Utc>,
    #[serde(default, with = "super::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<DateTime<Utc>>,
}

/// Skipped occurrences kept per trigger.
pub const MAX_SKIPPED: usize = 100;
/// Pauses remembered per trigger.
pub const MAX_PAUSES: usize = 32;

impl Interruptions<'_> {
    /// The first occurrence of `schedule` after `after` that was not skipped. Bounded: at most
    /// one step per skipped occurrence.
    pub fn next_unskipped(
        &self,
        schedule: &Schedule,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut next = schedule.next_after(after)?;
        for _ in 0..=self.skipped.len() {
            if !self.skipped.contains(&next) {
                return Some(next);
            }
            next = schedule.next_after(next)?;
        }
        None
    }

    /// Whether a pause covered instant `t`.
    pub fn paused_at(&self, t: DateTime<Utc>) -> bool {
        self.pauses
            .iter()
            .any(|p| p.from <= t && p.until.is_none_or(|u| t < u))
    }

    pub fn is_skipped(&self, t: DateTime<Utc>) -> bool {
        self.skipped.contains(&t)
    }
}

/// The fields of a trigger's JSON that decide its next firing, read without the rest (listings
/// add `next_fire_at` to the stored JSON instead of decoding and re-encoding it).
#[derive(Debug, Deserialize)]
pub struct FiringFields {
    pub status: TriggerStatus,
    #[serde(default)]
    pub schedule: Option<Schedule>,
    #[serde(default, with = "super::timestamp::option")]
    pub paused_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub skipped_occurrences: Vec<DateTime<Utc>>,
}

impl FiringFields {
    /// The same as [`Trigger::next_fire_after`].
    pub fn next_fire_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let plan = Interruptions {
            paused_until: self.paused_until,
            skipped: &self.skipped_occurrences,
            pauses: &[],
        };
        next_fire(self.status, self.schedule.as_ref(), plan, now)
    }

    /// The same as [`Trigger::view_changes_after`].
    pub fn view_changes_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        view_changes(
            self.status,
            self.paused_until,
            self.next_fire_after(now),
            now,
        )
    }

    /// Whether the stored status is out of date at `now`: a pause whose end has passed.
    pub fn resumed_by(&self, now: DateTime<Utc>) -> bool {
        self.status == TriggerStatus::Paused && self.paused_until.is_some_and(|u| u <= now)
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
    /// Where each firing is delivered; header values are write-only (only names are shown).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::target::as_view"
    )]
    #[schema(value_type = Option<TargetView>)]
    pub target: Option<Target>,
    #[serde(with = "super::timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "super::timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Increases on every change; the `ETag` of the trigger.
    pub version: u64,
    /// Why a `broken` trigger cannot fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// While `paused`: when the trigger resumes by itself (`pause` with `until`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::timestamp::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paused_until: Option<DateTime<Utc>>,
    /// Occurrences skipped without pausing (`POST /triggers/{id}/skip`), oldest first; at most
    /// 100, older ones dropped first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub skipped_occurrences: Vec<DateTime<Utc>>,
    /// The recent pauses, newest last (at most 32): what the occurrences audit reads to tell a
    /// paused occurrence from a missed one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_history: Vec<PauseSpan>,
    /// Since when delivery is paused (`target.pause_after_failures` events failed in a row):
    /// firings are recorded as `failure` with reason `delivery_paused` until
    /// `POST /triggers/{id}/resume-delivery`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::timestamp::option"
    )]
    pub delivery_paused_at: Option<DateTime<Utc>>,
    /// Events whose delivery failed in a row (counted only with `target.pause_after_failures`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
    /// Signs deliveries. Kept by the stores beside the trigger, never in its JSON: shown once,
    /// when created or rotated.
    #[serde(skip)]
    #[schema(ignore)]
    pub secret: Option<Secret>,
    /// The secret the last rotation replaced, while it still signs beside the new one.
    #[serde(skip)]
    #[schema(ignore)]
    pub retiring_secret: Option<RetiringSecret>,
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
            problem: None,
            paused_until: None,
            skipped_occurrences: Vec::new(),
            pause_history: Vec::new(),
            delivery_paused_at: None,
            consecutive_failures: 0,
            secret: Some(Secret::generate()),
            retiring_secret: None,
        }
    }

    /// What a reader is shown for a stored trigger whose definition cannot be read: its id,
    /// kind and version (kept beside the definition), status `broken` and why. Created at the
    /// instant its id (a ULID) records.
    pub fn unreadable(id: &str, kind: TriggerKind, version: u64, problem: String) -> Self {
        let created_at = ulid::Ulid::from_string(id)
            .ok()
            .and_then(|u| DateTime::from_timestamp_millis(u.timestamp_ms() as i64))
            .unwrap_or(DateTime::UNIX_EPOCH);
        Self {
            id: id.to_string(),
            name: "(unreadable trigger)".into(),
            kind,
            status: TriggerStatus::Broken,
            schedule: None,
            payload: None,
            payload_schema: None,
            target: None,
            created_at,
            updated_at: created_at,
            version,
            problem: Some(problem),
            paused_until: None,
            skipped_occurrences: Vec::new(),
            pause_history: Vec::new(),
            delivery_paused_at: None,
            consecutive_failures: 0,
            secret: None,
            retiring_secret: None,
        }
    }

    /// Why this stored trigger cannot fire, if it cannot: a schedule outside what the
    /// platform accepts (from an older version, or a damaged row). Cheap: no schema compile.
    pub fn stored_problem(&self) -> Option<String> {
        if self.status == TriggerStatus::Broken {
            return None;
        }
        match (&self.kind, &self.schedule) {
            (TriggerKind::Scheduled, None) => Some("a scheduled trigger without a schedule".into()),
            (_, Some(s)) => s.stored_problem(),
            _ => None,
        }
    }

    /// This trigger marked `broken` for `problem`; it never fires until replaced.
    pub fn broken(&self, problem: String, now: DateTime<Utc>) -> Self {
        Self {
            problem: Some(problem),
            ..self.with_status(TriggerStatus::Broken, now)
        }
    }

    /// This trigger with its definition replaced; only future firings see the change. A completed
    /// trigger given a schedule that fires again becomes active again.
    pub fn replaced(&self, def: TriggerDefinition, now: DateTime<Utc>) -> Self {
        let mut next = Trigger::create(def, self.id.clone(), now);
        next.created_at = self.created_at;
        next.version = self.version + 1;
        next.secret = self.secret.clone();
        next.retiring_secret = self.retiring_secret.clone();
        // Skips name occurrences of the old schedule; pauses go on.
        next.paused_until = self.paused_until;
        next.pause_history = self.pause_history.clone();
        // A new definition does not repair the receiver: a paused delivery stays paused.
        next.delivery_paused_at = self.delivery_paused_at;
        next.consecutive_failures = self.consecutive_failures;
        next.status = match self.status {
            TriggerStatus::Paused => TriggerStatus::Paused,
            _ => TriggerStatus::Active,
        };
        next
    }

    /// This trigger after an event's delivery ended (`failed` or not): the failures in a row,
    /// and the pause once they reach `target.pause_after_failures`. `None` when nothing
    /// changes (no threshold, or a success after a success), so no write is needed.
    pub fn after_delivery(&self, failed: bool, now: DateTime<Utc>) -> Option<Self> {
        let threshold = self.target.as_ref()?.pause_after_failures?;
        let failures = if failed {
            self.consecutive_failures.saturating_add(1)
        } else {
            0
        };
        if failures == self.consecutive_failures {
            return None;
        }
        let pause = self.delivery_paused_at.is_none() && failures >= threshold;
        Some(Self {
            consecutive_failures: failures,
            delivery_paused_at: if pause {
                Some(now)
            } else {
                self.delivery_paused_at
            },
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// This trigger with delivery resumed and its failures forgotten.
    pub fn with_delivery_resumed(&self, now: DateTime<Utc>) -> Self {
        Self {
            delivery_paused_at: None,
            consecutive_failures: 0,
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
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

    /// When the trigger fires next, if it is active (or paused until a given instant) and its
    /// schedule has a later occurrence that was not skipped.
    pub fn next_fire_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_fire(
            self.status,
            self.schedule.as_ref(),
            self.interruptions(),
            now,
        )
    }

    /// The first instant after `now` at which this trigger's view (its status as seen then, its
    /// `next_fire_at`) can differ from the view at `now` with no write in between; `None` if it
    /// cannot. A view rendered at `now` is exact for every read in `[now, that instant)`.
    pub fn view_changes_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        view_changes(
            self.status,
            self.paused_until,
            self.next_fire_after(now),
            now,
        )
    }

    /// The pause with an end, the skipped occurrences and the recent pauses.
    pub fn interruptions(&self) -> Interruptions<'_> {
        Interruptions {
            paused_until: self.paused_until,
            skipped: &self.skipped_occurrences,
            pauses: &self.pause_history,
        }
    }

    /// The status at `t`: a pause with an end is over from that end on, whether or not a write
    /// has recorded it yet.
    pub fn status_at(&self, t: DateTime<Utc>) -> TriggerStatus {
        match (self.status, self.paused_until) {
            (TriggerStatus::Paused, Some(until)) if until <= t => TriggerStatus::Active,
            (status, _) => status,
        }
    }

    /// The trigger as a reader at `now` sees it: a pause that has ended shows as active.
    pub fn as_seen_at(self, now: DateTime<Utc>) -> Self {
        if self.status_at(now) == self.status {
            return self;
        }
        Self {
            status: TriggerStatus::Active,
            paused_until: None,
            ..self
        }
    }

    /// This trigger paused at `now`, until `until` if given. Paused already, the pause it is
    /// in gets the new end.
    pub fn paused(&self, now: DateTime<Utc>, until: Option<DateTime<Utc>>) -> Self {
        let ongoing = self.status_at(now) == TriggerStatus::Paused;
        let mut next = self.with_status(TriggerStatus::Paused, now);
        let history = &mut next.pause_history;
        match history.last_mut() {
            Some(last) if ongoing => last.until = until,
            _ => history.push(PauseSpan { from: now, until }),
        }
        let excess = history.len().saturating_sub(MAX_PAUSES);
        history.drain(..excess);
        next.paused_until = until;
        next
    }

    /// This trigger resumed at `now`: the pause it was in ends now.
    pub fn resumed(&self, now: DateTime<Utc>) -> Self {
        let mut next = self.with_status(TriggerStatus::Active, now);
        if let Some(last) = next.pause_history.last_mut()
            && last.until.is_none_or(|u| u > now)
        {
            last.until = Some(now);
        }
        next.paused_until = None;
        next
    }

    /// This trigger with occurrence `at` skipped; the oldest skip goes when there are too many.
    pub fn skipping(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        let mut next = Self {
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        };
        let skipped = &mut next.skipped_occurrences;
        if let Err(i) = skipped.binary_search(&at) {
            skipped.insert(i, at);
        }
        let excess = skipped.len().saturating_sub(MAX_SKIPPED);
        skipped.drain(..excess);
        next
    }

    /// This trigger with a new signing secret; the old one keeps signing beside it for
    /// `grace` (`ETP_SECRET_ROTATION_GRACE`), so receivers can switch over.
    pub fn with_new_secret(&self, now: DateTime<Utc>, grace: chrono::Duration) -> Self {
        let until = super::time_range::add_saturating(now, grace);
        Self {
            secret: Some(Secret::generate()),
            retiring_secret: self
                .secret
                .clone()
                .filter(|_| grace > chrono::Duration::zero())
                .map(|secret| RetiringSecret { secret, until }),
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }

    /// Every secret a delivery made at `now` is signed with: the current one, and the one a
    /// rotation replaced while its grace lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<Secret> {
        self.secret
            .iter()
            .cloned()
            .chain(
                self.retiring_secret
                    .iter()
                    .filter(|r| r.until > now)
                    .map(|r| r.secret.clone()),
            )
            .collect()
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
        let egress = crate::domain::egress::EgressPolicy::default();
        let limits = crate::domain::limits::Limits::default();
        let rules = Rules {
            now: now(),
            egress: &egress,
            limits: &limits,
        };
        match def.validate(&rules, purpose) {
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
