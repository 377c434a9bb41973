//! Starts the `etp-local` binary built beside this one on a free port and talks to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const TOKEN: &str = "bench-token-0123456789abcdef";

pub struct Server {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `etp-local` from the same build as this binary (`make bench` builds both).
fn binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe
        .parent()
        .map(|d| d.join("etp-local"))
        .ok_or("no directory for the bench binary")?;
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --profile local -p local` (make bench does)",
            path.display()
        ))
    }
}

impl Server {
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Result<Self, String> {
        let port = etp::testing::fixtures::free_port();
        let mut cmd = Command::new(binary()?);
        cmd.env("ETP_LISTEN", format!("127.0.0.1:{port}"))
            .env("ETP_DATA_DIR", data_dir)
            .env("ETP_API_TOKEN", TOKEN)
            .env("RUST_LOG", "error")
            // The cases create far more than the default quota of 100,000 triggers.
            .env("ETP_MAX_TRIGGERS", "100000000")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| format!("start etp-local: {e}"))?;
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: {
                etp::delivery::install_crypto_provider();
                reqwest::Client::new()
            },
        };
        etp::testing::fixtures::wait_healthy(&server.http, &server.base, Duration::from_secs(60))
            .await?;
        Ok(server)
    }

    /// Peak resident memory of the server process so far, in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        self.status_mib("VmHWM:")
    }

    /// Resident memory of the server process now, in MiB.
    pub fn rss_mib(&self) -> Option<f64> {
        self.status_mib("VmRSS:")
    }

    /// CPU the server has used so far, in ms: the whole process (threads that have exited
    /// included) and its thread named `thread` (0 when it has none).
    pub fn cpu_ms(&self, thread: &str) -> (f64, f64) {
        let pid = self.child.id();
        let total = stat_cpu_ms(&format!("/proc/{pid}/stat")).map_or(0.0, |(_, ms)| ms);
        let named = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| stat_cpu_ms(&task.path().join("stat").to_string_lossy()))
            .filter(|(name, _)| name == thread)
            .map(|(_, ms)| ms)
            .sum();
        (total, named)
    }

    fn status_mib(&self, field: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| e.to_string())?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{path}: {status} {body}"))
        }
    }

    /// Every event of a listing, following cursors.
    pub async fn all_events(&self, query: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/events?limit=200&{query}&cursor={c}"),
                None => format!("/events?limit=200&{query}"),
            };
            let page = self.call(reqwest::Method::GET, &path, None).await?;
            if let Some(items) = page["items"].as_array() {
                out.extend(items.iter().cloned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return Ok(out),
            }
        }
    }
}

/// The name and CPU time (user + system, in ms) of a `/proc` `stat` file.
fn stat_cpu_ms(path: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // `pid (name) state ...`: the name may hold spaces, so split around the parentheses.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // utime and stime, in clock ticks: 100 a second (USER_HZ) on every Linux ABI.
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((stat[open + 1..close].to_string(), ticks * 10.0))
}
