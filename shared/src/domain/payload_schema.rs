//! Api triggers' payload schemas: bounded in size and depth, compiled with a linear-time regex
//! engine, and the errors a payload gets against one.

use serde_json::Value;

use super::limits::{Limits, json_depth, json_size};
use super::validation::FieldError;

/// Payload errors reported at most, so a huge bad payload cannot produce a huge error body.
const MAX_PAYLOAD_ERRORS: usize = 20;
/// Compiled size of one `pattern` at most (the `regex` crate's own guard against blow-up).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Schemas at most this big (as JSON), without costly keywords, are checked where the payload
/// arrives ([`quick_to_check`]).
const QUICK_SCHEMA_BYTES: usize = 4096;
/// Payloads at most this big (as JSON) are checked there against such a schema.
pub const QUICK_PAYLOAD_BYTES: usize = 4096;
/// Keywords whose cost is not bounded by schema size x payload size: a reference can apply one
/// subschema along many paths, patterns and formats run a matcher per string, `uniqueItems`
/// compares pairs, the content keywords decode.
const COSTLY_KEYWORDS: &[&str] = &[
    "$ref",
    "$dynamicRef",
    "$recursiveRef",
    "pattern",
    "patternProperties",
    "format",
    "uniqueItems",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
];

/// Whether checking a payload of at most [`QUICK_PAYLOAD_BYTES`] against `schema` is cheap
/// enough (well under a millisecond) to do without handing it to a worker thread: the schema
/// is small and every keyword in it costs at most one step per payload node.
pub fn quick_to_check(schema: &Value) -> bool {
    fn costly(v: &Value) -> bool {
        match v {
            Value::Object(m) => m
                .iter()
                .any(|(k, v)| COSTLY_KEYWORDS.contains(&k.as_str()) || costly(v)),
            Value::Array(items) => items.iter().any(costly),
            _ => false,
        }
    }
    json_size(schema) <= QUICK_SCHEMA_BYTES && !costly(schema)
}

/// A compiled schema, ready to check payloads.
pub type Validator = jsonschema::Validator;

/// Checks the shape and bounds of `schema` without compiling it: cheap, for every request.
pub fn check_bounds(schema: &Value, limits: &Limits) -> Result<(), String> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err("must be a JSON Schema (an object or a boolean)".into());
    }
    let size = json_size(schema);
    if size > limits.max_schema_bytes {
        return Err(format!(
            "is {size} bytes as JSON; at most {} are accepted (ETP_MAX_SCHEMA_BYTES)",
            limits.max_schema_bytes
        ));
    }
    let depth = json_depth(schema);
    if depth > limits.max_schema_depth {
        return Err(format!(
            "nests {depth} levels deep; at most {} are accepted",
            limits.max_schema_depth
        ));
    }
    Ok(())
}

/// Compiles `schema` (after [`check_bounds`]), explaining in words why it is not one. Patterns
/// run on the `regex` crate, whose matching time is linear in the input: no backtracking, so
/// no pattern can make a payload check take minutes. References stay inside the document
/// (nothing is fetched); cyclic `$ref`s are resolved by the compiler, not expanded.
pub fn compile(schema: &Value, limits: &Limits) -> Result<Validator, String> {
    check_bounds(schema, limits)?;
    jsonschema::options()
        .with_pattern_options(
            jsonschema::PatternOptions::regex()
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT),
        )
        .build(schema)
        .map_err(|e| format!("is not a valid JSON Schema: {e}"))
}

/// Every way `payload` breaks the schema (at most 20), each named by its JSON pointer (`/` for
/// the root).
pub fn payload_errors(validator: &Validator, payload: &Value) -> Vec<FieldError> {
    validator
        .iter_errors(payload)
        .take(MAX_PAYLOAD_ERRORS)
        .map(|e| {
            let path = e.instance_path().to_string();
            let field = if path.is_empty() {
                "/".to_string()
            } else {
                path
            };
            FieldError::new(field, e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Only small schemas whose every keyword costs one step per payload node are checked on
    /// the request's task; the rest keep the worker threads and their time budget.
    #[test]
    fn only_small_schemas_without_costly_keywords_are_checked_in_place() {
        let simple = json!({"type": "object", "required": ["n"],
            "properties": {"n": {"type": "integer", "minimum": 0}, "tags": {"type": "array",
            "items": {"type": "string", "maxLength": 10}}}});
        assert!(quick_to_check(&simple));
        assert!(quick_to_check(&json!(true)));
        for costly in [
            json!({"properties": {"a": {"pattern": "^(a+)+$"}}}),
            json!({"patternProperties": {"^x": {}}}),
            json!({"$defs": {"a": {}}, "allOf": [{"$ref": "#/$defs/a"}]}),
            json!({"items": {"format": "regex"}}),
            json!({"type": "array", "uniqueItems": true}),
            json!({"anyOf": [{"contentEncoding": "base64"}]}),
        ] {
            assert!(!quick_to_check(&costly), "{costly}");
        }
        let big: serde_json::Map<String, Value> = (0..400)
            .map(|i| (format!("p{i}"), json!({"type": "string"})))
            .collect();
        assert!(!quick_to_check(&json!({"properties": big})), "over 4 KiB");
    }
}
