//! The Prometheus text renderer behind `GET /metrics`: a recorder installed once per process,
//! with the buckets each histogram family needs.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::{DURATION_BUCKETS, FIRE_LATENESS, LATENESS_BUCKETS};

/// A recorder with this platform's buckets (histograms, not summaries), not installed: the
/// process-wide one comes from [`installed`]; tests make their own and set it per thread.
pub fn recorder() -> PrometheusRecorder {
    let builder = PrometheusBuilder::new();
    // Both bucket lists are non-empty constants: these cannot fail.
    let builder = builder
        .set_buckets_for_metric(Matcher::Full(FIRE_LATENESS.into()), LATENESS_BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new());
    let builder = builder
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".into()),
            DURATION_BUCKETS,
        )
        .unwrap_or_else(|_| PrometheusBuilder::new());
    builder.build_recorder()
}

/// The process-wide Prometheus recorder, installed on first use; `None` when another recorder
/// (the EMF one, on Lambda) was installed first.
pub fn installed() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            super::handles::note_installed();
            Some(handle)
        })
        .clone()
}

/// How often recorded histogram values are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds recorded histogram values into their buckets every few seconds, forever: without
/// it they pile up in memory until the next scrape, and nobody may ever scrape.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}
