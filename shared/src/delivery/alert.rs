//! Failure notifications: an operational webhook (`ETP_ALERT_URL`) told, signed like every
//! delivery, when an event exhausts its retries or a trigger's delivery is auto-paused.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Sender;
use crate::domain::event::Event;
use crate::domain::target::Secret;
use crate::domain::trigger::Trigger;

/// How long one notification may take; then it is given up (and logged).
const TIMEOUT: StdDuration = StdDuration::from_secs(5);

/// Where notifications go and the secret that signs them (`ETP_ALERT_URL`, `ETP_ALERT_SECRET`).
#[derive(Debug, Clone)]
pub struct AlertTarget {
    pub url: String,
    pub secret: Secret,
}

/// Sends notifications, best-effort: one try within [`TIMEOUT`], failures logged, never an
/// error to the delivery that caused them.
pub struct Alerts {
    target: AlertTarget,
    sender: Arc<Sender>,
}

impl Alerts {
    pub fn new(target: AlertTarget, sender: Arc<Sender>) -> Self {
        Self { target, sender }
    }

    /// `event.delivery_failed`: `event` has no retry left.
    pub async fn delivery_failed(&self, event: &Event, now: DateTime<Utc>) {
        let data = json!({
            "event_id": event.id,
            "trigger_id": event.trigger_id,
            "trigger_name": event.trigger_name,
            "delivery_series": event.delivery_series,
            "attempts": event.series_attempts(),
            "last_attempt": event.attempts.last(),
        });
        let id = format!("delivery_failed_{}_{}", event.id, event.delivery_series);
        self.send("event.delivery_failed", &id, data, now).await;
    }

    /// `trigger.delivery_paused`: `trigger`'s delivery has just been paused.
    pub async fn delivery_paused(&self, trigger: &Trigger, now: DateTime<Utc>) {
        let data = json!({
            "trigger_id": trigger.id,
            "trigger_name": trigger.name,
            "consecutive_failures": trigger.consecutive_failures,
            "delivery_paused_at": trigger.delivery_paused_at,
        });
        let id = format!("delivery_paused_{}_{}", trigger.id, trigger.version);
        self.send("trigger.delivery_paused", &id, data, now).await;
    }

    async fn send(&self, kind: &str, id: &str, data: Value, now: DateTime<Utc>) {
        let body = json!({"type": kind, "timestamp": now, "data": data}).to_string();
        let sent = self
            .sender
            .post_signed(
                &self.target.url,
                &self.target.secret,
                id,
                body.into_bytes(),
                now,
                TIMEOUT,
            )
            .await;
        match sent {
            Ok(status) if (200..300).contains(&status) => {
                tracing::info!(kind, id, status, "alert sent");
            }
            Ok(status) => tracing::warn!(kind, id, status, "alert refused by its receiver"),
            Err(detail) => tracing::warn!(kind, id, detail, "alert not sent"),
        }
    }
}
