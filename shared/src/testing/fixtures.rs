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
        crate::delivery::install_crypto_provider();
        let port = free_port();
        let child = Command::new(bin)
            .envs(env.iter().copied())
            .env("ETP_LISTEN", format!("127.0.0.1:{port}"))
            .env("ETP_DATA_DIR", data_dir)
            .env("ETP_API_TOKEN", token)
            .env_remove("ETP_LOG_FORMAT")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = server
                .http
                .get(format!("{}/health", server.base))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err("the server did not become healthy within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
