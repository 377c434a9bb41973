//! `bench`: measures the local platform's speed and cost, prints a table and writes
//! target/bench/{results.json,throughput.svg,lateness.svg}. `--smoke` runs a tiny size of the
//! same suite (to keep it from rotting; its figures mean nothing).

mod ceiling;
mod dynamo;
mod lambda;
mod report;
mod scale;
mod sched;
mod seed;
mod server;
mod wrk;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use report::{HttpRow, Report};
use server::{Server, TOKEN};

struct Size {
    name: &'static str,
    listed_triggers: usize,
    triggers: usize,
    event_counts: [usize; 2],
    seconds: u64,
    connections: [usize; 2],
    bursts: Vec<usize>,
    sustained: (usize, u64),
    /// Cold starts per function, then warm invocations.
    lambda: (usize, usize),
    /// Triggers and hours of counters behind the DynamoDB stats case.
    stats_scale: (usize, usize),
    /// Stored triggers, and how many of them scheduled, in the restart case.
    restart: (usize, usize),
}

const FULL: Size = Size {
    name: "full",
    listed_triggers: 100,
    triggers: 1_000,
    event_counts: [10_000, 1_000_000],
    seconds: 10,
    connections: [2, 32],
    bursts: Vec::new(),
    sustained: (1_000, 60),
    lambda: (10, 200),
    stats_scale: (10_000, 48),
    restart: (1_000_000, 100_000),
};

fn size() -> Size {
    if std::env::args().any(|a| a == "--smoke") {
        Size {
            name: "smoke",
            listed_triggers: 20,
            triggers: 20,
            event_counts: [500, 2_000],
            seconds: 1,
            connections: [2, 8],
            bursts: vec![100],
            sustained: (20, 3),
            lambda: (1, 3),
            stats_scale: (50, 3),
            restart: (2_000, 200),
        }
    } else {
        Size {
            bursts: vec![1_000, 10_000, 100_000],
            ..FULL
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let size = size();
    match run(&size).await {
        Ok(report) => {
            report.print();
            match report.write(Path::new("target/bench")) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench: could not write target/bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Case<'a> {
    name: &'a str,
    method: &'a str,
    path: String,
    body: Option<&'a str>,
}

fn load(
    server: &Server,
    case: &Case,
    events: usize,
    conns: usize,
    secs: u64,
) -> Result<HttpRow, String> {
    eprintln!("  {} at {conns} connections for {secs} s", case.name);
    let url = format!("{}{}", server.base, case.path);
    Ok(HttpRow {
        case: case.name.to_string(),
        stored_events: events,
        connections: conns,
        load: wrk::run(&url, conns, secs, TOKEN, case.method, case.body)?,
        ceiling: None,
    })
}

/// Loads each case's captured response from the ceiling server the same way, and records it
/// beside the rows `load` made for the case.
async fn ceilings(
    server: &Server,
    cases: &[Case<'_>],
    rows: &mut [HttpRow],
    secs: u64,
) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut captures = Vec::new();
    for case in cases {
        captures.push(ceiling::capture(server, case.method, &case.path, case.body).await?);
    }
    let c = ceiling::Ceiling::start(dir.path(), &captures).await?;
    for row in rows.iter_mut() {
        let Some(case) = cases.iter().find(|k| k.name == row.case) else {
            continue;
        };
        eprintln!(
            "  ceiling: {} at {} connections",
            case.name, row.connections
        );
        let url = format!("{}{}", c.base, case.path);
        row.ceiling = Some(wrk::run(
            &url,
            row.connections,
            secs,
            TOKEN,
            case.method,
            case.body,
        )?);
    }
    Ok(())
}

/// `--only=<section>[,<section>]` (http, events, scheduler, scale, lambda, dynamo) runs a part of the
/// suite, for working on one case.
fn wanted(section: &str) -> bool {
    match std::env::args().find_map(|a| a.strip_prefix("--only=").map(str::to_owned)) {
        Some(list) => list.split(',').any(|s| s == section),
        None => true,
    }
}

async fn run(size: &Size) -> Result<Report, String> {
    let mut report = Report {
        generated_at: Utc::now().to_rfc3339(),
        size: size.name.into(),
        machine: Some(report::machine()),
        ..Default::default()
    };

    if wanted("http") {
        http_cases(size, &mut report).await?;
    }
    if wanted("events") {
        event_cases(size, &mut report).await?;
    }
    if wanted("scheduler") {
        scheduler_cases(size, &mut report).await?;
    }
    if wanted("scale") {
        scale_cases(size, &mut report).await?;
    }
    if wanted("lambda") {
        eprintln!("Lambda functions");
        let tables = etp::aws::dynamo::Tables::named("bench", &etp::domain::new_id());
        etp::aws::dynamo::DynamoStore::create_tables(&etp::testing::moto::dynamo_client(), &tables)
            .await
            .map_err(|e| e.to_string())?;
        let (cold, warm) = size.lambda;
        // A failed case is reported, not fatal: the figures already taken still get written.
        match lambda::functions(etp::testing::moto::endpoint(), &tables, cold, warm).await {
            Ok(rows) => report.lambda = rows,
            Err(e) => report.failures.push(format!("Lambda cases: {e}")),
        }
    }
    if wanted("dynamo") {
        eprintln!("DynamoDB calls per operation (moto)");
        match dynamo::costs().await {
            Ok(costs) => report.store_costs = costs,
            Err(e) => report.failures.push(format!("DynamoDB cases: {e}")),
        }
        // BENCH_STATS_SCALE=<triggers>x<hours> overrides the size's (seeding moto is slow).
        let (triggers, hours) = std::env::var("BENCH_STATS_SCALE")
            .ok()
            .and_then(|v| {
                let (t, h) = v.split_once('x')?;
                Some((t.parse().ok()?, h.parse().ok()?))
            })
            .unwrap_or(size.stats_scale);
        eprintln!("stats on DynamoDB: {triggers} triggers x {hours} h of counters (moto)");
        match dynamo::stats_at_scale(triggers, hours).await {
            Ok(s) => report.stats_at_scale = Some(s),
            Err(e) => report.failures.push(format!("stats at scale: {e}")),
        }
    }
    targets(&mut report, size);
    if !report.failures.is_empty() && size.name == "smoke" {
        return Err(report.failures.join("; "));
    }
    Ok(report)
}

async fn http_cases(size: &Size, report: &mut Report) -> Result<(), String> {
    eprintln!("HTTP API, {} stored triggers", size.listed_triggers);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ids = seed::seed(dir.path(), size.listed_triggers, 0, Utc::now()).await?;
    let server = Server::start(dir.path(), &[]).await?;
    let fire_path = format!("/triggers/{}/fire", ids[0]);
    let cases = [
        Case {
            name: "GET /triggers",
            method: "GET",
            path: "/triggers".into(),
            body: None,
        },
        Case {
            name: "GET /triggers?limit=100",
            method: "GET",
            path: "/triggers?limit=100".into(),
            body: None,
        },
        Case {
            name: "GET /triggers/{id}",
            method: "GET",
            path: format!("/triggers/{}", ids[0]),
            body: None,
        },
        Case {
            name: "POST /triggers",
            method: "POST",
            path: "/triggers".into(),
            body: Some(r#"{"name":"bench","kind":"api","payload_schema":{"type":"object"}}"#),
        },
        Case {
            name: "POST /triggers/{id}/fire",
            method: "POST",
            path: fire_path,
            body: Some(r#"{"n":1}"#),
        },
    ];
    let first = report.http.len();
    for conns in size.connections {
        for case in &cases {
            report
                .http
                .push(load(&server, case, 0, conns, size.seconds)?);
        }
    }
    if let Some(rss) = server.peak_rss_mib() {
        report
            .peak_rss_mib
            .push(("triggers and firing cases".into(), rss));
    }
    ceilings(&server, &cases, &mut report.http[first..], size.seconds).await?;
    drop(server);
    Ok(())
}

async fn event_cases(size: &Size, report: &mut Report) -> Result<(), String> {
    for events in size.event_counts {
        eprintln!(
            "HTTP API, {events} stored events over {} triggers",
            size.triggers
        );
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        seed::seed(dir.path(), size.triggers, events, Utc::now()).await?;
        let cases = [
            Case {
                name: "GET /events?state=active",
                method: "GET",
                path: "/events?state=active&limit=50".into(),
                body: None,
            },
            Case {
                name: "GET /events/stats",
                method: "GET",
                path: "/events/stats".into(),
                body: None,
            },
        ];
        let server = Server::start(dir.path(), &[]).await?;
        let first = report.http.len();
        for conns in size.connections {
            for case in &cases {
                report
                    .http
                    .push(load(&server, case, events, conns, size.seconds)?);
            }
        }
        if let Some(rss) = server.peak_rss_mib() {
            report.peak_rss_mib.push((format!("{events} events"), rss));
        }
        ceilings(&server, &cases, &mut report.http[first..], size.seconds).await?;
        drop(server);
        // The same query with the cache off: what one recomputation costs at this size.
        let server = Server::start(dir.path(), &[("ETP_STATS_CACHE_TTL", "0s")]).await?;
        let uncached = Case {
            name: "GET /events/stats (uncached)",
            method: "GET",
            path: "/events/stats".into(),
            body: None,
        };
        report.http.push(load(
            &server,
            &uncached,
            events,
            size.connections[0],
            size.seconds,
        )?);
    }
    Ok(())
}

async fn scheduler_cases(size: &Size, report: &mut Report) -> Result<(), String> {
    eprintln!("scheduler");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = Arc::new(Server::start(dir.path(), &[]).await?);
    // BENCH_BURSTS=<n>[,<n>] overrides the size's bursts, and skips the sustained case.
    let only: Option<Vec<usize>> = std::env::var("BENCH_BURSTS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    for n in only.as_ref().unwrap_or(&size.bursts) {
        eprintln!("  {n} triggers due in the same second");
        report.bursts.push(sched::burst(&server, *n).await?);
    }
    let (triggers, seconds) = size.sustained;
    if only.is_none() {
        eprintln!("  {triggers} firings/s for {seconds} s");
        report.sustained = Some(sched::sustained(&server, triggers, seconds).await?);
    }
    if let Some(rss) = server.peak_rss_mib() {
        report.peak_rss_mib.push(("scheduler cases".into(), rss));
    }
    drop(server);
    Ok(())
}

async fn scale_cases(size: &Size, report: &mut Report) -> Result<(), String> {
    let (triggers, scheduled) = size.restart;
    eprintln!("{triggers} stored triggers ({scheduled} scheduled): restart and listing");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (scale, server) = scale::restart(dir.path(), triggers, scheduled).await?;
    let name = format!("GET /triggers?limit=100 ({triggers} stored)");
    let cases = [Case {
        name: &name,
        method: "GET",
        path: "/triggers?limit=100".into(),
        body: None,
    }];
    let first = report.http.len();
    for conns in size.connections {
        report
            .http
            .push(load(&server, &cases[0], 0, conns, size.seconds)?);
    }
    ceilings(&server, &cases, &mut report.http[first..], size.seconds).await?;
    report.scale = Some(scale);
    Ok(())
}

fn row<'a>(r: &'a Report, case: &str, events: usize, conns: usize) -> Option<&'a HttpRow> {
    r.http
        .iter()
        .find(|h| h.case == case && h.stored_events == events && h.connections == conns)
}

/// The issue's targets, judged on this run's figures.
fn targets(r: &mut Report, size: &Size) {
    let hi = size.connections[1];
    let [small, large] = size.event_counts;
    let mut add = Vec::new();
    for (case, events) in [
        ("GET /triggers", 0),
        ("GET /events?state=active", large),
        ("GET /events/stats", large),
    ] {
        if let Some(h) = row(r, case, events, hi) {
            add.push((
                format!("{case} req/s at {hi} conns"),
                format!("{:.0}", h.load.rps),
                ">= 15000",
                h.load.rps >= 15_000.0,
            ));
            add.push((
                format!("{case} p99 at {hi} conns"),
                format!("{:.2} ms", h.load.p99_ms),
                "< 10 ms",
                h.load.p99_ms < 10.0,
            ));
        }
    }
    for case in ["POST /triggers", "POST /triggers/{id}/fire"] {
        if let Some(h) = row(r, case, 0, hi) {
            add.push((
                format!("{case} req/s at {hi} conns"),
                format!("{:.0}", h.load.rps),
                ">= 3000",
                h.load.rps >= 3_000.0,
            ));
        }
    }
    let errors: u64 = r.http.iter().map(|h| h.load.errors).sum();
    add.push((
        "errors across all HTTP cases".into(),
        errors.to_string(),
        "0",
        errors == 0,
    ));
    for case in [
        "GET /events?state=active",
        "GET /events/stats",
        "GET /events/stats (uncached)",
    ] {
        for conns in size.connections {
            if let (Some(a), Some(b)) = (row(r, case, small, conns), row(r, case, large, conns)) {
                let ratio = b.load.p99_ms / a.load.p99_ms.max(0.001);
                add.push((
                    format!("{case} p99 at {large} vs {small} events, {conns} conns"),
                    format!("{ratio:.2}x"),
                    "<= 1.5x",
                    ratio <= 1.5,
                ));
            }
        }
    }
    if let Some((_, rss)) = r
        .peak_rss_mib
        .iter()
        .find(|(w, _)| w == &format!("{large} events"))
    {
        add.push((
            format!("peak RSS at {large} events"),
            format!("{rss:.1} MiB"),
            "< 64 MB",
            *rss < 61.0,
        ));
    }
    for b in &r.bursts {
        if b.due_together == 1_000 {
            add.push((
                "p99 lateness, 1000 due together".into(),
                format!("{:.1} ms", b.lateness.p99_ms),
                "<= 50 ms",
                b.lateness.p99_ms <= 50.0,
            ));
        }
        if b.due_together == 10_000 {
            add.push((
                "drain time, 10000 due together".into(),
                format!("{:.0} ms", b.drain_ms),
                "<= 2000 ms",
                b.drain_ms <= 2_000.0,
            ));
        }
    }
    for b in &r.bursts {
        if b.due_together == 100_000 {
            add.push((
                "p99 lateness, 100000 due together".into(),
                format!("{:.0} ms", b.lateness.p99_ms),
                "<= 2000 ms",
                b.lateness.p99_ms <= 2_000.0,
            ));
        }
    }
    if let Some(s) = &r.scale {
        add.push((
            format!("restart with {} stored triggers", s.triggers),
            format!("{:.0} ms", s.startup_ms),
            "<= 5000 ms",
            s.startup_ms <= 5_000.0,
        ));
        add.push((
            format!("peak RSS with {} stored triggers", s.triggers),
            format!("{:.1} MiB", s.peak_rss_mib),
            "<= 256 MB",
            s.peak_rss_mib <= 244.0,
        ));
        add.push((
            "memory per stored trigger".into(),
            format!("{:.0} bytes", s.bytes_per_trigger()),
            "printed",
            true,
        ));
    }
    if let Some(s) = &r.sustained {
        let steady = s.lateness.firings == s.expected && s.last_p99_ms <= s.first_p99_ms + 50.0;
        add.push((
            format!("backlog at {}/s", s.triggers),
            format!(
                "{}/{} fired, p99 {:.1} -> {:.1} ms",
                s.lateness.firings, s.expected, s.first_p99_ms, s.last_p99_ms
            ),
            "all fired, no growth",
            steady,
        ));
    }
    for l in &r.lambda {
        add.push((
            format!("{} init", l.function),
            format!("{:.1} ms", l.init_ms),
            "<= 30 ms",
            l.init_ms <= 30.0,
        ));
        add.push((
            format!("{} peak RSS", l.function),
            format!("{:.1} MiB", l.peak_rss_mib),
            "<= 32 MB",
            l.peak_rss_mib <= 30.5,
        ));
        match l.zip_bytes {
            Some(z) => add.push((
                format!("{} arm64 zip", l.function),
                format!("{:.2} MB", z as f64 / 1e6),
                "<= 5 MB",
                z <= 5_000_000,
            )),
            None => add.push((
                format!("{} arm64 zip", l.function),
                "not built (sam build)".into(),
                "<= 5 MB",
                false,
            )),
        }
    }
    let count = |op: &str, name: &str| {
        r.store_costs.iter().find(|c| c.operation == op).map(|c| {
            c.calls
                .iter()
                .filter(|x| name.is_empty() || x.as_str() == name)
                .count()
        })
    };
    for op in ["fire an api trigger", "scheduled firing, one-time trigger"] {
        if let Some(n) = count(op, "") {
            // The trigger read the caller makes is part of the firing.
            add.push((
                format!("DynamoDB calls: {op}"),
                n.to_string(),
                "<= 3",
                n <= 3,
            ));
        }
    }
    for op in [
        "list events (active, page of 50)",
        "next events page (active, 50)",
        "list events of one trigger (page of 50)",
    ] {
        if let Some(n) = count(op, "Query") {
            add.push((
                format!("Queries: {op}"),
                n.to_string(),
                "1 to 2",
                (1..=2).contains(&n),
            ));
        }
    }
    if let Some(s) = &r.stats_at_scale {
        let at = format!("{} triggers x {} h", s.triggers, s.hours);
        for (when, units, ms) in [
            ("a new process's first read", s.first_read_units, s.first_ms),
            ("a later read", s.read_units, s.read_ms),
        ] {
            add.push((
                format!("stats at {at}: {when}, read units"),
                format!("{units:.1} RRU"),
                "<= 25 RRU",
                units <= 25.0,
            ));
            add.push((
                format!("stats at {at}: {when}, latency against moto"),
                format!("{ms:.0} ms"),
                "< 300 ms",
                ms < 300.0,
            ));
        }
    }
    // Share of the machine's ceiling: the same request and response bytes served from memory.
    let at_scale = format!("GET /triggers?limit=100 ({} stored)", size.restart.0);
    for conns in size.connections {
        if let Some(share) = row(r, &at_scale, 0, conns).and_then(HttpRow::share) {
            add.push((
                format!("{at_scale} share of ceiling at {conns} conns"),
                format!("{share:.2}"),
                ">= 0.5",
                share >= 0.5,
            ));
        }
        for (case, events) in [
            ("GET /triggers?limit=100", 0),
            ("GET /triggers/{id}", 0),
            ("POST /triggers/{id}/fire", 0),
            ("GET /events?state=active", small),
            ("GET /events?state=active", large),
            ("GET /events/stats", small),
            ("GET /events/stats", large),
        ] {
            if let Some(share) = row(r, case, events, conns).and_then(HttpRow::share) {
                add.push((
                    format!("{case} ({events} events) share of ceiling at {conns} conns"),
                    format!("{share:.2}"),
                    ">= 0.5",
                    share >= 0.5,
                ));
            }
        }
    }
    let scans: usize = r
        .store_costs
        .iter()
        .map(|c| c.calls.iter().filter(|x| x.as_str() == "Scan").count())
        .sum();
    if !r.store_costs.is_empty() {
        add.push((
            "Scans across all operations".into(),
            scans.to_string(),
            "0",
            scans == 0,
        ));
    }
    for (name, value, goal, met) in add {
        r.target(&name, value, goal, met);
    }
}
