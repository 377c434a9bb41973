//! `etp-local`: the whole platform in one process (HTTP API, timer, SQLite store).

mod config;
mod deadlines;
mod serve;
mod startup;
mod tasks;
mod telemetry;

/// Request handling allocates many small, short-lived buffers across threads; glibc's malloc
/// spent about a tenth of the server's CPU on them under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    telemetry::init();
    // Store calls run on the blocking pool; a small pool matches SQLite's few connections and
    // avoids spawning hundreds of threads when a burst of triggers falls due together.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(startup::run()),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "etp-local stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
