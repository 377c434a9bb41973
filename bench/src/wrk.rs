//! Drives `wrk` (closed-loop HTTP load) in several runs and merges their results.

use std::collections::BTreeMap;
use std::process::Command;

use serde::Serialize;

/// Runs per measurement, each on fresh connections. Why: which worker thread serves a
/// connection is settled when it opens and holds for the run, and at 2 connections on 2 cores
/// that alone moved the same server's throughput by up to 1.7x between runs (the ceiling's
/// `POST /triggers/{id}/fire` gave 47k to 79k req/s in consecutive runs). The median of five
/// runs does not depend on one placement.
const RUNS: u64 = 5;

#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// Requests completed, over all runs.
    pub requests: u64,
    /// The median of the runs' requests per second.
    pub rps: f64,
    /// Percentiles of every request's latency, over all runs.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// Each run's requests per second, in the order run.
    pub rps_runs: Vec<f64>,
}

impl Load {
    /// The slowest and the fastest run's requests per second, as `min-max` (one run: its figure).
    pub fn spread(&self) -> String {
        let min = self.rps_runs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.rps_runs.iter().copied().fold(0.0, f64::max);
        match self.rps_runs.len() {
            0 => "-".into(),
            1 => format!("{max:.0}"),
            _ => format!("{min:.0}-{max:.0}"),
        }
    }
}

/// Prints every latency value (µs) and its count, so runs merge into exact percentiles.
const HISTOGRAM_LUA: &str = "done = function(summary, latency, requests)\n\
  for i = 1, #latency do\n\
    local v, c = latency(i)\n\
    io.write(string.format(\"latency %d %d\\n\", v, c))\n\
  end\n\
end\n";

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

/// One run's summary and its latency histogram (µs -> count).
struct Run {
    load: Load,
    histogram: BTreeMap<u64, u64>,
}

fn parse(out: &str) -> Result<Run, String> {
    let mut load = Load {
        requests: 0,
        rps: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        errors: 0,
        rps_runs: Vec::new(),
    };
    let mut histogram = BTreeMap::new();
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["latency", v, n] => {
                if let (Ok(v), Ok(n)) = (v.parse::<u64>(), n.parse::<u64>()) {
                    *histogram.entry(v).or_insert(0) += n;
                }
            }
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
    load.rps_runs.push(load.rps);
    Ok(Run { load, histogram })
}

/// The latency (ms) at percentile `p` of `histogram` (µs -> count), ranked as `wrk` ranks.
fn percentile(histogram: &BTreeMap<u64, u64>, p: f64) -> Option<f64> {
    let count: u64 = histogram.values().sum();
    let rank = ((p / 100.0) * count as f64 + 0.5).round() as u64;
    let mut seen = 0;
    histogram.iter().find_map(|(v, n)| {
        seen += n;
        (seen >= rank).then_some(*v as f64 / 1000.0)
    })
}

/// One measurement from its runs: summed counts, the median throughput, and percentiles of the
/// merged histograms (a run whose histogram is missing keeps `wrk`'s own figures).
fn merge(runs: Vec<Run>) -> Load {
    let mut rps: Vec<f64> = runs.iter().map(|r| r.load.rps).collect();
    let mut histogram = BTreeMap::new();
    for run in &runs {
        for (v, n) in &run.histogram {
            *histogram.entry(*v).or_insert(0) += n;
        }
    }
    let last = &runs[runs.len() - 1].load;
    let load = Load {
        requests: runs.iter().map(|r| r.load.requests).sum(),
        rps: 0.0,
        p50_ms: percentile(&histogram, 50.0).unwrap_or(last.p50_ms),
        p99_ms: percentile(&histogram, 99.0).unwrap_or(last.p99_ms),
        errors: runs.iter().map(|r| r.load.errors).sum(),
        rps_runs: rps.clone(),
    };
    rps.sort_by(f64::total_cmp);
    let mid = rps.len() / 2;
    let median = if rps.len() % 2 == 1 {
        rps[mid]
    } else {
        (rps[mid - 1] + rps[mid]) / 2.0
    };
    Load {
        rps: median,
        ..load
    }
}

/// `connections` connections for `seconds` against `url`, with the bearer token and an optional
/// JSON body: [`RUNS`] runs (at most one a second), each on fresh connections.
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
         wrk.headers[\"Content-Type\"] = \"application/json\"\n{}{HISTOGRAM_LUA}",
        body.map(|b| format!("wrk.body = {b:?}\n"))
            .unwrap_or_default()
    );
    std::fs::write(script.path(), lua).map_err(|e| e.to_string())?;
    let runs = RUNS.min(seconds).max(1);
    let each = (seconds / runs).max(1);
    let mut done = Vec::new();
    for _ in 0..runs {
        done.push(run_once(script.path(), url, connections, each)?);
    }
    Ok(merge(done))
}

fn run_once(
    script: &std::path::Path,
    url: &str,
    connections: usize,
    seconds: u64,
) -> Result<Run, String> {
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
        .arg(script)
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
        let l = parse(out).unwrap().load;
        assert_eq!(l.requests, 16000);
        assert!((l.p50_ms - 0.785).abs() < 1e-9);
        assert!((l.p99_ms - 3.1).abs() < 1e-9);
        assert_eq!(l.errors, 6);
        assert!((l.rps - 15990.12).abs() < 1e-6);
    }

    fn run_of(rps: f64, latencies: &[(u64, u64)]) -> Run {
        let out: String = latencies
            .iter()
            .map(|(v, n)| format!("latency {v} {n}\n"))
            .collect();
        let n: u64 = latencies.iter().map(|(_, n)| n).sum();
        parse(&format!(
            "{out}  {n} requests in 1.00s, 1MB read\nRequests/sec: {rps}\n"
        ))
        .unwrap()
    }

    /// A slow run among fast ones moves neither the throughput nor the median latency, and
    /// its tail shows in the merged p99.
    #[test]
    fn runs_merge_into_median_throughput_and_exact_percentiles() {
        let runs = vec![
            run_of(100.0, &[(1000, 98), (2000, 2)]),
            run_of(40.0, &[(1000, 50), (9000, 50)]),
            run_of(90.0, &[(1000, 100)]),
        ];
        let l = merge(runs);
        assert_eq!(l.rps, 90.0);
        assert_eq!(l.rps_runs, vec![100.0, 40.0, 90.0]);
        assert_eq!(l.requests, 300);
        assert_eq!(l.p50_ms, 1.0);
        assert_eq!(l.p99_ms, 9.0);
    }
}
