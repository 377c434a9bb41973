//! CloudWatch Embedded Metric Format: on Lambda the `metrics` facade records into this
//! recorder, and each invocation ends by writing what it recorded as one JSON line on stdout,
//! which CloudWatch Logs turns into metrics (no API call on the firing path).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use serde_json::{Map, Value, json};

/// The CloudWatch namespace every function writes to.
pub const NAMESPACE: &str = "EventTriggerPlatform";
/// The one dimension: which function wrote the line (low cardinality, one per stack).
pub const DIMENSION: &str = "Function";
/// EMF takes at most 100 metrics per directive and 100 values per metric.
const MAX_METRICS: usize = 100;
const MAX_VALUES: usize = 100;
/// Labels left out of EMF names: one CloudWatch metric per route or store call would cost
/// more than it tells (API Gateway's access log has routes; these stay in the Prometheus text).
const AGGREGATED_LABELS: &[&str] = &["route", "op"];

/// What was recorded since the last flush.
#[derive(Debug, Default)]
struct Pending {
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, f64>,
    histograms: BTreeMap<String, Vec<f64>>,
}

/// A `metrics::Recorder` that keeps what an invocation recorded until [`EmfRecorder::take_line`].
#[derive(Debug, Clone, Default)]
pub struct EmfRecorder {
    pending: Arc<Mutex<Pending>>,
}

/// One metric's handle: adds to the pending values under its EMF name.
struct Cell {
    name: String,
    pending: Arc<Mutex<Pending>>,
}

impl Cell {
    fn with<T>(&self, f: impl FnOnce(&mut Pending, &str) -> T) -> T {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut pending, &self.name)
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.with(|p, n| *p.counters.entry(n.to_string()).or_default() += value);
    }
    fn absolute(&self, value: u64) {
        self.with(|p, n| p.counters.insert(n.to_string(), value));
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.with(|p, n| *p.gauges.entry(n.to_string()).or_default() += value);
    }
    fn decrement(&self, value: f64) {
        self.with(|p, n| *p.gauges.entry(n.to_string()).or_default() -= value);
    }
    fn set(&self, value: f64) {
        self.with(|p, n| p.gauges.insert(n.to_string(), value));
    }
}

impl HistogramFn for Cell {
    fn record(&self, value: f64) {
        self.with(|p, n| p.histograms.entry(n.to_string()).or_default().push(value));
    }
}

/// The EMF metric name of a family and its labels: `etp_firings_total_schedule_success`,
/// `etp_deliveries_total_failure`, `etp_fire_lateness_seconds`. Label values are our own
/// words (sources, outcomes, reasons, status codes), so names stay few and stable.
pub fn emf_name(key: &Key) -> String {
    let mut name = key.name().to_string();
    for label in key.labels() {
        if AGGREGATED_LABELS.contains(&label.key()) {
            continue;
        }
        name.push('_');
        name.extend(label.value().chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        }));
    }
    name
}

impl EmfRecorder {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        Arc::new(Cell {
            name: emf_name(key),
            pending: self.pending.clone(),
        })
    }

    /// What was recorded since the last call, as one EMF JSON document (one line), or `None`
    /// when nothing was. `function` is the dimension value, `now_ms` the timestamp.
    pub fn take_line(&self, function: &str, now_ms: i64) -> Option<String> {
        let pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let mut root = Map::new();
        let mut defs = Vec::new();
        let mut add = |name: String, value: Value, unit: &str| {
            if defs.len() < MAX_METRICS {
                defs.push(json!({"Name": name, "Unit": unit}));
                root.insert(name, value);
            }
        };
        for (name, n) in pending.counters {
            add(name, json!(n), "Count");
        }
        for (name, mut values) in pending.histograms {
            values.truncate(MAX_VALUES);
            let unit = if name.ends_with("_seconds") {
                "Seconds"
            } else {
                "None"
            };
            add(name, json!(values), unit);
        }
        for (name, v) in pending.gauges {
            add(name, json!(v), "None");
        }
        if defs.is_empty() {
            return None;
        }
        root.insert(DIMENSION.into(), json!(function));
        root.insert(
            "_aws".into(),
            json!({"Timestamp": now_ms, "CloudWatchMetrics": [{
                "Namespace": NAMESPACE, "Dimensions": [[DIMENSION]], "Metrics": defs}]}),
        );
        Some(Value::Object(root).to_string())
    }
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

static INSTALLED: OnceLock<EmfRecorder> = OnceLock::new();

/// Makes the EMF recorder the process-wide one (once; a Lambda function calls this at its cold
/// start). False when another recorder was installed first.
pub fn install() -> bool {
    let recorder = EmfRecorder::default();
    if metrics::set_global_recorder(recorder.clone()).is_err() {
        return false;
    }
    INSTALLED.set(recorder).is_ok()
}

/// Writes what this invocation recorded as one EMF line on stdout (nothing when nothing was
/// recorded). The line is CloudWatch's protocol, not a log message, so it bypasses `tracing`.
pub fn flush() {
    let Some(recorder) = INSTALLED.get() else {
        return;
    };
    let function =
        crate::config::env_var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "unknown".into());
    if let Some(line) = recorder.take_line(&function, chrono::Utc::now().timestamp_millis()) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// `router` with one EMF line written after each request (the HTTP functions' flush).
pub fn flushing(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            let response = next.run(req).await;
            flush();
            response
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_holds_every_family_recorded_since_the_last() {
        let recorder = EmfRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("etp_firings_total", "source" => "schedule", "outcome" => "success")
                .increment(2);
            metrics::histogram!("etp_fire_lateness_seconds").record(0.5);
            metrics::histogram!("etp_store_op_duration_seconds", "op" => "get_trigger")
                .record(0.01);
            metrics::histogram!("etp_store_op_duration_seconds", "op" => "record_event")
                .record(0.02);
        });
        let line = recorder
            .take_line("fire", 1_700_000_000_000)
            .expect("a line");
        assert!(!line.contains('\n'));
        let doc: Value = serde_json::from_str(&line).expect("JSON");
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(doc["Function"], "fire");
        assert_eq!(doc["etp_firings_total_schedule_success"], 2);
        assert_eq!(doc["etp_fire_lateness_seconds"], json!([0.5]));
        assert_eq!(doc["etp_store_op_duration_seconds"], json!([0.01, 0.02]));
        // Every value has its definition, and every definition its value.
        for m in directive["Metrics"].as_array().expect("metrics") {
            assert!(!doc[m["Name"].as_str().expect("name")].is_null(), "{m}");
        }
        assert_eq!(directive["Metrics"].as_array().map(Vec::len), Some(3));
        // Flushed: the next invocation starts from nothing.
        assert_eq!(recorder.take_line("fire", 0), None);
    }
}
