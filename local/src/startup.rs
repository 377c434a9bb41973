//! Builds the platform in dependency order (store, delivery queue, deliverer, worker, timer,
//! app), so a missing piece is a compile error, then serves until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use etp::app::App;
use etp::clock::{Clock, SystemClock};
use etp::delivery::{Deliverer, Sender};
use etp::embedded::{DeliveryWorker, LocalDeliveryQueue, LocalTimer, SqliteStore};
use etp::ports::Store;
use etp::telemetry::timed_store::Timed;
use tokio::net::TcpListener;

use crate::config::LocalConfig;
use crate::{serve, tasks};

pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = LocalConfig::from_env()?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    cfg.settings.warn_about_relaxed_egress();
    // Installed before anything records, so no early measurement is lost.
    if let Some(handle) = etp::telemetry::prometheus::installed() {
        tokio::spawn(etp::telemetry::prometheus::upkeep(handle));
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = SqliteStore::open(&cfg.data_dir.join("etp.sqlite3"))?;
    // Every store call is timed, whoever makes it (API, timer, delivery worker).
    let timed: Arc<dyn Store> = Arc::new(Timed(Arc::new(db.clone())));
    let store = Arc::new(db.clone());
    let queue = LocalDeliveryQueue::default();
    let deliverer = Arc::new(
        Deliverer::new(
            timed.clone(),
            clock.clone(),
            Arc::new(queue.clone()),
            Arc::new(Sender::new(cfg.settings.egress.clone())?),
            cfg.settings.retry.clone(),
        )
        .with_alerts(cfg.settings.alert.clone()),
    );
    let worker = DeliveryWorker::new(store.clone(), clock.clone(), &queue, deliverer);
    let timer = LocalTimer::open(
        timed.clone(),
        store.clone(),
        Arc::new(queue.clone()),
        clock.clone(),
        cfg.settings.catch_up_grace,
    )
    .await?;
    let app = Arc::new(App::new(
        timed,
        Arc::new(timer.clone()),
        Arc::new(queue),
        clock,
        cfg.settings.clone(),
    ));
    tokio::spawn(timer.run());
    tokio::spawn(worker.run());
    tokio::spawn(tasks::purge_periodically(app.clone()));
    let listener = TcpListener::bind(cfg.listen).await?;
    if let Some(addr) = cfg.metrics_listen {
        let metrics = TcpListener::bind(addr).await?;
        tracing::info!(addr = %metrics.local_addr()?, "metrics served without the token at /metrics");
        let router = etp::http::scrape::metrics_only(app.clone());
        tokio::spawn(serve::serve(
            metrics,
            router,
            cfg.server,
            tasks::shutdown_signal(),
        ));
    }
    announce(&listener.local_addr()?, &cfg);
    let router = etp::http::router(app, cfg.token.clone());
    serve::serve(listener, router, cfg.server, tasks::shutdown_signal()).await;
    Ok(())
}

/// Says where the server listens; a generated token is shown once, with a ready-to-paste call,
/// because the user has no other way to learn it. A given token is never printed.
fn announce(addr: &SocketAddr, cfg: &LocalConfig) {
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(),
        active_for = ?cfg.settings.lifecycle.active_for, retain_for = ?cfg.settings.lifecycle.retain_for,
        max_connections = cfg.server.max_connections,
        header_read_timeout = ?cfg.server.header_read_timeout,
        request_timeout = ?cfg.server.request_timeout,
        "etp-local listening");
    if cfg.generated_token {
        let token = cfg.token.expose();
        eprintln!(
            "\nNo ETP_API_TOKEN set; generated one for this run:\n\n  export ETP_API_TOKEN={token}\n  curl -H \"Authorization: Bearer $ETP_API_TOKEN\" http://{addr}/triggers\n"
        );
    }
}
