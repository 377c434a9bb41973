//! What the server accepts beyond what a type shows: bounds, patterns, closed objects and one
//! definition schema per trigger kind, written from the same constants the validators use.
//!
//! The rule of this file: a request the document allows is one the server accepts, and a
//! request it refuses is one the server refuses (the fuzzer checks both directions). Rules
//! that depend on the clock or on stored state (an instant in the accepted range, a window in
//! which a schedule fires, a payload matching a stored schema, a cursor this server sealed)
//! are stated in descriptions instead.

use serde_json::{Map, Value, json};

use super::{escape, merge, object_at};
use crate::domain::schedule::{DEFAULT_MAX_AHEAD_DAYS, MAX_CRON_CHARS, MAX_EVERY_SECONDS};
use crate::domain::target::{
    MAX_HEADER_VALUE_CHARS, MAX_HEADERS, MAX_MAX_ATTEMPTS, MAX_TIMEOUT_MS, MAX_URL_CHARS,
    RESERVED_HEADERS,
};
use crate::domain::trigger::MAX_NAME_CHARS;
use crate::http::cursor_seal::MAX_CURSOR_CHARS;

const SCHEMAS: &str = "/components/schemas";

/// A ULID as this API writes and reads it (Crockford base32, either case, at most `7zzz...`).
const ID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$";
/// A sealed cursor: the store's base64url cursor, a dot, a 128-bit MAC in base64url.
const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]*\\.[A-Za-z0-9_-]{22}$";
/// RFC 3339 in whole seconds, `Z` or an offset.
const INSTANT_PATTERN: &str =
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}([Zz]|[+-][0-9]{2}:[0-9]{2})$";
/// Not blank, no control characters (`char::is_control`: C0, DEL and C1).
const NAME_PATTERN: &str =
    "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$";
/// A webhook URL by host name (a top-level label starting with a letter, so never read as an
/// IPv4 address), an optional port, then anything without spaces. URLs by public IP address
/// are accepted too, but the document does not promise them.
const URL_PATTERN: &str =
    "^https?://([A-Za-z0-9-]+\\.)*[A-Za-z][A-Za-z0-9-]*(:[1-9][0-9]{0,3})?([/?#][^\\s]*)?$";
/// Names for this machine or a private network (in any letter case), refused as targets.
const LOCAL_URL_PATTERN: &str = "^https?://([^/?#:]*\\.)?([Ll][Oo][Cc][Aa][Ll][Hh][Oo][Ss][Tt]|[Ll][Oo][Cc][Aa][Ll]|[Ii][Nn][Tt][Ee][Rr][Nn][Aa][Ll])([:/?#]|$)";
const HEADER_NAME_PATTERN: &str = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
const HEADER_VALUE_PATTERN: &str = "^[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$";

pub fn refine(doc: &mut Value) {
    target(doc);
    schedule(doc);
    definitions(doc);
    parameters(doc);
    api_keys(doc);
    merge(
        doc,
        &format!("{SCHEMAS}/Event/properties"),
        json!({"payload": {"description": "Any JSON value"}}),
    );
    merge(
        doc,
        &format!("{SCHEMAS}/Trigger/properties"),
        json!({"payload_schema": json_schema()}),
    );
    schedule_control(doc);
    merge(
        doc,
        &format!("{SCHEMAS}/HealthReport/properties/status"),
        json!({"enum": ["ok", "degraded"]}),
    );
    merge(
        doc,
        &format!("{SCHEMAS}/Problem/properties/status"),
        json!({"minimum": 400, "maximum": 599}),
    );
}

/// The bodies of `pause` and `skip`: closed objects with one instant each.
fn schedule_control(doc: &mut Value) {
    for (schema, field, rule) in [
        (
            "PauseRequest",
            "until",
            "after now and at most `ETP_MAX_SCHEDULE_AHEAD` ahead (422 otherwise)",
        ),
        (
            "SkipRequest",
            "scheduled_for",
            "a future occurrence of the trigger's schedule, at most `ETP_MAX_SCHEDULE_AHEAD` \
                ahead (422 otherwise)",
        ),
    ] {
        merge(
            doc,
            &format!("{SCHEMAS}/{schema}"),
            json!({"additionalProperties": false}),
        );
        merge(
            doc,
            &format!("{SCHEMAS}/{schema}/properties/{field}"),
            json!({"format": "date-time", "pattern": INSTANT_PATTERN,
                "description": format!("RFC 3339 in whole seconds; {rule}")}),
        );
    }
}

fn json_schema() -> Value {
    json!({"type": ["object", "boolean"],
        "description": "A JSON Schema (draft 2020-12 unless `$schema` says otherwise), at most \
            `ETP_MAX_SCHEMA_BYTES` as JSON and `ETP_MAX_SCHEMA_DEPTH` levels deep, compiled \
            within `ETP_SCHEMA_BUDGET`; `pattern` uses a linear-time regex engine"})
}

/// Adds the instant rules to a derived `at`/`start_at`/`end_at` property, keeping its text.
fn instant(property: &mut Value) {
    let derived = property
        .get("description")
        .and_then(Value::as_str)
        .map(|d| format!("{d} "))
        .unwrap_or_default();
    merge(
        property,
        "",
        json!({"format": "date-time", "pattern": INSTANT_PATTERN,
            "description": format!("{derived}RFC 3339 in whole seconds, any UTC offset; \
                between 1970 and 9999, and at most `ETP_MAX_SCHEDULE_AHEAD` \
                ({DEFAULT_MAX_AHEAD_DAYS} days by default) ahead")}),
    );
}

fn target(doc: &mut Value) {
    let reserved: Vec<&str> = RESERVED_HEADERS.to_vec();
    merge(
        doc,
        &format!("{SCHEMAS}/Target"),
        json!({"additionalProperties": false}),
    );
    merge(
        doc,
        &format!("{SCHEMAS}/Target/properties"),
        json!({
            "url": {"type": "string", "format": "webhook-url", "maxLength": MAX_URL_CHARS,
                "pattern": URL_PATTERN, "not": {"pattern": LOCAL_URL_PATTERN},
                "description": "An `https://` or `http://` URL without a user name or \
                    password. Private, loopback and link-local addresses, and names that mean \
                    them (`localhost`), are refused (the README's SSRF section)."},
            "headers": {"type": "object", "maxProperties": MAX_HEADERS,
                "propertyNames": {"pattern": HEADER_NAME_PATTERN, "not": {"enum": reserved}},
                "additionalProperties": {"type": "string", "maxLength": MAX_HEADER_VALUE_CHARS,
                    "pattern": HEADER_VALUE_PATTERN},
                "description": format!("Extra request headers, e.g. an `authorization` the \
                    receiver expects: at most {MAX_HEADERS}, values write-only (reads show \
                    `header_names`). The platform's own headers ({}) cannot be set, in any \
                    letter case.", reserved.join(", "))},
            "timeout_ms": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_TIMEOUT_MS},
            "max_attempts": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_MAX_ATTEMPTS},
            "pause_after_failures": {"type": ["integer", "null"], "minimum": 1,
                "maximum": crate::domain::target::MAX_PAUSE_AFTER_FAILURES},
        }),
    );
}

fn schedule(doc: &mut Value) {
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
    let Some(variants) = doc
        .pointer_mut(&format!("{SCHEMAS}/Schedule/oneOf"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for variant in variants {
        merge(variant, "", json!({"additionalProperties": false}));
        let Some(props) = object_at(variant, "/properties") else {
            continue;
        };
        for key in ["at", "start_at", "end_at"] {
            if let Some(p) = props.get_mut(key) {
                instant(p);
            }
        }
        let mut refine = |key: &str, extra: Value| {
            if let Some(p) = props.get_mut(key) {
                *p = extra;
            }
        };
        refine(
            "every_seconds",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_EVERY_SECONDS,
                "description": "Seconds between firings, 1 to ten years"}),
        );
        refine(
            "recurring",
            json!({"type": "boolean", "default": true,
                "description": "`false`: fire once, one interval after the start"}),
        );
        refine(
            "expression",
            json!({"type": "string", "format": "cron", "maxLength": MAX_CRON_CHARS,
                "description": "5 fields (minute hour day-of-month month day-of-week), or 6 \
                    with seconds first; it must fire at least once before year 5000",
                "examples": ["0 9 * * MON-FRI", "*/15 * * * *"]}),
        );
        refine(
            "timezone",
            json!({"type": "string", "enum": zones,
                "description": "An IANA time zone, spelled as the tz database does",
                "examples": ["Europe/Berlin", "UTC"]}),
        );
    }
}

/// One closed schema per kind, so a document-valid definition is a complete one: a scheduled
/// trigger with its schedule, an api trigger with its payload schema. A test run of an api
/// definition also carries the payload to fire with.
fn definitions(doc: &mut Value) {
    let name = json!({"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS,
        "pattern": NAME_PATTERN,
        "description": format!("1 to {MAX_NAME_CHARS} characters, not blank, no control \
            characters")});
    // Optional fields may also be sent as `null`, which means absent; a field of the other
    // kind may be sent only as `null`.
    let target = json!({"anyOf": [{"$ref": "#/components/schemas/Target"}, {"type": "null"}]});
    let absent = json!({"type": "null"});
    let scheduled = json!({"type": "object", "additionalProperties": false,
        "required": ["name", "kind", "schedule"],
        "properties": {
            "name": name, "kind": {"type": "string", "enum": ["scheduled"]},
            "schedule": {"$ref": "#/components/schemas/Schedule"},
            "payload": {"type": ["object", "null"], "description": "Sent with every firing, at \
                most `ETP_MAX_PAYLOAD_BYTES` as JSON"},
            "payload_schema": absent,
            "target": target}});
    let api = |test: bool| {
        let mut d = json!({"type": "object", "additionalProperties": false,
            "required": ["name", "kind", "payload_schema"],
            "properties": {
                "name": name, "kind": {"type": "string", "enum": ["api"]},
                "schedule": absent, "payload": absent,
                "payload_schema": json_schema(), "target": target}});
        if test {
            d["properties"]["payload"] = json!({"description": "The payload to fire with; \
                it must match `payload_schema` (default `{}`)"});
        }
        d
    };
    let one_of = |api: &str| {
        json!({"oneOf": [{"$ref": "#/components/schemas/ScheduledDefinition"},
            {"$ref": format!("#/components/schemas/{api}")}],
            "description": "A trigger definition: its `kind` decides which fields it has"})
    };
    merge(
        doc,
        SCHEMAS,
        json!({
            "ScheduledDefinition": scheduled,
            "ApiDefinition": api(false),
            "ApiTestDefinition": api(true),
            "TriggerDefinition": one_of("ApiDefinition"),
            "TestDefinition": one_of("ApiTestDefinition"),
        }),
    );
    let body = format!(
        "/paths/{}/post/requestBody/content/application~1json/schema",
        escape("/triggers/test")
    );
    if let Some(schema) = doc.pointer_mut(&body) {
        *schema = json!({"$ref": "#/components/schemas/TestDefinition"});
    }
}

/// Path ids, cursors and trigger filters: their exact shape.
fn parameters(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                continue;
            };
            for p in params.iter_mut().filter_map(Value::as_object_mut) {
                refine_parameter(p);
            }
        }
    }
}

fn refine_parameter(p: &mut Map<String, Value>) {
    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
    let place = p.get("in").and_then(Value::as_str).unwrap_or_default();
    let schema = match (place, name) {
        ("path", "id") | ("query", "trigger_id") => {
            json!({"type": "string", "pattern": ID_PATTERN})
        }
        ("query", "from" | "to") => json!({"type": "string", "format": "date-time",
            "pattern": INSTANT_PATTERN,
            "description": "RFC 3339; between 1970 and 9999; `to` not before `from` and at most \
                31 days after it (422 otherwise)"}),
        ("query", "cursor") => json!({"type": "string", "pattern": CURSOR_PATTERN,
            "maxLength": MAX_CURSOR_CHARS,
            "description": "Only a `next_cursor` this listing returned is accepted (422 \
                otherwise): cursors are sealed with a MAC"}),
        ("header", "If-Match" | "Idempotency-Key") => {
            p.insert("required".into(), Value::Bool(false));
            return;
        }
        _ => return,
    };
    p.insert("schema".into(), schema);
}

/// The rules `check_new_key` applies to a new API key that a schema can state.
fn api_keys(doc: &mut Value) {
    use crate::domain::api_key::{MAX_NAME_CHARS, MAX_TRIGGER_IDS};
    merge(
        doc,
        &format!("{SCHEMAS}/NewApiKey"),
        json!({"additionalProperties": false}),
    );
    merge(
        doc,
        &format!("{SCHEMAS}/NewApiKey/properties"),
        json!({
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS,
                "pattern": NAME_PATTERN, "description": "What the key is for: not blank, no \
                control characters"},
            "scopes": {"type": "array", "minItems": 1,
                "items": {"$ref": "#/components/schemas/Scope"}},
            "trigger_ids": {"type": "array", "maxItems": MAX_TRIGGER_IDS,
                "items": {"type": "string", "pattern": ID_PATTERN},
                "description": "Only with the `fire` scope: the only triggers the key may fire \
                    (default: any)"},
            "expires_at": {"type": ["string", "null"], "format": "date-time",
                "pattern": INSTANT_PATTERN, "description": "When the key stops working: RFC \
                    3339 in whole seconds, in the future; default never"},
        }),
    );
}
