//! The ceiling of each HTTP case: the real server's response to the case's request, captured,
//! then served from memory by the `ceiling` binary on the same stack and loaded the same way.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::server::{Server, TOKEN};

/// One captured response (the `ceiling` binary's input).
#[derive(Debug, Clone, Serialize)]
pub struct Capture {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Headers the serving stack writes itself.
const OWN_HEADERS: [&str; 4] = ["date", "content-length", "transfer-encoding", "connection"];

/// The real server's answer to one request of the case.
pub async fn capture(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Capture, String> {
    let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut req = server
        .http
        .request(m, format!("{}{path}", server.base))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let res = req.send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .filter(|(k, _)| !OWN_HEADERS.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = res.text().await.map_err(|e| e.to_string())?;
    Ok(Capture {
        method: method.into(),
        path: path.into(),
        status,
        headers,
        body,
    })
}

pub struct Ceiling {
    child: Child,
    pub base: String,
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ceiling {
    /// Starts `ceiling` (built beside this binary) serving `captures`.
    pub async fn start(dir: &Path, captures: &[Capture]) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let binary = exe
            .parent()
            .map(|d| d.join("ceiling"))
            .ok_or("no directory for the bench binary")?;
        let file = dir.join("captures.json");
        std::fs::write(
            &file,
            serde_json::to_vec(captures).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let port = etp::testing::fixtures::free_port();
        let child = Command::new(&binary)
            .arg(&file)
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", binary.display()))?;
        let ceiling = Ceiling {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(ceiling);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("the ceiling server did not start".into())
    }
}
