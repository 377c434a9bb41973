//! Api triggers' payload schemas: bounded in size and depth, compiled with a linear-time regex
//! engine, and the errors a payload gets against one.

use serde_json::Value;

use super::limits::{Limits, json_depth, json_size};
use super::validation::FieldError;

/// Payload errors reported at most, so a huge bad payload cannot produce a huge error body.
const MAX_PAYLOAD_ERRORS: usize = 20;
/// Compiled size of one `pattern` at most (the `regex` crate's own guard against blow-up).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

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
