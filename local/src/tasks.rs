//! The housekeeping around the server: the purge loop and the shutdown signal.

use std::sync::Arc;

use etp::app::App;

/// Physically removes expired events every `ETP_PURGE_EVERY`; a failed or panicking round is
/// logged and the next one comes as usual.
pub async fn purge_periodically(app: Arc<App>) {
    let mut tick = tokio::time::interval(app.settings.purge_every);
    loop {
        tick.tick().await;
        let app = app.clone();
        match etp::supervise::contained("purge", async move { app.purge_expired().await }).await {
            Some(Ok(0)) | None => {}
            Some(Ok(n)) => tracing::info!(purged = n, "expired events deleted"),
            Some(Err(e)) => tracing::error!(error = %e, "purge failed"),
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
