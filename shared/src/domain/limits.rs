//! The configurable bounds on what clients may send and keep (`ETP_MAX_*`), and the context
//! every validation runs in.

use chrono::{DateTime, Duration, Utc};

use super::egress::EgressPolicy;
use super::schedule::ScheduleLimits;

/// Bounds on client input and on what the platform keeps, with the defaults the README lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub schedule: ScheduleLimits,
    /// Largest payload (a fired api payload, a scheduled trigger's static payload), as JSON.
    pub max_payload_bytes: usize,
    /// Largest `payload_schema`, as JSON.
    pub max_schema_bytes: usize,
    /// Deepest nesting of objects and arrays in a `payload_schema`.
    pub max_schema_depth: usize,
    /// Longest a schema may take to compile, or a payload to be checked against one.
    pub schema_budget: std::time::Duration,
    /// Stored triggers at most.
    pub max_triggers: u64,
    /// Scheduled test runs waiting at once, at most.
    pub max_pending_test_runs: u64,
    /// How far ahead a scheduled test run's first occurrence may lie.
    pub max_test_run_lead: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            schedule: ScheduleLimits::default(),
            max_payload_bytes: 64 * 1024,
            max_schema_bytes: 64 * 1024,
            max_schema_depth: 32,
            schema_budget: std::time::Duration::from_millis(500),
            max_triggers: 100_000,
            max_pending_test_runs: 100,
            max_test_run_lead: Duration::hours(24),
        }
    }
}

/// What a validation needs besides the input: the time, the egress policy and the limits.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub now: DateTime<Utc>,
    pub egress: &'a EgressPolicy,
    pub limits: &'a Limits,
}

/// How deeply `value` nests arrays and objects (a scalar is 0), without recursion, so a
/// hostile document cannot exhaust the stack while being measured.
pub fn json_depth(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    deepest
}

/// The size of `value` as compact JSON, counted without building the text.
pub fn json_size(value: &serde_json::Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    let _ = serde_json::to_writer(&mut c, value);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_and_size_are_measured() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({"a": [1, {"b": []}]})), 3);
        assert_eq!(json_size(&json!({"a": 1})), 7);
        let mut deep = json!(0);
        for _ in 0..1_000 {
            deep = json!([deep]);
        }
        assert_eq!(json_depth(&deep), 1_000);
    }
}
