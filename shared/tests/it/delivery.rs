//! Delivery to targets, end to end in-process: the SQLite store and queue, the real HTTP client,
//! a receiver on loopback (allowed through the opt-in), and a manual clock for the retry waits.
//! Signatures are checked with a second, independent HMAC-SHA256 written here from the spec.

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Duration;
use etp::app::App;
use etp::clock::{Clock, ManualClock};
use etp::config::Settings;
use etp::delivery::{Deliverer, Sender};
use etp::domain::delivery::{AttemptError, DeliveryPlan};
use etp::domain::egress::EgressPolicy;
use etp::domain::event::{EventStatus, EventView};
use etp::domain::target::{Secret, Target};
use etp::domain::trigger::{TriggerDefinition, TriggerKind};
use etp::embedded::{DeliveryWorker, LocalDeliveryQueue, SqliteStore};
use etp::testing::RecordingScheduler;
use etp::testing::fixtures::{Seen, WebhookReceiver, t0};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Each path scripts its answers by hit number, so every retry path is reproducible.
async fn answer(path: String, hit: usize) -> Response {
    match (path.as_str(), hit) {
        ("hook/ok", _) => (StatusCode::OK, "thanks").into_response(),
        ("hook/flaky", 1) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(10_000)).into_response()
        }
        ("hook/flaky", _) => StatusCode::NO_CONTENT.into_response(),
        ("hook/slow", 1) => {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            StatusCode::OK.into_response()
        }
        ("hook/slow", _) => StatusCode::OK.into_response(),
        ("hook/busy", 1) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "7")],
            "later",
        )
            .into_response(),
        ("hook/busy", _) => StatusCode::OK.into_response(),
        ("hook/missing", _) => StatusCode::NOT_FOUND.into_response(),
        ("hook/moved", _) => {
            (StatusCode::FOUND, [(header::LOCATION, "/hook/landing")]).into_response()
        }
        ("hook/down", _) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        _ => StatusCode::OK.into_response(),
    }
}

struct Rig {
    app: Arc<App>,
    worker: DeliveryWorker,
    clock: Arc<ManualClock>,
    rx: WebhookReceiver,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let rx = WebhookReceiver::start(|path, hit| Box::pin(answer(path.to_string(), hit))).await;

    let dir = tempfile::tempdir().unwrap();
    let db = SqliteStore::open(&dir.path().join("etp.sqlite3")).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let settings = Settings {
        egress: EgressPolicy::with_allowed("127.0.0.1/32").unwrap(),
        ..Settings::default()
    };
    let queue = LocalDeliveryQueue::default();
    let deliverer = Arc::new(Deliverer::new(
        Arc::new(db.clone()),
        clock.clone(),
        Arc::new(queue.clone()),
        Arc::new(Sender::new(settings.egress.clone()).unwrap()),
        settings.retry.clone(),
    ));
    let worker = DeliveryWorker::new(Arc::new(db.clone()), clock.clone(), &queue, deliverer);
    let app = Arc::new(App::new(
        Arc::new(db),
        Arc::new(RecordingScheduler::default()),
        Arc::new(queue),
        clock.clone() as Arc<dyn Clock>,
        settings,
    ));
    Rig {
        app,
        worker,
        clock,
        rx,
        _dir: dir,
    }
}

impl Rig {
    fn target(&self, path: &str) -> Target {
        Target {
            url: self.rx.url(&format!("hook/{path}")),
            headers: [("authorization".to_string(), "Bearer receiver".to_string())].into(),
            timeout_ms: Some(500),
            max_attempts: None,
            pause_after_failures: None,
        }
    }

    /// An api trigger delivering to `path`; returns its id and secret.
    async fn trigger(&self, target: Target) -> (String, Secret) {
        let t = self
            .app
            .create_trigger(TriggerDefinition {
                name: "hooked".into(),
                kind: TriggerKind::Api,
                schedule: None,
                payload: None,
                payload_schema: Some(json!({"type": "object"})),
                target: Some(target),
            })
            .await
            .unwrap();
        let secret = self.app.view_with_secret(t.clone()).secret.unwrap();
        (t.id, Secret::from_stored(secret))
    }

    async fn fire(&self, trigger_id: &str) -> EventView {
        self.app
            .fire(trigger_id, json!({"order": 42}), None)
            .await
            .unwrap()
            .event
    }

    async fn event(&self, id: &str) -> EventView {
        self.app.get_event(id).await.unwrap()
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.rx.seen(&format!("hook/{path}"))
    }
}

/// HMAC-SHA256 (RFC 2104) on plain SHA-256: independent of the `hmac` crate the platform uses.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| block.iter().map(|k| k ^ b).collect::<Vec<u8>>();
    let inner = Sha256::digest([pad(0x36), msg.to_vec()].concat());
    Sha256::digest([pad(0x5c), inner.to_vec()].concat()).to_vec()
}

/// Verifies a request as a Standard Webhooks receiver would.
pub(crate) fn verify(secret: &Secret, seen: &Seen) -> bool {
    let h = |name: &str| seen.headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sigs)) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    ) else {
        return false;
    };
    let key = STANDARD
        .decode(secret.expose().strip_prefix("whsec_").unwrap())
        .unwrap();
    let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", &seen.body].concat();
    let expected = format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &signed)));
    sigs.split(' ').any(|s| s == expected)
}

#[tokio::test]
async fn a_delivery_is_signed_and_carries_the_event() {
    let r = rig().await;
    let (id, secret) = r.trigger(r.target("ok")).await;
    let fired = r.fire(&id).await;
    assert_eq!(fired.event.status, EventStatus::Pending);
    assert_eq!(fired.event.next_attempt_at, Some(fired.event.fired_at));
    assert_eq!(r.worker.run_due().await, 1);

    let seen = r.seen("ok");
    assert_eq!(seen.len(), 1);
    assert!(verify(&secret, &seen[0]), "signature verifies");
    assert!(
        !verify(&Secret::generate(), &seen[0]),
        "and not with another secret"
    );
    let h = |n: &str| {
        seen[0]
            .headers
            .get(n)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(h("webhook-id"), fired.event.id);
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(
        h("authorization"),
        "Bearer receiver",
        "target headers are sent"
    );
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["type"], "trigger.fired");
    assert_eq!(body["data"]["id"], fired.event.id.as_str());
    assert_eq!(body["data"]["payload"], json!({"order": 42}));

    let after = r.event(&fired.event.id).await;
    assert_eq!(after.event.status, EventStatus::Success);
    assert_eq!(after.event.next_attempt_at, None);
    assert_eq!(after.event.attempts.len(), 1);
    let a = &after.event.attempts[0];
    assert_eq!((a.number, a.status_code, a.error), (1, Some(200), None));
    assert_eq!(a.response_body.as_deref(), Some("thanks"));

    // Delivered means never sent again, however often the queue is run.
    r.clock.advance(Duration::hours(1));
    assert_eq!(r.worker.run_due().await, 0);
    assert_eq!(r.seen("ok").len(), 1);
}

#[tokio::test]
async fn a_5xx_is_retried_after_the_backoff_with_the_same_webhook_id() {
    let r = rig().await;
    let (id, secret) = r.trigger(r.target("flaky")).await;
    let fired = r.fire(&id).await;
    r.worker.run_due().await;
    let after = r.event(&fired.event.id).await;
    assert_eq!(after.event.status, EventStatus::Pending);
    let first = &after.event.attempts[0];
    assert_eq!(first.status_code, Some(500));
    assert_eq!(
        first.response_body.as_ref().map(String::len),
        Some(4096),
        "response bodies are cut at 4 KiB"
    );
    let wait = after.event.next_attempt_at.unwrap() - t0();
    assert!(
        wait >= Duration::seconds(4) && wait <= Duration::seconds(6),
        "first retry after about 5 s, was {wait}"
    );
    // Not yet due: nothing is sent.
    r.clock.advance(Duration::seconds(3));
    assert_eq!(r.worker.run_due().await, 0);
    r.clock.advance(Duration::seconds(4));
    assert_eq!(r.worker.run_due().await, 1);

    let seen = r.seen("flaky");
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].headers.get("webhook-id"),
        seen[1].headers.get("webhook-id"),
        "the webhook id is stable across retries"
    );
    assert!(seen.iter().all(|s| verify(&secret, s)));
    let done = r.event(&fired.event.id).await;
    assert_eq!(done.event.status, EventStatus::Success);
    assert_eq!(done.event.attempts.len(), 2);
    assert_eq!(done.event.attempts[1].status_code, Some(204));
    let listed = r
        .app
        .list_events(etp::app::EventFilter {
            state: etp::domain::lifecycle::EventState::Active,
            trigger_id: Some(id),
            source: None,
            is_test: None,
            limit: 10,
            cursor: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.items.len(),
        1,
        "a retry never creates a second event"
    );
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let r = rig().await;
    let (id, _) = r.trigger(r.target("slow")).await;
    let fired = r.fire(&id).await;
    r.worker.run_due().await;
    let after = r.event(&fired.event.id).await;
    let a = &after.event.attempts[0];
    assert_eq!(
        (a.status_code, a.error),
        (None, Some(AttemptError::Timeout))
    );
    assert!(
        a.duration_ms >= 400 && a.duration_ms < 2_000,
        "{}",
        a.duration_ms
    );
    r.clock.advance(Duration::seconds(10));
    r.worker.run_due().await;
    assert_eq!(
        r.event(&fired.event.id).await.event.status,
        EventStatus::Success
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let r = rig().await;
    let (id, _) = r.trigger(r.target("busy")).await;
    let fired = r.fire(&id).await;
    r.worker.run_due().await;
    let after = r.event(&fired.event.id).await;
    assert_eq!(after.event.attempts[0].status_code, Some(429));
    let wait = after.event.next_attempt_at.unwrap() - t0();
    assert_eq!(
        wait,
        Duration::seconds(7),
        "Retry-After: 7 beats the 5 s backoff"
    );
    r.clock.advance(Duration::seconds(6));
    assert_eq!(r.worker.run_due().await, 0);
    r.clock.advance(Duration::seconds(1));
    assert_eq!(r.worker.run_due().await, 1);
    assert_eq!(
        r.event(&fired.event.id).await.event.status,
        EventStatus::Success
    );
}

#[tokio::test]
async fn a_404_is_final_and_a_redirect_is_not_followed() {
    let r = rig().await;
    for (path, code) in [("missing", 404), ("moved", 302)] {
        let (id, _) = r.trigger(r.target(path)).await;
        let fired = r.fire(&id).await;
        r.worker.run_due().await;
        r.clock.advance(Duration::hours(2));
        r.worker.run_due().await;
        let after = r.event(&fired.event.id).await;
        assert_eq!(after.event.status, EventStatus::Failure, "{path}");
        assert_eq!(after.event.attempts.len(), 1, "{path}: no retry");
        assert_eq!(after.event.attempts[0].status_code, Some(code));
        assert_eq!(after.event.next_attempt_at, None);
        assert_eq!(r.seen(path).len(), 1);
    }
    assert!(
        r.seen("landing").is_empty(),
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let r = rig().await;
    let (id, _) = r
        .trigger(Target {
            max_attempts: Some(2),
            ..r.target("down")
        })
        .await;
    let fired = r.fire(&id).await;
    for _ in 0..6 {
        r.worker.run_due().await;
        r.clock.advance(Duration::hours(1));
    }
    let after = r.event(&fired.event.id).await;
    assert_eq!(after.event.status, EventStatus::Failure);
    assert_eq!(
        after.event.attempts.len(),
        3,
        "the first attempt and 2 retries"
    );
    assert_eq!(r.seen("down").len(), 3);
}

#[tokio::test]
async fn a_rotated_secret_signs_what_follows_and_the_old_one_only_during_its_grace() {
    let r = rig().await;
    let (id, old) = r.trigger(r.target("ok")).await;
    let rotated = r.app.rotate_secret(&id, None).await.unwrap();
    let new = Secret::from_stored(r.app.view_with_secret(rotated).secret.unwrap());
    assert_ne!(old, new);
    r.fire(&id).await;
    r.worker.run_due().await;
    let seen = r.seen("ok");
    assert!(verify(&new, &seen[0]), "signed with the new secret");
    assert!(
        verify(&old, &seen[0]),
        "and, during the grace after rotation, with the old one too"
    );
    r.clock.advance(Duration::hours(24));
    r.fire(&id).await;
    r.worker.run_due().await;
    let seen = r.seen("ok");
    assert!(verify(&new, &seen[1]));
    assert!(!verify(&old, &seen[1]), "the grace is over");
}

#[tokio::test]
async fn pending_retries_are_signed_with_the_secret_current_at_each_attempt() {
    let r = rig().await;
    let (id, old) = r.trigger(r.target("flaky")).await;
    let fired = r.fire(&id).await;
    r.worker.run_due().await;
    // Rotated (the old secret leaked, say) while the retry waits; the retry comes after the
    // rotation's 24 h grace.
    let rotated = r.app.rotate_secret(&id, None).await.unwrap();
    let new = Secret::from_stored(r.app.view_with_secret(rotated).secret.unwrap());
    r.clock.advance(Duration::hours(25));
    r.worker.run_due().await;
    let seen = r.seen("flaky");
    assert_eq!(seen.len(), 2, "first attempt and the retry");
    assert!(verify(&old, &seen[0]));
    assert!(verify(&new, &seen[1]), "the retry carries the new secret");
    assert!(
        !verify(&old, &seen[1]),
        "and, with the rotation's grace over, not the old one"
    );
    assert_eq!(
        r.event(&fired.event.id).await.event.status,
        EventStatus::Success
    );
}

#[tokio::test]
async fn a_deleted_triggers_pending_retries_stop() {
    let r = rig().await;
    let (id, _) = r.trigger(r.target("down")).await;
    let fired = r.fire(&id).await;
    r.worker.run_due().await;
    r.app.delete_trigger(&id, None).await.unwrap();
    r.clock.advance(Duration::hours(1));
    r.worker.run_due().await;
    assert_eq!(r.seen("down").len(), 1, "nothing sent after the delete");
    let after = r.event(&fired.event.id).await;
    assert_eq!(after.event.status, EventStatus::Failure);
    assert_eq!(after.event.next_attempt_at, None);
}

#[tokio::test]
async fn test_runs_are_delivered_with_their_own_secret() {
    let r = rig().await;
    let run = r
        .app
        .test_definition(TriggerDefinition {
            name: "try".into(),
            kind: TriggerKind::Api,
            schedule: None,
            payload: Some(json!({"n": 1})),
            payload_schema: Some(json!({"type": "object"})),
            target: Some(r.target("ok")),
        })
        .await
        .unwrap();
    let etp::app::TestRunOutcome::Fired { event, secret } = run else {
        panic!("an api test run fires at once");
    };
    r.worker.run_due().await;
    let seen = r.seen("ok");
    assert_eq!(seen.len(), 1);
    assert!(verify(&Secret::from_stored(secret.unwrap()), &seen[0]));
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["data"]["is_test"], true);
    assert_eq!(
        r.event(&event.event.id).await.event.status,
        EventStatus::Success
    );
}

/// Every forbidden address, however spelled, is refused by the sender itself (so a target
/// stored before a policy change cannot reach it either), without the opt-in.
#[tokio::test]
async fn the_sender_refuses_forbidden_addresses_at_connect_time() {
    let sender = Sender::new(EgressPolicy::default()).unwrap();
    let mut urls: Vec<String> = [
        "http://127.0.0.1:9/",
        "http://2130706433:9/",
        "http://0177.0.0.1:9/",
        "http://0x7f000001:9/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://[::ffff:7f00:1]:9/",
        "http://[64:ff9b::7f00:1]:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://10.0.0.1:9/",
        "http://172.16.0.1:9/",
        "http://192.168.0.1:9/",
        "http://100.64.0.1:9/",
        "http://0.0.0.0:9/",
        "http://255.255.255.255:9/",
        "http://224.0.0.1:9/",
        "http://192.0.2.1:9/",
        "http://[fc00::1]:9/",
        "http://[fe80::1]:9/",
        "http://localhost:9/",
    ]
    .map(String::from)
    .to_vec();
    // Names that resolve to loopback through the hosts file pass the name check and are caught
    // after lookup (the resolver itself is unit-tested with `localhost`).
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    for name in [hostname.trim(), "ip6-localhost", "ip6-loopback"] {
        let resolved: Vec<_> = match tokio::net::lookup_host((name, 9)).await {
            Ok(addrs) => addrs.collect(),
            Err(_) => continue,
        };
        let all_blocked = resolved
            .iter()
            .all(|a| etp::domain::egress::blocked_by(a.ip()).is_some());
        if !name.is_empty() && !resolved.is_empty() && all_blocked {
            urls.push(format!("http://{name}:9/"));
        }
    }
    let event = etp::testing::contract::event(None, etp::domain::event::EventSource::Api, t0());
    for url in urls {
        let plan = DeliveryPlan {
            target: Target {
                url: url.clone(),
                headers: Default::default(),
                timeout_ms: Some(1000),
                max_attempts: None,
                pause_after_failures: None,
            },
            secret: Secret::generate(),
        };
        let sent = sender
            .send(&plan, std::slice::from_ref(&plan.secret), &event, 1, t0())
            .await;
        assert_eq!(
            sent.attempt.error,
            Some(AttemptError::RefusedByPolicy),
            "{url}: {:?}",
            sent.attempt
        );
        assert_eq!(sent.attempt.status_code, None);
        assert!(
            sent.attempt.detail.is_some(),
            "{url}: the refusal names the rule"
        );
    }
}
