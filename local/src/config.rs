//! Local-server configuration (`ETP_LISTEN`, `ETP_DATA_DIR`, `ETP_API_TOKEN`), logging and
//! the housekeeping tasks around the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use etp::app::App;
use etp::config::{ApiToken, ConfigError, Settings, env_parse, env_var};

pub struct LocalConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub token: ApiToken,
    /// Whether the token was generated because none was given.
    pub generated_token: bool,
    pub settings: Settings,
}

impl LocalConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let given = env_var("ETP_API_TOKEN").map(ApiToken::new);
        Ok(Self {
            listen: env_parse("ETP_LISTEN")?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000))),
            data_dir: env_var("ETP_DATA_DIR").map_or_else(|| PathBuf::from(".etp"), PathBuf::from),
            generated_token: given.is_none(),
            token: given.unwrap_or_else(ApiToken::generate),
            settings: Settings::from_env()?,
        })
    }
}

/// Human-readable logs by default; `ETP_LOG_FORMAT=json` for machines. `RUST_LOG` filters.
/// Panics are logged (with their location) and counted, and fail only what hit them.
pub fn init_tracing() {
    etp::supervise::install_panic_hook();
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if env_var("ETP_LOG_FORMAT").as_deref() == Some("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Says where the server listens; a generated token is shown once, with a ready-to-paste call,
/// because the user has no other way to learn it. A given token is never printed.
pub fn announce(addr: &SocketAddr, cfg: &LocalConfig) {
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(),
        active_for = ?cfg.settings.lifecycle.active_for, retain_for = ?cfg.settings.lifecycle.retain_for,
        "etp-local listening");
    if cfg.generated_token {
        let token = cfg.token.expose();
        eprintln!(
            "\nNo ETP_API_TOKEN set; generated one for this run:\n\n  export ETP_API_TOKEN={token}\n  curl -H \"Authorization: Bearer $ETP_API_TOKEN\" http://{addr}/triggers\n"
        );
    }
}

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
