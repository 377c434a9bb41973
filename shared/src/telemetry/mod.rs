//! Metrics: the families every runtime records (their names and labels are a contract), recorded
//! through the `metrics` facade; the local server renders them as Prometheus text, the Lambda
//! functions write them as CloudWatch EMF lines.

pub mod emf;
pub mod handles;
pub mod http;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod timed_store;

use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{Counter, Histogram};

use self::handles::Cached;

use crate::domain::event::EventSource;
use crate::firing::Skip;

pub const FIRINGS: &str = "etp_firings_total";
pub const FIRE_LATENESS: &str = "etp_fire_lateness_seconds";
pub const SKIPPED: &str = "etp_occurrences_skipped_total";
pub const DELIVERIES: &str = "etp_deliveries_total";
pub const DELIVERY_DURATION: &str = "etp_delivery_duration_seconds";
pub const DELIVERIES_PENDING: &str = "etp_deliveries_pending";
pub const HTTP_REQUESTS: &str = "etp_http_requests_total";
pub const HTTP_DURATION: &str = "etp_http_request_duration_seconds";
pub const STORE_OP_DURATION: &str = "etp_store_op_duration_seconds";
pub const TRIGGERS: &str = "etp_triggers";

/// Lateness buckets, seconds: the local timer is late by milliseconds, EventBridge Scheduler
/// by up to a minute.
pub const LATENESS_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Duration buckets, seconds: a SQLite read takes a millisecond, a slow webhook up to 30 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How recording one firing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireOutcome {
    /// A new event was written.
    Success,
    /// The firing had been recorded before (a redelivered occurrence, a replayed
    /// `Idempotency-Key`): nothing new was written.
    Duplicate,
    /// The store refused or failed the write.
    Failure,
}

impl FireOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FireOutcome::Success => "success",
            FireOutcome::Duplicate => "duplicate",
            FireOutcome::Failure => "failure",
        }
    }
}

/// One firing recorded (or not); a new scheduled one also records its lateness.
pub fn fired(
    source: EventSource,
    outcome: FireOutcome,
    lateness: Option<(DateTime<Utc>, DateTime<Utc>)>,
) {
    static BY_SOURCE_OUTCOME: [[Cached<Counter>; 3]; 3] =
        [const { [const { Cached::new() }; 3] }; 3];
    static LATENESS: Cached<Histogram> = Cached::new();
    let s = match source {
        EventSource::Schedule => 0,
        EventSource::Api => 1,
        EventSource::ManualTest => 2,
    };
    let o = match outcome {
        FireOutcome::Success => 0,
        FireOutcome::Duplicate => 1,
        FireOutcome::Failure => 2,
    };
    BY_SOURCE_OUTCOME[s][o].with(
        || metrics::counter!(FIRINGS, "source" => source.as_str(), "outcome" => outcome.as_str()),
        |c| c.increment(1),
    );
    if let (FireOutcome::Success, Some((scheduled_for, fired_at))) = (outcome, lateness) {
        let late = (fired_at - scheduled_for).num_milliseconds().max(0) as f64 / 1000.0;
        LATENESS.with(|| metrics::histogram!(FIRE_LATENESS), |h| h.record(late));
    }
}

/// Why an occurrence did not fire, as the `reason` label.
pub fn skip_reason(skip: Skip) -> &'static str {
    match skip {
        Skip::Deleted => "deleted",
        Skip::Paused => "paused",
        Skip::Completed => "completed",
        Skip::NotScheduled => "not_scheduled",
        Skip::Broken => "broken",
        Skip::ByUser => "skipped_by_user",
    }
}

/// An occurrence that did not fire; `reason` is a [`skip_reason`] or `missed_beyond_grace` (older than the
/// catch-up grace).
pub fn skipped(reason: &'static str) {
    metrics::counter!(SKIPPED, "reason" => reason).increment(1);
}

/// How one delivery attempt ended: `success`, `retry` (another attempt is planned), `failure`
/// (final) or `refused` (the SSRF guard refused every address; final).
pub fn delivery_attempt(outcome: &'static str, took: Duration) {
    metrics::counter!(DELIVERIES, "outcome" => outcome).increment(1);
    metrics::histogram!(DELIVERY_DURATION).record(took.as_secs_f64());
}

/// Gauges computed when metrics are read (the local store counts them cheaply).
pub fn pending_deliveries(n: u64) {
    metrics::gauge!(DELIVERIES_PENDING).set(n as f64);
}

/// Stored triggers of one kind and status.
pub fn triggers(kind: &'static str, status: &'static str, n: u64) {
    metrics::gauge!(TRIGGERS, "kind" => kind, "status" => status).set(n as f64);
}
