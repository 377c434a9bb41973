//! Helpers every test suite shares: free ports, the real `etp-local` binary as a child process
//! with an HTTP client, and its memory use.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port nothing listens on right now (another process may still take it first).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Waits until `{base}/health` answers 200, for at most `within`.
pub async fn wait_healthy(
    http: &reqwest::Client,
    base: &str,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{base} did not become healthy within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running `etp-local`; killed when dropped.
pub struct LocalServer {
    pub child: Child,
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a call answered: status, content type and the body as JSON (`Null` when not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Answer {
    /// Whether this is a problem+json with `status` naming `field` (when given).
    pub fn is_problem(&self, status: u16, field: Option<&str>) -> Result<(), String> {
        let fields: Vec<&str> = self.body["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        let ok = self.status == status
            && self.content_type == "application/problem+json"
            && self.body["status"] == status
            && self.body["detail"].is_string()
            && field.is_none_or(|f| fields.contains(&f));
        if ok {
            Ok(())
        } else {
            Err(format!(
                "expected a {status} problem{}, got {} {} {}",
                field.map(|f| format!(" naming {f}")).unwrap_or_default(),
                self.status,
                self.content_type,
                self.body
            ))
        }
    }
}

impl LocalServer {
    /// Starts `bin` on a free port with `data_dir`, the token and `env`, and waits (up to 30 s)
    /// until `/health` answers 200.
    pub async fn start(
        bin: &Path,
        data_dir: &Path,
        token: &str,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        Self::start_logging(bin, data_dir, token, env, Stdio::inherit()).await
    }

    /// [`LocalServer::start`], with the server's log (stderr) sent to `log`.
    pub async fn start_logging(
        bin: &Path,
        data_dir: &Path,
        token: &str,
        env: &[(&str, &str)],
        log: Stdio,
    ) -> Result<Self, String> {
        crate::delivery::install_crypto_provider();
        let port = free_port();
        let child = Command::new(bin)
            .envs(env.iter().copied())
            .env("ETP_LISTEN", format!("127.0.0.1:{port}"))
            .env("ETP_DATA_DIR", data_dir)
            .env("ETP_API_TOKEN", token)
            .env_remove("ETP_LOG_FORMAT")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| e.to_string())?,
            token: token.to_string(),
        };
        wait_healthy(&server.http, &server.base, Duration::from_secs(30)).await?;
        Ok(server)
    }

    /// One authorized call; `body` is sent as JSON.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let shown: String = path.chars().take(120).collect();
        let res = req.send().await.map_err(|e| format!("{shown}: {e}"))?;
        Ok(read(res).await)
    }

    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer, String> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `/health` within `within`: 200 and no panic caught so far.
    pub async fn healthy_within(&self, within: Duration) -> Result<(), String> {
        let started = Instant::now();
        let res = self
            .http
            .get(format!("{}/health", self.base))
            .timeout(within)
            .send()
            .await
            .map_err(|e| format!("/health did not answer within {within:?}: {e}"))?;
        let answer = read(res).await;
        if answer.status != 200 {
            return Err(format!("/health: {} {}", answer.status, answer.body));
        }
        if answer.body["panics"] != 0 {
            return Err(format!("the server caught a panic: {}", answer.body));
        }
        if started.elapsed() > within {
            return Err(format!("/health took {:?}", started.elapsed()));
        }
        Ok(())
    }

    /// The server's resident memory in MiB (Linux).
    pub fn rss_mib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024)
    }
}

async fn read(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = res.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
    }
}

/// The instant test data is built around: a whole hour derived from the real clock (see
/// [`crate::testing::instants`]), the same for every test of a binary.
pub fn t0() -> chrono::DateTime<chrono::Utc> {
    crate::testing::instants::next_hour()
}

/// Serves `router` on a free loopback port in the background; returns its address.
pub async fn spawn_http(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// One request a [`WebhookReceiver`] saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How a [`WebhookReceiver`] answers the `hit`-th request (1-based) to `path` (a future, so
/// an answer may take its time).
pub type Script = dyn Fn(&str, usize) -> futures_util::future::BoxFuture<'static, axum::response::Response>
    + Send
    + Sync;

/// An in-process webhook receiver on loopback: records every request and answers as its
/// script says, per path and hit number, so every retry path is reproducible.
#[derive(Clone)]
pub struct WebhookReceiver {
    /// `http://127.0.0.1:<port>`; targets are `{base}/<path>`.
    pub base: String,
    state: std::sync::Arc<ReceiverState>,
}

struct ReceiverState {
    seen: std::sync::Mutex<Vec<Seen>>,
    hits: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    script: Box<Script>,
}

impl WebhookReceiver {
    pub async fn start(
        script: impl Fn(
            &str,
            usize,
        ) -> futures_util::future::BoxFuture<'static, axum::response::Response>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        use axum::extract::{Path, State};
        let state = std::sync::Arc::new(ReceiverState {
            seen: std::sync::Mutex::new(Vec::new()),
            hits: std::sync::Mutex::new(std::collections::HashMap::new()),
            script: Box::new(script),
        });
        async fn receive(
            State(rx): State<std::sync::Arc<ReceiverState>>,
            Path(path): Path<String>,
            headers: axum::http::HeaderMap,
            body: axum::body::Bytes,
        ) -> axum::response::Response {
            let hit = {
                let mut hits = rx.hits.lock().unwrap_or_else(|e| e.into_inner());
                let n = hits.entry(path.clone()).or_default();
                *n += 1;
                *n
            };
            rx.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Seen {
                    path: path.clone(),
                    headers,
                    body: body.to_vec(),
                });
            (rx.script)(&path, hit).await
        }
        let router = axum::Router::new()
            .route("/{*path}", axum::routing::post(receive))
            .with_state(state.clone());
        let addr = spawn_http(router).await;
        Self {
            base: format!("http://{addr}"),
            state,
        }
    }

    /// The target URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// Every request seen so far to `path`, in arrival order.
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}
