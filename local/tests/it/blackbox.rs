//! Black-box tests: the real `etp-local` binary on a free port, driven over HTTP.

use std::path::Path;
use std::time::{Duration, Instant};

use etp::testing::fixtures::{LocalServer, WebhookReceiver};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

const TOKEN: &str = "blackbox-token-0123456789";

async fn start(data_dir: &Path) -> LocalServer {
    start_with(data_dir, &[]).await
}

async fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> LocalServer {
    let mut all = vec![("RUST_LOG", "warn")];
    all.extend_from_slice(env);
    LocalServer::start(
        Path::new(env!("CARGO_BIN_EXE_etp-local")),
        data_dir,
        TOKEN,
        &all,
    )
    .await
    .expect("etp-local starts")
}

/// What this suite asks of a running server beyond the shared fixture.
trait Drive {
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value);
    async fn post_ok(&self, path: &str, body: Value) -> Value;
    async fn events(&self, trigger_id: &str) -> Vec<Value>;
}

impl Drive for LocalServer {
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let a = LocalServer::call(self, method, path, body.as_ref())
            .await
            .expect("request");
        (a.status, a.body)
    }

    async fn post_ok(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.request(reqwest::Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&status), "{path}: {status} {body}");
        body
    }

    async fn events(&self, trigger_id: &str) -> Vec<Value> {
        let (_, body) = self
            .request(
                reqwest::Method::GET,
                &format!("/events?trigger_id={trigger_id}&limit=200"),
                None,
            )
            .await;
        body["items"].as_array().cloned().unwrap_or_default()
    }
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .expect("a timestamp")
}

#[tokio::test]
async fn a_one_time_trigger_fires_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let at = (Utc::now() + chrono::Duration::seconds(2))
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    let t = s
        .post_ok(
            "/triggers",
            json!({"name": "soon", "kind": "scheduled",
            "schedule": {"type": "at", "at": at}}),
        )
        .await;
    let id = t["id"].as_str().unwrap();
    let due = time(&json!(at));
    let deadline = Instant::now() + Duration::from_secs(5);
    let event = loop {
        if let Some(e) = s.events(id).await.pop() {
            break e;
        }
        assert!(Instant::now() < deadline, "no event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lateness = time(&event["fired_at"]) - time(&event["scheduled_for"]);
    assert_eq!(time(&event["scheduled_for"]), due);
    assert!(
        lateness < chrono::Duration::seconds(1),
        "late by {lateness}"
    );
    assert!(lateness >= chrono::Duration::zero(), "early by {lateness}");
    let (_, t) = s
        .request(reqwest::Method::GET, &format!("/triggers/{id}"), None)
        .await;
    assert_eq!(t["status"], "completed");
}

#[tokio::test]
async fn an_interval_fires_repeatedly_until_paused_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let t = s
        .post_ok(
            "/triggers",
            json!({"name": "every second", "kind": "scheduled",
            "schedule": {"type": "interval", "every_seconds": 1}}),
        )
        .await;
    let id = t["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let fired = s.events(id).await.len();
    assert!(fired >= 3, "only {fired} firings in 3.5 s");
    s.post_ok(&format!("/triggers/{id}/pause"), json!(null))
        .await;
    let at_pause = s.events(id).await.len();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(
        s.events(id).await.len(),
        at_pause,
        "paused triggers do not fire"
    );
    s.post_ok(&format!("/triggers/{id}/resume"), json!(null))
        .await;
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let resumed = s.events(id).await.len();
    assert!(resumed >= at_pause + 2, "resumed: {resumed} vs {at_pause}");
    let (status, _) = s
        .request(reqwest::Method::DELETE, &format!("/triggers/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let at_delete = s.events(id).await.len();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(
        s.events(id).await.len(),
        at_delete,
        "deleted triggers do not fire; events stay"
    );
    let times: Vec<_> = s
        .events(id)
        .await
        .iter()
        .map(|e| e["scheduled_for"].clone())
        .collect();
    let mut unique = times.clone();
    unique.dedup();
    assert_eq!(unique.len(), times.len(), "one event per occurrence");
}

#[tokio::test]
async fn a_test_run_leaves_no_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let run = s
        .post_ok(
            "/triggers/test",
            json!({"name": "try api", "kind": "api",
            "payload_schema": {"type": "object"}, "payload": {"x": 1}}),
        )
        .await;
    assert_eq!(run["outcome"], "fired");
    assert_eq!(run["event"]["is_test"], true);
    let later = s
        .post_ok(
            "/triggers/test",
            json!({"name": "try schedule", "kind": "scheduled",
            "schedule": {"type": "interval", "every_seconds": 1}}),
        )
        .await;
    assert_eq!(later["outcome"], "scheduled");
    // Due a second from now: wait for it (a loaded machine may be a little late).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (names, tests) = loop {
        let (_, tests) = s
            .request(reqwest::Method::GET, "/events?is_test=true", None)
            .await;
        let names: Vec<_> = tests["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["trigger_name"].clone())
            .collect();
        if names.len() >= 2 || Instant::now() > deadline {
            break (names, tests);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (_, again) = s
        .request(reqwest::Method::GET, "/events?is_test=true", None)
        .await;
    assert_eq!(
        again["items"].as_array().map(Vec::len),
        Some(2),
        "fired once: {again}"
    );
    assert_eq!(names.len(), 2, "{tests}");
    assert!(
        names.contains(&json!("try schedule")),
        "fired once at its first occurrence"
    );
    let (_, triggers) = s.request(reqwest::Method::GET, "/triggers", None).await;
    assert_eq!(triggers["items"], json!([]));
}

/// A firing is acknowledged once its intake line is written, before its transaction commits:
/// every 202 still names an event that a `kill -9` right after it does not lose.
#[tokio::test]
async fn kill_9_right_after_acknowledged_firings_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let t = s
        .post_ok(
            "/triggers",
            json!({"name": "busy", "kind": "api", "payload_schema": {"type": "object"}}),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_string();
    let url = format!("{}/triggers/{id}/fire", s.base);
    let fire = |n: usize| {
        let (http, url) = (s.http.clone(), url.clone());
        tokio::spawn(async move {
            let r = http
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&json!({"n": n}))
                .send()
                .await
                .expect("fire");
            assert_eq!(r.status(), 202);
            let body: Value = r.json().await.expect("json");
            body["id"].as_str().expect("event id").to_string()
        })
    };
    let mut acknowledged = Vec::new();
    for wave in 0..10 {
        let fired: Vec<_> = (0..40).map(|i| fire(wave * 40 + i)).collect();
        for f in fired {
            acknowledged.push(f.await.expect("firing task"));
        }
    }
    drop(s); // SIGKILL, at once after the last 202.
    let s = start(dir.path()).await;
    let mut listed = std::collections::HashSet::new();
    let mut path = format!("/events?trigger_id={id}&limit=200");
    loop {
        let (status, page) = s.request(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        for e in page["items"].as_array().expect("items") {
            listed.insert(e["id"].as_str().unwrap_or_default().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/events?trigger_id={id}&limit=200&cursor={c}"),
            None => break,
        }
    }
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|e| !listed.contains(*e))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of 400 acknowledged events lost",
        lost.len()
    );
    assert_eq!(listed.len(), 400, "each firing recorded once");
}

#[tokio::test]
async fn kill_9_keeps_triggers_and_catches_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let t = s
        .post_ok(
            "/triggers",
            json!({"name": "survivor", "kind": "scheduled",
            "schedule": {"type": "interval", "every_seconds": 2}}),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert!(!s.events(&id).await.is_empty(), "fired before the kill");
    drop(s); // SIGKILL: no graceful shutdown.
    // Down for about seven seconds: three occurrences missed.
    tokio::time::sleep(Duration::from_millis(7_000)).await;
    let restarted_at = Utc::now();
    let s = start(dir.path()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = s
        .request(reqwest::Method::GET, &format!("/triggers/{id}"), None)
        .await;
    assert_eq!(status, 200, "the trigger survived");
    let events = s.events(&id).await;
    let after: Vec<_> = events
        .iter()
        .filter(|e| time(&e["fired_at"]) >= restarted_at)
        .map(|e| (time(&e["scheduled_for"]), time(&e["fired_at"])))
        .collect();
    // Of everything due by the first firing after the restart (the missed occurrences), exactly
    // one fires: the catch-up. (How long the restart took decides which occurrence that is.)
    let first_fired = after
        .iter()
        .map(|(_, f)| *f)
        .min()
        .expect("fired after restart");
    let catch_ups: Vec<_> = after.iter().filter(|(s, _)| *s <= first_fired).collect();
    assert_eq!(catch_ups.len(), 1, "exactly one catch-up: {after:?}");
    let all: Vec<_> = events.iter().map(|e| e["scheduled_for"].clone()).collect();
    let mut unique = all.clone();
    unique.sort_by_key(|v| v.to_string());
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "no occurrence fired twice");
}

#[tokio::test]
async fn concurrent_fires_with_one_idempotency_key_make_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let t = s
        .post_ok(
            "/triggers",
            json!({"name": "orders", "kind": "api",
            "payload_schema": {"type": "object", "required": ["id"]}}),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_string();
    let url = format!("{}/triggers/{id}/fire", s.base);
    let calls = (0..50).map(|_| {
        let req = s
            .http
            .post(&url)
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", "order-42")
            .json(&json!({"id": 42}));
        async move {
            let res = req.send().await.expect("fire");
            let status = res.status().as_u16();
            let body: Value = res.json().await.expect("json");
            (status, body["id"].as_str().unwrap_or_default().to_string())
        }
    });
    let results = futures_join_all(calls).await;
    assert!(
        results.iter().all(|(status, _)| *status == 202),
        "{results:?}"
    );
    let first = &results[0].1;
    assert!(
        results.iter().all(|(_, e)| e == first),
        "one event id for all"
    );
    assert_eq!(s.events(&id).await.len(), 1);
}

/// Runs futures concurrently on this task (keeps the test free of extra dependencies).
async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn kill_9_keeps_pending_retries_and_delivers_each_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // 503 until switched up, then 200.
    let up = Arc::new(AtomicBool::new(false));
    let rx = {
        let up = up.clone();
        WebhookReceiver::start(move |_, _| {
            let status = if up.load(Ordering::SeqCst) {
                axum::http::StatusCode::OK
            } else {
                axum::http::StatusCode::SERVICE_UNAVAILABLE
            };
            Box::pin(async move { axum::response::IntoResponse::into_response(status) })
        })
        .await
    };
    let hook = rx.url("hook");
    let ids_since = |from: usize| -> Vec<String> {
        rx.seen("hook")
            .iter()
            .skip(from)
            .map(|s| s.header("webhook-id").unwrap_or_default().to_string())
            .collect()
    };
    let env = [
        ("ETP_ALLOW_PRIVATE_TARGETS", "127.0.0.1/32"),
        ("ETP_RETRY_DELAYS", "2s"),
    ];

    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), &env).await;
    let t = s
        .post_ok(
            "/triggers",
            json!({"name": "hooked", "kind": "api", "payload_schema": {"type": "object"},
                   "target": {"url": hook, "timeout_ms": 2000}}),
        )
        .await;
    assert!(t["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = t["id"].as_str().unwrap().to_string();
    let mut events = Vec::new();
    for n in 0..3 {
        let e = s
            .post_ok(&format!("/triggers/{id}/fire"), json!({"n": n}))
            .await;
        events.push(e["id"].as_str().unwrap().to_string());
    }
    // Each event's failed first attempt is recorded, so each has a retry pending.
    let deadline = Instant::now() + Duration::from_secs(10);
    for e in &events {
        loop {
            let (_, body) = s
                .request(reqwest::Method::GET, &format!("/events/{e}"), None)
                .await;
            if body["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
                assert_eq!(body["status"], "pending", "{body}");
                break;
            }
            let seen = ids_since(0);
            assert!(
                Instant::now() < deadline,
                "first attempts never recorded: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(s); // SIGKILL with three retries pending.
    let answered_503 = rx.seen("hook").len();
    up.store(true, Ordering::SeqCst);
    let delivered = || {
        let mut per_id = std::collections::HashMap::<String, usize>::new();
        for id in ids_since(answered_503) {
            *per_id.entry(id).or_default() += 1;
        }
        per_id
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    let s = start_with(dir.path(), &env).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let done = delivered().len();
        if done == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retries did not complete after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for any duplicate to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let delivered = delivered();
    for e in &events {
        assert_eq!(
            delivered.get(e),
            Some(&1),
            "event {e} delivered once: {delivered:?}"
        );
        let (status, body) = s
            .request(reqwest::Method::GET, &format!("/events/{e}"), None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "success", "{body}");
        let attempts = body["attempts"].as_array().unwrap();
        assert!(attempts.len() >= 2, "{body}");
        assert_eq!(attempts[0]["status_code"], 503);
        assert_eq!(attempts.last().unwrap()["status_code"], 200);
        assert!(body.get("secret").is_none());
    }
    let (_, got) = s
        .request(reqwest::Method::GET, &format!("/triggers/{id}"), None)
        .await;
    assert!(got.get("secret").is_none(), "the secret is shown only once");
}

/// Whole seconds from now on the real clock, as the API writes instants.
fn whole_second_after(t: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp() + secs, 0).expect("in range")
}

#[tokio::test]
async fn the_occurrences_audit_spans_a_pause_a_skip_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("ETP_CATCH_UP_GRACE", "1s")];
    let s = start_with(dir.path(), &env).await;
    let t = s
        .post_ok(
            "/triggers",
            json!({"name": "audited", "kind": "scheduled",
            "schedule": {"type": "interval", "every_seconds": 1}}),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_string();
    let created = time(&t["created_at"]);
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    // Pause just after a whole second, so that two occurrences fall well inside the pause
    // whatever the phase of the clock when the test started.
    let next = whole_second_after(Utc::now(), 1) + chrono::Duration::milliseconds(100);
    if let Ok(wait) = (next - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let paused_at = Utc::now();
    let until = whole_second_after(paused_at, 3);
    let skipped = whole_second_after(until, 1);
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    s.post_ok(
        &format!("/triggers/{id}/pause"),
        json!({"until": stamp(until)}),
    )
    .await;
    s.post_ok(
        &format!("/triggers/{id}/skip"),
        json!({"scheduled_for": stamp(skipped)}),
    )
    .await;
    // Fires at `until` again, then is killed for about three seconds.
    while Utc::now() < until + chrono::Duration::milliseconds(2_500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(s);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let s = start_with(dir.path(), &env).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let now = Utc::now();
    let (status, audit) = s
        .request(
            reqwest::Method::GET,
            &format!(
                "/triggers/{id}/occurrences?from={}&to={}",
                stamp(created),
                stamp(now)
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{audit}");
    let fate = |o: &Value| {
        (
            o["status"].as_str().unwrap_or("").to_string(),
            o["reason"].as_str().unwrap_or("").to_string(),
        )
    };
    let occurrences = audit["occurrences"].as_array().expect("occurrences");
    let at = |t: DateTime<Utc>| {
        occurrences
            .iter()
            .find(|o| time(&o["scheduled_for"]) == t)
            .map(fate)
            .unwrap_or_else(|| panic!("no occurrence at {t}: {audit}"))
    };
    let during_pause: Vec<_> = occurrences
        .iter()
        .filter(|o| {
            let t = time(&o["scheduled_for"]);
            t > paused_at + chrono::Duration::milliseconds(200) && t < until
        })
        .map(fate)
        .collect();
    assert!(during_pause.len() >= 2, "{audit}");
    assert!(
        during_pause
            .iter()
            .all(|(s, r)| s == "skipped" && r == "paused"),
        "{audit}"
    );
    assert_eq!(at(until).0, "fired", "{audit}");
    assert_eq!(at(skipped), ("skipped".into(), "skipped_by_user".into()));
    let before_pause: Vec<_> = occurrences
        .iter()
        .filter(|o| time(&o["scheduled_for"]) < paused_at - chrono::Duration::milliseconds(200))
        .map(fate)
        .collect();
    assert!(before_pause.len() >= 2, "{audit}");
    assert!(before_pause.iter().all(|(s, _)| s == "fired"), "{audit}");
    // Down for about three seconds with a grace of one: what the catch-up did not fire was
    // missed, and says so.
    let down: Vec<_> = occurrences
        .iter()
        .map(fate)
        .filter(|(s, r)| s == "skipped" && (r == "missed_beyond_grace" || r == "coalesced"))
        .collect();
    assert!(down.len() >= 2, "{audit}");
    // Every occurrence older than the grace has an answer; none is left "upcoming".
    for o in occurrences {
        if time(&o["scheduled_for"]) < now - chrono::Duration::seconds(2) {
            assert_ne!(o["status"], "upcoming", "{audit}");
        }
    }
}
