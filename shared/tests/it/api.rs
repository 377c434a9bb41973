//! The HTTP API in-process: every route and error class, auth, and the exact event lifecycle,
//! with the SQLite store, a recording scheduler and a manual clock.

use etp::testing::fixtures::t0;
use std::sync::Arc;

use crate::oneshot::{self, Reply};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{DateTime, Duration, Utc};
use etp::app::App;
use etp::clock::{Clock, ManualClock};
use etp::config::{ApiToken, Settings};
use etp::embedded::SqliteStore;
use etp::testing::instants::rfc3339;
use etp::testing::{RecordingScheduler, SchedulerCall};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789";

struct Api {
    router: Router,
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    scheduler: Arc<RecordingScheduler>,
    _dir: tempfile::TempDir,
}

/// `t0() + d` as the API writes it.
fn at(d: Duration) -> String {
    rfc3339(t0() + d)
}

/// The first weekday 09:00 in Berlin after `after`, worked out day by day from the calendar
/// (independently of the cron code under test).
fn next_berlin_weekday_nine(after: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{Datelike, Weekday};
    use chrono_tz::Europe::Berlin;
    let local = after.with_timezone(&Berlin).date_naive();
    (0..8)
        .map(|d| local + Duration::days(d))
        .filter(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun))
        .filter_map(|d| {
            d.and_hms_opt(9, 0, 0)
                .and_then(|t| t.and_local_timezone(Berlin).single())
        })
        .map(|t| t.with_timezone(&Utc))
        .find(|t| *t > after)
        .unwrap()
}

fn api_with(settings: Settings) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("etp.sqlite3")).unwrap());
    let clock = Arc::new(ManualClock::new(t0()));
    let scheduler = Arc::new(RecordingScheduler::default());
    let app = App::new(
        store.clone(),
        scheduler.clone(),
        Arc::new(etp::testing::RecordingQueue::default()),
        clock.clone() as Arc<dyn Clock>,
        settings,
    );
    Api {
        router: etp::http::router(Arc::new(app), ApiToken::new(TOKEN)),
        store,
        clock,
        scheduler,
        _dir: dir,
    }
}

fn api() -> Api {
    api_with(Settings {
        stats_cache_ttl: std::time::Duration::ZERO,
        ..Settings::default()
    })
}

impl Api {
    async fn raw(&self, req: Request<Body>) -> Reply {
        oneshot::send(&self.router, req).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        self.raw(oneshot::request(method, path, Some(TOKEN), body, extra))
            .await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    async fn create(&self, body: Value) -> Value {
        let r = self.post("/triggers", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    async fn api_trigger(&self) -> String {
        let t = self
            .create(json!({"name": "orders", "kind": "api", "payload_schema": {
                "type": "object", "required": ["order_id"],
                "properties": {"order_id": {"type": "integer"}, "note": {"type": "string"}}}}))
            .await;
        t["id"].as_str().unwrap().to_string()
    }

    async fn interval_trigger(&self) -> String {
        let t = self
            .create(
                json!({"name": "tick", "kind": "scheduled", "payload": {"a": 1},
                "schedule": {"type": "interval", "every_seconds": 60}}),
            )
            .await;
        t["id"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn every_protected_route_needs_the_token() {
    let api = api();
    let routes = [
        (Method::POST, "/triggers"),
        (Method::GET, "/triggers"),
        (Method::POST, "/triggers/test"),
        (Method::GET, "/triggers/x"),
        (Method::PUT, "/triggers/x"),
        (Method::DELETE, "/triggers/x"),
        (Method::POST, "/triggers/x/pause"),
        (Method::POST, "/triggers/x/resume"),
        (Method::POST, "/triggers/x/fire"),
        (Method::POST, "/triggers/x/test"),
        (Method::GET, "/events"),
        (Method::GET, "/events/stats"),
        (Method::GET, "/events/x"),
    ];
    for (method, path) in routes {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some(TOKEN),
            Some("Basic dGVzdA=="),
        ] {
            let mut req = Request::builder().method(method.clone()).uri(path);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = api.raw(req.body(Body::empty()).unwrap()).await;
            r.problem(401, None);
            assert!(r.header("www-authenticate").is_some());
        }
    }
    // Every public route (etp::http::PUBLIC), and nothing else.
    for path in [
        "/health",
        "/openapi.json",
        "/",
        "/ui/app.js",
        "/docs",
        "/docs/",
        "/docs/index.css",
    ] {
        let r = api
            .raw(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(
        etp::http::PUBLIC.len(),
        7,
        "a new public route is tested above"
    );
    // A protected path asked with a method it lacks: the token first.
    api.raw(
        Request::builder()
            .method(Method::PATCH)
            .uri("/triggers")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .problem(401, None);
}

#[tokio::test]
async fn creates_each_kind_of_trigger() {
    let api = api();
    let once = api
        .create(json!({"name": "once", "kind": "scheduled",
            "schedule": {"type": "at", "at": at(Duration::hours(1))}}))
        .await;
    assert_eq!(once["status"], "active");
    assert_eq!(once["version"], 1);
    assert_eq!(once["next_fire_at"], at(Duration::hours(1)));
    let delay = api
        .create(json!({"name": "in ten minutes", "kind": "scheduled",
            "schedule": {"type": "interval", "every_seconds": 600, "recurring": false}}))
        .await;
    assert_eq!(delay["next_fire_at"], at(Duration::minutes(10)));
    assert_eq!(delay["schedule"]["start_at"], at(Duration::zero()));
    let cron = api
        .create(json!({"name": "weekdays", "kind": "scheduled",
            "schedule": {"type": "cron", "expression": "0 9 * * MON-FRI", "timezone": "Europe/Berlin"}}))
        .await;
    assert_eq!(
        cron["next_fire_at"],
        rfc3339(next_berlin_weekday_nine(t0()))
    );
    let r = api
        .post(
            "/triggers",
            json!({"name": "hook", "kind": "api", "payload_schema": {"type": "object"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["id"].as_str().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/triggers/{id}").as_str())
    );
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.body["next_fire_at"], Value::Null);
    let scheduled: Vec<_> = api
        .scheduler
        .calls()
        .into_iter()
        .filter(|c| matches!(c, SchedulerCall::Schedule(_)))
        .collect();
    assert_eq!(
        scheduled.len(),
        4,
        "the scheduler hears of every new trigger"
    );
}

#[tokio::test]
async fn bad_input_gets_a_precise_problem() {
    let api = api();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"kind": "api", "payload_schema": {}}), 422, "name"),
        (
            json!({"name": "x", "kind": "api", "payload_schema": {}, "colour": "red"}),
            422,
            "colour",
        ),
        (
            json!({"name": 5, "kind": "api", "payload_schema": {}}),
            422,
            "name",
        ),
        (json!({"name": "x", "kind": "sometimes"}), 422, "kind"),
        (
            json!({"name": "", "kind": "api", "payload_schema": {}}),
            422,
            "name",
        ),
        (
            json!({"name": "x", "kind": "scheduled", "schedule": {"type": "at", "at": at(-Duration::seconds(1))}}),
            422,
            "schedule.at",
        ),
        (
            json!({"name": "x", "kind": "scheduled", "schedule": {"type": "at", "at": "tomorrow"}}),
            422,
            "schedule",
        ),
        (
            json!({"name": "x", "kind": "scheduled", "schedule": {"type": "interval", "every_seconds": 0}}),
            422,
            "schedule.every_seconds",
        ),
        (
            json!({"name": "x", "kind": "scheduled", "schedule": {"type": "interval", "every_seconds": -5}}),
            422,
            "schedule",
        ),
        (
            json!({"name": "x", "kind": "scheduled", "schedule": {"type": "cron", "expression": "99 * * * *", "timezone": "UTC"}}),
            422,
            "schedule.expression",
        ),
        (
            json!({"name": "x", "kind": "scheduled", "schedule": {"type": "cron", "expression": "0 9 * * *", "timezone": "Europe/Atlantis"}}),
            422,
            "schedule.timezone",
        ),
        (
            json!({"name": "x", "kind": "scheduled", "schedule": {"type": "weekly"}}),
            422,
            "schedule.type",
        ),
        (json!({"name": "x", "kind": "scheduled"}), 422, "schedule"),
        (
            json!({"name": "x", "kind": "api", "payload_schema": {"type": 12}}),
            422,
            "payload_schema",
        ),
        (json!({"name": "x", "kind": "api"}), 422, "payload_schema"),
        (json!([1, 2]), 422, "body"),
    ];
    for (body, status, field) in cases {
        let r = api.post("/triggers", body.clone()).await;
        r.problem(status, Some(field));
        assert!(
            !r.body["detail"].as_str().unwrap_or("").is_empty(),
            "{body}"
        );
    }
    let malformed = api
        .raw(
            Request::post("/triggers")
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .body(Body::from("{\"name\": \"x\",,}"))
                .unwrap(),
        )
        .await;
    malformed.problem(400, Some("body"));
    assert!(
        malformed.body["detail"]
            .as_str()
            .unwrap()
            .contains("line 1")
    );
    let not_json = api
        .raw(
            Request::post("/triggers")
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "text/plain")
                .body(Body::from("name=x"))
                .unwrap(),
        )
        .await;
    not_json.problem(415, None);
    let empty = api.send(Method::POST, "/triggers", None, &[]).await;
    empty.problem(400, Some("body"));
    let huge = json!({"name": "x", "kind": "scheduled", "payload": {"blob": "x".repeat(300 * 1024)},
        "schedule": {"type": "interval", "every_seconds": 5}});
    let r = api.post("/triggers", huge).await;
    r.problem(413, None);
    assert!(r.body["detail"].as_str().unwrap().contains("262144"));
    api.get("/triggers?limit=0")
        .await
        .problem(400, Some("limit"));
    api.get("/triggers?kind=robot")
        .await
        .problem(400, Some("query"));
    api.get("/triggers?colour=red")
        .await
        .problem(400, Some("query"));
    api.get("/triggers?cursor=zzzz")
        .await
        .problem(422, Some("cursor"));
    api.get("/events?state=deleted")
        .await
        .problem(400, Some("query"));
    api.get("/nowhere").await.problem(404, None);
    api.send(Method::PATCH, "/triggers", None, &[])
        .await
        .problem(405, None);
    let listed = api.get("/triggers").await;
    assert_eq!(listed.body["items"], json!([]), "nothing half-written");
}

#[tokio::test]
async fn lists_with_filters_and_cursor() {
    let api = api();
    for _ in 0..3 {
        api.api_trigger().await;
        api.interval_trigger().await;
    }
    let first = api.get("/triggers?limit=4").await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 4);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = api.get(&format!("/triggers?limit=4&cursor={cursor}")).await;
    assert_eq!(second.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(second.body["next_cursor"], Value::Null);
    let api_only = api.get("/triggers?kind=api").await;
    let items = api_only.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|t| t["kind"] == "api"));
    let paused = api.get("/triggers?status=paused").await;
    assert_eq!(paused.body["items"], json!([]));
}

#[tokio::test]
async fn update_uses_optimistic_concurrency() {
    let api = api();
    let id = api.interval_trigger().await;
    let read = api.get(&format!("/triggers/{id}")).await;
    let etag = read.header("etag").unwrap().to_string();
    assert_eq!(etag, "\"1\"");
    let def = json!({"name": "tock", "kind": "scheduled",
        "schedule": {"type": "interval", "every_seconds": 30}});
    let r = api
        .send(
            Method::PUT,
            &format!("/triggers/{id}"),
            Some(def.clone()),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "tock");
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.header("etag"), Some("\"2\""));
    let stale = api
        .send(
            Method::PUT,
            &format!("/triggers/{id}"),
            Some(def.clone()),
            &[("if-match", &etag)],
        )
        .await;
    stale.problem(412, None);
    let kind = api
        .send(
            Method::PUT,
            &format!("/triggers/{id}"),
            Some(json!({"name": "x", "kind": "api", "payload_schema": {}})),
            &[],
        )
        .await;
    kind.problem(422, Some("kind"));
    let missing = api
        .send(Method::PUT, "/triggers/nope", Some(def), &[])
        .await;
    missing.problem(404, None);
    let last = api.scheduler.calls().pop().unwrap();
    assert!(
        matches!(last, SchedulerCall::Schedule(t) if t.version == 2),
        "the scheduler hears of the edit"
    );
}

#[tokio::test]
async fn pause_resume_and_delete() {
    let api = api();
    let id = api.interval_trigger().await;
    let paused = api
        .post(&format!("/triggers/{id}/pause"), json!(null))
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    assert_eq!(paused.body["status"], "paused");
    assert_eq!(paused.body["next_fire_at"], Value::Null);
    let again = api
        .send(Method::POST, &format!("/triggers/{id}/pause"), None, &[])
        .await;
    assert_eq!(
        again.body["version"], paused.body["version"],
        "pausing twice changes nothing"
    );
    let resumed = api
        .send(Method::POST, &format!("/triggers/{id}/resume"), None, &[])
        .await;
    assert_eq!(resumed.body["status"], "active");
    assert_eq!(resumed.body["next_fire_at"], at(Duration::minutes(1)));
    let fired = api
        .send(Method::POST, &format!("/triggers/{id}/test"), None, &[])
        .await;
    assert_eq!(fired.status, StatusCode::ACCEPTED);
    let del = api
        .send(Method::DELETE, &format!("/triggers/{id}"), None, &[])
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    api.get(&format!("/triggers/{id}")).await.problem(404, None);
    api.send(Method::DELETE, &format!("/triggers/{id}"), None, &[])
        .await
        .problem(404, None);
    let events = api.get(&format!("/events?trigger_id={id}")).await;
    assert_eq!(
        events.body["items"].as_array().unwrap().len(),
        1,
        "past events stay"
    );
    assert!(
        api.scheduler
            .calls()
            .contains(&SchedulerCall::Unschedule(id))
    );
}

#[tokio::test]
async fn fire_checks_schema_state_and_idempotency() {
    let api = api();
    let id = api.api_trigger().await;
    let path = format!("/triggers/{id}/fire");
    let bad = api.post(&path, json!({"order_id": "seven"})).await;
    bad.problem(422, Some("/order_id"));
    let missing = api.post(&path, json!({})).await;
    missing.problem(422, Some("/"));
    let ok = api.post(&path, json!({"order_id": 7})).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    assert_eq!(ok.body["source"], "api");
    assert_eq!(ok.body["is_test"], false);
    assert_eq!(ok.body["scheduled_for"], Value::Null);
    assert_eq!(ok.body["payload"], json!({"order_id": 7}));
    assert_eq!(ok.body["state"], "active");
    assert_eq!(ok.body["status"], "success");
    let key = [("idempotency-key", "order-7")];
    let a = api
        .send(Method::POST, &path, Some(json!({"order_id": 8})), &key)
        .await;
    let b = api
        .send(Method::POST, &path, Some(json!({"order_id": 8})), &key)
        .await;
    assert_eq!(a.body["id"], b.body["id"]);
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    let other = api
        .send(Method::POST, &path, Some(json!({"order_id": 9})), &key)
        .await;
    other.problem(422, Some("Idempotency-Key"));
    let events = api.get(&format!("/events?trigger_id={id}")).await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 2);
    api.post(&format!("/triggers/{id}/pause"), json!(null))
        .await;
    api.post(&path, json!({"order_id": 1}))
        .await
        .problem(409, None);
    let sched = api.interval_trigger().await;
    api.post(&format!("/triggers/{sched}/fire"), json!({}))
        .await
        .problem(409, None);
    api.post("/triggers/nope/fire", json!({}))
        .await
        .problem(404, None);
}

#[tokio::test]
async fn test_runs_are_marked_and_store_no_trigger() {
    let api = api();
    let id = api.api_trigger().await;
    let r = api
        .post(&format!("/triggers/{id}/test"), json!({"order_id": 1}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["source"], "manual_test");
    assert_eq!(r.body["is_test"], true);
    api.post(&format!("/triggers/{id}/test"), json!({"order_id": "x"}))
        .await
        .problem(422, Some("/order_id"));
    let adhoc = api
        .post(
            "/triggers/test",
            json!({"name": "try", "kind": "api",
            "payload_schema": {"type": "object", "required": ["n"]}, "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(adhoc.status, StatusCode::ACCEPTED, "{}", adhoc.body);
    assert_eq!(adhoc.body["outcome"], "fired");
    assert_eq!(adhoc.body["event"]["trigger_id"], Value::Null);
    assert_eq!(adhoc.body["event"]["is_test"], true);
    assert_eq!(adhoc.body["event"]["payload"], json!({"n": 1}));
    api.post(
        "/triggers/test",
        json!({"name": "try", "kind": "api",
        "payload_schema": {"type": "object", "required": ["n"]}, "payload": {}}),
    )
    .await
    .problem(422, Some("payload/"));
    let later = api
        .post(
            "/triggers/test",
            json!({"name": "later", "kind": "scheduled",
            "schedule": {"type": "interval", "every_seconds": 90}}),
        )
        .await;
    assert_eq!(later.body["outcome"], "scheduled");
    assert_eq!(later.body["scheduled_for"], at(Duration::seconds(90)));
    assert!(
        api.scheduler
            .calls()
            .iter()
            .any(|c| matches!(c, SchedulerCall::TestRun { .. }))
    );
    api.post(
        "/triggers/test",
        json!({"name": "bad", "kind": "scheduled",
        "schedule": {"type": "at", "at": "2020-01-01T00:00:00Z"}}),
    )
    .await
    .problem(422, Some("schedule.at"));
    let triggers = api.get("/triggers").await;
    assert_eq!(
        triggers.body["items"].as_array().unwrap().len(),
        1,
        "only the stored api trigger"
    );
}

/// A firing answers with the event it stored (its JSON is made once, for the store and the
/// answer): the 202's body is what a read of the event returns at the same instant.
#[tokio::test]
async fn a_firings_answer_is_the_event_as_read_back() {
    let api = api();
    let id = api.api_trigger().await;
    let fired = api
        .post(
            &format!("/triggers/{id}/fire"),
            json!({"order_id": 7, "note": "quote \" and é"}),
        )
        .await;
    assert_eq!(fired.status, StatusCode::ACCEPTED);
    let event_id = fired.body["id"].as_str().unwrap();
    let read = api.get(&format!("/events/{event_id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, fired.body);
}

#[tokio::test]
async fn lifecycle_is_exact_at_read_time() {
    let api = api();
    let id = api.api_trigger().await;
    let fired = api
        .post(&format!("/triggers/{id}/fire"), json!({"order_id": 1}))
        .await;
    let event_id = fired.body["id"].as_str().unwrap().to_string();
    assert_eq!(fired.body["archives_at"], at(Duration::hours(2)));
    assert_eq!(fired.body["expires_at"], at(Duration::hours(48)));
    let expect = |active: usize, archived: usize, state: Option<&'static str>| {
        let api = &api;
        let event_id = event_id.clone();
        async move {
            let a = api.get("/events?state=active").await;
            let b = api.get("/events?state=archived").await;
            let d = api.get("/events").await;
            assert_eq!(
                a.body["items"].as_array().unwrap().len(),
                active,
                "active at {}",
                api.clock.now()
            );
            assert_eq!(
                b.body["items"].as_array().unwrap().len(),
                archived,
                "archived at {}",
                api.clock.now()
            );
            assert_eq!(d.body, a.body, "active is the default");
            let one = api.get(&format!("/events/{event_id}")).await;
            match state {
                Some(s) => assert_eq!(one.body["state"], s),
                None => one.problem(404, None),
            }
        }
    };
    expect(1, 0, Some("active")).await;
    api.clock.set(t0() + Duration::minutes(119));
    expect(1, 0, Some("active")).await;
    api.clock
        .set(t0() + Duration::hours(2) - Duration::milliseconds(1));
    expect(1, 0, Some("active")).await;
    api.clock.set(t0() + Duration::hours(2));
    expect(0, 1, Some("archived")).await;
    api.clock
        .set(t0() + Duration::hours(47) + Duration::minutes(59));
    expect(0, 1, Some("archived")).await;
    api.clock.set(t0() + Duration::hours(48));
    expect(0, 0, None).await;
    let stats = api.get("/events/stats").await;
    assert_eq!(stats.body["items"], json!([]));
}

#[tokio::test]
async fn events_filter_and_page() {
    let api = api();
    let id = api.api_trigger().await;
    for i in 0..5 {
        api.post(&format!("/triggers/{id}/fire"), json!({"order_id": i}))
            .await;
        api.clock.advance(Duration::seconds(1));
    }
    api.post(&format!("/triggers/{id}/test"), json!({"order_id": 99}))
        .await;
    let page = api.get("/events?limit=2").await;
    let items = page.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["payload"]["order_id"], 99, "newest first");
    let next = page.body["next_cursor"].as_str().unwrap();
    let page2 = api.get(&format!("/events?limit=2&cursor={next}")).await;
    assert_eq!(page2.body["items"][0]["payload"]["order_id"], 3);
    let tests = api.get("/events?is_test=true").await;
    assert_eq!(tests.body["items"].as_array().unwrap().len(), 1);
    let api_only = api.get("/events?source=api").await;
    assert_eq!(api_only.body["items"].as_array().unwrap().len(), 5);
    let stats = api.get("/events/stats").await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.body["items"][0]["trigger_id"], id.as_str());
    assert_eq!(stats.body["items"][0]["active"], 6);
    assert_eq!(stats.body["items"][0]["archived"], 0);
    api.get("/events/missing").await.problem(404, None);
}

#[tokio::test]
async fn stats_are_cached_briefly() {
    let api = api_with(Settings {
        stats_cache_ttl: std::time::Duration::from_secs(60),
        ..Settings::default()
    });
    let id = api.api_trigger().await;
    api.post(&format!("/triggers/{id}/fire"), json!({"order_id": 1}))
        .await;
    let first = api.get("/events/stats").await;
    api.post(&format!("/triggers/{id}/fire"), json!({"order_id": 2}))
        .await;
    let cached = api.get("/events/stats").await;
    assert_eq!(
        first.body, cached.body,
        "served from the cache within its TTL"
    );
}

#[tokio::test]
async fn scheduler_failure_leaves_nothing_behind() {
    let api = api();
    api.scheduler.fail(true);
    let r = api
        .post(
            "/triggers",
            json!({"name": "x", "kind": "scheduled",
            "schedule": {"type": "interval", "every_seconds": 5}}),
        )
        .await;
    r.problem(503, None);
    assert!(
        !r.body["detail"].as_str().unwrap().contains("told to fail"),
        "no internal text"
    );
    api.scheduler.fail(false);
    assert_eq!(api.get("/triggers").await.body["items"], json!([]));
    let health = api
        .raw(Request::get("/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(health.status, StatusCode::OK);
    api.scheduler.fail(true);
    let sick = api
        .raw(Request::get("/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(sick.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(sick.body["scheduler"], false);
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let api = api();
    let doc = api
        .raw(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/triggers",
        "/triggers/test",
        "/triggers/{id}",
        "/triggers/{id}/pause",
        "/triggers/{id}/resume",
        "/triggers/{id}/fire",
        "/triggers/{id}/test",
        "/events",
        "/events/{id}",
        "/events/stats",
        "/health",
        "/openapi.json",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc.body["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn the_secret_is_shown_at_creation_and_rotation_only() {
    let a = api();
    let r = a
        .post(
            "/triggers",
            json!({"name": "hooked", "kind": "api", "payload_schema": true,
                   "target": {"url": "https://example.com/hook", "max_attempts": 3}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let first = r.body["secret"].as_str().unwrap().to_string();
    assert!(first.starts_with("whsec_"));
    assert_eq!(r.body["target"]["url"], "https://example.com/hook");
    let id = r.body["id"].as_str().unwrap().to_string();

    let got = a.get(&format!("/triggers/{id}")).await;
    assert!(got.body.get("secret").is_none(), "{}", got.body);
    let listed = a.get("/triggers").await;
    assert!(listed.body["items"][0].get("secret").is_none());

    let stale = a
        .send(
            Method::POST,
            &format!("/triggers/{id}/rotate-secret"),
            None,
            &[("if-match", "\"7\"")],
        )
        .await;
    stale.problem(412, None);
    let rotated = a
        .send(
            Method::POST,
            &format!("/triggers/{id}/rotate-secret"),
            None,
            &[],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let second = rotated.body["secret"].as_str().unwrap();
    assert!(second.starts_with("whsec_") && second != first);
    assert_eq!(rotated.header("etag"), Some("\"2\""));
    a.send(Method::POST, "/triggers/nope/rotate-secret", None, &[])
        .await
        .problem(404, None);
}

#[tokio::test]
async fn targets_that_reach_private_addresses_are_refused_by_rule() {
    let a = api();
    for (url, words) in [
        ("http://127.0.0.1:8080/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/", "private"),
        ("http://[fd00::1]/", "unique local"),
        ("http://localhost/", "this machine"),
        ("ftp://example.com/", "https or http"),
        ("https://user:pw@example.com/", "user name"),
    ] {
        let r = a
            .post(
                "/triggers",
                json!({"name": "x", "kind": "api", "payload_schema": true, "target": {"url": url}}),
            )
            .await;
        r.problem(422, Some("target.url"));
        assert!(
            r.body["detail"].as_str().unwrap().contains(words),
            "{url}: {}",
            r.body
        );
    }
    let r = a
        .post(
            "/triggers",
            json!({"name": "x", "kind": "api", "payload_schema": true,
                   "target": {"url": "https://example.com", "timeout_ms": 60000, "max_attempts": 11,
                              "headers": {"webhook-signature": "forged"}}}),
        )
        .await;
    r.problem(422, Some("target.timeout_ms"));
    r.problem(422, Some("target.max_attempts"));
    r.problem(422, Some("target.headers.webhook-signature"));
    let r = a
        .post(
            "/triggers",
            json!({"name": "x", "kind": "api", "payload_schema": true,
                   "target": {"url": "https://example.com", "retries": 3}}),
        )
        .await;
    assert_eq!(
        r.status.as_u16(),
        422,
        "unknown target fields are named: {}",
        r.body
    );
}

#[tokio::test]
async fn firing_a_trigger_with_a_target_records_a_pending_delivery() {
    let a = api();
    let t = a
        .create(
            json!({"name": "hooked", "kind": "api", "payload_schema": true,
                       "target": {"url": "https://example.com/hook"}}),
        )
        .await;
    let id = t["id"].as_str().unwrap();
    let r = a
        .post(&format!("/triggers/{id}/fire"), json!({"n": 1}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["attempts"], json!([]));
    assert_eq!(r.body["next_attempt_at"], r.body["fired_at"]);
    let plain = a.api_trigger().await;
    let r = a
        .post(&format!("/triggers/{plain}/fire"), json!({"order_id": 1}))
        .await;
    assert_eq!(
        r.body["status"], "success",
        "no target: recorded is success"
    );
}

#[tokio::test]
async fn target_header_values_are_write_only() {
    let api = api();
    let created = api
        .create(
            json!({"name": "hooked", "kind": "api", "payload_schema": {"type": "object"},
            "target": {"url": "https://example.com/hook",
                       "headers": {"authorization": "Bearer s3cr3t", "x-team": "billing"}}}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let listed = api.get("/triggers").await;
    let one = api.get(&format!("/triggers/{id}")).await;
    for body in [&created, &listed.body["items"][0], &one.body] {
        assert_eq!(
            body["target"],
            json!({"url": "https://example.com/hook", "header_names": ["authorization", "x-team"]}),
            "{body}"
        );
        assert!(!body.to_string().contains("s3cr3t"));
    }
}

#[tokio::test]
async fn hostile_instants_are_refused_naming_the_field_and_the_range() {
    let api = api();
    let cases = [
        (
            json!({"type": "interval", "every_seconds": 60, "start_at": "+262142-01-01T00:00:00Z"}),
            "schedule.start_at",
        ),
        (
            json!({"type": "at", "at": "+262142-01-01T00:00:00Z"}),
            "schedule.at",
        ),
        (
            json!({"type": "cron", "expression": "* * * * *", "timezone": "Pacific/Kiritimati",
                "start_at": "+262142-01-01T00:00:00Z"}),
            "schedule.start_at",
        ),
        (
            json!({"type": "interval", "every_seconds": 60, "end_at": "-262143-01-01T00:00:00Z"}),
            "schedule.end_at",
        ),
        (
            json!({"type": "at", "at": at(Duration::days(3653 + 2))}),
            "schedule.at",
        ),
        (
            json!({"type": "interval", "every_seconds": 315360000, "start_at": "9999-12-31T00:00:00Z"}),
            "schedule.start_at",
        ),
    ];
    for (schedule, field) in cases {
        let def = json!({"name": "far", "kind": "scheduled", "schedule": schedule});
        api.post("/triggers", def.clone())
            .await
            .problem(422, Some(field));
        api.post("/triggers/test", def)
            .await
            .problem(422, Some(field));
    }
    // Nothing was stored, and listing still works.
    let listed = api.get("/triggers").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["items"], json!([]));
}

#[tokio::test]
async fn a_pause_with_an_end_resumes_by_itself_exactly_then() {
    let api = api();
    let id = api.interval_trigger().await;
    let until = at(Duration::minutes(10) + Duration::seconds(30));
    let paused = api
        .post(&format!("/triggers/{id}/pause"), json!({"until": until}))
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    assert_eq!(paused.body["status"], "paused");
    assert_eq!(paused.body["paused_until"], until);
    // The first occurrence from `until` on: the grid stays the schedule's own.
    assert_eq!(paused.body["next_fire_at"], at(Duration::minutes(11)));
    let listed = |status: &'static str| {
        let api = &api;
        async move {
            let r = api.get(&format!("/triggers?status={status}")).await;
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["id"].as_str().unwrap().to_string(), t["status"].clone()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("paused").await, [(id.clone(), json!("paused"))]);
    assert!(listed("active").await.is_empty());
    api.clock
        .advance(Duration::minutes(10) + Duration::seconds(29));
    assert_eq!(
        api.get(&format!("/triggers/{id}")).await.body["status"],
        "paused"
    );
    api.clock.advance(Duration::seconds(1));
    let resumed = api.get(&format!("/triggers/{id}")).await;
    assert_eq!(resumed.body["status"], "active", "{}", resumed.body);
    assert_eq!(resumed.body["paused_until"], Value::Null);
    assert_eq!(listed("active").await, [(id.clone(), json!("active"))]);
    assert!(listed("paused").await.is_empty());
    // The occurrence at `until`'s next minute fires; one inside the pause does not.
    let store = api.store.as_ref();
    let clock = api.clock.as_ref();
    let inside = t0() + Duration::minutes(5);
    let fired = etp::firing::fire_scheduled(store, clock, &id, inside)
        .await
        .unwrap();
    assert!(matches!(
        fired.outcome,
        etp::firing::OccurrenceOutcome::Skipped(etp::firing::Skip::Paused)
    ));
    let after = t0() + Duration::minutes(11);
    let fired = etp::firing::fire_scheduled(store, clock, &id, after)
        .await
        .unwrap();
    assert!(
        matches!(fired.outcome, etp::firing::OccurrenceOutcome::Fired(_)),
        "{:?}",
        fired.outcome
    );
    // Bad ends name the field.
    for bad in [
        json!({"until": at(Duration::minutes(-1))}),
        json!({"until": "soon"}),
        json!({"until": "+262142-01-01T00:00:00Z"}),
    ] {
        api.post(&format!("/triggers/{id}/pause"), bad)
            .await
            .problem(422, Some("until"));
    }
    api.post(&format!("/triggers/{id}/pause"), json!({"for": 3}))
        .await
        .problem(422, None);
}

#[tokio::test]
async fn one_occurrence_can_be_skipped_without_pausing() {
    let api = api();
    let id = api.interval_trigger().await;
    let skip = at(Duration::minutes(1));
    let r = api
        .post(
            &format!("/triggers/{id}/skip"),
            json!({"scheduled_for": skip}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["skipped_occurrences"], json!([skip]));
    assert_eq!(r.body["next_fire_at"], at(Duration::minutes(2)));
    let again = api
        .post(
            &format!("/triggers/{id}/skip"),
            json!({"scheduled_for": skip}),
        )
        .await;
    assert_eq!(
        again.body["version"], r.body["version"],
        "skipping twice changes nothing"
    );
    let fired = etp::firing::fire_scheduled(
        api.store.as_ref(),
        api.clock.as_ref(),
        &id,
        t0() + Duration::minutes(1),
    )
    .await
    .unwrap();
    assert!(matches!(
        fired.outcome,
        etp::firing::OccurrenceOutcome::Skipped(etp::firing::Skip::ByUser)
    ));
    api.post(
        &format!("/triggers/{id}/skip"),
        json!({"scheduled_for": at(Duration::seconds(90))}),
    )
    .await
    .problem(422, Some("scheduled_for"));
    api.post(
        &format!("/triggers/{id}/skip"),
        json!({"scheduled_for": at(Duration::minutes(-1))}),
    )
    .await
    .problem(422, Some("scheduled_for"));
    api.post(&format!("/triggers/{id}/skip"), json!({}))
        .await
        .problem(422, Some("scheduled_for"));
    let api_id = api.api_trigger().await;
    api.post(
        &format!("/triggers/{api_id}/skip"),
        json!({"scheduled_for": skip}),
    )
    .await
    .problem(409, None);
    api.post(
        "/triggers/01jexample0000000000000000/skip",
        json!({"scheduled_for": skip}),
    )
    .await
    .problem(404, None);
}

#[tokio::test]
async fn a_dry_run_checks_the_payload_and_stores_nothing() {
    let api = api();
    let id = api.api_trigger().await;
    let r = api
        .post(
            &format!("/triggers/{id}/fire?dry_run=true"),
            json!({"order_id": 7}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["payload"], json!({"order_id": 7}));
    assert_eq!(r.body["trigger_id"], id.as_str());
    assert_eq!(r.body["source"], "api");
    api.post(
        &format!("/triggers/{id}/fire?dry_run=true"),
        json!({"order_id": "x"}),
    )
    .await
    .problem(422, Some("/order_id"));
    api.post(
        &format!("/triggers/{id}/fire?dry_run=maybe"),
        json!({"order_id": 7}),
    )
    .await
    .problem(400, None);
    let events = api.get(&format!("/events?trigger_id={id}")).await;
    assert_eq!(events.body["items"], json!([]), "a dry run stores no event");
    let got = api
        .get(&format!("/events/{}", r.body["id"].as_str().unwrap()))
        .await;
    got.problem(404, None);
}

#[tokio::test]
async fn the_occurrences_audit_says_what_became_of_each() {
    let api = api();
    let id = api.interval_trigger().await;
    let store = api.store.as_ref();
    let clock = api.clock.as_ref();
    let occ = |m: i64| t0() + Duration::minutes(m);
    // 1 fires; paused over 2 and 3; 4 fires; 5 is skipped; 6 is missed (down) beyond the grace.
    api.clock.set(occ(1));
    etp::firing::fire_scheduled(store, clock, &id, occ(1))
        .await
        .unwrap();
    api.clock.set(occ(1) + Duration::seconds(30));
    api.post(
        &format!("/triggers/{id}/pause"),
        json!({"until": occ(3) + Duration::seconds(30)}),
    )
    .await;
    api.clock.set(occ(4) + Duration::seconds(2));
    etp::firing::fire_scheduled(store, clock, &id, occ(4))
        .await
        .unwrap();
    let r = api
        .post(
            &format!("/triggers/{id}/skip"),
            json!({"scheduled_for": occ(5)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    api.clock.set(occ(30));
    let audit = api
        .get(&format!(
            "/triggers/{id}/occurrences?from={}&to={}",
            rfc3339(t0()),
            rfc3339(occ(32))
        ))
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let rows: Vec<(String, String)> = audit.body["occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .take(7)
        .map(|o| {
            (
                o["status"].as_str().unwrap().to_string(),
                o["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let row = |s: &str, r: &str| (s.to_string(), r.to_string());
    assert_eq!(
        rows,
        [
            row("fired", ""),
            row("skipped", "paused"),
            row("skipped", "paused"),
            row("fired", ""),
            row("skipped", "skipped_by_user"),
            row("skipped", "missed_beyond_grace"),
            row("skipped", "missed_beyond_grace"),
        ]
    );
    let list = audit.body["occurrences"].as_array().unwrap();
    assert_eq!(list[3]["lateness_seconds"], 2.0);
    assert!(list[0]["event_id"].is_string());
    assert_eq!(list.last().unwrap()["status"], "upcoming");
    assert_eq!(audit.body["truncated"], false);
    let bounded = api
        .get(&format!(
            "/triggers/{id}/occurrences?from={}&to={}&limit=3",
            rfc3339(t0()),
            rfc3339(occ(32))
        ))
        .await;
    assert_eq!(bounded.body["occurrences"].as_array().unwrap().len(), 3);
    assert_eq!(bounded.body["truncated"], true);
    api.get(&format!(
        "/triggers/{id}/occurrences?from={}&to={}",
        rfc3339(occ(2)),
        rfc3339(occ(1))
    ))
    .await
    .problem(422, Some("to"));
    api.get(&format!("/triggers/{id}/occurrences?from=yesterday"))
        .await
        .problem(422, Some("from"));
    api.get(&format!("/triggers/{id}/occurrences?limit=0"))
        .await
        .problem(422, Some("limit"));
    api.get("/triggers/01jexample0000000000000000/occurrences")
        .await
        .problem(404, None);
}

/// Reads served from the view cache are exact: at every instant, through pauses that end,
/// firings, skips, writes and events changing state, each one equals the same read from an app
/// with nothing cached (a new one on the same store and clock).
#[tokio::test]
async fn cached_reads_equal_uncached_reads_at_every_instant() {
    let api = api();
    let fresh = || {
        let app = App::new(
            api.store.clone(),
            Arc::new(RecordingScheduler::default()),
            Arc::new(etp::testing::RecordingQueue::default()),
            api.clock.clone() as Arc<dyn Clock>,
            Settings {
                stats_cache_ttl: std::time::Duration::ZERO,
                ..Settings::default()
            },
        );
        etp::http::router(Arc::new(app), ApiToken::new(TOKEN))
    };
    let every = api.interval_trigger().await;
    let hook = api.api_trigger().await;
    let cron = api
        .create(
            json!({"name": "cron", "kind": "scheduled", "schedule": {"type": "cron",
            "expression": "*/2 * * * *", "timezone": "Europe/Berlin"}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    api.create(json!({"name": "once", "kind": "scheduled",
        "schedule": {"type": "at", "at": at(Duration::seconds(90))}}))
        .await;
    api.post(
        &format!("/triggers/{cron}/pause"),
        json!({"until": at(Duration::seconds(150))}),
    )
    .await;
    api.post(
        &format!("/triggers/{every}/skip"),
        json!({"scheduled_for": at(Duration::minutes(3))}),
    )
    .await;
    api.post(&format!("/triggers/{hook}/fire"), json!({"order_id": 1}))
        .await;
    let paths = [
        "/triggers".to_string(),
        "/triggers?limit=2".to_string(),
        "/triggers?kind=scheduled".to_string(),
        format!("/triggers/{every}"),
        format!("/triggers/{cron}"),
        "/events?state=active".to_string(),
        "/events?state=archived".to_string(),
        "/events?limit=1".to_string(),
    ];
    // Whole seconds, the instants where something changes, and a millisecond either side.
    let mut offsets: Vec<Duration> = (0..400).map(|s| Duration::seconds(s * 3)).collect();
    for edge in [60, 90, 120, 150, 180, 240, 7_200, 7_260] {
        for ms in [-1, 0, 1] {
            offsets.push(Duration::seconds(edge) + Duration::milliseconds(ms));
        }
    }
    offsets.sort();
    for (step, offset) in offsets.into_iter().enumerate() {
        api.clock.set(t0() + offset);
        if step % 50 == 25 {
            // A write between reads: the next reads must see it.
            api.post(&format!("/triggers/{hook}/fire"), json!({"order_id": step}))
                .await;
        }
        if step == 200 {
            api.post(&format!("/triggers/{every}/pause"), json!({}))
                .await;
        }
        let uncached = fresh();
        for path in &paths {
            // Twice, so the second is a cache hit when the first filled it.
            for _ in 0..2 {
                let cached = api.get(path).await;
                let plain = oneshot::send(
                    &uncached,
                    oneshot::request(Method::GET, path, Some(TOKEN), None, &[]),
                )
                .await;
                assert_eq!(cached.status, StatusCode::OK, "{path}: {}", cached.body);
                assert_eq!(
                    cached.body,
                    plain.body,
                    "{path} at t0 + {}ms",
                    offset.num_milliseconds()
                );
                assert_eq!(cached.header("etag"), plain.header("etag"), "{path}");
            }
        }
    }
}
