//! Reading the metrics: gauges the store counts cheaply are refreshed, then the Prometheus
//! text is rendered.

use super::App;
#[cfg(feature = "prometheus")]
use crate::domain::trigger::{TriggerKind, TriggerStatus};
#[cfg(feature = "prometheus")]
use crate::telemetry;

#[cfg(feature = "prometheus")]
const KINDS: [TriggerKind; 2] = [TriggerKind::Scheduled, TriggerKind::Api];
#[cfg(feature = "prometheus")]
const STATUSES: [TriggerStatus; 4] = [
    TriggerStatus::Active,
    TriggerStatus::Paused,
    TriggerStatus::Completed,
    TriggerStatus::Broken,
];

impl App {
    /// Without the Prometheus exporter (the Lambda functions, which write EMF): nothing.
    #[cfg(not(feature = "prometheus"))]
    pub async fn render_metrics(&self) -> Option<String> {
        None
    }

    /// The Prometheus text of every family, or `None` where this process records metrics
    /// another way (EMF on Lambda). A store that cannot count leaves its gauges as they were.
    #[cfg(feature = "prometheus")]
    pub async fn render_metrics(&self) -> Option<String> {
        let handle = self.metrics.as_ref()?;
        match self.store.trigger_counts().await {
            Ok(Some(counts)) => {
                for kind in KINDS {
                    for status in STATUSES {
                        let n = counts
                            .iter()
                            .filter(|(k, s, _)| *k == kind && *s == status)
                            .map(|(_, _, n)| n)
                            .sum();
                        telemetry::triggers(kind.as_str(), status.as_str(), n);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not count triggers for the metrics"),
        }
        match self.store.pending_deliveries().await {
            Ok(Some(n)) => telemetry::pending_deliveries(n),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not count pending deliveries for the metrics")
            }
        }
        Some(handle.render())
    }
}
