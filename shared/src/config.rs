//! Settings from `ETP_*` environment variables, read once at start-up by each entry point.

use std::time::Duration as StdDuration;

use chrono::Duration;
use subtle::ConstantTimeEq;

use crate::domain::delivery::RetrySchedule;
use crate::domain::egress::EgressPolicy;
use crate::domain::lifecycle::Lifecycle;
use crate::domain::limits::Limits;
use crate::domain::schedule::ScheduleLimits;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {problem}")]
    Invalid { name: &'static str, problem: String },
}

/// The bearer token that guards the API. Never printed by `Debug`.
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// A fresh random token for local runs that were given none.
    pub fn generate() -> Self {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rng().random();
        use base64::Engine;
        Self(format!(
            "etp_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// Constant-time comparison, so response timing leaks nothing about the token.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Runtime-independent settings shared by the local server and the Lambda functions.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lifecycle: Lifecycle,
    /// How far back a missed occurrence is still worth one catch-up firing.
    pub catch_up_grace: Duration,
    pub stats_cache_ttl: StdDuration,
    pub max_body_bytes: usize,
    pub purge_every: StdDuration,
    /// What delivery targets may reach beyond public addresses (off unless opted into).
    pub egress: EgressPolicy,
    /// Waits between delivery retries.
    pub retry: RetrySchedule,
    /// Bounds on input and on what is kept (`ETP_MAX_*`).
    pub limits: Limits,
    /// How long a rotated-out secret keeps signing deliveries beside the new one.
    pub secret_rotation_grace: Duration,
    /// Where failure notifications go (`ETP_ALERT_URL`, signed with `ETP_ALERT_SECRET`).
    pub alert: Option<crate::delivery::alert::AlertTarget>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lifecycle: Lifecycle::default(),
            catch_up_grace: Duration::minutes(10),
            stats_cache_ttl: StdDuration::from_secs(2),
            max_body_bytes: 256 * 1024,
            purge_every: StdDuration::from_secs(60),
            egress: EgressPolicy::default(),
            retry: RetrySchedule::default(),
            limits: Limits::default(),
            secret_rotation_grace: Duration::hours(24),
            alert: None,
        }
    }
}

/// The alert webhook: a URL (`http` or `https`) and a `whsec_` secret to sign with, both or
/// neither (an empty URL is none).
fn alert_target(
    url: Option<String>,
    secret: Option<String>,
) -> Result<Option<crate::delivery::alert::AlertTarget>, ConfigError> {
    use crate::domain::target::Secret;
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let parsed = url::Url::parse(url.trim()).map_err(|e| ConfigError::Invalid {
        name: "ETP_ALERT_URL",
        problem: format!("is not a URL: {e}"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid {
            name: "ETP_ALERT_URL",
            problem: "must be an http or https URL".into(),
        });
    }
    let secret = secret
        .map(Secret::from_stored)
        .filter(|s| s.key().is_some())
        .ok_or(ConfigError::Invalid {
            name: "ETP_ALERT_SECRET",
            problem: "must be set with ETP_ALERT_URL: whsec_ and the base64 of the key".into(),
        })?;
    Ok(Some(crate::delivery::alert::AlertTarget {
        url: parsed.to_string(),
        secret,
    }))
}

impl Settings {
    /// Reads `ETP_ACTIVE_FOR`, `ETP_RETAIN_FOR`, `ETP_CATCH_UP_GRACE`, `ETP_STATS_CACHE_TTL`,
    /// `ETP_MAX_BODY_BYTES`, `ETP_PURGE_EVERY`, `ETP_ALLOW_PRIVATE_TARGETS` (comma-separated
    /// CIDRs and host names deliveries may reach although private; for development and tests)
    /// and `ETP_RETRY_DELAYS` (e.g. `5s,30s,2m,10m,30m`); unset means the default.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let active_for = env_duration("ETP_ACTIVE_FOR")?.unwrap_or(d.lifecycle.active_for);
        let retain_for = env_duration("ETP_RETAIN_FOR")?.unwrap_or(d.lifecycle.retain_for);
        let lifecycle =
            Lifecycle::new(active_for, retain_for).map_err(|p| ConfigError::Invalid {
                name: "ETP_RETAIN_FOR",
                problem: p.to_string(),
            })?;
        Ok(Self {
            lifecycle,
            catch_up_grace: env_duration("ETP_CATCH_UP_GRACE")?.unwrap_or(d.catch_up_grace),
            stats_cache_ttl: env_std_duration("ETP_STATS_CACHE_TTL")?.unwrap_or(d.stats_cache_ttl),
            max_body_bytes: env_parse("ETP_MAX_BODY_BYTES")?.unwrap_or(d.max_body_bytes),
            purge_every: env_std_duration("ETP_PURGE_EVERY")?.unwrap_or(d.purge_every),
            egress: match env_var("ETP_ALLOW_PRIVATE_TARGETS") {
                Some(list) => {
                    EgressPolicy::with_allowed(&list).map_err(|problem| ConfigError::Invalid {
                        name: "ETP_ALLOW_PRIVATE_TARGETS",
                        problem,
                    })?
                }
                None => d.egress,
            },
            retry: match env_var("ETP_RETRY_DELAYS") {
                Some(list) => retry_schedule(&list)?,
                None => d.retry,
            },
            limits: limits_from_env(d.limits)?,
            secret_rotation_grace: env_duration("ETP_SECRET_ROTATION_GRACE")?
                .unwrap_or(d.secret_rotation_grace),
            alert: alert_target(env_var("ETP_ALERT_URL"), env_var("ETP_ALERT_SECRET"))?,
        })
    }

    /// Says loudly, once, that deliveries may reach private addresses.
    pub fn warn_about_relaxed_egress(&self) {
        if self.egress.is_relaxed() {
            tracing::warn!(
                allowed = %self.egress.describe(),
                "ETP_ALLOW_PRIVATE_TARGETS is set: deliveries may reach these private addresses \
                 and hosts. Use this for local development and tests only"
            );
        }
    }
}

/// Reads `ETP_MAX_SCHEDULE_AHEAD`, `ETP_MAX_PAYLOAD_BYTES`, `ETP_MAX_SCHEMA_BYTES`,
/// `ETP_MAX_SCHEMA_DEPTH`, `ETP_SCHEMA_BUDGET`, `ETP_MAX_TRIGGERS`, `ETP_MAX_PENDING_TEST_RUNS`
/// and `ETP_TEST_RUN_MAX_LEAD` over the defaults; each must be positive.
fn limits_from_env(d: Limits) -> Result<Limits, ConfigError> {
    fn positive<T: PartialOrd + Default>(
        name: &'static str,
        v: Option<T>,
        default: T,
    ) -> Result<T, ConfigError> {
        match v {
            Some(v) if v <= T::default() => Err(ConfigError::Invalid {
                name,
                problem: "must be greater than zero".into(),
            }),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    }
    let max_ahead = positive(
        "ETP_MAX_SCHEDULE_AHEAD",
        env_duration("ETP_MAX_SCHEDULE_AHEAD")?,
        d.schedule.max_ahead,
    )?;
    if max_ahead > Duration::days(100 * 366) {
        return Err(ConfigError::Invalid {
            name: "ETP_MAX_SCHEDULE_AHEAD",
            problem: "must be at most 100 years".into(),
        });
    }
    Ok(Limits {
        schedule: ScheduleLimits { max_ahead },
        max_payload_bytes: positive(
            "ETP_MAX_PAYLOAD_BYTES",
            env_parse("ETP_MAX_PAYLOAD_BYTES")?,
            d.max_payload_bytes,
        )?,
        max_schema_bytes: positive(
            "ETP_MAX_SCHEMA_BYTES",
            env_parse("ETP_MAX_SCHEMA_BYTES")?,
            d.max_schema_bytes,
        )?,
        max_schema_depth: positive(
            "ETP_MAX_SCHEMA_DEPTH",
            env_parse("ETP_MAX_SCHEMA_DEPTH")?,
            d.max_schema_depth,
        )?,
        schema_budget: positive(
            "ETP_SCHEMA_BUDGET",
            env_std_duration("ETP_SCHEMA_BUDGET")?,
            d.schema_budget,
        )?,
        max_triggers: positive(
            "ETP_MAX_TRIGGERS",
            env_parse("ETP_MAX_TRIGGERS")?,
            d.max_triggers,
        )?,
        max_pending_test_runs: positive(
            "ETP_MAX_PENDING_TEST_RUNS",
            env_parse("ETP_MAX_PENDING_TEST_RUNS")?,
            d.max_pending_test_runs,
        )?,
        max_test_run_lead: positive(
            "ETP_TEST_RUN_MAX_LEAD",
            env_duration("ETP_TEST_RUN_MAX_LEAD")?,
            d.max_test_run_lead,
        )?,
    })
}

fn retry_schedule(list: &str) -> Result<RetrySchedule, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        name: "ETP_RETRY_DELAYS",
        problem,
    };
    let delays = list
        .split(',')
        .map(|d| {
            humantime::parse_duration(d.trim())
                .map_err(|e| invalid(format!("`{}`: {e}", d.trim())))
                .and_then(|d| {
                    Duration::from_std(d)
                        .ok()
                        .filter(|d| *d <= Duration::days(7))
                        .ok_or_else(|| invalid(format!("`{}`: at most 7 days", d.as_secs())))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    RetrySchedule::new(delays).map_err(|p| invalid(p.into()))
}

/// The value of `name`, or `None` when unset or empty.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_std_duration(name: &'static str) -> Result<Option<StdDuration>, ConfigError> {
    env_var(name)
        .map(|raw| {
            humantime::parse_duration(raw.trim()).map_err(|e| ConfigError::Invalid {
                name,
                problem: format!("{e} (use a duration like 90s, 10m or 2h)"),
            })
        })
        .transpose()
}

/// Longest duration any setting takes: beyond it, time arithmetic would only overflow.
const MAX_SETTING_DAYS: i64 = 100 * 366;

fn env_duration(name: &'static str) -> Result<Option<Duration>, ConfigError> {
    env_std_duration(name)?
        .map(|d| {
            Duration::from_std(d)
                .ok()
                .filter(|d| *d <= Duration::days(MAX_SETTING_DAYS))
                .ok_or_else(|| ConfigError::Invalid {
                    name,
                    problem: "must be at most 100 years".into(),
                })
        })
        .transpose()
}

/// Parses `name` with `FromStr`, naming the variable on failure.
pub fn env_parse<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    env_var(name)
        .map(|raw| {
            raw.trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    problem: e.to_string(),
                })
        })
        .transpose()
}

#[cfg(test)]
mod alert_tests {
    use super::*;

    #[test]
    fn the_alert_webhook_needs_a_url_and_a_usable_secret() {
        let secret = crate::domain::target::Secret::generate()
            .expose()
            .to_string();
        let url = Some("https://ops.example.com/etp".to_string());
        assert!(alert_target(None, None).unwrap().is_none());
        assert!(alert_target(Some(" ".into()), None).unwrap().is_none());
        let target = alert_target(url.clone(), Some(secret)).unwrap().unwrap();
        assert_eq!(target.url, "https://ops.example.com/etp");
        for (url, secret, name) in [
            (url.clone(), None, "ETP_ALERT_SECRET"),
            (url, Some("whsec_!!".to_string()), "ETP_ALERT_SECRET"),
            (Some("ftp://x".to_string()), None, "ETP_ALERT_URL"),
            (Some("not a url".to_string()), None, "ETP_ALERT_URL"),
        ] {
            match alert_target(url, secret) {
                Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name),
                other => panic!("expected an error naming {name}, got {other:?}"),
            }
        }
    }
}
