//! `ceiling`: the machine's ceiling for the benchmark's HTTP cases. It serves responses the
//! real server gave (captured by the bench) from memory on the same stack (axum, tokio,
//! mimalloc, loopback TCP), so `ours / ceiling` for the same request, response bytes and
//! connections says how much of the machine the platform's own work leaves.
//!
//! Usage: `ceiling <captures.json> <listen address>`; prints `ready` once listening.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One captured response, keyed by the request's method and path with its query.
#[derive(Deserialize)]
struct Capture {
    method: String,
    path: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

struct Canned {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

type Routes = Arc<HashMap<(String, String), Canned>>;

async fn answer(State(routes): State<Routes>, request: Request) -> Response {
    let key = (
        request.method().to_string(),
        request
            .uri()
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string()),
    );
    // The request body is read, as the real server reads it.
    let _ = axum::body::to_bytes(request.into_body(), 1 << 20).await;
    match routes.get(&key) {
        Some(c) => (c.status, c.headers.clone(), c.body.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn load(path: &str) -> Result<Routes, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let captures: Vec<Capture> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut routes = HashMap::new();
    for c in captures {
        let mut headers = HeaderMap::new();
        for (k, v) in &c.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(v).map_err(|e| e.to_string())?;
            headers.append(name, value);
        }
        let canned = Canned {
            status: StatusCode::from_u16(c.status).map_err(|e| e.to_string())?,
            headers,
            body: Bytes::from(c.body.into_bytes()),
        };
        routes.insert((c.method, c.path), canned);
    }
    Ok(Arc::new(routes))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(captures), Some(listen)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: ceiling <captures.json> <listen address>");
        return std::process::ExitCode::FAILURE;
    };
    let run = async {
        let routes = load(captures)?;
        let app = axum::Router::new().fallback(answer).with_state(routes);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("ready");
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    };
    // The same runtime as etp-local's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build();
    match runtime
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(run))
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ceiling: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
