//! The results: a table on stdout, a JSON file and SVG charts under target/bench/.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::sched::{Burst, Sustained};
use crate::wrk::Load;

#[derive(Debug, Clone, Serialize)]
pub struct HttpRow {
    pub case: String,
    pub stored_events: usize,
    pub connections: usize,
    pub load: Load,
    /// The same request answered from memory by the `ceiling` server, same connections.
    pub ceiling: Option<Load>,
}

impl HttpRow {
    /// Ours over the ceiling's requests per second.
    pub fn share(&self) -> Option<f64> {
        self.ceiling
            .as_ref()
            .filter(|c| c.rps > 0.0)
            .map(|c| self.load.rps / c.rps)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub value: String,
    pub goal: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub size: String,
    pub machine: Option<Machine>,
    pub http: Vec<HttpRow>,
    pub peak_rss_mib: Vec<(String, f64)>,
    pub bursts: Vec<Burst>,
    pub sustained: Option<Sustained>,
    pub lambda: Vec<crate::lambda::LambdaRow>,
    pub store_costs: Vec<crate::dynamo::StoreCost>,
    pub stats_at_scale: Option<crate::dynamo::StatsAtScale>,
    pub scale: Option<crate::scale::Scale>,
    pub targets: Vec<Target>,
    /// Cases that could not be measured, and why.
    pub failures: Vec<String>,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into()),
        memory_gib: kb / 1024.0 / 1024.0,
    }
}

impl Report {
    pub fn target(&mut self, name: &str, value: String, goal: &str, met: bool) {
        self.targets.push(Target {
            name: name.into(),
            value,
            goal: goal.into(),
            met,
        });
    }

    pub fn print(&self) {
        let mut out = String::new();
        out.push_str(
            "\nreq/s: the median of the runs (each on fresh connections), with the slowest and fastest run; \
             p50 and p99: over every request of every run.\n\
             \n| case | stored events | conns | req/s | runs | p50 ms | p99 ms | errors | ceiling req/s | ceiling runs | share of ceiling |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.http {
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {} | {:.2} | {:.2} | {} | {} | {} | {} |\n",
                r.case,
                r.stored_events,
                r.connections,
                r.load.rps,
                r.load.spread(),
                r.load.p50_ms,
                r.load.p99_ms,
                r.load.errors,
                r.ceiling
                    .as_ref()
                    .map_or("-".into(), |c| format!("{:.0}", c.rps)),
                r.ceiling.as_ref().map_or("-".into(), Load::spread),
                r.share().map_or("-".into(), |s| format!("{s:.2}")),
            ));
        }
        out.push_str("\n| server | peak RSS MiB |\n|---|---:|\n");
        for (what, mib) in &self.peak_rss_mib {
            out.push_str(&format!("| {what} | {mib:.1} |\n"));
        }
        out.push_str(
            "\n| scheduler case | firings | p50 ms | p99 ms | max ms | drain ms | writer µs/firing | rest µs/firing |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for b in &self.bursts {
            out.push_str(&format!(
                "| {} due in the same second | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                b.due_together,
                b.lateness.firings,
                b.lateness.p50_ms,
                b.lateness.p99_ms,
                b.lateness.max_ms,
                b.drain_ms,
                b.writer_us_per_firing,
                b.other_us_per_firing
            ));
        }
        if let Some(s) = &self.sustained {
            out.push_str(&format!(
                "| {}/s for {} s ({} expected; p99 first/last tenth {:.1}/{:.1}) | {} | {:.1} | {:.1} | {:.1} | - | - | - |\n",
                s.triggers, s.seconds, s.expected, s.first_p99_ms, s.last_p99_ms,
                s.lateness.firings, s.lateness.p50_ms, s.lateness.p99_ms, s.lateness.max_ms
            ));
        }
        if let Some(s) = &self.scale {
            out.push_str(&format!(
                "\n{} stored triggers ({} scheduled, seeded in {:.0} s): first start {:.0} ms, \
                 restart {:.0} ms, RSS {:.1} MiB (peak {:.1}, empty data directory {:.1}), \
                 {:.0} bytes per stored trigger\n",
                s.triggers,
                s.scheduled,
                s.seed_s,
                s.first_start_ms,
                s.startup_ms,
                s.rss_mib,
                s.peak_rss_mib,
                s.empty_rss_mib,
                s.bytes_per_trigger()
            ));
        }
        out.push_str(
            "\n| function | init ms | warm p50 ms | warm p99 ms | peak RSS MiB | arm64 zip MB | warm work |\n|---|---:|---:|---:|---:|---:|---|\n",
        );
        for l in &self.lambda {
            out.push_str(&format!(
                "| {} | {:.1} | {:.2} | {:.2} | {:.1} | {} | {} |\n",
                l.function,
                l.init_ms,
                l.warm_p50_ms,
                l.warm_p99_ms,
                l.peak_rss_mib,
                l.zip_bytes
                    .map_or("-".into(), |z| format!("{:.2}", z as f64 / 1e6)),
                l.warm_work
            ));
        }
        out.push_str(
            "\n| store operation (DynamoDB on moto) | calls | read units | write units | items |\n|---|---|---|---|---|\n",
        );
        for c in &self.store_costs {
            out.push_str(&etp::testing::cost_model::readme_row(c));
            out.push('\n');
        }
        if let Some(s) = &self.stats_at_scale {
            out.push_str(&format!(
                "\nstats at {} triggers x {} h of counters (moto): a new process's first read {:.0} ms, \
                 {:.1} RRU in {} calls (snapshot {} bytes, {:.1} per trigger); later reads {:.0} ms, \
                 {:.1} RRU in {} calls; seeding took {:.0} s\n",
                s.triggers,
                s.hours,
                s.first_ms,
                s.first_read_units,
                s.first_calls,
                s.snapshot_bytes,
                s.snapshot_bytes as f64 / s.triggers.max(1) as f64,
                s.read_ms,
                s.read_units,
                s.read_calls,
                s.seed_s,
            ));
        }
        out.push_str("\n| target | measured | goal | met |\n|---|---|---|---|\n");
        for t in &self.targets {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                t.name,
                t.value,
                t.goal,
                if t.met { "yes" } else { "NO" }
            ));
        }
        for f in &self.failures {
            out.push_str(&format!("\nNOT MEASURED: {f}\n"));
        }
        // The table is this program's output, so it goes to stdout.
        use std::io::Write;
        let _ = std::io::stdout().write_all(out.as_bytes());
    }

    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("results.json"), json).map_err(|e| e.to_string())?;
        self.throughput_chart(&dir.join("throughput.svg"))?;
        if let Some(b) = self.bursts.iter().max_by_key(|b| b.due_together) {
            lateness_chart(b, &dir.join("lateness.svg"))?;
        }
        Ok(())
    }

    fn throughput_chart(&self, path: &Path) -> Result<(), String> {
        let rows: Vec<(String, f64)> = self
            .http
            .iter()
            .map(|r| {
                (
                    format!(
                        "{} ({}k ev, {}c)",
                        r.case,
                        r.stored_events / 1000,
                        r.connections
                    ),
                    r.load.rps,
                )
            })
            .collect();
        let max = rows.iter().map(|r| r.1).fold(1.0, f64::max) * 1.1;
        let height = 80 + rows.len() as u32 * 28;
        let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Local HTTP API throughput (req/s)", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(380)
            .build_cartesian_2d(0.0..max, 0..rows.len())
            .map_err(|e| e.to_string())?;
        let labels = rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len())
            .y_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                rows.iter().enumerate().map(|(i, (_, v))| {
                    Rectangle::new([(0.0, i), (*v, i + 1)], BLUE.mix(0.6).filled())
                }),
            )
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())
    }
}

fn lateness_chart(burst: &Burst, path: &Path) -> Result<(), String> {
    let max = burst.samples.iter().copied().fold(1.0, f64::max);
    let bucket = (max / 40.0).max(0.5);
    let buckets = (max / bucket).ceil() as usize + 1;
    let mut counts = vec![0u32; buckets];
    for s in &burst.samples {
        counts[((s / bucket) as usize).min(buckets - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1) + 1;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Lateness of {} triggers due in the same second (ms)",
                burst.due_together
            ),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..(buckets as f64 * bucket), 0u32..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("fired_at - scheduled_for (ms)")
        .y_desc("firings")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x = i as f64 * bucket;
            Rectangle::new([(x, 0), (x + bucket, *c)], GREEN.mix(0.6).filled())
        }))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
