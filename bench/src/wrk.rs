//! Drives `wrk` (closed-loop HTTP load) and parses its summary.

use std::process::Command;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

fn millis(v: &str) -> Option<f64> {
    let v = v.trim();
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

fn parse(out: &str) -> Result<Load, String> {
    let mut load = Load {
        requests: 0,
        rps: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        errors: 0,
    };
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => load.rps = v.parse().unwrap_or(0.0),
            ["50%", v] => load.p50_ms = millis(v).unwrap_or(0.0),
            ["99%", v] => load.p99_ms = millis(v).unwrap_or(0.0),
            [n, "requests", "in", ..] => load.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => load.errors += n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                load.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if load.requests == 0 {
        return Err(format!("wrk reported no requests:\n{out}"));
    }
    Ok(load)
}

/// `connections` connections for `seconds` against `url`, with the bearer token and an optional
/// JSON body.
pub fn run(
    url: &str,
    connections: usize,
    seconds: u64,
    token: &str,
    method: &str,
    body: Option<&str>,
) -> Result<Load, String> {
    let script = tempfile::Builder::new()
        .suffix(".lua")
        .tempfile()
        .map_err(|e| e.to_string())?;
    let lua = format!(
        "wrk.method = {method:?}\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n{}",
        body.map(|b| format!("wrk.body = {b:?}\n"))
            .unwrap_or_default()
    );
    std::fs::write(script.path(), lua).map_err(|e| e.to_string())?;
    let out = Command::new("wrk")
        .args([
            "-t",
            &connections.clamp(1, 2).to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script.path())
        .arg(url)
        .output()
        .map_err(|e| format!("run wrk (apt-get install wrk): {e}"))?;
    parse(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_summary() {
        let out = "Running 1s test @ http://127.0.0.1:1/triggers
  2 threads and 32 connections
  Latency Distribution
     50%  785.00us
     99%    3.10ms
  16000 requests in 1.00s, 9.10MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:  15990.12
";
        let l = parse(out).unwrap();
        assert_eq!(l.requests, 16000);
        assert!((l.p50_ms - 0.785).abs() < 1e-9);
        assert!((l.p99_ms - 3.1).abs() < 1e-9);
        assert_eq!(l.errors, 6);
        assert!((l.rps - 15990.12).abs() < 1e-6);
    }
}
