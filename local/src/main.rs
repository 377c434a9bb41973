//! `etp-local`: the whole platform in one process (HTTP API, timer, SQLite store).

mod config;

use std::sync::Arc;

use etp::app::App;
use etp::clock::{Clock, SystemClock};
use etp::delivery::{Deliverer, Sender};
use etp::embedded::{DeliveryWorker, LocalDeliveryQueue, LocalTimer, SqliteStore};
use tokio::net::TcpListener;

/// Request handling allocates many small, short-lived buffers across threads; glibc's malloc
/// spent about a tenth of the server's CPU on them under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    config::init_tracing();
    // Store calls run on the blocking pool; a small pool matches SQLite's few connections and
    // avoids spawning hundreds of threads when a burst of triggers falls due together.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run()),
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

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = config::LocalConfig::from_env()?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = SqliteStore::open(&cfg.data_dir.join("etp.sqlite3"))?;
    let timer = LocalTimer::open(db.clone(), clock.clone(), cfg.settings.catch_up_grace).await?;
    let queue = LocalDeliveryQueue::default();
    let worker = DeliveryWorker::new(db.clone(), clock.clone(), &queue);
    timer.deliver_through(Arc::new(queue.clone()));
    cfg.settings.warn_about_relaxed_egress();
    worker.start_with(Arc::new(Deliverer::new(
        Arc::new(db.clone()),
        clock.clone(),
        Arc::new(queue.clone()),
        Arc::new(Sender::new(cfg.settings.egress.clone())?),
        cfg.settings.retry.clone(),
    )));
    let app = Arc::new(App::new(
        Arc::new(db),
        Arc::new(timer.clone()),
        Arc::new(queue),
        clock,
        cfg.settings.clone(),
    ));
    tokio::spawn(timer.run());
    tokio::spawn(worker.run());
    tokio::spawn(config::purge_periodically(app.clone()));
    let listener = TcpListener::bind(cfg.listen).await?;
    config::announce(&listener.local_addr()?, &cfg);
    axum::serve(listener, etp::http::router(app, cfg.token.clone()))
        .with_graceful_shutdown(config::shutdown_signal())
        .await?;
    Ok(())
}
