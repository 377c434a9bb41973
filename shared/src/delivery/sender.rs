//! The HTTP side of a delivery: one signed POST through a client that refuses, at connect time,
//! every address the egress policy forbids.

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::Value;

use super::signing::sign;
use crate::domain::delivery::{
    Attempt, AttemptError, DeliveryPlan, MAX_RESPONSE_BODY, parse_retry_after,
};
use crate::domain::egress::{EgressPolicy, Rule};
use crate::domain::event::Event;
use crate::domain::target::{Secret, check_url};

const CONNECT_TIMEOUT: StdDuration = StdDuration::from_secs(5);
const USER_AGENT: &str = concat!("etp-webhooks/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("could not build the delivery HTTP client: {0}")]
    Client(String),
}

/// Every address of a name broke the policy.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses deliveries may not reach ({rule})")]
struct Refused {
    host: String,
    rule: Rule,
}

/// Resolves names and drops every address the policy refuses, so the connection can only go
/// where the check allowed: a name that re-resolves elsewhere (DNS rebinding) gains nothing.
struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut rule = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check(&host, a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        rule = Some(r);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), rule) {
                (true, Some(rule)) => Err(Box::new(Refused { host, rule }) as _),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// What an attempt saw, and the wait the receiver asked for (`Retry-After`), if any.
#[derive(Debug, Clone)]
pub struct Sent {
    pub attempt: Attempt,
    pub retry_after: Option<Duration>,
}

/// Sends deliveries. Built once per process: it holds the connection pool.
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
}

/// The JSON a target receives: the Standard Webhooks envelope around the event.
pub fn body(event: &Event) -> Vec<u8> {
    let mut data = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(map) = data.as_object_mut() {
        // The same body for every attempt of every series: receivers deduplicate on it.
        for delivery_state in [
            "status",
            "attempts",
            "next_attempt_at",
            "delivery_series",
            "reason",
        ] {
            map.remove(delivery_state);
        }
    }
    let envelope = serde_json::json!({
        "type": "trigger.fired",
        "timestamp": event.fired_at,
        "data": data,
    });
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// Installs the process-wide TLS crypto provider (aws-lc-rs, the one the AWS SDK uses) that
/// reqwest's rustls needs; every reqwest client in a process using this crate is built after it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

impl Sender {
    pub fn new(policy: EgressPolicy) -> Result<Self, SenderError> {
        install_crypto_provider();
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| SenderError::Client(e.to_string()))?;
        Ok(Self { client, policy })
    }

    /// Makes attempt `number` to deliver `event` as `plan` says, at `now`, signed with each of
    /// `secrets` (Standard Webhooks lists several signatures space-separated).
    pub async fn send(
        &self,
        plan: &DeliveryPlan,
        secrets: &[Secret],
        event: &Event,
        number: u32,
        now: DateTime<Utc>,
    ) -> Sent {
        let started = Instant::now();
        let mut attempt = Attempt {
            number,
            series: event.delivery_series,
            at: now,
            status_code: None,
            error: None,
            detail: None,
            duration_ms: 0,
            response_body: None,
        };
        let mut retry_after = None;
        match self.post(plan, secrets, event, now).await {
            Ok(response) => {
                attempt.status_code = Some(response.status().as_u16());
                retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, now));
                attempt.response_body = read_capped(response).await;
            }
            Err((kind, detail)) => {
                attempt.error = Some(kind);
                attempt.detail = Some(detail);
            }
        }
        attempt.duration_ms = started.elapsed().as_millis() as u64;
        Sent {
            attempt,
            retry_after,
        }
    }

    /// One signed POST of `body` (JSON) as message `id` to `url`, within `timeout`, through
    /// the same guard as deliveries: the response status, or why there was none.
    pub async fn post_signed(
        &self,
        url: &str,
        secret: &Secret,
        id: &str,
        body: Vec<u8>,
        now: DateTime<Utc>,
        timeout: StdDuration,
    ) -> Result<u16, String> {
        let url = url::Url::parse(url).map_err(|_| "the URL does not parse".to_string())?;
        check_url(&url, &self.policy)?;
        let timestamp = now.timestamp();
        let signature =
            sign(secret, id, timestamp, &body).ok_or("the signing secret is unusable")?;
        self.client
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| classify(e).1)
    }

    async fn post(
        &self,
        plan: &DeliveryPlan,
        secrets: &[Secret],
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<reqwest::Response, (AttemptError, String)> {
        let url = url::Url::parse(&plan.target.url).map_err(|_| {
            (
                AttemptError::Connect,
                "the target URL does not parse".into(),
            )
        })?;
        // Literal addresses never reach the resolver, so they are judged here.
        check_url(&url, &self.policy).map_err(|rule| (AttemptError::RefusedByPolicy, rule))?;
        let body = body(event);
        let timestamp = now.timestamp();
        let signature = secrets
            .iter()
            .map(|secret| sign(secret, &event.id, timestamp, &body))
            .collect::<Option<Vec<_>>>()
            .filter(|s| !s.is_empty())
            .ok_or((
                AttemptError::Connect,
                "the trigger's signing secret is unusable; rotate it".to_string(),
            ))?
            .join(" ");
        let mut request = self
            .client
            .post(url)
            .timeout(StdDuration::from_millis(plan.target.timeout_ms().into()))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
        for (name, value) in &plan.target.headers {
            request = request.header(name, value);
        }
        request.body(body).send().await.map_err(classify)
    }
}

/// The attempt's error kind and words for it, from what the client reported.
fn classify(e: reqwest::Error) -> (AttemptError, String) {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<Refused>() {
            return (AttemptError::RefusedByPolicy, refused.to_string());
        }
        source = s.source();
    }
    if e.is_timeout() {
        (
            AttemptError::Timeout,
            "no response within the timeout".into(),
        )
    } else {
        tracing::debug!(error = %e, "delivery could not connect");
        (
            AttemptError::Connect,
            "could not resolve the host or connect to it".into(),
        )
    }
}

/// The start of the response body, as text, at most `MAX_RESPONSE_BODY` bytes.
async fn read_capped(mut response: reqwest::Response) -> Option<String> {
    let mut kept: Vec<u8> = Vec::new();
    while kept.len() < MAX_RESPONSE_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BODY - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            // A body cut short (or too slow) still leaves the status, which is what counts.
            Ok(None) | Err(_) => break,
        }
    }
    (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// `localhost` is in every hosts file: the resolver drops its loopback addresses.
    #[tokio::test]
    async fn the_resolver_drops_forbidden_addresses() {
        let strict = GuardedResolver {
            policy: Arc::new(EgressPolicy::default()),
        };
        let refused = strict
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .err()
            .expect("localhost resolves only to loopback");
        assert!(refused.to_string().contains("loopback"), "{refused}");

        let relaxed = GuardedResolver {
            policy: Arc::new(EgressPolicy::with_allowed("127.0.0.0/8, ::1").unwrap()),
        };
        let addrs: Vec<SocketAddr> = relaxed
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .expect("allowed by the opt-in")
            .collect();
        assert!(!addrs.is_empty());
    }

    #[test]
    fn the_body_is_the_event_without_its_delivery_state() {
        let e = crate::testing::contract::event(
            None,
            crate::domain::event::EventSource::Api,
            chrono::Utc::now(),
        );
        let v: Value = serde_json::from_slice(&body(&e)).unwrap();
        assert_eq!(v["type"], "trigger.fired");
        assert_eq!(v["data"]["id"], e.id.as_str());
        assert!(v["data"].get("status").is_none());
        assert!(v["data"].get("attempts").is_none());
    }
}
