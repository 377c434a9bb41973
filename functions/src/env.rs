//! A function's set-up, done once per cold start: configuration from the environment, SDK
//! clients, the store, the scheduler adapter, the delivery client, and JSON logs.

use std::sync::Arc;

use etp::app::App;
use etp::aws::dynamo::{DynamoStore, Tables};
use etp::aws::scheduler::{EventBridgeScheduler, ScheduleTarget};
use etp::clock::{Clock, SystemClock};
use etp::config::{ApiToken, ConfigError, Settings, env_var};
use etp::delivery::{Deliverer, Sender};
use etp::ports::{DeliveryQueue, Scheduler, Store};
use etp::telemetry::timed_store::Timed;

/// A required variable the template injects.
fn required(name: &'static str) -> Result<String, ConfigError> {
    env_var(name).ok_or(ConfigError::Invalid {
        name,
        problem: "is not set (template.yaml injects it)".into(),
    })
}

/// JSON logs, as Lambda's JSON log format expects; `RUST_LOG` filters (default info). Panics
/// are logged as JSON too, with their location, before the runtime ends the invocation. Also
/// installs the EMF metrics recorder.
pub fn init_tracing() {
    etp::supervise::install_panic_hook();
    // Metrics go out as CloudWatch EMF lines on stdout, one per invocation (see `emf::flush`).
    etp::telemetry::emf::install();
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
}

/// The SDK configuration from the environment. `ETP_AWS_ENDPOINT_URL`, when set and not empty,
/// sends every AWS call there (a local emulator under `sam local`; the template declares it
/// empty, so `--env-vars` may override it); on AWS it is empty and ignored.
async fn aws_config_from_env() -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    match env_var("ETP_AWS_ENDPOINT_URL") {
        Some(url) => loader.endpoint_url(url).load().await,
        None => loader.load().await,
    }
}

/// Everything a function needs, read from the environment and built once per cold start.
pub struct Runtime {
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub aws: aws_config::SdkConfig,
    pub store: Arc<DynamoStore>,
    /// The same store with every call timed (`etp_store_op_duration_seconds`).
    pub timed: Arc<dyn Store>,
}

impl Runtime {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let settings = Settings::from_env()?;
        let tables = Tables {
            triggers: required("TRIGGERS_TABLE")?,
            events: required("EVENTS_TABLE")?,
            stats: required("STATS_TABLE")?,
        };
        let aws = aws_config_from_env().await;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), tables)
            .with_retention(settings.lifecycle.retain_for);
        let store = Arc::new(store);
        Ok(Self {
            settings,
            clock: Arc::new(SystemClock),
            aws,
            timed: Arc::new(Timed(store.clone())),
            store,
        })
    }

    /// The API token, read once per cold start: from the Secrets Manager secret named by
    /// `ETP_API_TOKEN_SECRET` (what the template injects), else from `ETP_API_TOKEN` (for
    /// running a function by hand).
    pub async fn token(&self) -> Result<ApiToken, ConfigError> {
        let Some(secret) = env_var("ETP_API_TOKEN_SECRET") else {
            return required("ETP_API_TOKEN").map(ApiToken::new);
        };
        let unreadable = |problem: String| ConfigError::Invalid {
            name: "ETP_API_TOKEN_SECRET",
            problem,
        };
        let out = aws_sdk_secretsmanager::Client::new(&self.aws)
            .get_secret_value()
            .secret_id(&secret)
            .send()
            .await
            .map_err(|e| {
                unreadable(format!(
                    "names a secret that could not be read: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ))
            })?;
        match out.secret_string() {
            Some(token) if !token.is_empty() => Ok(ApiToken::new(token)),
            _ => Err(unreadable("names a secret without a string value".into())),
        }
    }

    /// The EventBridge Scheduler adapter, for the function that manages schedules.
    pub fn scheduler(&self) -> Result<EventBridgeScheduler, ConfigError> {
        self.scheduler_for(required("FIRE_FUNCTION_ARN")?)
    }

    /// The adapter with schedules that invoke `fire_function_arn` (the fire function learns its
    /// own ARN from its invocations: the template cannot hand a function its own ARN).
    pub fn scheduler_for(
        &self,
        fire_function_arn: String,
    ) -> Result<EventBridgeScheduler, ConfigError> {
        let target = ScheduleTarget {
            group: required("SCHEDULE_GROUP")?,
            role_arn: required("SCHEDULER_ROLE_ARN")?,
            fire_function_arn,
            dead_letter_arn: required("FIRE_DLQ_ARN")?,
        };
        Ok(EventBridgeScheduler::new(
            aws_sdk_scheduler::Client::new(&self.aws),
            target,
            self.clock.clone(),
        ))
    }

    pub fn app(
        &self,
        scheduler: Arc<dyn Scheduler>,
        deliveries: Arc<dyn DeliveryQueue>,
    ) -> Arc<App> {
        Arc::new(App::new(
            self.timed.clone(),
            scheduler,
            deliveries,
            self.clock.clone(),
            self.settings.clone(),
        ))
    }

    /// The delivery HTTP client: built once per cold start, it holds the connection pool.
    pub fn sender(&self) -> Result<Arc<Sender>, ConfigError> {
        self.settings.warn_about_relaxed_egress();
        Sender::new(self.settings.egress.clone())
            .map(Arc::new)
            .map_err(|e| ConfigError::Invalid {
                name: "ETP_ALLOW_PRIVATE_TARGETS",
                problem: e.to_string(),
            })
    }

    /// Delivers fired events to their targets; retries wait in `queue`.
    pub fn deliverer(&self, queue: Arc<dyn DeliveryQueue>, sender: Arc<Sender>) -> Deliverer {
        Deliverer::new(
            self.timed.clone(),
            self.clock.clone(),
            queue,
            sender,
            self.settings.retry.clone(),
        )
        .with_early_slack(etp::delivery::SCHEDULER_EARLY_SLACK)
        .with_alerts(self.settings.alert.clone())
    }
}
