//! Scoped API keys through the HTTP API: created and shown once, listed without secrets,
//! revoked at once, expired and unknown keys refused, each scope enforced by route.

use std::sync::Arc;

use crate::oneshot::{self, Reply};
use axum::Router;
use axum::http::{Method, StatusCode};
use chrono::Duration;
use etp::app::App;
use etp::clock::{Clock, ManualClock};
use etp::config::{ApiToken, Settings};
use etp::embedded::SqliteStore;
use etp::testing::fixtures::t0;
use etp::testing::instants::rfc3339;
use serde_json::{Value, json};

const TOKEN: &str = "bootstrap-token-0123456789";

struct Api {
    router: Router,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("etp.sqlite3")).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let app = App::new(
        Arc::new(store),
        Arc::new(etp::testing::RecordingScheduler::default()),
        Arc::new(etp::testing::RecordingQueue::default()),
        clock.clone() as Arc<dyn Clock>,
        Settings::default(),
    );
    Api {
        router: etp::http::router(Arc::new(app), ApiToken::new(TOKEN)),
        clock,
        _dir: dir,
    }
}

impl Api {
    async fn call(&self, auth: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
        oneshot::send(
            &self.router,
            oneshot::request(method, path, Some(auth), body, &[]),
        )
        .await
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(TOKEN, method, path, body).await
    }

    /// A new key with `scopes` (and more fields from `extra`); returns (id, key).
    async fn key(&self, scopes: &[&str], extra: Value) -> (String, String) {
        let mut body = json!({"name": format!("key {}", scopes.join(" ")), "scopes": scopes});
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        let r = self.admin(Method::POST, "/api-keys", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (
            r.body["id"].as_str().unwrap().to_string(),
            r.body["key"].as_str().unwrap().to_string(),
        )
    }

    async fn api_trigger(&self, name: &str) -> String {
        let r = self
            .admin(
                Method::POST,
                "/triggers",
                Some(json!({"name": name, "kind": "api", "payload_schema": {"type": "object"}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn a_key_is_shown_once_listed_without_secrets_and_revoked_at_once() {
    let api = api();
    let r = api
        .admin(
            Method::POST,
            "/api-keys",
            Some(
                json!({"name": "deploy bot", "scopes": ["triggers:read", "fire"],
                        "expires_at": rfc3339(t0() + Duration::days(30))}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.headers.get("cache-control").unwrap(),
        "no-store",
        "the key must not be cached"
    );
    let key = r.body["key"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("etp_") && key.len() == 4 + 43, "{key}");
    assert_eq!(r.body["prefix"], key[..8]);
    assert_eq!(r.body["name"], "deploy bot");
    assert_eq!(r.body["scopes"], json!(["triggers:read", "fire"]));
    assert_eq!(r.body["created_at"], rfc3339(t0()));
    assert_eq!(r.body["expires_at"], rfc3339(t0() + Duration::days(30)));
    assert_eq!(
        r.headers.get("location").unwrap(),
        &format!("/api-keys/{id}")
    );

    let listed = api.admin(Method::GET, "/api-keys", None).await;
    assert_eq!(listed.status, StatusCode::OK);
    let item = &listed.body["items"][0];
    assert_eq!(item["id"], id.as_str());
    assert_eq!(item["prefix"], key[..8]);
    assert_eq!(item["last_used_at"], Value::Null);
    assert!(item.get("key").is_none() && item.get("hash").is_none());
    assert!(!listed.text.contains(&key[8..]), "the key is never listed");

    let me = api.call(&key, Method::GET, "/api-keys/me", None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(
        me.body,
        json!({"id": id, "name": "deploy bot", "scopes": ["triggers:read", "fire"],
               "trigger_ids": [], "expires_at": rfc3339(t0() + Duration::days(30))})
    );
    let used = api.admin(Method::GET, "/api-keys", None).await;
    assert_eq!(used.body["items"][0]["last_used_at"], rfc3339(t0()));

    let gone = api
        .admin(Method::DELETE, &format!("/api-keys/{id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    api.call(&key, Method::GET, "/api-keys/me", None)
        .await
        .problem(401, None);
    api.call(&key, Method::GET, "/triggers", None)
        .await
        .problem(401, None);
    api.admin(Method::DELETE, &format!("/api-keys/{id}"), None)
        .await
        .problem(404, None);
    assert_eq!(
        api.admin(Method::GET, "/api-keys", None).await.body["items"],
        json!([])
    );
}

#[tokio::test]
async fn the_bootstrap_token_is_admin() {
    let api = api();
    let me = api.admin(Method::GET, "/api-keys/me", None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body, json!({"name": "bootstrap", "scopes": ["admin"]}));
}

#[tokio::test]
async fn unknown_expired_and_malformed_keys_are_refused() {
    let api = api();
    let (_, key) = api
        .key(
            &["triggers:read"],
            json!({"expires_at": rfc3339(t0() + Duration::hours(1))}),
        )
        .await;
    assert_eq!(
        api.call(&key, Method::GET, "/triggers", None).await.status,
        StatusCode::OK
    );
    let unknown = etp::domain::api_key::generate_key();
    for bad in [unknown.as_str(), "etp_", "etp_short", &key[..key.len() - 1]] {
        let r = api.call(bad, Method::GET, "/triggers", None).await;
        r.problem(401, None);
        assert!(r.headers.get("www-authenticate").is_some());
    }
    api.clock.advance(Duration::hours(1));
    api.call(&key, Method::GET, "/triggers", None)
        .await
        .problem(401, None);
    api.call(&key, Method::GET, "/api-keys/me", None)
        .await
        .problem(401, None);
}

#[tokio::test]
async fn each_scope_is_needed_for_its_routes() {
    let api = api();
    let trigger = api.api_trigger("orders").await;
    let event = api
        .admin(
            Method::POST,
            &format!("/triggers/{trigger}/fire"),
            Some(json!({})),
        )
        .await;
    assert_eq!(event.status, StatusCode::ACCEPTED, "{}", event.body);
    let event_id = event.body["id"].as_str().unwrap().to_string();
    let cases: Vec<(&str, Method, String, Option<Value>)> = vec![
        ("triggers:read", Method::GET, "/triggers".into(), None),
        (
            "triggers:read",
            Method::GET,
            format!("/triggers/{trigger}"),
            None,
        ),
        ("triggers:read", Method::GET, "/test-runs".into(), None),
        (
            "triggers:write",
            Method::POST,
            "/triggers".into(),
            Some(json!({"name": "x", "kind": "api", "payload_schema": {"type": "object"}})),
        ),
        (
            "triggers:write",
            Method::POST,
            format!("/triggers/{trigger}/pause"),
            None,
        ),
        (
            "triggers:write",
            Method::POST,
            format!("/triggers/{trigger}/test"),
            Some(json!({})),
        ),
        (
            "triggers:write",
            Method::POST,
            "/triggers/test".into(),
            Some(
                json!({"name": "t", "kind": "api", "payload_schema": {"type": "object"},
                        "payload": {}}),
            ),
        ),
        ("events:read", Method::GET, "/events".into(), None),
        ("events:read", Method::GET, "/events/stats".into(), None),
        (
            "events:read",
            Method::GET,
            format!("/events/{event_id}"),
            None,
        ),
        (
            "fire",
            Method::POST,
            format!("/triggers/{trigger}/fire"),
            Some(json!({})),
        ),
        ("admin", Method::GET, "/api-keys".into(), None),
        (
            "admin",
            Method::POST,
            "/api-keys".into(),
            Some(json!({"name": "n", "scopes": ["fire"]})),
        ),
    ];
    let all = [
        "triggers:read",
        "triggers:write",
        "events:read",
        "fire",
        "metrics:read",
    ];
    for (scope, method, path, body) in cases {
        let others: Vec<&str> = all.iter().copied().filter(|s| *s != scope).collect();
        let (_, without) = api.key(&others, json!({})).await;
        let r = api
            .call(&without, method.clone(), &path, body.clone())
            .await;
        r.problem(403, None);
        assert_eq!(r.body["scope"], scope, "{method} {path}: {}", r.body);
        assert_eq!(
            r.body["detail"],
            format!("this key lacks the scope `{scope}`")
        );
        let (_, with) = api.key(&[scope], json!({})).await;
        let r = api.call(&with, method.clone(), &path, body).await;
        assert!(
            r.status.is_success(),
            "{method} {path} with {scope}: {} {}",
            r.status,
            r.body
        );
        if path.ends_with("/pause") {
            api.admin(Method::POST, &format!("/triggers/{trigger}/resume"), None)
                .await;
        }
    }
    // Any valid key may read itself, whatever its scopes.
    let (_, reader) = api.key(&["metrics:read"], json!({})).await;
    let me = api.call(&reader, Method::GET, "/api-keys/me", None).await;
    assert_eq!(me.body["scopes"], json!(["metrics:read"]));
}

#[tokio::test]
async fn an_admin_key_may_do_everything() {
    let api = api();
    let (_, admin) = api.key(&["admin"], json!({})).await;
    let trigger = api.api_trigger("orders").await;
    for (method, path, body) in [
        (Method::GET, "/triggers".to_string(), None),
        (Method::GET, "/events".to_string(), None),
        (
            Method::POST,
            format!("/triggers/{trigger}/fire"),
            Some(json!({})),
        ),
        (Method::GET, "/api-keys".to_string(), None),
    ] {
        let r = api.call(&admin, method, &path, body).await;
        assert!(r.status.is_success(), "{path}: {}", r.body);
    }
}

#[tokio::test]
async fn fire_may_be_limited_to_some_triggers() {
    let api = api();
    let (mine, other) = (
        api.api_trigger("mine").await,
        api.api_trigger("other").await,
    );
    let (_, key) = api
        .key(
            &["fire"],
            json!({"trigger_ids": [mine.to_ascii_uppercase()]}),
        )
        .await;
    let fired = api
        .call(
            &key,
            Method::POST,
            &format!("/triggers/{mine}/fire"),
            Some(json!({})),
        )
        .await;
    assert_eq!(fired.status, StatusCode::ACCEPTED, "{}", fired.body);
    let upper = api
        .call(
            &key,
            Method::POST,
            &format!("/triggers/{}/fire", mine.to_ascii_uppercase()),
            Some(json!({})),
        )
        .await;
    assert_eq!(upper.status, StatusCode::ACCEPTED, "ids match in any case");
    let refused = api
        .call(
            &key,
            Method::POST,
            &format!("/triggers/{other}/fire"),
            Some(json!({})),
        )
        .await;
    refused.problem(403, None);
    assert_eq!(refused.body["scope"], "fire");
    let me = api.call(&key, Method::GET, "/api-keys/me", None).await;
    assert_eq!(me.body["trigger_ids"], json!([mine]));
}

#[tokio::test]
async fn bad_keys_are_refused_naming_the_field() {
    let api = api();
    for (body, field) in [
        (
            json!({"name": "x", "scopes": ["events:write"]}),
            "scopes[0]",
        ),
        (
            json!({"name": "x", "scopes": ["fire", "root"]}),
            "scopes[1]",
        ),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "", "scopes": ["fire"]}), "name"),
        (json!({"scopes": ["fire"]}), "name"),
        (
            json!({"name": "x", "scopes": ["fire"], "expires_at": rfc3339(t0() - Duration::seconds(1))}),
            "expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["fire"], "expires_at": rfc3339(t0())}),
            "expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["fire"], "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["fire"], "trigger_ids": ["nope"]}),
            "trigger_ids[0]",
        ),
        (
            json!({"name": "x", "scopes": ["events:read"], "trigger_ids": [etp::domain::new_id()]}),
            "trigger_ids",
        ),
        (
            json!({"name": "x", "scopes": ["fire"], "role": "x"}),
            "role",
        ),
    ] {
        let r = api
            .admin(Method::POST, "/api-keys", Some(body.clone()))
            .await;
        r.problem(422, None);
        assert!(
            r.field_errors().iter().any(|f| f == field),
            "{body}: expected {field}, got {}",
            r.body
        );
    }
    assert_eq!(
        api.admin(Method::GET, "/api-keys", None).await.body["items"],
        json!([]),
        "nothing was stored"
    );
}

#[tokio::test]
async fn last_use_is_written_at_most_once_a_minute() {
    let api = api();
    let (_, key) = api.key(&["triggers:read"], json!({})).await;
    let last_used = || async {
        api.admin(Method::GET, "/api-keys", None).await.body["items"][0]["last_used_at"].clone()
    };
    assert_eq!(last_used().await, Value::Null);
    api.call(&key, Method::GET, "/triggers", None).await;
    assert_eq!(last_used().await, rfc3339(t0()));
    api.clock.advance(Duration::seconds(59));
    api.call(&key, Method::GET, "/triggers", None).await;
    assert_eq!(last_used().await, rfc3339(t0()), "not within the minute");
    api.clock.advance(Duration::seconds(2));
    api.call(&key, Method::GET, "/triggers", None).await;
    assert_eq!(last_used().await, rfc3339(t0() + Duration::seconds(61)));
}

#[tokio::test]
async fn the_document_describes_the_key_routes() {
    let api = api();
    let doc = api.call("", Method::GET, "/openapi.json", None).await;
    let paths = doc.body["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api-keys", "post"),
        ("/api-keys", "get"),
        ("/api-keys/{id}", "delete"),
        ("/api-keys/me", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path}");
        assert!(paths[path][method]["responses"]["403"].is_object() || path == "/api-keys/me");
    }
    let scopes = &doc.body["components"]["schemas"]["Scope"]["enum"];
    assert_eq!(
        scopes,
        &json!([
            "admin",
            "triggers:read",
            "triggers:write",
            "events:read",
            "fire",
            "metrics:read"
        ])
    );
}
