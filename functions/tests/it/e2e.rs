//! Cloud-emulated end to end: the real function binaries under `cargo lambda watch` (a Lambda
//! runtime API emulator), DynamoDB and EventBridge Scheduler on moto. Create a trigger through
//! `triggers-api`, find its schedule in moto, invoke `fire` with the schedule's input as
//! EventBridge would (twice), and read the one event back through `events-api`. Then deliver:
//! fire an api trigger whose target is a receiver on loopback, and run the delivery schedules
//! `triggers-api` and `fire` leave in moto until the receiver has the event.

use etp::testing::fixtures::free_port;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etp::aws::dynamo::{DynamoStore, Tables};
use etp::testing::moto;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-token-0123456789abcdef";
const PLACEHOLDER: &str = "<aws.scheduler.scheduled-time>";

/// The emulator and the functions it starts, stopped as one process group.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        // `--` matters: without it `-<pgid>` can parse as an option, and `-1` means everyone.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn cargo_lambda() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_LAMBDA") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv/bin/cargo-lambda");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("cargo-lambda")
}

/// The first EMF document in the functions' output that `wanted` accepts (waits up to 10 s).
async fn emf_line(path: &std::path::Path, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::fs::read_to_string(path).unwrap_or_default();
        let found = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .find(|doc| doc.get("_aws").is_some() && wanted(doc));
        if let Some(doc) = found {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "no such EMF line in the functions' stdout:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_to_schedule_to_fire_to_event() {
    let suffix = ulid::Ulid::new().to_string().to_ascii_lowercase();
    let tables = Tables::named("e2e", &suffix);
    let group = format!("e2e-{suffix}");
    DynamoStore::create_tables(&moto::dynamo_client(), &tables)
        .await
        .expect("create tables");
    let scheduler = moto::scheduler_client().await;
    scheduler
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .expect("create schedule group");

    let secret = format!("{group}-api-token");
    moto::create_secret(moto::endpoint(), &secret, TOKEN)
        .await
        .expect("create the token secret");

    let port = free_port();
    let env = [
        ("AWS_ENDPOINT_URL", moto::endpoint().to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("TRIGGERS_TABLE", tables.triggers.clone()),
        ("EVENTS_TABLE", tables.events.clone()),
        ("STATS_TABLE", tables.stats.clone()),
        ("SCHEDULE_GROUP", group.clone()),
        (
            "SCHEDULER_ROLE_ARN",
            "arn:aws:iam::123456789012:role/etp-scheduler".into(),
        ),
        (
            "FIRE_FUNCTION_ARN",
            "arn:aws:lambda:us-east-1:123456789012:function:etp-fire".into(),
        ),
        (
            "FIRE_DLQ_ARN",
            "arn:aws:sqs:us-east-1:123456789012:etp-fire-dlq".into(),
        ),
        // As on AWS: the token comes from Secrets Manager, read once per cold start.
        ("ETP_API_TOKEN_SECRET", secret.clone()),
        ("ETP_ALLOW_PRIVATE_TARGETS", "127.0.0.1/32".into()),
        ("ETP_RETRY_DELAYS", "1s".into()),
        ("RUST_LOG", "warn".into()),
    ];
    let stdout_file = tempfile::NamedTempFile::new().expect("stdout file");
    let mut cmd = Command::new(cargo_lambda());
    cmd.args([
        "lambda",
        "watch",
        "--ignore-changes",
        "-A",
        "127.0.0.1",
        "-P",
    ])
    .arg(port.to_string())
    .current_dir(workspace())
    // The functions' stdout: their EMF metric lines are read back from it.
    .stdout(Stdio::from(stdout_file.reopen().expect("stdout file")))
    .stderr(Stdio::inherit())
    .process_group(0);
    for (k, v) in &env {
        cmd.env(k, v).arg("--env-var").arg(format!("{k}={v}"));
    }
    let watch = Watch(cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start cargo-lambda ({e}); `make test` installs it into .venv")
    }));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "cargo lambda watch did not listen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first call to each function compiles it: allow for that.
    etp::delivery::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()
        .expect("client");

    // The token the function read from Secrets Manager is the only one it takes.
    for (function, path) in [("triggers-api", "triggers"), ("events-api", "events")] {
        let wrong = http
            .get(format!("{base}/lambda-url/{function}/{path}"))
            .bearer_auth("not-the-token-0123456789")
            .send()
            .await
            .expect("list with a wrong token");
        assert_eq!(wrong.status().as_u16(), 401, "{function}");
    }

    let created = http
        .post(format!("{base}/lambda-url/triggers-api/triggers"))
        .bearer_auth(TOKEN)
        .json(
            &json!({"name": "e2e", "kind": "scheduled", "payload": {"from": "e2e"},
            "schedule": {"type": "interval", "every_seconds": 120}}),
        )
        .send()
        .await
        .expect("create trigger");
    assert_eq!(created.status().as_u16(), 201);
    let trigger: Value = created.json().await.expect("trigger json");
    let id = trigger["id"].as_str().expect("id").to_string();
    let next = trigger["next_fire_at"]
        .as_str()
        .expect("next_fire_at")
        .to_string();

    let schedule = scheduler
        .get_schedule()
        .group_name(&group)
        .name(&id)
        .send()
        .await
        .expect("the schedule exists in moto");
    assert_eq!(schedule.schedule_expression(), Some("rate(2 minutes)"));
    let input = schedule
        .target()
        .and_then(|t| t.input())
        .expect("schedule input")
        .replace(PLACEHOLDER, &next);
    let input: Value = serde_json::from_str(&input).expect("input is JSON");

    let invoke = |payload: Value| {
        let http = http.clone();
        let url = format!("{base}/2015-03-31/functions/fire/invocations");
        async move {
            let res = http
                .post(url)
                .json(&payload)
                .send()
                .await
                .expect("invoke fire");
            assert!(res.status().is_success(), "fire failed: {}", res.status());
            res.json::<Value>().await.expect("fire report")
        }
    };
    let first = invoke(input.clone()).await;
    assert_eq!(first["outcome"], "fired", "{first}");
    // The invocation wrote its metrics as one CloudWatch EMF line, the firing counted in it.
    let emf = emf_line(stdout_file.path(), |doc| {
        doc["etp_firings_total_schedule_success"] == 1
    })
    .await;
    let directive = &emf["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "EventTriggerPlatform", "{emf}");
    assert_eq!(directive["Dimensions"], json!([["Function"]]), "{emf}");
    assert!(emf["_aws"]["Timestamp"].is_i64(), "{emf}");
    assert!(emf["Function"].is_string(), "{emf}");
    let names: Vec<&str> = directive["Metrics"]
        .as_array()
        .expect("metric definitions")
        .iter()
        .filter_map(|m| m["Name"].as_str())
        .collect();
    for name in [
        "etp_firings_total_schedule_success",
        "etp_fire_lateness_seconds",
        "etp_store_op_duration_seconds",
    ] {
        assert!(names.contains(&name), "{name} undeclared: {emf}");
        assert!(!emf[name].is_null(), "{name} has no value: {emf}");
    }
    let again = invoke(input).await;
    assert_eq!(again["outcome"], "already_fired", "{again}");
    assert_eq!(again["event_id"], first["event_id"]);

    let listed: Value = http
        .get(format!(
            "{base}/lambda-url/events-api/events?trigger_id={id}"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("list events")
        .json()
        .await
        .expect("events json");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "one event for one occurrence: {listed}");
    assert_eq!(items[0]["scheduled_for"], next.as_str());
    assert_eq!(items[0]["source"], "schedule");
    assert_eq!(items[0]["payload"], json!({"from": "e2e"}));

    // The occurrences audit (events-api joins the trigger to its events in DynamoDB), then a
    // pause with an end: the schedule stays enabled and starts at the first occurrence from it.
    let next_at = chrono::DateTime::parse_from_rfc3339(&next).expect("next is an instant");
    let stamp = |t: chrono::DateTime<chrono::FixedOffset>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let audit: Value = http
        .get(format!(
            "{base}/lambda-url/events-api/triggers/{id}/occurrences?from={}&to={}",
            stamp(next_at - chrono::Duration::seconds(1)),
            stamp(next_at + chrono::Duration::seconds(1)),
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("occurrences")
        .json()
        .await
        .expect("audit json");
    let occurrences = audit["occurrences"].as_array().expect("occurrences");
    assert_eq!(occurrences.len(), 1, "{audit}");
    assert_eq!(occurrences[0]["status"], "fired", "{audit}");
    assert_eq!(occurrences[0]["event_id"], first["event_id"], "{audit}");
    let until = next_at + chrono::Duration::minutes(5);
    let paused = http
        .post(format!(
            "{base}/lambda-url/triggers-api/triggers/{id}/pause"
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"until": stamp(until)}))
        .send()
        .await
        .expect("pause until");
    assert_eq!(paused.status().as_u16(), 200);
    let schedule = scheduler
        .get_schedule()
        .group_name(&group)
        .name(&id)
        .send()
        .await
        .expect("the schedule is still there");
    assert_eq!(
        schedule.state(),
        Some(&aws_sdk_scheduler::types::ScheduleState::Enabled)
    );
    let start = schedule.start_date().map(|d| d.secs());
    let resumes = next_at + chrono::Duration::minutes(6);
    assert_eq!(
        start,
        Some(resumes.timestamp()),
        "rate(2 minutes) resumes on its grid"
    );

    // Delivery: a receiver that answers 503 once, then 200.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("receiver");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let created: Value = http
        .post(format!("{base}/lambda-url/triggers-api/triggers"))
        .bearer_auth(TOKEN)
        .json(
            &json!({"name": "hooked", "kind": "api", "payload_schema": {"type": "object"},
                      "target": {"url": hook, "timeout_ms": 2000}}),
        )
        .send()
        .await
        .expect("create api trigger")
        .json()
        .await
        .expect("trigger json");
    assert!(
        created["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_"))
    );
    let fired: Value = http
        .post(format!(
            "{base}/lambda-url/triggers-api/triggers/{}/fire",
            created["id"].as_str().expect("id")
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"order": 7}))
        .send()
        .await
        .expect("fire")
        .json()
        .await
        .expect("event json");
    assert_eq!(fired["status"], "pending", "{fired}");
    let event_id = fired["id"].as_str().expect("event id").to_string();
    // Each delivery schedule runs once, as EventBridge would run it, until the event is final.
    let mut ran = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let event = loop {
        let event: Value = http
            .get(format!("{base}/lambda-url/events-api/events/{event_id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("get event")
            .json()
            .await
            .expect("event json");
        if event["status"] != "pending" {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "delivery did not finish: {event}"
        );
        let listed = scheduler
            .list_schedules()
            .group_name(&group)
            .name_prefix(format!("dlv-{event_id}"))
            .send()
            .await
            .expect("list delivery schedules");
        for name in listed.schedules().iter().filter_map(|s| s.name()) {
            if !ran.insert(name.to_string()) {
                continue;
            }
            let schedule = scheduler
                .get_schedule()
                .group_name(&group)
                .name(name)
                .send()
                .await
                .expect("get delivery schedule");
            let input: Value =
                serde_json::from_str(schedule.target().and_then(|t| t.input()).expect("input"))
                    .expect("input is JSON");
            assert_eq!(input, json!({"delivery_event_id": event_id}));
            // `at()` runs at its time, not before.
            let at = event["next_attempt_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            if let Some(at) = at {
                let wait = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
                tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
            }
            invoke(input).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(event["status"], "success", "{event}");
    let attempts = event["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{event}");
    assert_eq!(attempts[0]["status_code"], 503);
    assert_eq!(attempts[1]["status_code"], 200);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    drop(watch);
}
