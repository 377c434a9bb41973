//! `make test-hostile`: the real `etp-local` binary attacked with every input class a client, a
//! stored row or a webhook receiver can send at its extremes. After each case `/health` must
//! answer within a second with no panic caught, and the server's memory stay under a bound;
//! at the end the data directory, damaged by hand, must start again. Runs its cases in order
//! against one server (they share it on purpose) and prints `N passed, M failed`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use etp::testing::fixtures::{Answer, LocalServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "hostile-token-0123456789";
/// The server's resident memory may not pass this at any point of the suite.
const RSS_BOUND_MIB: u64 = 256;
/// How long any single attack may take to be answered.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// The server's settings for the suite: small timeouts and quotas so limits are reached fast,
/// a payload limit large enough to carry a 240 KB payload to the schema check, and private
/// addresses allowed for the in-process receivers.
const ENV: &[(&str, &str)] = &[
    ("RUST_LOG", "error"),
    (
        "ETP_ALLOW_PRIVATE_TARGETS",
        "127.0.0.1/32,::1/128,localhost",
    ),
    ("ETP_HEADER_READ_TIMEOUT", "2s"),
    ("ETP_REQUEST_TIMEOUT", "3s"),
    ("ETP_MAX_PAYLOAD_BYTES", "300000"),
    ("ETP_MAX_BODY_BYTES", "400000"),
    ("ETP_MAX_PENDING_TEST_RUNS", "5"),
    ("ETP_MAX_TRIGGERS", "150"),
    ("ETP_RETRY_DELAYS", "1s"),
];

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_etp-local"))
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn within<T>(started: Instant, limit: Duration, what: &str, value: T) -> Result<T, String> {
    let took = started.elapsed();
    ensure(took <= limit, || {
        format!("{what} took {took:?} (limit {limit:?})")
    })?;
    Ok(value)
}

struct Suite {
    server: LocalServer,
    data: tempfile::TempDir,
    receiver: Receiver,
    passed: usize,
    failed: Vec<String>,
}

impl Suite {
    /// Judges one case: its own outcome, then `/health` within a second with no panic caught,
    /// then the server's memory.
    async fn report(&mut self, name: &str, started: Instant, outcome: Result<(), String>) {
        let outcome = match outcome {
            Ok(()) => self.server.healthy_within(ANSWER_WITHIN).await,
            e => e,
        };
        let outcome = outcome.and_then(|()| match self.server.rss_mib() {
            Some(rss) if rss > RSS_BOUND_MIB => Err(format!(
                "resident memory {rss} MiB over the bound of {RSS_BOUND_MIB}"
            )),
            _ => Ok(()),
        });
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("ok    {name} ({} ms)", started.elapsed().as_millis());
            }
            Err(why) => {
                println!("FAIL  {name}: {why}");
                self.failed.push(name.to_string());
            }
        }
    }
}

/// Runs one attack against the suite's server (60 s at most) and reports it.
macro_rules! case {
    ($suite:ident, $name:expr, $attack:expr) => {{
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(60),
            $attack(&$suite.server, &$suite.receiver),
        )
        .await
        .unwrap_or_else(|_| Err("no answer within 60 s".into()));
        $suite.report($name, started, outcome).await;
    }};
}

// ------------------------------------------------------------------ receivers

/// Webhook receivers that misbehave on purpose, chosen by the request path. One listener on
/// 127.0.0.1 (host `127.0.0.1`) and the same one reachable as `localhost`: two hosts.
#[derive(Clone)]
struct Receiver {
    port: u16,
    /// Bytes the big-body receiver managed to write before the sender hung up.
    big_body_written: Arc<AtomicU64>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let rx = Self {
            port,
            big_body_written: Arc::new(AtomicU64::new(0)),
        };
        let handler = rx.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let h = handler.clone();
                tokio::spawn(async move { h.serve(stream).await });
            }
        });
        rx
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}/{path}", self.port)
    }

    async fn serve(&self, mut stream: TcpStream) {
        // Read the request head and body (Content-Length; deliveries always send one).
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .trim_start_matches('/')
            .to_string();
        let reply = |status: &str, extra: &str| {
            format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
        };
        match path
            .split_once('/')
            .map_or((path.as_str(), ""), |(a, b)| (a, b))
        {
            ("retry-after", value) => {
                let value = percent_decode(value);
                let _ = stream
                    .write_all(
                        reply(
                            "503 Service Unavailable",
                            &format!("Retry-After: {value}\r\n"),
                        )
                        .as_bytes(),
                    )
                    .await;
            }
            ("huge-header", _) => {
                let big = "x".repeat(60_000);
                let _ = stream
                    .write_all(
                        reply("503 Service Unavailable", &format!("X-Big: {big}\r\n")).as_bytes(),
                    )
                    .await;
            }
            ("many-headers", _) => {
                let many: String = (0..500).map(|i| format!("X-H{i}: {i}\r\n")).collect();
                let _ = stream
                    .write_all(reply("503 Service Unavailable", &many).as_bytes())
                    .await;
            }
            ("tarpit", _) => {
                // Never answer; hold the connection until the sender gives up.
                let _ = stream.read(&mut chunk).await;
            }
            ("big-body", _) => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n")
                    .await;
                let zeros = vec![b'0'; 64 * 1024];
                let mut written = 0u64;
                while written < 100 * 1024 * 1024 {
                    if stream.write_all(&zeros).await.is_err() {
                        break;
                    }
                    written += zeros.len() as u64;
                    self.big_body_written.store(written, Ordering::Relaxed);
                }
            }
            ("lies", _) => {
                // A status line no HTTP/1.1 client accepts.
                let _ = stream.write_all(b"HTTP/1.1 999999 Whatever\r\n\r\n").await;
            }
            _ => {
                let _ = stream.write_all(reply("200 OK", "").as_bytes()).await;
            }
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ------------------------------------------------------------------ helpers

fn iso(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn create(s: &LocalServer, def: Value) -> Result<String, String> {
    let a = s.post("/triggers", &def).await?;
    ensure(a.status == 201, || {
        format!("create: {} {}", a.status, a.body)
    })?;
    a.body["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "no id".to_string())
}

fn api_with(schema: Value) -> Value {
    json!({"name": "hostile", "kind": "api", "payload_schema": schema})
}

async fn hooked(
    s: &LocalServer,
    url: &str,
    timeout_ms: u32,
    retries: u8,
) -> Result<String, String> {
    create(
        s,
        json!({"name": "hooked", "kind": "api", "payload_schema": {"type": "object"},
               "target": {"url": url, "timeout_ms": timeout_ms, "max_attempts": retries}}),
    )
    .await
}

async fn fire(s: &LocalServer, id: &str, payload: &Value) -> Result<Answer, String> {
    s.post(&format!("/triggers/{id}/fire"), payload).await
}

/// The event once it has at least `attempts` attempts, within `limit`.
async fn event_after(
    s: &LocalServer,
    event_id: &str,
    attempts: usize,
    limit: Duration,
) -> Result<Value, String> {
    let deadline = Instant::now() + limit;
    loop {
        let e = s.get(&format!("/events/{event_id}")).await?.body;
        if e["attempts"].as_array().map_or(0, Vec::len) >= attempts {
            return Ok(e);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "event {event_id} has no {attempts} attempt(s): {e}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------ cases

async fn dates_out_of_range(s: &LocalServer, _: &Receiver) -> Result<(), String> {
    let far_ahead = iso(Utc::now() + chrono::Duration::days(3653 + 7));
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
            json!({"type": "cron", "expression": "*/5 * * * *", "timezone": "Pacific/Kiritimati",
                "start_at": "+262142-01-01T00:00:00Z"}),
            "schedule.start_at",
        ),
        (
            json!({"type": "cron", "expression": "0 0 * * *", "timezone": "America/Adak",
                "end_at": "-262143-01-01T00:00:00Z"}),
            "schedule.end_at",
        ),
        (json!({"type": "at", "at": far_ahead}), "schedule.at"),
        (
            json!({"type": "interval", "every_seconds": 315360000, "start_at": "9999-12-31T23:59:59Z"}),
            "schedule.start_at",
        ),
        (
            json!({"type": "interval", "every_seconds": 18446744073709551615u64}),
            "schedule.every_seconds",
        ),
    ];
    for (schedule, field) in cases {
        let def = json!({"name": "far", "kind": "scheduled", "schedule": schedule});
        for path in ["/triggers", "/triggers/test"] {
            let started = Instant::now();
            let a = s.post(path, &def).await?;
            within(started, ANSWER_WITHIN, path, ())?;
            a.is_problem(422, Some(field))
                .map_err(|e| format!("{path} {schedule}: {e}"))?;
        }
    }
    // An instant that does not parse at all names the field too.
    let a = s
        .post(
            "/triggers",
            &json!({"name": "x", "kind": "scheduled",
            "schedule": {"type": "at", "at": "99999999999-13-45T25:61:61Z"}}),
        )
        .await?;
    a.is_problem(422, None)?;
    // The instants of pauses, skips and the occurrences audit, at their extremes.
    let id = create(
        s,
        json!({"name": "audited", "kind": "scheduled",
            "schedule": {"type": "interval", "every_seconds": 1}}),
    )
    .await?;
    for until in [
        "+262142-01-01T00:00:00Z",
        "-262143-01-01T00:00:00Z",
        far_ahead.as_str(),
        "9223372036854775807",
    ] {
        let started = Instant::now();
        let a = s
            .post(&format!("/triggers/{id}/pause"), &json!({"until": until}))
            .await?;
        within(started, ANSWER_WITHIN, "pause until", ())?;
        a.is_problem(422, Some("until"))
            .map_err(|e| format!("pause until {until}: {e}"))?;
        let a = s
            .post(
                &format!("/triggers/{id}/skip"),
                &json!({"scheduled_for": until}),
            )
            .await?;
        a.is_problem(422, Some("scheduled_for"))
            .map_err(|e| format!("skip {until}: {e}"))?;
    }
    for (from, to, field) in [
        (
            "%2B262142-01-01T00:00:00Z",
            "%2B262142-01-02T00:00:00Z",
            "from",
        ),
        ("1970-01-01T00:00:00Z", "%2B262142-01-01T00:00:00Z", "to"),
        ("1970-01-01T00:00:00Z", "2030-01-01T00:00:00Z", "to"),
    ] {
        let started = Instant::now();
        let a = s
            .get(&format!("/triggers/{id}/occurrences?from={from}&to={to}"))
            .await?;
        within(started, ANSWER_WITHIN, "occurrences", ())?;
        a.is_problem(422, Some(field))
            .map_err(|e| format!("occurrences {from}..{to}: {e}"))?;
    }
    // The densest schedule over the longest window answers at once, bounded.
    let from = iso(Utc::now());
    let to = iso(Utc::now() + chrono::Duration::days(30));
    let started = Instant::now();
    let a = s
        .get(&format!(
            "/triggers/{id}/occurrences?from={from}&to={to}&limit=500"
        ))
        .await?;
    within(started, ANSWER_WITHIN, "dense occurrences", ())?;
    ensure(a.status == 200 && a.body["truncated"] == true, || {
        format!("dense occurrences: {} {}", a.status, a.body)
    })?;
    let listed = s.get("/triggers").await?;
    ensure(listed.status == 200, || {
        format!("listing after: {}", listed.status)
    })
}

async fn queries_cursors_and_ids(s: &LocalServer, _: &Receiver) -> Result<(), String> {
    for path in [
        "/events?cursor=not-a-cursor",
        "/events?cursor=MTc2NDU2MDAwMDAwMDowMWFiY2Q.AAAAAAAAAAAAAAAAAAAAAA",
        "/triggers?cursor=%00%ff",
        "/test-runs?cursor=x.y",
    ] {
        s.get(path).await?.is_problem(422, Some("cursor"))?;
    }
    let long_cursor = format!("/events?cursor={}", "A".repeat(60_000));
    s.get(&long_cursor)
        .await
        .map_err(|_| "a 60 KB cursor got no answer".to_string())?
        .is_problem(422, Some("cursor"))?;
    // Past what an HTTP/1.1 request line may be here (64 KiB): refused by the HTTP layer, a
    // 4xx or a closed connection, never a stalled or dead server.
    let beyond = format!("/events?cursor={}", "A".repeat(100_000));
    if let Ok(a) = s.get(&beyond).await {
        ensure((400..500).contains(&a.status), || {
            format!("a 100 KB request line: {}", a.status)
        })?;
    }
    for path in [
        "/events?limit=99999999999999999999999",
        "/events?limit=-1",
        "/events?state=gone",
        "/events?trigger_id=../../etc/passwd",
        "/triggers?kind=cron",
    ] {
        s.get(path)
            .await?
            .is_problem(400, None)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let long_id = "a".repeat(10_000);
    for path in [
        format!("/triggers/{long_id}"),
        format!("/events/{long_id}"),
        "/triggers/..%2F..%2Fetc%2Fpasswd".to_string(),
        "/triggers/01KAW3ZZZZZZZZZZZZZZZZZZZ%00".to_string(),
        "/events/81kaw3zzzzzzzzzzzzzzzzzzzz".to_string(),
    ] {
        let started = Instant::now();
        let a = s.get(&path).await?;
        within(started, ANSWER_WITHIN, &path, ())?;
        a.is_problem(404, None)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    // A real cursor, altered by one character, is refused.
    for _ in 0..3 {
        create(s, api_with(json!({"type": "object"}))).await?;
    }
    let page = s.get("/triggers?limit=1").await?.body;
    let cursor = page["next_cursor"]
        .as_str()
        .ok_or("no next cursor")?
        .to_string();
    s.get(&format!("/triggers?limit=1&cursor={cursor}"))
        .await
        .and_then(|a| ensure(a.status == 200, || format!("a real cursor: {}", a.status)))?;
    let mut forged = cursor.into_bytes();
    forged[0] = if forged[0] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8_lossy(&forged).into_owned();
    s.get(&format!("/triggers?limit=1&cursor={forged}"))
        .await?
        .is_problem(422, Some("cursor"))
}

async fn weaponized_schemas(s: &LocalServer, _: &Receiver) -> Result<(), String> {
    // Cyclic $ref in every position, and legitimately recursive ones.
    let schemas = [
        json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
        json!({"$ref": "#"}),
        json!({"type": "array", "items": {"$ref": "#"}}),
        json!({"type": "object", "properties": {"a": {"$ref": "#/properties/a"}}}),
        json!({"type": "object", "properties": {"a": {"$ref": "#/properties/b"}, "b": {"$ref": "#/properties/a"}}}),
        json!({"$defs": {"x": {"items": {"$ref": "#/$defs/x"}, "properties": {"y": {"$ref": "#/$defs/x"}}}}, "$ref": "#/$defs/x"}),
        json!({"$ref": ""}),
        json!({"$ref": "http://169.254.169.254/latest/meta-data"}),
        json!({"$ref": "file:///etc/passwd"}),
    ];
    let mut deep = json!([]);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    for schema in schemas {
        let started = Instant::now();
        let a = s.post("/triggers", &api_with(schema.clone())).await?;
        within(started, ANSWER_WITHIN, "compiling a cyclic schema", ())?;
        match a.status {
            201 => {
                let id = a.body["id"].as_str().unwrap_or_default().to_string();
                for payload in [json!({"a": {"a": {"a": {}}}}), deep.clone(), json!([[[]]])] {
                    let started = Instant::now();
                    let f = fire(s, &id, &payload).await?;
                    within(started, ANSWER_WITHIN, "checking a payload", ())?;
                    ensure(f.status == 202 || f.status == 422, || {
                        format!("{schema}: firing answered {} {}", f.status, f.body)
                    })?;
                }
            }
            _ => a
                .is_problem(422, Some("payload_schema"))
                .map_err(|e| format!("{schema}: {e}"))?,
        }
    }
    // A catastrophic pattern: linear time on the regex engine, whatever the payload.
    let evil = json!({"type": "array", "items": {"type": "string", "pattern": "^(a+)+$"}});
    let id = create(s, api_with(evil)).await?;
    let payload = Value::Array(
        (0..8_000)
            .map(|_| Value::String(format!("{}!", "a".repeat(28))))
            .collect(),
    );
    let started = Instant::now();
    let f = fire(s, &id, &payload).await?;
    within(
        started,
        ANSWER_WITHIN,
        "a 240 KB payload against ^(a+)+$",
        (),
    )?;
    f.is_problem(422, None)?;
    // Backreferences need a backtracking engine: refused when the schema is written.
    let started = Instant::now();
    s.post(
        "/triggers",
        &api_with(json!({"type": "string", "pattern": "^(a+)\\1$"})),
    )
    .await?
    .is_problem(422, Some("payload_schema"))?;
    within(started, ANSWER_WITHIN, "a backreference pattern", ())?;
    // At the size cap (64 KiB) accepted and usable; over it, or too deep, refused.
    let mut properties = serde_json::Map::new();
    let mut i = 0;
    while serde_json::to_string(&properties).map_or(0, |t| t.len()) < 64 * 1024 - 200 {
        properties.insert(format!("p{i:05}"), json!({"type": "integer", "maximum": i}));
        i += 1;
    }
    let at_cap = json!({"type": "object", "properties": properties});
    let started = Instant::now();
    let id = create(s, api_with(at_cap.clone())).await?;
    fire(s, &id, &json!({"p00001": 1}))
        .await
        .and_then(|a| ensure(a.status == 202, || format!("at the cap: {}", a.status)))?;
    within(started, ANSWER_WITHIN, "a schema at the size cap", ())?;
    let mut over = at_cap;
    over["description"] = json!("x".repeat(1_000));
    s.post("/triggers", &api_with(over))
        .await?
        .is_problem(422, Some("payload_schema"))?;
    let mut nested = json!({"type": "object"});
    for _ in 0..40 {
        nested = json!({"type": "object", "properties": {"n": nested}});
    }
    s.post("/triggers", &api_with(nested))
        .await?
        .is_problem(422, Some("payload_schema"))
}

async fn oversized_payloads(s: &LocalServer, _: &Receiver) -> Result<(), String> {
    let id = create(s, api_with(json!({"type": "object"}))).await?;
    let big = json!({"blob": "x".repeat(300_001)});
    let a = fire(s, &id, &big).await?;
    a.is_problem(413, None)?;
    let huge = json!({"blob": "x".repeat(500_000)});
    fire(s, &id, &huge).await?.is_problem(413, None)?;
    let def = json!({"name": "static", "kind": "scheduled",
        "schedule": {"type": "interval", "every_seconds": 3600},
        "payload": {"blob": "x".repeat(300_001)}});
    s.post("/triggers", &def)
        .await?
        .is_problem(422, Some("payload"))
}

async fn hostile_retry_after(s: &LocalServer, rx: &Receiver) -> Result<(), String> {
    let values = [
        "9223372036854776",
        "99999999999999999999999999999999",
        "-5",
        "1.5",
        "garbage",
        "Fri%2C%2031%20Dec%209999%2023%3A59%3A59%20GMT",
        "Thu%2C%2001%20Jan%201970%2000%3A00%3A00%20GMT",
        "",
    ];
    for value in values {
        let id = hooked(
            s,
            &rx.url("127.0.0.1", &format!("retry-after/{value}")),
            1000,
            1,
        )
        .await?;
        let fired = fire(s, &id, &json!({})).await?;
        let event_id = fired.body["id"].as_str().unwrap_or_default().to_string();
        let e = event_after(s, &event_id, 1, Duration::from_secs(5)).await?;
        let attempt = &e["attempts"][0];
        ensure(attempt["status_code"] == 503, || {
            format!("{value}: {attempt}")
        })?;
        let at = chrono::DateTime::parse_from_rfc3339(attempt["at"].as_str().unwrap_or(""));
        let next =
            chrono::DateTime::parse_from_rfc3339(e["next_attempt_at"].as_str().unwrap_or(""));
        match (at, next) {
            (Ok(at), Ok(next)) => ensure(
                next >= at && next - at <= chrono::Duration::seconds(3600 + 5),
                || format!("{value}: retry planned at {next} after {at}"),
            )?,
            _ => return Err(format!("{value}: no retry planned: {e}")),
        }
    }
    for path in ["huge-header", "many-headers", "lies"] {
        let id = hooked(s, &rx.url("127.0.0.1", path), 1000, 0).await?;
        let fired = fire(s, &id, &json!({})).await?;
        let event_id = fired.body["id"].as_str().unwrap_or_default().to_string();
        let e = event_after(s, &event_id, 1, Duration::from_secs(5)).await?;
        ensure(e["status"] == "failure", || format!("{path}: {e}"))?;
    }
    Ok(())
}

async fn big_bodies_are_cut_off(s: &LocalServer, rx: &Receiver) -> Result<(), String> {
    let id = hooked(s, &rx.url("127.0.0.1", "big-body"), 10_000, 0).await?;
    let fired = fire(s, &id, &json!({})).await?;
    let event_id = fired.body["id"].as_str().unwrap_or_default().to_string();
    let started = Instant::now();
    let e = event_after(s, &event_id, 1, Duration::from_secs(5)).await?;
    within(started, Duration::from_secs(3), "a 100 MB answer", ())?;
    let kept = e["attempts"][0]["response_body"]
        .as_str()
        .map_or(0, str::len);
    ensure(kept == 4096, || format!("kept {kept} bytes of the body"))?;
    ensure(e["status"] == "success", || {
        format!("status {}", e["status"])
    })?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = rx.big_body_written.load(Ordering::Relaxed);
    ensure(written < 32 * 1024 * 1024, || {
        format!("the receiver got to write {written} bytes: the sender kept reading")
    })
}

async fn a_tarpit_does_not_stall_other_hosts(s: &LocalServer, rx: &Receiver) -> Result<(), String> {
    let mut tarpitted = Vec::new();
    for _ in 0..8 {
        let id = hooked(s, &rx.url("127.0.0.1", "tarpit"), 2000, 0).await?;
        tarpitted.push(fire(s, &id, &json!({})).await?);
    }
    // Another host while the tarpit holds its share of the delivery slots.
    let id = hooked(s, &rx.url("localhost", "ok"), 2000, 0).await?;
    let fired = fire(s, &id, &json!({})).await?;
    let event_id = fired.body["id"].as_str().unwrap_or_default().to_string();
    let started = Instant::now();
    let e = event_after(s, &event_id, 1, Duration::from_secs(2)).await?;
    ensure(e["status"] == "success", || format!("other host: {e}"))?;
    within(
        started,
        Duration::from_secs(2),
        "a delivery beside a tarpit",
        (),
    )?;
    // The tarpitted ones time out and fail (no retries asked for).
    let last = tarpitted
        .last()
        .and_then(|a| a.body["id"].as_str())
        .unwrap_or_default();
    let e = event_after(s, last, 1, Duration::from_secs(20)).await?;
    ensure(e["attempts"][0]["error"] == "timeout", || {
        format!("tarpit: {e}")
    })
}

async fn half_open_connections(s: &LocalServer, _: &Receiver) -> Result<(), String> {
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..500 {
        let mut c = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
        let _ = c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
        held.push(c);
    }
    s.healthy_within(ANSWER_WITHIN).await?;
    let started = Instant::now();
    let listed = s.get("/triggers?limit=1").await?;
    within(
        started,
        ANSWER_WITHIN,
        "a listing beside 500 half-open connections",
        (),
    )?;
    ensure(listed.status == 200, || {
        format!("listing: {}", listed.status)
    })?;
    drop(held);
    Ok(())
}

async fn slow_bodies_time_out(s: &LocalServer, _: &Receiver) -> Result<(), String> {
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut c = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
    let head = format!(
        "POST /triggers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    c.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let drip = async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if c.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drip).await;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut answer))
        .await
        .map_err(|_| "no answer to a dripping body".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer[..n]);
    ensure(text.starts_with("HTTP/1.1 408"), || {
        format!("answered {text:?}")
    })?;
    ensure(text.contains("application/problem+json"), || {
        format!("answered {text:?}")
    })?;
    within(started, Duration::from_secs(6), "the request timeout", ())
}

async fn test_runs_are_bounded(s: &LocalServer, _: &Receiver) -> Result<(), String> {
    let far = json!({"name": "later", "kind": "scheduled",
        "schedule": {"type": "interval", "every_seconds": 2 * 86_400, "recurring": false}});
    s.post("/triggers/test", &far)
        .await?
        .is_problem(422, Some("schedule"))?;
    let soon = json!({"name": "soon", "kind": "scheduled",
        "schedule": {"type": "interval", "every_seconds": 3600, "recurring": false},
        "target": {"url": "https://example.com/hook"}});
    let mut runs = Vec::new();
    for _ in 0..5 {
        let a = s.post("/triggers/test", &soon).await?;
        ensure(a.status == 202, || {
            format!("test run: {} {}", a.status, a.body)
        })?;
        runs.push(a.body["run_id"].as_str().unwrap_or_default().to_string());
    }
    s.post("/triggers/test", &soon)
        .await?
        .is_problem(429, None)?;
    let listed = s.get("/test-runs").await?;
    let items = listed.body["items"].as_array().cloned().unwrap_or_default();
    ensure(items.len() == 5, || format!("listed {}", listed.body))?;
    ensure(!listed.body.to_string().contains("whsec_"), || {
        "a secret in the listing".into()
    })?;
    let cancel = s
        .call(
            reqwest::Method::DELETE,
            &format!("/test-runs/{}", runs[0]),
            None,
        )
        .await?;
    ensure(cancel.status == 204, || {
        format!("cancel: {}", cancel.status)
    })?;
    s.call(
        reqwest::Method::DELETE,
        &format!("/test-runs/{}", runs[0]),
        None,
    )
    .await?
    .is_problem(404, None)?;
    let again = s.post("/triggers/test", &soon).await?;
    ensure(again.status == 202, || {
        format!("room again: {}", again.status)
    })?;
    for id in runs.iter().skip(1) {
        s.call(reqwest::Method::DELETE, &format!("/test-runs/{id}"), None)
            .await?;
    }
    Ok(())
}

async fn trigger_quota(s: &LocalServer, _: &Receiver) -> Result<(), String> {
    let mut made = Vec::new();
    loop {
        let a = s
            .post("/triggers", &api_with(json!({"type": "object"})))
            .await?;
        match a.status {
            201 => made.push(a.body["id"].as_str().unwrap_or_default().to_string()),
            409 => {
                a.is_problem(409, None)?;
                ensure(
                    a.body["detail"]
                        .as_str()
                        .unwrap_or("")
                        .contains("ETP_MAX_TRIGGERS"),
                    || format!("the problem does not name the quota: {}", a.body),
                )?;
                break;
            }
            other => return Err(format!("create: {other} {}", a.body)),
        }
        ensure(made.len() <= 150, || {
            "the quota of 150 was not enforced".into()
        })?;
    }
    let last = made
        .pop()
        .ok_or("the quota was reached before any create")?;
    let d = s
        .call(reqwest::Method::DELETE, &format!("/triggers/{last}"), None)
        .await?;
    ensure(d.status == 204, || format!("delete: {}", d.status))?;
    made.push(create(s, api_with(json!({"type": "object"}))).await?);
    // Room for the cases after this one.
    for id in made {
        s.call(reqwest::Method::DELETE, &format!("/triggers/{id}"), None)
            .await?;
    }
    Ok(())
}

// ------------------------------------------------------------------ restarts

/// Damages the stored data the way an older version or a corrupted file could, then restarts.
fn damage(data: &Path, unreadable: &str, out_of_range: &str) -> Result<(), String> {
    let db = rusqlite::Connection::open(data.join("etp.sqlite3")).map_err(|e| e.to_string())?;
    db.execute_batch(&format!(
        "UPDATE triggers SET body = '{{not json' WHERE id = '{unreadable}';
         UPDATE triggers SET body = json_set(body, '$.schedule.start_at', '+262142-01-01T00:00:00Z')
           WHERE id = '{out_of_range}';
         UPDATE deliveries SET plan = 'garbage', due_ms = 0
           WHERE event_id IN (SELECT event_id FROM deliveries LIMIT 3);
         INSERT OR REPLACE INTO timer_jobs (key, due_ms, generation) VALUES
           ('trigger:01kzzzzzzzzzzzzzzzzzzzzzzz', 9223372036854775807, 1),
           ('junk', -9223372036854775808, 2),
           ('test:01kzzzzzzzzzzzzzzzzzzzzzzz', 0, 3);"
    ))
    .map_err(|e| e.to_string())?;
    // The intake log: binary junk, a line that is JSON but no firing, an event whose instant is
    // out of range, and a last line cut short.
    let mut junk: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    junk.extend_from_slice(b"\n{\"event\":{\"id\":1}}\n");
    junk.extend_from_slice(
        br#"{"event":{"id":"01kzzzzzzzzzzzzzzzzzzzzzzz","trigger_name":"x","kind":"api","source":"api","is_test":false,"fired_at":"+262142-01-01T00:00:00Z","payload":null,"status":"success"},"delivery":null}"#,
    );
    junk.extend_from_slice(b"\n{\"event\":{\"id\":\"01k");
    let intake = data.join("etp.intake");
    std::fs::create_dir_all(&intake).map_err(|e| e.to_string())?;
    std::fs::write(intake.join("000000000042.log"), junk).map_err(|e| e.to_string())
}

async fn listing_answers(s: &LocalServer, _: &Receiver) -> Result<(), String> {
    let listed = s.get("/triggers").await?;
    ensure(listed.status == 200, || {
        format!("listing: {}", listed.status)
    })
}

async fn restarts(suite: &mut Suite) {
    let s = &suite.server;
    let every = |name: &str| {
        json!({"name": name, "kind": "scheduled",
               "schedule": {"type": "interval", "every_seconds": 60}})
    };
    let (unreadable, out_of_range) =
        match (create(s, every("a")).await, create(s, every("b")).await) {
            (Ok(a), Ok(b)) => (a, b),
            _ => {
                println!("FAIL  restart on damaged data: could not create its triggers");
                suite.failed.push("restart on damaged data".into());
                return;
            }
        };
    // kill -9: nothing gets a chance to tidy up.
    let _ = suite.server.child.kill();
    let _ = suite.server.child.wait();
    let started = Instant::now();
    let outcome = async {
        damage(suite.data.path(), &unreadable, &out_of_range)?;
        let s = LocalServer::start(&bin(), suite.data.path(), TOKEN, ENV).await?;
        let listed = s.get("/triggers?limit=200").await?;
        ensure(listed.status == 200, || {
            format!("listing: {} {}", listed.status, listed.body)
        })?;
        for id in [&unreadable, &out_of_range] {
            let one = s.get(&format!("/triggers/{id}")).await?;
            ensure(
                one.status == 200
                    && one.body["status"] == "broken"
                    && one.body["problem"].is_string(),
                || format!("{id} is not shown as broken: {} {}", one.status, one.body),
            )?;
            let in_list = listed.body["items"]
                .as_array()
                .and_then(|items| items.iter().find(|t| t["id"] == id.as_str()).cloned())
                .ok_or_else(|| format!("{id} missing from the listing"))?;
            ensure(in_list["status"] == "broken", || {
                format!("listed as {in_list}")
            })?;
        }
        // The owner repairs one with a new definition.
        let put = s
            .call(
                reqwest::Method::PUT,
                &format!("/triggers/{unreadable}"),
                Some(&every("repaired")),
            )
            .await?;
        ensure(put.status == 200 && put.body["status"] == "active", || {
            format!("repair: {} {}", put.status, put.body)
        })?;
        s.healthy_within(ANSWER_WITHIN).await?;
        Ok::<LocalServer, String>(s)
    }
    .await;
    match outcome {
        Ok(s) => {
            suite.server = s;
            suite.passed += 1;
            println!(
                "ok    restart on damaged data ({} ms)",
                started.elapsed().as_millis()
            );
        }
        Err(why) => {
            println!("FAIL  restart on damaged data: {why}");
            suite.failed.push("restart on damaged data".into());
            return;
        }
    }
    // And once more, cleanly, on the same data directory.
    let _ = suite.server.child.kill();
    let _ = suite.server.child.wait();
    match LocalServer::start(&bin(), suite.data.path(), TOKEN, ENV).await {
        Ok(s) => {
            suite.server = s;
            case!(suite, "restart again", listing_answers);
        }
        Err(why) => {
            println!("FAIL  restart again: {why}");
            suite.failed.push("restart again".into());
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let data = tempfile::tempdir().expect("temp dir");
    let server = match LocalServer::start(&bin(), data.path(), TOKEN, ENV).await {
        Ok(s) => s,
        Err(e) => {
            println!("FAIL  start: {e}");
            println!("0 passed, 1 failed");
            return std::process::ExitCode::FAILURE;
        }
    };
    let receiver = Receiver::start().await;
    let mut suite = Suite {
        server,
        data,
        receiver,
        passed: 0,
        failed: Vec::new(),
    };
    case!(suite, "instants out of range", dates_out_of_range);
    case!(suite, "queries, cursors and ids", queries_cursors_and_ids);
    case!(suite, "weaponized payload schemas", weaponized_schemas);
    case!(suite, "oversized payloads", oversized_payloads);
    case!(
        suite,
        "receivers: Retry-After, headers, lies",
        hostile_retry_after
    );
    case!(suite, "receivers: a 100 MB body", big_bodies_are_cut_off);
    case!(
        suite,
        "receivers: a tarpit",
        a_tarpit_does_not_stall_other_hosts
    );
    case!(suite, "500 half-open connections", half_open_connections);
    case!(suite, "a dripping request body", slow_bodies_time_out);
    case!(
        suite,
        "test runs: lead, quota, cancel",
        test_runs_are_bounded
    );
    case!(suite, "trigger quota", trigger_quota);
    restarts(&mut suite).await;
    println!("{} passed, {} failed", suite.passed, suite.failed.len());
    if suite.failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        println!("failed: {}", suite.failed.join("; "));
        std::process::ExitCode::FAILURE
    }
}
