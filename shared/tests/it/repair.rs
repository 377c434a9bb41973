//! Finding and repairing failed deliveries through the HTTP API, in-process: the SQLite store
//! and queue, a receiver on loopback, a manual clock. Filters on outcome and time, redelivery
//! (same `webhook-id`, the current secret), and each refusal.

use std::sync::Arc;

use crate::oneshot::{self, Reply};
use axum::Router;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use etp::app::App;
use etp::clock::{Clock, ManualClock};
use etp::config::{ApiToken, Settings};
use etp::delivery::alert::AlertTarget;
use etp::delivery::{Deliverer, Sender};
use etp::domain::egress::EgressPolicy;
use etp::domain::target::Secret;
use etp::embedded::{DeliveryWorker, LocalDeliveryQueue, SqliteStore};
use etp::testing::RecordingScheduler;
use etp::testing::fixtures::{WebhookReceiver, t0};
use etp::testing::instants::rfc3339;
use serde_json::{Value, json};

use crate::delivery::verify;

const TOKEN: &str = "repair-token-0123456789";

/// Scripted answers by path and hit number.
async fn answer(path: String, hit: usize) -> Response {
    match (path.as_str(), hit) {
        // Refuses the first delivery for good (a 404 is final), accepts every later one.
        ("hook/fixed", 1) => StatusCode::NOT_FOUND.into_response(),
        ("hook/missing", _) => StatusCode::NOT_FOUND.into_response(),
        // Refuses the first 105 deliveries for good, then accepts.
        ("hook/flip", n) if n <= 105 => StatusCode::GONE.into_response(),
        ("hook/down", _) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        ("hook/alerts-down", _) => StatusCode::BAD_GATEWAY.into_response(),
        _ => StatusCode::OK.into_response(),
    }
}

struct Rig {
    router: Router,
    worker: DeliveryWorker,
    clock: Arc<ManualClock>,
    rx: WebhookReceiver,
    _dir: tempfile::TempDir,
}

async fn rig_with(settings: Settings) -> Rig {
    let rx = WebhookReceiver::start(|path, hit| Box::pin(answer(path.to_string(), hit))).await;
    rig_with_receiver(rx, settings).await
}

async fn rig_with_receiver(rx: WebhookReceiver, settings: Settings) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteStore::open(&dir.path().join("etp.sqlite3")).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let settings = Settings {
        egress: EgressPolicy::with_allowed("127.0.0.1/32").unwrap(),
        ..settings
    };
    let queue = LocalDeliveryQueue::default();
    let deliverer = Arc::new(
        Deliverer::new(
            Arc::new(db.clone()),
            clock.clone(),
            Arc::new(queue.clone()),
            Arc::new(Sender::new(settings.egress.clone()).unwrap()),
            settings.retry.clone(),
        )
        .with_alerts(settings.alert.clone()),
    );
    let worker = DeliveryWorker::new(Arc::new(db.clone()), clock.clone(), &queue, deliverer);
    let app = Arc::new(App::new(
        Arc::new(db),
        Arc::new(RecordingScheduler::default()),
        Arc::new(queue),
        clock.clone() as Arc<dyn Clock>,
        settings,
    ));
    Rig {
        router: etp::http::router(app, ApiToken::new(TOKEN)),
        worker,
        clock,
        rx,
        _dir: dir,
    }
}

async fn rig() -> Rig {
    rig_with(Settings::default()).await
}

impl Rig {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.request(method, path, body, &[]).await
    }

    async fn send_with(&self, method: Method, path: &str, extra: &[(&str, &str)]) -> Reply {
        self.request(method, path, None, extra).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        oneshot::send(
            &self.router,
            oneshot::request(method, path, Some(TOKEN), body, extra),
        )
        .await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> Reply {
        self.send(Method::POST, path, body).await
    }

    /// An api trigger delivering to `hook/<path>` (none with `None`): its id and secret.
    async fn trigger(&self, path: Option<&str>, extra: Value) -> (String, Option<Secret>) {
        let mut def = json!({"name": "repairable", "kind": "api",
            "payload_schema": {"type": "object"}});
        if let Some(path) = path {
            let mut target = json!({"url": self.rx.url(&format!("hook/{path}")),
                "timeout_ms": 500});
            if let (Some(t), Some(e)) = (target.as_object_mut(), extra.as_object()) {
                t.extend(e.clone());
            }
            def["target"] = target;
        }
        let r = self.post("/triggers", Some(def)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let secret = r.body["secret"]
            .as_str()
            .map(|s| Secret::from_stored(s.to_string()));
        (r.body["id"].as_str().unwrap().to_string(), secret)
    }

    async fn fire(&self, trigger_id: &str) -> String {
        let r = self
            .post(&format!("/triggers/{trigger_id}/fire"), Some(json!({})))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    async fn event(&self, id: &str) -> Value {
        let r = self.get(&format!("/events/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    /// Ids of the events a listing returns, over every page.
    async fn ids(&self, query: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if query.is_empty() { "" } else { "&" };
            let path = match &cursor {
                Some(c) => format!("/events?{query}{sep}cursor={c}"),
                None => format!("/events?{query}"),
            };
            let r = self.get(&path).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
            let items = r.body["items"].as_array().unwrap();
            out.extend(items.iter().map(|e| e["id"].as_str().unwrap().to_string()));
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn events_filter_on_outcome_and_time() {
    let r = rig().await;
    let (failing, _) = r.trigger(Some("missing"), json!({})).await;
    let (fine, _) = r.trigger(Some("ok"), json!({})).await;
    let (plain, _) = r.trigger(None, json!({})).await;
    let f1 = r.fire(&failing).await;
    r.clock.advance(Duration::minutes(1));
    let ok = r.fire(&fine).await;
    r.clock.advance(Duration::minutes(1));
    let f2 = r.fire(&failing).await;
    let no_target = r.fire(&plain).await;
    let waiting = r.fire(&fine).await;
    r.worker.run_due().await;
    let waiting_too = r.fire(&fine).await;
    let _ = waiting;

    assert_eq!(r.ids("status=failure").await, vec![f2.clone(), f1.clone()]);
    assert_eq!(r.ids("status=pending").await, vec![waiting_too.clone()]);
    let succeeded = r.ids("status=success").await;
    assert!(succeeded.contains(&ok) && succeeded.contains(&no_target));
    assert!(!succeeded.contains(&f1));

    let at = |m: i64| enc(&rfc3339(t0() + Duration::minutes(m)));
    assert_eq!(
        r.ids(&format!("status=failure&since={}", at(1))).await,
        vec![f2.clone()],
        "since is inclusive"
    );
    assert_eq!(
        r.ids(&format!("until={}", at(1))).await,
        vec![f1.clone()],
        "until is exclusive"
    );
    assert_eq!(
        r.ids(&format!("since={}&until={}", at(1), at(2))).await,
        vec![ok]
    );
    assert_eq!(
        r.ids(&format!(
            "trigger_id={failing}&status=failure&until={}",
            at(2)
        ))
        .await,
        vec![f1]
    );
    // Archived events are filtered the same way.
    r.clock.advance(Duration::hours(3));
    assert_eq!(r.ids("status=failure").await, Vec::<String>::new());
    assert_eq!(r.ids("state=archived&status=failure").await.len(), 2);

    r.get("/events?status=broken")
        .await
        .problem(400, Some("status"));
    r.get("/events?since=yesterday")
        .await
        .problem(400, Some("since"));
    r.get("/events?until=2026-13-01T00:00:00Z")
        .await
        .problem(400, Some("until"));
    r.get(&format!("/events?since={}&until={}", at(2), at(1)))
        .await
        .problem(422, Some("until"));
}

/// A status filter reads a bounded page of the window: a page with no match still carries a
/// cursor while the window goes on, and following it finds the match.
#[tokio::test]
async fn a_status_filter_reads_a_bounded_page_and_goes_on() {
    let r = rig().await;
    let (failing, _) = r.trigger(Some("missing"), json!({})).await;
    let (plain, _) = r.trigger(None, json!({})).await;
    let failed = r.fire(&failing).await;
    r.worker.run_due().await;
    for _ in 0..etp::app::STATUS_SCAN + 5 {
        r.clock.advance(Duration::milliseconds(10));
        r.fire(&plain).await;
    }
    let first = r.get("/events?status=failure&limit=10").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.body["items"],
        json!([]),
        "the newest 250 hold no failure"
    );
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("a cursor to go on");
    let second = r
        .get(&format!("/events?status=failure&limit=10&cursor={cursor}"))
        .await;
    assert_eq!(second.body["items"][0]["id"], failed.as_str());
    assert_eq!(second.body["next_cursor"], Value::Null);
}

#[tokio::test]
async fn a_failed_event_is_redelivered_with_the_same_id_and_the_current_secret() {
    let r = rig().await;
    let (id, first_secret) = r.trigger(Some("fixed"), json!({})).await;
    let event = r.fire(&id).await;
    r.worker.run_due().await;
    let failed = r.event(&event).await;
    assert_eq!(failed["status"], "failure");
    assert_eq!(failed["attempts"][0]["series"], 1);

    let rotated = r.post(&format!("/triggers/{id}/rotate-secret"), None).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let secret = Secret::from_stored(rotated.body["secret"].as_str().unwrap().to_string());

    r.clock.advance(Duration::minutes(5));
    let queued = r.post(&format!("/events/{event}/redeliver"), None).await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.body);
    assert_eq!(queued.body["status"], "pending");
    assert_eq!(queued.body["delivery_series"], 2);
    // One series at a time.
    r.post(&format!("/events/{event}/redeliver"), None)
        .await
        .problem(409, None);
    assert_eq!(r.ids("status=pending").await, vec![event.clone()]);

    assert_eq!(r.worker.run_due().await, 1);
    let seen = r.rx.seen("hook/fixed");
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].headers.get("webhook-id"),
        seen[1].headers.get("webhook-id"),
        "the same webhook-id, so receivers deduplicate"
    );
    assert!(verify(&secret, &seen[1]), "signed with the current secret");
    assert!(
        verify(&first_secret.unwrap(), &seen[1]),
        "and the rotated-out one during its grace"
    );
    let done = r.event(&event).await;
    assert_eq!(done["status"], "success");
    let series: Vec<_> = done["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["number"].clone(), a["series"].clone()))
        .collect();
    assert_eq!(series, vec![(json!(1), json!(1)), (json!(2), json!(2))]);
}

#[tokio::test]
async fn a_redelivery_gets_the_whole_retry_schedule_again() {
    let r = rig().await;
    let (id, _) = r.trigger(Some("down"), json!({"max_attempts": 1})).await;
    let event = r.fire(&id).await;
    r.worker.run_due().await;
    r.clock.advance(Duration::minutes(1));
    r.worker.run_due().await;
    assert_eq!(
        r.event(&event).await["status"],
        "failure",
        "1 retry, then given up"
    );
    let queued = r.post(&format!("/events/{event}/redeliver"), None).await;
    assert_eq!(queued.status, StatusCode::ACCEPTED);
    r.worker.run_due().await;
    let retrying = r.event(&event).await;
    assert_eq!(retrying["status"], "pending", "its own retry is left");
    r.clock.advance(Duration::minutes(1));
    r.worker.run_due().await;
    let given_up = r.event(&event).await;
    assert_eq!(given_up["status"], "failure");
    assert_eq!(given_up["attempts"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn redelivery_refusals() {
    let r = rig().await;
    // No such event, or an id that is not one.
    let unknown = ulid::Ulid::new().to_string();
    r.post(&format!("/events/{unknown}/redeliver"), None)
        .await
        .problem(404, None);
    r.post("/events/nope/redeliver", None)
        .await
        .problem(404, None);
    // A trigger without a target: nothing to deliver to.
    let (plain, _) = r.trigger(None, json!({})).await;
    let bare = r.fire(&plain).await;
    r.post(&format!("/events/{bare}/redeliver"), None)
        .await
        .problem(409, None);
    // A test run of an unstored definition has no trigger.
    let run = r
        .post(
            "/triggers/test",
            Some(json!({"name": "try", "kind": "api", "payload_schema": {}, "payload": {}})),
        )
        .await;
    let run_event = run.body["event"]["id"].as_str().unwrap().to_string();
    r.post(&format!("/events/{run_event}/redeliver"), None)
        .await
        .problem(409, None);
    // Pending: the first series is still under way.
    let (hooked, _) = r.trigger(Some("missing"), json!({})).await;
    let pending = r.fire(&hooked).await;
    r.post(&format!("/events/{pending}/redeliver"), None)
        .await
        .problem(409, None);
    r.worker.run_due().await;
    // A deleted trigger.
    let deleted = r
        .send(Method::DELETE, &format!("/triggers/{hooked}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    r.post(&format!("/events/{pending}/redeliver"), None)
        .await
        .problem(409, None);
    // Gone once expired.
    r.clock.advance(Duration::hours(49));
    r.post(&format!("/events/{bare}/redeliver"), None)
        .await
        .problem(404, None);
}

fn alert_target(r: &WebhookReceiver, path: &str) -> (AlertTarget, Secret) {
    let secret = Secret::generate();
    let target = AlertTarget {
        url: r.url(&format!("hook/{path}")),
        secret: secret.clone(),
    };
    (target, secret)
}

/// A rig whose alerts go to `hook/<path>` on its own receiver.
async fn rig_alerting(path: &str) -> (Rig, Secret) {
    // The receiver's port is only known once it runs: start it first, then the rest.
    let probe = rig().await;
    let (target, secret) = alert_target(&probe.rx, path);
    let r = rig_with_receiver(
        probe.rx,
        Settings {
            alert: Some(target),
            ..Settings::default()
        },
    )
    .await;
    (r, secret)
}

fn alerts_of(r: &Rig, path: &str) -> Vec<Value> {
    r.rx.seen(&format!("hook/{path}"))
        .iter()
        .map(|s| serde_json::from_slice(&s.body).unwrap())
        .collect()
}

#[tokio::test]
async fn delivery_pauses_after_failures_in_a_row_alerts_and_resumes() {
    let (r, alert_secret) = rig_alerting("alerts").await;
    let (id, _) = r
        .trigger(
            Some("missing"),
            json!({"max_attempts": 0, "pause_after_failures": 2}),
        )
        .await;
    let first = r.fire(&id).await;
    r.worker.run_due().await;
    let alerts = alerts_of(&r, "alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["type"], "event.delivery_failed");
    assert_eq!(alerts[0]["data"]["event_id"], first.as_str());
    assert_eq!(alerts[0]["data"]["last_attempt"]["status_code"], 404);
    let seen = r.rx.seen("hook/alerts");
    assert!(verify(&alert_secret, &seen[0]), "alerts are signed");
    let counted = r.get(&format!("/triggers/{id}")).await;
    assert_eq!(counted.body["consecutive_failures"], 1);
    assert!(counted.body.get("delivery_paused_at").is_none());

    r.fire(&id).await;
    r.worker.run_due().await;
    let kinds: Vec<_> = alerts_of(&r, "alerts")
        .iter()
        .map(|a| a["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "event.delivery_failed",
            "event.delivery_failed",
            "trigger.delivery_paused"
        ]
    );
    let paused = r.get(&format!("/triggers/{id}")).await;
    assert_eq!(paused.body["delivery_paused_at"], rfc3339(t0()));
    assert_eq!(
        paused.body["status"], "active",
        "the trigger itself still fires"
    );

    // Firings are recorded, as failures that were never sent.
    let held = r.fire(&id).await;
    let event = r.event(&held).await;
    assert_eq!(event["status"], "failure");
    assert_eq!(event["reason"], "delivery_paused");
    assert_eq!(event["attempts"], json!([]));
    r.clock.advance(Duration::minutes(1));
    assert_eq!(r.worker.run_due().await, 0);
    assert_eq!(r.rx.seen("hook/missing").len(), 2);

    let etag = paused.body["version"].to_string();
    r.send_with(
        Method::POST,
        &format!("/triggers/{id}/resume-delivery"),
        &[("if-match", "\"999\"")],
    )
    .await
    .problem(412, None);
    let resumed = r
        .send_with(
            Method::POST,
            &format!("/triggers/{id}/resume-delivery"),
            &[("if-match", &format!("\"{etag}\""))],
        )
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    assert!(resumed.body.get("delivery_paused_at").is_none());
    assert!(resumed.body.get("consecutive_failures").is_none());
    let again = r
        .post(&format!("/triggers/{id}/resume-delivery"), None)
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "resuming twice changes nothing"
    );
    assert_eq!(again.body["version"], resumed.body["version"]);
    let delivered = r.fire(&id).await;
    assert_eq!(r.event(&delivered).await["status"], "pending");
    // An event held while paused can be sent now.
    let redelivered = r.post(&format!("/events/{held}/redeliver"), None).await;
    assert_eq!(
        redelivered.status,
        StatusCode::ACCEPTED,
        "{}",
        redelivered.body
    );
    assert!(redelivered.body.get("reason").is_none());
    r.worker.run_due().await;
    assert_eq!(r.rx.seen("hook/missing").len(), 4);

    let unknown = ulid::Ulid::new().to_string();
    r.post(&format!("/triggers/{unknown}/resume-delivery"), None)
        .await
        .problem(404, None);
    let bad = r
        .post(
            "/triggers",
            Some(json!({"name": "x", "kind": "api", "payload_schema": {},
                "target": {"url": "https://example.com/h", "pause_after_failures": 0}})),
        )
        .await;
    bad.problem(422, Some("target.pause_after_failures"));
}

#[tokio::test]
async fn an_alert_that_fails_is_logged_and_changes_nothing() {
    let (r, _) = rig_alerting("alerts-down").await;
    let (id, _) = r.trigger(Some("missing"), json!({"max_attempts": 0})).await;
    let event = r.fire(&id).await;
    assert_eq!(r.worker.run_due().await, 1);
    assert_eq!(r.event(&event).await["status"], "failure");
    assert_eq!(r.rx.seen("hook/alerts-down").len(), 1);
    // No threshold: failures are not counted on the trigger.
    let t = r.get(&format!("/triggers/{id}")).await;
    assert!(t.body.get("consecutive_failures").is_none());
}

#[tokio::test]
async fn a_triggers_failed_events_are_redelivered_in_bounded_batches() {
    let r = rig().await;
    let (id, _) = r.trigger(Some("flip"), json!({"max_attempts": 0})).await;
    for _ in 0..105 {
        r.clock.advance(Duration::milliseconds(5));
        r.fire(&id).await;
    }
    while r.worker.run_due().await > 0 {}
    let failed = format!("trigger_id={id}&status=failure&limit=200");
    assert_eq!(r.ids(&failed).await.len(), 105);

    let since = enc(&rfc3339(t0()));
    let path = format!("/triggers/{id}/redeliver");
    let first = r
        .post(
            &path,
            Some(json!({"status": "failure", "since": rfc3339(t0())})),
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.body["queued"], etp::app::REDELIVER_BATCH);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("more to go")
        .to_string();
    // Queued events are pending: a second pass over them skips nothing, it does not reach them.
    let second = r
        .post(&path, Some(json!({"status": "failure", "cursor": cursor})))
        .await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.body);
    assert_eq!(second.body["queued"], 5);
    assert_eq!(second.body["next_cursor"], Value::Null);
    assert_eq!(
        r.ids(&format!(
            "trigger_id={id}&status=pending&limit=200&since={since}"
        ))
        .await
        .len(),
        105
    );
    while r.worker.run_due().await > 0 {}
    assert_eq!(
        r.ids(&failed).await,
        Vec::<String>::new(),
        "all delivered now"
    );
    let none_left = r.post(&path, None).await;
    assert_eq!(none_left.body["queued"], 0);

    r.post(&path, Some(json!({"status": "pending"})))
        .await
        .problem(422, Some("status"));
    r.post(&path, Some(json!({"since": "soon"})))
        .await
        .problem(422, Some("since"));
    r.post(&path, Some(json!({"cursor": "made-up"})))
        .await
        .problem(422, Some("cursor"));
    r.post(&path, Some(json!({"statuses": "failure"})))
        .await
        .problem(422, None);
    let (plain, _) = r.trigger(None, json!({})).await;
    r.post(&format!("/triggers/{plain}/redeliver"), None)
        .await
        .problem(409, None);
    let unknown = ulid::Ulid::new().to_string();
    r.post(&format!("/triggers/{unknown}/redeliver"), None)
        .await
        .problem(404, None);
}

#[tokio::test]
async fn openapi_documents_the_repair_routes() {
    let r = rig().await;
    let doc = r.get("/openapi.json").await.body;
    for (path, method) in [
        ("/events/{id}/redeliver", "post"),
        ("/triggers/{id}/redeliver", "post"),
        ("/triggers/{id}/resume-delivery", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "missing {method} {path}"
        );
    }
    let params = doc["paths"]["/events"]["get"]["parameters"]
        .as_array()
        .unwrap();
    for name in ["status", "since", "until"] {
        assert!(params.iter().any(|p| p["name"] == name), "missing {name}");
    }
    let target = &doc["components"]["schemas"]["Target"]["properties"];
    assert_eq!(target["pause_after_failures"]["minimum"], 1);
}
