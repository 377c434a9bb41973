//! The OpenAPI 3.1 document and the route that serves it: derived from the route annotations,
//! then completed in one place.
//!
//! The derive covers each route's own statuses. What holds for whole classes of routes (the token,
//! unreadable bodies, an unavailable store), the rules serde and the domain enforce beyond what a
//! type shows, examples and links are added by [`document`], so no route can forget them.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

mod bounds;

use super::{
    api_keys, docs, events, occurrences, problem, repair, system, test_runs, triggers, ui,
};
use crate::app::{TestRunOutcome, TriggerView};
use crate::domain::delivery::{Attempt, AttemptError};
use crate::domain::event::{Event, EventSource, EventStatus, EventView};
use crate::domain::lifecycle::EventState;
use crate::domain::schedule::Schedule;
use crate::domain::target::Target;
use crate::domain::test_run::{DefinitionView, TestRunView};
use crate::domain::trigger::{Trigger, TriggerDefinition, TriggerKind, TriggerStatus};
use crate::domain::validation::FieldError;
use crate::ports::TriggerStats;

#[derive(OpenApi)]
#[openapi(
    info(title = "Event Trigger Platform", description = "Scheduled and API triggers with an exact event lifecycle.\n\n\
        Every route except `/health`, `/openapi.json`, `/` and `/docs` needs `Authorization: Bearer <token>` \
        (the token `make run` printed, or `ETP_API_TOKEN`): press **Authorize**. \
        Every 4xx and 5xx is `application/problem+json`."),
    paths(
        triggers::create, triggers::list, triggers::get, triggers::replace, triggers::delete,
        triggers::pause, triggers::resume, triggers::fire, triggers::test_stored,
        triggers::rotate_secret, occurrences::list, occurrences::skip,
        triggers::test_definition, test_runs::list, test_runs::cancel, events::list, events::get,
        events::stats,
        repair::redeliver_event, repair::resume_delivery, repair::redeliver_trigger,
        system::health, openapi, ui::index, docs::page,
        api_keys::create, api_keys::list, api_keys::revoke, api_keys::me,
        super::scrape::metrics,
    ),
    components(schemas(
        Trigger, TriggerView, TriggerDefinition, TriggerKind, TriggerStatus, Schedule, Event,
        EventView, EventSource, EventStatus, EventState, TriggerStats, TestRunOutcome, FieldError,
        problem::Problem, events::StatsResponse, system::HealthReport, Target, Attempt,
        AttemptError, TestRunView, DefinitionView,
        crate::app::OccurrenceAuditView, crate::domain::occurrence::Occurrence,
        crate::domain::occurrence::OccurrenceStatus, crate::domain::occurrence::SkipReason,
        crate::domain::trigger::PauseSpan, triggers::PauseRequest, occurrences::SkipRequest,
        crate::domain::api_key::ApiKey, crate::domain::api_key::Scope, api_keys::NewApiKey,
        api_keys::CreatedApiKey, api_keys::ApiKeyList, api_keys::CallerView,
    )),
    security(("bearer" = [])),
    tags(
        (name = "triggers", description = "Define, change and fire triggers"),
        (name = "test runs", description = "Scheduled test runs waiting for their time"),
        (name = "events", description = "The event log"),
        (name = "api keys", description = "Scoped API keys (managing them needs `admin`)"),
        (name = "system", description = "Health, this document and the pages; no token needed"),
    )
)]
pub struct ApiDoc;

/// The document `/openapi.json` serves, built once.
pub fn document() -> &'static Value {
    static DOC: LazyLock<Value> = LazyLock::new(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "OpenAPI document does not serialize");
            json!({})
        });
        complete(&mut doc);
        doc
    });
    &DOC
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", operation_id = "openapi", security(()),
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi() -> axum::Json<&'static Value> {
    axum::Json(document())
}

/// `v` as an object, replacing whatever else it was.
fn as_object(v: &mut Value) -> Option<&mut Map<String, Value>> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut()
}

/// The object at `pointer` (a JSON pointer), created with its parents when missing.
pub(super) fn object_at<'a>(
    doc: &'a mut Value,
    pointer: &str,
) -> Option<&'a mut Map<String, Value>> {
    let mut at = doc;
    for key in pointer.split('/').filter(|k| !k.is_empty()) {
        at = as_object(at)?
            .entry(key.replace("~1", "/").replace("~0", "~"))
            .or_insert_with(|| Value::Object(Map::new()));
    }
    as_object(at)
}

/// Merges `extra` into the object at `pointer`, key by key.
pub(super) fn merge(doc: &mut Value, pointer: &str, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (object_at(doc, pointer), extra) {
        target.extend(extra);
    }
}

fn complete(doc: &mut Value) {
    security_scheme(doc);
    problem_responses(doc);
    common_responses(doc);
    bounds::refine(doc);
    examples(doc);
    links(doc);
}

fn security_scheme(doc: &mut Value) {
    merge(
        doc,
        "/components/securitySchemes",
        json!({"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "The API token: `ETP_API_TOKEN`, or the one `make run` printed; or \
                an API key (`etp_...`, see `POST /api-keys`), limited to its scopes."
        }}),
    );
}

fn problem_example(status: u16, slug: &str, title: &str, detail: &str) -> Value {
    json!({"type": format!("https://etp.invalid/problems/{slug}"), "title": title,
           "status": status, "detail": detail})
}

/// Reusable problem responses, referenced by every route they apply to.
fn problem_responses(doc: &mut Value) {
    let response = |description: &str, example: Value| {
        json!({"description": description, "content": {"application/problem+json": {
            "schema": {"$ref": "#/components/schemas/Problem"}, "example": example}}})
    };
    let mut bad_json = problem_example(
        400,
        "bad-request",
        "Bad Request",
        "malformed JSON at line 1 column 9: expected value",
    );
    bad_json["errors"] = json!([{"field": "body", "message": "expected value"}]);
    let mut invalid = problem_example(
        422,
        "validation-error",
        "Unprocessable Entity",
        "schedule.every_seconds: must be at least 1",
    );
    invalid["errors"] =
        json!([{"field": "schedule.every_seconds", "message": "must be at least 1"}]);
    merge(
        doc,
        "/components/responses",
        json!({
            "BadRequest": response(
                "Unreadable request: malformed JSON, a missing body, a bad query parameter or header",
                bad_json),
            "Unauthorized": {
                "description": "Missing or wrong bearer token",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"},
                    "description": "`Bearer realm=\"etp\"`"}},
                "content": {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "example": problem_example(401, "unauthorized", "Unauthorized",
                        "send a valid API token as Authorization: Bearer <token>")}}
            },
            "Forbidden": response("The API key lacks the scope this route needs; `scope` names it",
                json!({"type": "https://etp.invalid/problems/forbidden", "title": "Forbidden",
                       "status": 403, "detail": "this key lacks the scope `events:read`",
                       "scope": "events:read"})),
            "PayloadTooLarge": response("Body larger than `ETP_MAX_BODY_BYTES`",
                problem_example(413, "payload-too-large", "Payload Too Large",
                    "the request body is larger than the limit of 262144 bytes")),
            "UnsupportedMediaType": response("A body that is not `application/json`",
                problem_example(415, "unsupported-media-type", "Unsupported Media Type",
                    "send the body as JSON with Content-Type: application/json")),
            "ValidationError": response(
                "A well-formed request that breaks a rule; `errors` names each field", invalid),
            "Unavailable": response("The store or scheduler is unavailable; retry shortly",
                problem_example(503, "unavailable", "Service Unavailable",
                    "a backing service is unavailable; retry shortly")),
        }),
    );
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn is_public(op: &Value) -> bool {
    op.get("security")
        .and_then(Value::as_array)
        .is_some_and(|reqs| {
            reqs.iter()
                .all(|r| r.as_object().is_some_and(Map::is_empty))
        })
}

/// Statuses every route of a class can answer with, unless the route documents its own.
fn common_responses(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method) else {
                continue;
            };
            let mut add = Vec::new();
            if !is_public(op) {
                add.extend([
                    ("400", "BadRequest"),
                    ("401", "Unauthorized"),
                    ("403", "Forbidden"),
                    ("503", "Unavailable"),
                ]);
            }
            if op.get("requestBody").is_some() {
                add.extend([
                    ("400", "BadRequest"),
                    ("413", "PayloadTooLarge"),
                    ("415", "UnsupportedMediaType"),
                    ("422", "ValidationError"),
                ]);
            }
            let Some(responses) = object_at(op, "/responses") else {
                continue;
            };
            for (status, name) in add {
                responses
                    .entry(status)
                    .or_insert_with(|| json!({"$ref": format!("#/components/responses/{name}")}));
            }
        }
    }
}

/// The `at` example: 09:00 UTC thirty days after the document was built, so trying it out (by
/// hand or by the fuzzer) never sends an instant already past.
fn launch_at() -> String {
    let day = (chrono::Utc::now() + chrono::Duration::days(30)).date_naive();
    format!("{}T09:00:00Z", day.format("%Y-%m-%d"))
}

/// One definition per trigger kind and schedule type, shown in `/docs` and tried by the fuzzer.
fn definition_examples(with_test_payload: bool) -> Value {
    let mut api = json!({"name": "order placed", "kind": "api",
        "payload_schema": {"type": "object", "required": ["order_id"],
            "properties": {"order_id": {"type": "integer"}}}});
    if with_test_payload {
        api["payload"] = json!({"order_id": 42});
    }
    json!({
        "interval": {"summary": "Scheduled: every 5 minutes, with a payload",
            "value": {"name": "heartbeat", "kind": "scheduled",
                "schedule": {"type": "interval", "every_seconds": 300},
                "payload": {"service": "billing"}}},
        "delay": {"summary": "Scheduled: once, ten minutes from now",
            "value": {"name": "in ten minutes", "kind": "scheduled",
                "schedule": {"type": "interval", "every_seconds": 600, "recurring": false}}},
        "at": {"summary": "Scheduled: once at an instant",
            "value": {"name": "launch", "kind": "scheduled",
                "schedule": {"type": "at", "at": launch_at()}}},
        "cron": {"summary": "Scheduled: a cron in a time zone",
            "value": {"name": "standup", "kind": "scheduled",
                "schedule": {"type": "cron", "expression": "0 9 * * MON-FRI",
                    "timezone": "Europe/Berlin"}}},
        "api": {"summary": "Api: fired by clients with a payload matching the schema",
            "value": api},
        "webhook": {"summary": "Scheduled hourly, each firing POSTed (signed) to a URL",
            "value": {"name": "hourly sync", "kind": "scheduled",
                "schedule": {"type": "cron", "expression": "0 * * * *", "timezone": "UTC"},
                "target": {"url": "https://example.com/hooks/etp",
                    "headers": {"authorization": "Bearer receiver-token"},
                    "timeout_ms": 10000, "max_attempts": 5}}},
    })
}

fn examples(doc: &mut Value) {
    let body = "/requestBody/content/application~1json";
    for (path, method, test) in [
        ("/triggers", "post", false),
        ("/triggers/{id}", "put", false),
        ("/triggers/test", "post", true),
    ] {
        let Some(op) = doc.pointer_mut(&format!("/paths/{}/{method}", escape(path))) else {
            continue;
        };
        merge(op, body, json!({"examples": definition_examples(test)}));
    }
    if let Some(op) = doc.pointer_mut(&format!("/paths/{}/post", escape("/triggers/{id}/fire"))) {
        merge(op, body, json!({"example": {"order_id": 42}}));
    }
    let trigger = json!({"id": "01jb7k3s9m2x4v6z8q0r1t3w5y", "name": "heartbeat",
        "kind": "scheduled", "status": "active",
        "schedule": {"type": "interval", "every_seconds": 300, "recurring": true,
            "start_at": "2026-11-24T10:00:00Z"},
        "payload": {"service": "billing"},
        "created_at": "2026-11-24T10:00:00Z", "updated_at": "2026-11-24T10:00:00Z",
        "version": 1, "next_fire_at": "2026-11-24T10:05:00Z"});
    let event = json!({"id": "01jb7kc0a1b2c3d4e5f6g7h8j9", "trigger_id": trigger["id"],
        "trigger_name": "heartbeat", "kind": "scheduled", "source": "schedule",
        "is_test": false, "scheduled_for": "2026-11-24T10:05:00Z",
        "fired_at": "2026-11-24T10:05:00.004Z", "payload": {"service": "billing"},
        "status": "success", "state": "active", "archives_at": "2026-11-24T12:05:00.004Z",
        "expires_at": "2026-11-26T10:05:00.004Z",
        "attempts": [
            {"number": 1, "at": "2026-11-24T10:05:00.010Z", "status_code": 503,
             "duration_ms": 41, "response_body": "busy"},
            {"number": 2, "at": "2026-11-24T10:05:05.120Z", "status_code": 200,
             "duration_ms": 38}]});
    merge(
        doc,
        "/components/schemas/TriggerView",
        json!({"example": trigger}),
    );
    merge(
        doc,
        "/components/schemas/EventView",
        json!({"example": event}),
    );
}

pub(super) fn escape(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

/// Which calls take the id a response returns, so clients (and the fuzzer's stateful phase)
/// can follow a created trigger or a fired event.
fn links(doc: &mut Value) {
    let trigger_id = json!({"id": "$response.body#/id"});
    let trigger_links: Map<String, Value> = [
        "getTrigger",
        "replaceTrigger",
        "deleteTrigger",
        "pauseTrigger",
        "resumeTrigger",
        "fireTrigger",
        "testTrigger",
    ]
    .into_iter()
    .map(|op| {
        (
            op.to_string(),
            json!({"operationId": op, "parameters": trigger_id}),
        )
    })
    .collect();
    let event_link = json!({"getEvent": {"operationId": "getEvent",
        "parameters": {"id": "$response.body#/id"}}});
    for (path, method, status, links) in [
        ("/triggers", "post", "201", Value::Object(trigger_links)),
        ("/triggers/{id}/fire", "post", "202", event_link.clone()),
        ("/triggers/{id}/test", "post", "202", event_link),
    ] {
        let pointer = format!("/paths/{}/{method}/responses/{status}", escape(path));
        if let Some(response) = doc.pointer_mut(&pointer) {
            merge(response, "/links", links);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
        doc.pointer(&format!("/paths/{}/{method}", escape(path)))
            .unwrap_or_else(|| panic!("no {method} {path}"))
    }

    #[test]
    fn protected_routes_document_the_common_problems() {
        let doc = document();
        let create = op(doc, "/triggers", "post");
        for status in ["400", "401", "413", "415", "422", "503"] {
            assert!(create["responses"][status].is_object(), "{status}");
        }
        let health = op(doc, "/health", "get");
        assert!(health["responses"]["401"].is_null());
    }

    #[test]
    fn operation_ids_are_unique_and_links_resolve() {
        let doc = document();
        let mut ids = std::collections::HashSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for m in METHODS {
                if let Some(id) = item[m]["operationId"].as_str() {
                    assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
                }
            }
        }
        let links = &op(doc, "/triggers", "post")["responses"]["201"]["links"];
        for link in links.as_object().unwrap().values() {
            assert!(ids.contains(link["operationId"].as_str().unwrap()));
        }
    }

    #[test]
    fn every_kind_has_an_example() {
        let doc = document();
        let examples =
            &op(doc, "/triggers", "post")["requestBody"]["content"]["application/json"]["examples"];
        for kind in ["interval", "delay", "at", "cron", "api"] {
            assert!(examples[kind]["value"]["name"].is_string(), "{kind}");
        }
        let variants = doc
            .pointer("/components/schemas/Schedule/oneOf")
            .and_then(Value::as_array)
            .unwrap();
        assert!(
            variants
                .iter()
                .all(|v| v["additionalProperties"] == json!(false))
        );
    }

    /// A validator for the document's component `name`, resolving its `$ref`s in the document.
    fn component(doc: &Value, name: &str) -> jsonschema::Validator {
        let schema = json!({"$ref": format!("#/components/schemas/{name}"),
            "components": doc["components"]});
        jsonschema::validator_for(&schema).expect("the document's schemas compile")
    }

    #[test]
    fn the_document_accepts_what_the_server_accepts_and_no_more() {
        let doc = document();
        let definition = component(doc, "TriggerDefinition");
        let examples =
            &op(doc, "/triggers", "post")["requestBody"]["content"]["application/json"]["examples"];
        for (name, example) in examples.as_object().unwrap() {
            assert!(definition.is_valid(&example["value"]), "{name}");
        }
        let schedule = json!({"type": "interval", "every_seconds": 60});
        for refused in [
            json!({"name": "x", "kind": "scheduled"}),
            json!({"name": "x", "kind": "api", "schedule": schedule}),
            json!({"name": "x", "kind": "api", "payload_schema": {}, "payload": {}}),
            json!({"name": "   ", "kind": "scheduled", "schedule": schedule}),
            json!({"name": "a\u{7}b", "kind": "scheduled", "schedule": schedule}),
            json!({"name": "x", "kind": "scheduled", "schedule": schedule,
                "target": {"url": "https://example.com", "timeout_ms": 30001}}),
            json!({"name": "x", "kind": "scheduled", "schedule": schedule,
                "target": {"url": "https://example.com", "max_attempts": 11}}),
            json!({"name": "x", "kind": "scheduled", "schedule": schedule,
                "target": {"url": "https://example.com", "headers": {"webhook-id": "1"}}}),
            json!({"name": "x", "kind": "scheduled",
                "schedule": {"type": "at", "at": "2030-01-01T00:00:00.5Z"}}),
            json!({"name": "x", "kind": "scheduled",
                "schedule": {"type": "cron", "expression": "* * * * *", "timezone": "Mars/Base"}}),
        ] {
            assert!(!definition.is_valid(&refused), "{refused}");
        }
        let test_run = component(doc, "TestDefinition");
        assert!(
            test_run.is_valid(
                &json!({"name": "x", "kind": "api", "payload_schema": {}, "payload": [1]})
            )
        );
    }

    #[test]
    fn if_match_is_optional_and_cursors_and_ids_have_their_shape() {
        let doc = document();
        for (path, method) in [
            ("/triggers/{id}", "put"),
            ("/triggers/{id}", "delete"),
            ("/triggers/{id}/pause", "post"),
            ("/triggers/{id}/resume", "post"),
            ("/triggers/{id}/rotate-secret", "post"),
        ] {
            let params = op(doc, path, method)["parameters"].as_array().unwrap();
            let if_match = params.iter().find(|p| p["name"] == "If-Match").unwrap();
            assert_eq!(if_match["required"], json!(false), "{method} {path}");
        }
        let param = |path: &str, name: &str| {
            let params = op(doc, path, "get")["parameters"].as_array().unwrap();
            let p = params.iter().find(|p| p["name"] == name).unwrap();
            jsonschema::validator_for(&p["schema"]).unwrap()
        };
        let seal =
            crate::http::cursor_seal::CursorSeal::from_token(&crate::config::ApiToken::new("t"));
        let sealed = seal.seal(crate::http::cursor_seal::Listing::Events, "eyJrIjoxfQ");
        assert!(param("/events", "cursor").is_valid(&json!(sealed)));
        assert!(!param("/events", "cursor").is_valid(&json!("anything")));
        let id = ulid::Ulid::new().to_string();
        assert!(param("/triggers/{id}", "id").is_valid(&json!(id)));
        assert!(param("/triggers/{id}", "id").is_valid(&json!(id.to_ascii_lowercase())));
        assert!(!param("/triggers/{id}", "id").is_valid(&json!("8ZZZZZZZZZZZZZZZZZZZZZZZZZ")));
        assert_eq!(
            crate::http::extract::parse_id("8ZZZZZZZZZZZZZZZZZZZZZZZZZ"),
            None,
            "the pattern and the server agree"
        );
    }
}
