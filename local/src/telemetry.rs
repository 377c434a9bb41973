//! Logs and panics: human-readable logs by default, JSON with `ETP_LOG_FORMAT=json`.

use etp::config::env_var;

/// `RUST_LOG` filters (default `info`). Panics are logged with their location and counted, and
/// fail only the request or job that hit them.
pub fn init() {
    use tracing_subscriber::EnvFilter;
    etp::supervise::install_panic_hook();
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
