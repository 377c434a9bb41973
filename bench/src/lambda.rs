//! Lambda cases: each function binary's cold start under a minimal Lambda runtime API (spawn to
//! its first request for work), warm invocation latency, peak RSS, and the zip size of the
//! stripped arm64 `bootstrap` that `sam build` produced.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

#[derive(Debug, Clone, Serialize)]
pub struct LambdaRow {
    pub function: String,
    /// Spawn to the runtime's first `next` request, median of the cold starts.
    pub init_ms: f64,
    pub cold_starts: usize,
    pub warm_p50_ms: f64,
    pub warm_p99_ms: f64,
    /// What the warm invocation does (network to DynamoDB is reported apart).
    pub warm_work: String,
    pub peak_rss_mib: f64,
    pub zip_bytes: Option<u64>,
}

/// The runtime API a Lambda function polls: hands out queued events, collects responses.
struct Emulator {
    next_seen: mpsc::UnboundedSender<Instant>,
    events: Mutex<mpsc::UnboundedReceiver<Value>>,
    responses: mpsc::UnboundedSender<Instant>,
}

async fn next(State(emu): State<Arc<Emulator>>) -> (HeaderMap, Bytes) {
    let _ = emu.next_seen.send(Instant::now());
    let event = emu.events.lock().await.recv().await.unwrap_or(Value::Null);
    let mut headers = HeaderMap::new();
    let deadline = (chrono::Utc::now().timestamp_millis() + 30_000).to_string();
    for (k, v) in [
        ("lambda-runtime-aws-request-id", etp::domain::new_id()),
        ("lambda-runtime-deadline-ms", deadline),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:bench".to_string(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000".to_string(),
        ),
    ] {
        if let Ok(v) = v.parse() {
            headers.insert(k, v);
        }
    }
    (headers, Bytes::from(event.to_string()))
}

/// Reads the whole body: a response left unread makes the server close the connection, and the
/// runtime's pooled client may already be reusing it for its next poll, which then fails.
async fn done(State(emu): State<Arc<Emulator>>, _body: Bytes) -> &'static str {
    let _ = emu.responses.send(Instant::now());
    "{}"
}

/// A function binary: built with the Lambda profile (`release`) beside a bench built with the
/// `local` profile, else beside the bench itself (the debug smoke run).
fn binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no bench directory")?;
    let dir = if dir.file_name().is_some_and(|n| n == "local") {
        dir.with_file_name("release")
    } else {
        dir.to_path_buf()
    };
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: `make bench` builds it",
            path.display()
        ))
    }
}

/// Where a function's own log goes, so a failed case can be explained.
fn log_file(name: &str) -> Result<std::fs::File, String> {
    let dir = Path::new("target/bench");
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())
}

/// Zip size of `sam build`'s bootstrap for `resource`, compressed as SAM packages it.
fn zip_bytes(resource: &str) -> Option<u64> {
    let bootstrap = Path::new(".aws-sam/build").join(resource).join("bootstrap");
    if !bootstrap.exists() {
        return None;
    }
    let script = "import io,sys,zipfile\nb=io.BytesIO()\nwith zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[1],'bootstrap')\nprint(len(b.getvalue()))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&bootstrap)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0)
}

fn http_event(path: &str) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"host": "bench.example", "user-agent": "bench"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "bench", "domainName": "bench.example",
            "domainPrefix": "bench", "requestId": "bench", "routeKey": "$default",
            "stage": "$default", "time": "24/Nov/2026:10:00:00 +0000", "timeEpoch": 0,
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "bench"}
        },
        "isBase64Encoded": false
    })
}

/// One function: `cold` cold starts (each a fresh process), then `warm` invocations.
async fn measure(
    name: &str,
    resource: &str,
    event: Value,
    warm_work: &str,
    env: &[(String, String)],
    cold: usize,
    warm: usize,
) -> Result<LambdaRow, String> {
    let mut inits = Vec::new();
    let mut warm_ms = Vec::new();
    let mut peak = 0.0f64;
    for round in 0..cold {
        let (next_tx, mut next_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (resp_tx, mut resp_rx) = mpsc::unbounded_channel();
        let emu = Arc::new(Emulator {
            next_seen: next_tx,
            events: Mutex::new(event_rx),
            responses: resp_tx,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(done))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(done))
            .route("/2018-06-01/runtime/init/error", post(done))
            .with_state(emu);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let started = Instant::now();
        let mut child = Command::new(binary(name)?)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .stdout(Stdio::null())
            .stderr(log_file(name)?)
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        let first = tokio::time::timeout(Duration::from_secs(20), next_rx.recv())
            .await
            .map_err(|_| format!("{name} never asked for work"))?
            .ok_or("emulator closed")?;
        inits.push((first - started).as_secs_f64() * 1000.0);
        let invocations = if round + 1 == cold { warm + 1 } else { 1 };
        for i in 0..invocations {
            let sent = Instant::now();
            event_tx.send(event.clone()).map_err(|e| e.to_string())?;
            let answered = tokio::time::timeout(Duration::from_secs(20), resp_rx.recv())
                .await
                .map_err(|_| {
                    format!(
                        "{name} did not answer invocation {i} of cold start {round} \
                         (its log: target/bench/{name}.log)"
                    )
                })?
                .ok_or("emulator closed")?;
            // The first invocation of a process is not warm.
            if i > 0 {
                warm_ms.push((answered - sent).as_secs_f64() * 1000.0);
            }
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        {
            peak = peak.max(kb / 1024.0);
        }
        let _ = child.kill();
        let _ = child.wait();
        server.abort();
    }
    Ok(LambdaRow {
        function: name.into(),
        init_ms: percentile(inits.clone(), 0.5),
        cold_starts: inits.len(),
        warm_p50_ms: percentile(warm_ms.clone(), 0.5),
        warm_p99_ms: percentile(warm_ms, 0.99),
        warm_work: warm_work.into(),
        peak_rss_mib: peak,
        zip_bytes: zip_bytes(resource),
    })
}

/// All three functions, and triggers-api once more with its token from the environment.
/// `endpoint` is moto's URL: the fire function's warm invocation reads a
/// trigger there; the HTTP functions' serve a route that touches no table.
pub async fn functions(
    endpoint: &str,
    tables: &etp::aws::dynamo::Tables,
    cold: usize,
    warm: usize,
) -> Result<Vec<LambdaRow>, String> {
    let mut env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("SCHEDULE_GROUP", "bench"),
        ("SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/bench"),
        (
            "FIRE_FUNCTION_ARN",
            "arn:aws:lambda:us-east-1:123456789012:function:fire",
        ),
        ("FIRE_DLQ_ARN", "arn:aws:sqs:us-east-1:123456789012:bench"),
        // As the stack does: the API functions read the token from Secrets Manager at cold
        // start, so its cost is in the init figures.
        ("ETP_API_TOKEN_SECRET", "bench-api-token"),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    etp::testing::moto::create_secret(endpoint, "bench-api-token", "bench-token-0123456789")
        .await?;
    env.push(("TRIGGERS_TABLE".into(), tables.triggers.clone()));
    env.push(("EVENTS_TABLE".into(), tables.events.clone()));
    env.push(("STATS_TABLE".into(), tables.stats.clone()));
    let openapi = http_event("/openapi.json");
    // The occurrence of a trigger that does not exist, due a minute ago by the real clock (the
    // function reads it): one GetItem, then nothing to fire.
    let due = chrono::Utc::now() - chrono::Duration::minutes(1);
    let fire = json!({"trigger_id": "01jex4mp1e0000000000000000",
                      "scheduled_time": due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
    // The same function with its token in the environment: what its start costs without the
    // Secrets Manager read (the API functions' only network call at start).
    let env_token: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "ETP_API_TOKEN_SECRET")
        .cloned()
        .chain([("ETP_API_TOKEN".into(), "bench-token-0123456789".into())])
        .collect();
    let mut without_secret = measure(
        "triggers-api",
        "TriggersApiFunction",
        openapi.clone(),
        "GET /openapi.json (no table access)",
        &env_token,
        cold,
        warm,
    )
    .await?;
    without_secret.function = "triggers-api, token from ETP_API_TOKEN".into();
    Ok(vec![
        measure(
            "triggers-api",
            "TriggersApiFunction",
            openapi.clone(),
            "GET /openapi.json (no table access)",
            &env,
            cold,
            warm,
        )
        .await?,
        measure(
            "events-api",
            "EventsApiFunction",
            openapi,
            "GET /openapi.json (no table access)",
            &env,
            cold,
            warm,
        )
        .await?,
        measure(
            "fire",
            "FireFunction",
            fire,
            "a firing of a missing trigger: one GetItem on moto, included",
            &env,
            cold,
            warm,
        )
        .await?,
        without_secret,
    ])
}
