//! Metrics read back through `GET /metrics` after real firings, skips and deliveries, with
//! their values: the SQLite store behind the timing decorator, the local timer and delivery
//! worker, a receiver on loopback and a manual clock. Each test records into its own
//! Prometheus recorder, set for its thread (a `#[tokio::test]` runs every task there), so tests
//! running beside it cannot bump its numbers.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::oneshot;
use axum::Router;
use axum::http::{Method, StatusCode};
use chrono::Duration;
use etp::app::App;
use etp::clock::{Clock, ManualClock};
use etp::config::{ApiToken, Settings};
use etp::delivery::{Deliverer, Sender};
use etp::domain::egress::EgressPolicy;
use etp::embedded::{DeliveryWorker, LocalDeliveryQueue, LocalTimer, SqliteStore};
use etp::ports::Store;
use etp::telemetry::timed_store::Timed;
use etp::testing::fixtures::{WebhookReceiver, t0};
use etp::testing::instants::rfc3339;
use serde_json::{Value, json};

const TOKEN: &str = "metrics-token-0123456789";

struct Rig {
    router: Router,
    timer: LocalTimer,
    worker: DeliveryWorker,
    clock: Arc<ManualClock>,
    rx: WebhookReceiver,
    _dir: tempfile::TempDir,
}

async fn rig(handle: metrics_exporter_prometheus::PrometheusHandle) -> Rig {
    let rx = WebhookReceiver::start(|path, _| {
        let status = if path.ends_with("down") {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        Box::pin(async move { axum::response::IntoResponse::into_response(status) })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteStore::open(&dir.path().join("etp.sqlite3")).unwrap();
    let timed: Arc<dyn Store> = Arc::new(Timed(Arc::new(db.clone())));
    let clock = Arc::new(ManualClock::new(t0()));
    let settings = Settings {
        egress: EgressPolicy::with_allowed("127.0.0.1/32").unwrap(),
        ..Settings::default()
    };
    let queue = LocalDeliveryQueue::default();
    let deliverer = Arc::new(Deliverer::new(
        timed.clone(),
        clock.clone(),
        Arc::new(queue.clone()),
        Arc::new(Sender::new(settings.egress.clone()).unwrap()),
        settings.retry.clone(),
    ));
    let worker = DeliveryWorker::new(Arc::new(db.clone()), clock.clone(), &queue, deliverer);
    let timer = LocalTimer::open(
        timed.clone(),
        Arc::new(db.clone()),
        Arc::new(queue.clone()),
        clock.clone(),
        settings.catch_up_grace,
    )
    .await
    .unwrap();
    let app = App::new(
        timed,
        Arc::new(timer.clone()),
        Arc::new(queue),
        clock.clone() as Arc<dyn Clock>,
        settings,
    )
    .with_metrics(handle);
    Rig {
        router: etp::http::router(Arc::new(app), ApiToken::new(TOKEN)),
        timer,
        worker,
        clock,
        rx,
        _dir: dir,
    }
}

impl Rig {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, String) {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let r = oneshot::send(
            &self.router,
            oneshot::request(method, path, Some(TOKEN), body, &[]),
        )
        .await;
        (r.status, r.text)
    }

    async fn create(&self, def: Value) -> String {
        let (status, body) = self.call("POST", "/triggers", Some(def)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    async fn fire(&self, id: &str) {
        let (status, body) = self
            .call(
                "POST",
                &format!("/triggers/{id}/fire"),
                Some(json!({"n": 1})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }

    async fn metrics(&self) -> Metrics {
        let (status, body) = self.call("GET", "/metrics", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Metrics(body)
    }
}

/// A Prometheus text exposition, read by family and labels (in any order).
struct Metrics(String);

impl Metrics {
    /// The sample `name{labels}`; `None` when there is none.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
        self.0.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (family, rest) = series.split_once('{').unwrap_or((series, "}"));
            if family != name {
                return None;
            }
            let got: BTreeMap<&str, &str> = rest
                .trim_end_matches('}')
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            (got == want).then(|| value.parse().ok()).flatten()
        })
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{}", self.0))
    }
}

#[tokio::test]
async fn firings_skips_deliveries_and_requests_are_counted() {
    let recorder = etp::telemetry::prometheus::recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let r = rig(recorder.handle()).await;

    // Two api firings.
    let api = r
        .create(json!({"name": "orders", "kind": "api", "payload_schema": {"type": "object"}}))
        .await;
    r.fire(&api).await;
    r.fire(&api).await;

    // A scheduled occurrence fired 2 s late; a one-time trigger missed beyond the grace.
    let tick = r
        .create(json!({"name": "tick", "kind": "scheduled",
                       "schedule": {"type": "interval", "every_seconds": 60}}))
        .await;
    r.clock.set(t0() + Duration::seconds(62));
    assert_eq!(r.timer.run_due().await, 1);
    let (status, _) = r.call("DELETE", &format!("/triggers/{tick}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    r.create(json!({"name": "once", "kind": "scheduled",
                    "schedule": {"type": "at", "at": rfc3339(t0() + Duration::minutes(5))}}))
        .await;
    r.clock.set(t0() + Duration::minutes(30));
    r.timer.run_due().await;

    // Deliveries: one lands, one gets a 503 with no retry left, one a 503 with a retry to come.
    let ok = r
        .create(
            json!({"name": "ok", "kind": "api", "payload_schema": {"type": "object"},
                       "target": {"url": r.rx.url("hook/ok"), "timeout_ms": 2000}}),
        )
        .await;
    let down = r
        .create(
            json!({"name": "down", "kind": "api", "payload_schema": {"type": "object"},
                       "target": {"url": r.rx.url("hook/down"), "timeout_ms": 2000,
                                  "max_attempts": 0}}),
        )
        .await;
    let again = r
        .create(
            json!({"name": "again", "kind": "api", "payload_schema": {"type": "object"},
                       "target": {"url": r.rx.url("hook/down"), "timeout_ms": 2000,
                                  "max_attempts": 1}}),
        )
        .await;
    r.fire(&ok).await;
    r.fire(&down).await;
    r.fire(&again).await;
    let m = r.metrics().await;
    assert_eq!(m.value("etp_deliveries_pending", &[]), 3.0);
    assert_eq!(r.worker.run_due().await, 3);

    let (status, _) = r.call("GET", "/no/such/route", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let m = r.metrics().await;
    let firings = |source, outcome| {
        m.get(
            "etp_firings_total",
            &[("source", source), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(firings("api", "success"), 5.0, "{}", m.0);
    assert_eq!(firings("schedule", "success"), 1.0);
    assert_eq!(firings("api", "failure"), 0.0);
    // Lateness: one firing, 2 s late, in the 2.5 s bucket and not the 1 s one.
    assert_eq!(m.value("etp_fire_lateness_seconds_count", &[]), 1.0);
    assert_eq!(m.value("etp_fire_lateness_seconds_sum", &[]), 2.0);
    assert_eq!(
        m.value("etp_fire_lateness_seconds_bucket", &[("le", "1")]),
        0.0
    );
    assert_eq!(
        m.value("etp_fire_lateness_seconds_bucket", &[("le", "2.5")]),
        1.0
    );
    assert_eq!(
        m.value("etp_fire_lateness_seconds_bucket", &[("le", "60")]),
        1.0
    );
    assert_eq!(
        m.value(
            "etp_occurrences_skipped_total",
            &[("reason", "missed_beyond_grace")]
        ),
        1.0
    );
    assert_eq!(
        m.value("etp_deliveries_total", &[("outcome", "success")]),
        1.0
    );
    assert_eq!(
        m.value("etp_deliveries_total", &[("outcome", "failure")]),
        1.0
    );
    assert_eq!(
        m.value("etp_deliveries_total", &[("outcome", "retry")]),
        1.0
    );
    assert_eq!(
        m.get("etp_deliveries_total", &[("outcome", "refused")]),
        None
    );
    assert_eq!(m.value("etp_delivery_duration_seconds_count", &[]), 3.0);
    // The retry waits for its time.
    assert_eq!(m.value("etp_deliveries_pending", &[]), 1.0);
    // Routes by template, never by raw path (no id in a label).
    assert_eq!(
        m.value(
            "etp_http_requests_total",
            &[("route", "/triggers/{id}/fire"), ("status", "202")]
        ),
        5.0
    );
    assert_eq!(
        m.value(
            "etp_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "etp_http_request_duration_seconds_count",
            &[("route", "/triggers")]
        ),
        6.0
    );
    assert!(!m.0.contains(&api), "an id leaked into a label");
    // Every recorded firing was one timed store write.
    assert_eq!(
        m.value(
            "etp_store_op_duration_seconds_count",
            &[("op", "record_event")]
        ),
        6.0
    );
    // Stored triggers now: four api ones and the one-time one (tick was deleted).
    assert_eq!(
        m.value("etp_triggers", &[("kind", "api"), ("status", "active")]),
        4.0
    );
    assert_eq!(
        m.value(
            "etp_triggers",
            &[("kind", "scheduled"), ("status", "active")]
        ) + m.value(
            "etp_triggers",
            &[("kind", "scheduled"), ("status", "completed")]
        ),
        1.0
    );
}

#[tokio::test]
async fn metrics_need_the_token_and_speak_prometheus_text() {
    let recorder = etp::telemetry::prometheus::recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let r = rig(recorder.handle()).await;
    let scrape = |token| oneshot::request(Method::GET, "/metrics", token, None, &[]);
    let res = oneshot::send(&r.router, scrape(None)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = oneshot::send(&r.router, scrape(Some(TOKEN))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.header("content-type"),
        Some(etp::http::scrape::PROMETHEUS_TEXT)
    );
    // A request is counted once answered: the refused scrape is there, with its status.
    let m = r.metrics().await;
    assert_eq!(
        m.value(
            "etp_http_requests_total",
            &[("route", "/metrics"), ("status", "401")]
        ),
        1.0
    );
}
