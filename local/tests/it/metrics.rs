//! Metrics and request tracing from the real `etp-local`: `GET /metrics` behind the token on the
//! API address, and without it on `ETP_METRICS_LISTEN`, after real api firings (a fresh process,
//! so absolute values); one access log line per request, never with the token.

use std::path::Path;
use std::process::Stdio;

use etp::testing::fixtures::{LocalServer, free_port};
use serde_json::json;

const TOKEN: &str = "metrics-blackbox-token-0123456789";

/// The value of the sample of `family` whose labels include every one of `labels`.
fn sample(text: &str, family: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .filter(|l| labels.iter().all(|p| l.contains(p)))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

#[tokio::test]
async fn metrics_are_served_with_the_token_and_on_their_own_address_without() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let s = LocalServer::start(
        Path::new(env!("CARGO_BIN_EXE_etp-local")),
        dir.path(),
        TOKEN,
        &[("RUST_LOG", "warn"), ("ETP_METRICS_LISTEN", &metrics_addr)],
    )
    .await
    .expect("etp-local starts");
    let t = s
        .call(
            reqwest::Method::POST,
            "/triggers",
            Some(&json!({"name": "orders", "kind": "api", "payload_schema": {"type": "object"}})),
        )
        .await
        .expect("create");
    assert_eq!(t.status, 201, "{}", t.body);
    let id = t.body["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let fired = s
            .call(
                reqwest::Method::POST,
                &format!("/triggers/{id}/fire"),
                Some(&json!({})),
            )
            .await
            .expect("fire");
        assert_eq!(fired.status, 202, "{}", fired.body);
    }

    // On the API address: the token is needed.
    let url = format!("{}/metrics", s.base);
    let refused = s.http.get(&url).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let with_token = s.http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(with_token.status().as_u16(), 200);
    assert!(
        with_token.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = with_token.text().await.unwrap();
    let firings = sample(
        &text,
        "etp_firings_total",
        &[r#"source="api""#, r#"outcome="success""#],
    );
    assert_eq!(firings, Some(2.0), "{text}");

    // On ETP_METRICS_LISTEN: no token, the same families; nothing else is served there.
    let open = s
        .http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status().as_u16(), 200);
    let text = open.text().await.unwrap();
    assert_eq!(
        sample(
            &text,
            "etp_firings_total",
            &[r#"source="api""#, r#"outcome="success""#]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "etp_http_requests_total",
            &[r#"route="/triggers/{id}/fire""#, r#"status="202""#]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "etp_triggers",
            &[r#"kind="api""#, r#"status="active""#]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "etp_store_op_duration_seconds_count",
            &[r#"op="record_event""#]
        )
        .is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(!text.contains(&id), "an id leaked into a label");
    let other = s
        .http
        .get(format!("http://{metrics_addr}/triggers"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
}

/// `text` without its ANSI colour sequences (the text log colours its fields).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn each_request_gets_one_access_line_with_its_route_template_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let data = dir.path().join("data");
    let s = LocalServer::start_logging(
        Path::new(env!("CARGO_BIN_EXE_etp-local")),
        &data,
        TOKEN,
        &[("RUST_LOG", "info")],
        Stdio::from(log),
    )
    .await
    .expect("etp-local starts");
    let t = s
        .call(
            reqwest::Method::POST,
            "/triggers",
            Some(&json!({"name": "orders", "kind": "api", "payload_schema": {"type": "object"}})),
        )
        .await
        .expect("create");
    let id = t.body["id"].as_str().unwrap().to_string();
    let got = s
        .call(reqwest::Method::GET, &format!("/triggers/{id}"), None)
        .await
        .expect("get");
    assert_eq!(got.status, 200);
    let wrong = s
        .http
        .get(format!("{}/triggers", s.base))
        .bearer_auth("not-the-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    drop(s);
    let text = without_colours(&std::fs::read_to_string(&log_path).unwrap());
    let access: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("etp::telemetry::http") && l.contains(" request "))
        .collect();
    // The /health polls while starting, then the three calls above.
    let calls: Vec<&str> = access
        .iter()
        .copied()
        .filter(|l| !l.contains("route=/health"))
        .collect();
    assert_eq!(calls.len(), 3, "one access line per request:\n{text}");
    for (line, expected) in calls.iter().zip([
        "method=POST route=/triggers status=201 latency_ms=",
        "method=GET route=/triggers/{id} status=200 latency_ms=",
        "method=GET route=/triggers status=401 latency_ms=",
    ]) {
        assert!(line.contains(" INFO ") && line.contains(expected), "{line}");
    }
    assert!(!text.contains(TOKEN), "the token was logged:\n{text}");
    assert!(
        !text.contains("not-the-token"),
        "a wrong token was logged:\n{text}"
    );
    assert!(
        !text.contains(&format!("/triggers/{id}")),
        "a raw path was logged"
    );
}
