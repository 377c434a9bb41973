//! Local-server configuration from the environment (`ETP_LISTEN`, `ETP_METRICS_LISTEN`,
//! `ETP_DATA_DIR`, `ETP_API_TOKEN` and the server's limits), read once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use etp::config::{ApiToken, ConfigError, Settings, env_parse, env_var};

/// How long a connection may take to send a request's headers (`ETP_HEADER_READ_TIMEOUT`).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take, body included (`ETP_REQUEST_TIMEOUT`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections at most (`ETP_MAX_CONNECTIONS`); more wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 2048;

pub struct LocalConfig {
    pub listen: SocketAddr,
    /// `ETP_METRICS_LISTEN`: also serve `GET /metrics` there, without the token.
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub token: ApiToken,
    /// Whether the token was generated because none was given.
    pub generated_token: bool,
    pub settings: Settings,
    pub server: ServerLimits,
}

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

fn positive_duration(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    match env_var(name) {
        None => Ok(default),
        Some(raw) => humantime::parse_duration(raw.trim())
            .ok()
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
            .ok_or(ConfigError::Invalid {
                name,
                problem: "use a duration from 1ms to 1h, like 10s".into(),
            }),
    }
}

impl LocalConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let given = env_var("ETP_API_TOKEN").map(ApiToken::new);
        let max_connections = env_parse::<usize>("ETP_MAX_CONNECTIONS")?.unwrap_or(MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(ConfigError::Invalid {
                name: "ETP_MAX_CONNECTIONS",
                problem: "must be at least 1".into(),
            });
        }
        Ok(Self {
            listen: env_parse("ETP_LISTEN")?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000))),
            metrics_listen: env_parse("ETP_METRICS_LISTEN")?,
            data_dir: env_var("ETP_DATA_DIR").map_or_else(|| PathBuf::from(".etp"), PathBuf::from),
            generated_token: given.is_none(),
            token: given.unwrap_or_else(ApiToken::generate),
            settings: Settings::from_env()?,
            server: ServerLimits {
                header_read_timeout: positive_duration(
                    "ETP_HEADER_READ_TIMEOUT",
                    HEADER_READ_TIMEOUT,
                )?,
                request_timeout: positive_duration("ETP_REQUEST_TIMEOUT", REQUEST_TIMEOUT)?,
                max_connections,
            },
        })
    }
}
