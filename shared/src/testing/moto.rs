//! One local moto server per test binary, and SDK clients pointed at it, for the AWS adapters.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

const INSTALL: &str = "install it with `make test` (creates .venv at the workspace root), or \
     `python3 -m venv .venv && .venv/bin/pip install 'moto[server]'`, or set MOTO_SERVER to \
     the moto_server executable";
const REGION: &str = "us-east-1";
/// Startup takes about 0.5 s; a busy 2-core machine compiling in parallel needs far more.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Runs moto in the background and stops it when fd 3 (our pipe) reaches end of file, which
/// happens however this process ends, even on SIGKILL. Exits if moto exits, so a failed
/// start is seen at once. Arguments: $0 moto_server, $1 port, $2 log file.
const WRAPPER: &str = r#"exec 3<&0
"$0" -H 127.0.0.1 -p "$1" >"$2" 2>&1 </dev/null 3<&- &
moto=$!
( read -r _ <&3; kill "$moto" 2>/dev/null ) &
wait "$moto""#;

struct Server {
    endpoint: String,
    _child: Child,
    /// Never written; held until exit so the wrapper's read only ends when this process does.
    _lifeline: ChildStdin,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// The URL of this test binary's moto server, started on first use (which blocks until it
/// answers). Panics, failing the test, when moto cannot be found or started.
pub fn endpoint() -> &'static str {
    match SERVER.get_or_init(start) {
        Ok(server) => &server.endpoint,
        Err(why) => panic!("{why}"),
    }
}

/// A DynamoDB client for moto. Build one per test: SDK clients hold connections bound to the
/// Tokio runtime that opened them, and every `#[tokio::test]` has its own runtime.
pub fn dynamo_client() -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(REGION))
        .credentials_provider(credentials())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Shared SDK configuration for moto, for clients of other services (e.g. the scheduler).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(REGION))
        .credentials_provider(credentials())
        .load()
        .await
}

/// Creates a Secrets Manager secret `name` holding `value` on the moto server at `endpoint`
/// (its JSON protocol, which moto serves beside the others; no SDK crate needed for one call).
pub async fn create_secret(endpoint: &str, name: &str, value: &str) -> Result<(), String> {
    crate::delivery::install_crypto_provider();
    let response = reqwest::Client::new()
        .post(endpoint)
        .header("x-amz-target", "secretsmanager.CreateSecret")
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .json(&serde_json::json!({"Name": name, "SecretString": value}))
        .send()
        .await
        .map_err(|e| format!("moto did not answer CreateSecret: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "CreateSecret {name}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        ))
    }
}

fn credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "moto")
}

fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "MOTO_SERVER={} is not a file; {INSTALL}",
                path.display()
            ))
        };
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if venv.is_file() {
        return Ok(venv);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("moto_server"))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("moto_server not found (MOTO_SERVER, .venv/bin, PATH): {INSTALL}"))
}

fn start() -> Result<Server, String> {
    let moto = locate()?;
    let mut failures = Vec::new();
    // Another process may take the free port before moto binds it; a new port fixes that.
    for _ in 0..3 {
        let port = super::fixtures::free_port();
        let log = std::env::temp_dir().join(format!("etp-moto-{}-{port}.log", std::process::id()));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg(&moto)
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run sh to start {}: {e}", moto.display()))?;
        let Some(lifeline) = child.stdin.take() else {
            return Err("no pipe to the moto wrapper".into());
        };
        match wait_ready(port, &mut child) {
            Ok(()) => {
                // Moto keeps its open handle; the name is only needed to report a failed start.
                let _ = std::fs::remove_file(&log);
                return Ok(Server {
                    endpoint: format!("http://127.0.0.1:{port}"),
                    _child: child,
                    _lifeline: lifeline,
                });
            }
            Err(why) => {
                drop(lifeline);
                let _ = child.wait();
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = std::fs::remove_file(&log);
                let tail: String = output.lines().rev().take(15).collect::<Vec<_>>().join("\n");
                failures.push(format!(
                    "port {port}: {why}; its output (last lines first):\n{tail}"
                ));
            }
        }
    }
    Err(format!(
        "moto_server ({}) did not start: {}\n{INSTALL}",
        moto.display(),
        failures.join("\n")
    ))
}

fn wait_ready(port: u16, child: &mut Child) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited ({status})"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("no answer within {READY_WITHIN:?}"))
}

/// The DynamoDB operation of every request a client sent (retries included), and what each
/// cost by DynamoDB's capacity rules, for tests and the benchmark that count store work.
#[derive(Debug, Default, Clone)]
pub struct CallLog {
    ops: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    costs: std::sync::Arc<std::sync::Mutex<Vec<crate::testing::capacity::CallCost>>>,
}

impl CallLog {
    /// The operations recorded since the last call, oldest first (their costs are dropped).
    pub fn take(&self) -> Vec<String> {
        self.take_costs();
        self.take_ops()
    }

    /// The operations recorded since the last call, leaving their costs to [`Self::take_costs`].
    pub fn take_ops(&self) -> Vec<String> {
        std::mem::take(&mut *self.ops.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// What each call since the last `take` read and wrote, and its capacity units.
    pub fn take_costs(&self) -> Vec<crate::testing::capacity::CallCost> {
        std::mem::take(&mut *self.costs.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push_cost(&self, cost: crate::testing::capacity::CallCost) {
        self.costs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cost);
    }
}

impl aws_sdk_dynamodb::config::Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let request = context.request();
        let op = match request.headers().get("x-amz-target") {
            Some(target) => target.rsplit('.').next().unwrap_or(target).to_string(),
            // EventBridge Scheduler is REST: the operation is the method on the resource.
            None => scheduler_operation(request.method(), request.uri()),
        };
        // What a write sends is what it writes (updates and deletes: see `CallCost`).
        if let Some(body) = context.request().body().bytes() {
            if let Some(cost) = crate::testing::capacity::CallCost::of_request(&op, body) {
                self.push_cost(cost);
            }
            // How the response's items are billed: kept with this call for its response.
            let consistent = serde_json::from_slice::<serde_json::Value>(body)
                .is_ok_and(|v| v["ConsistentRead"] == serde_json::Value::Bool(true));
            cfg.interceptor_state()
                .store_put(ConsistentRead(consistent));
        }
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::AfterDeserializationInterceptorContextRef<
            '_,
        >,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use crate::testing::capacity::CallCost;
        let Ok(output) = context.output_or_error() else {
            return Ok(());
        };
        let consistent = cfg.load::<ConsistentRead>().is_some_and(|c| c.0);
        if let Some(out) =
            output.downcast_ref::<aws_sdk_dynamodb::operation::get_item::GetItemOutput>()
        {
            self.push_cost(CallCost::read(
                "GetItem",
                out.item().into_iter(),
                consistent,
            ));
        } else if let Some(out) =
            output.downcast_ref::<aws_sdk_dynamodb::operation::query::QueryOutput>()
        {
            self.push_cost(CallCost::read("Query", out.items().iter(), consistent));
        }
        Ok(())
    }
}

/// Whether the request in flight asked for a strongly consistent read.
#[derive(Debug, Clone)]
struct ConsistentRead(bool);

impl aws_smithy_types::config_bag::Storable for ConsistentRead {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

/// The EventBridge Scheduler operation of a REST request.
fn scheduler_operation(method: &str, uri: &str) -> String {
    let path = uri
        .split("://")
        .nth(1)
        .map_or(uri, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
    let resource = if path.starts_with("/schedule-groups") {
        "ScheduleGroup"
    } else {
        "Schedule"
    };
    let verb = match method {
        "POST" => "Create",
        "PUT" => "Update",
        "DELETE" => "Delete",
        _ if path.trim_end_matches('/').matches('/').count() <= 1 => "List",
        _ => "Get",
    };
    let plural = if verb == "List" { "s" } else { "" };
    format!("{verb}{resource}{plural}")
}

/// An EventBridge Scheduler client for moto (with [`scheduler_client`]'s guard) whose calls
/// `calls` records alongside a DynamoDB client's.
pub async fn counting_scheduler_client(calls: &CallLog) -> aws_sdk_scheduler::Client {
    let base = scheduler_client().await;
    aws_sdk_scheduler::Client::from_conf(
        base.config()
            .to_builder()
            .interceptor(calls.clone())
            .build(),
    )
}

/// A DynamoDB client for moto that records every operation it sends.
pub fn counting_dynamo_client() -> (aws_sdk_dynamodb::Client, CallLog) {
    let calls = CallLog::default();
    let base = dynamo_client();
    let client = aws_sdk_dynamodb::Client::from_conf(
        base.config()
            .to_builder()
            .interceptor(calls.clone())
            .build(),
    );
    (client, calls)
}

/// An EventBridge Scheduler client for moto that refuses, loudly and naming the test that built
/// it, any schedule whose `StartDate` or `at()` time is already past by the real clock. Moto
/// judges such times by the real clock (it refuses a `StartDate` over five minutes old, and keeps
/// an `at()` in the past that AWS may refuse), so a test that sends a fixed date passes until
/// that date and then fails for no reason its author can see.
pub async fn scheduler_client() -> aws_sdk_scheduler::Client {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed thread>")
        .to_string();
    let base = aws_sdk_scheduler::Client::new(&sdk_config().await);
    aws_sdk_scheduler::Client::from_conf(
        base.config()
            .to_builder()
            .interceptor(PastInstantGuard { test })
            .build(),
    )
}

/// See [`scheduler_client`].
#[derive(Debug, Clone)]
pub struct PastInstantGuard {
    test: String,
}

impl aws_sdk_scheduler::config::Intercept for PastInstantGuard {
    fn name(&self) -> &'static str {
        "PastInstantGuard"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_scheduler::config::interceptors::BeforeSerializationInterceptorContextRef<
            '_,
        >,
        _: &mut aws_sdk_scheduler::config::ConfigBag,
    ) -> Result<(), aws_sdk_scheduler::error::BoxError> {
        use aws_sdk_scheduler::operation::create_schedule::CreateScheduleInput;
        use aws_sdk_scheduler::operation::update_schedule::UpdateScheduleInput;
        let input = context.input();
        let (name, start, expression) = if let Some(i) = input.downcast_ref::<CreateScheduleInput>()
        {
            (i.name(), i.start_date(), i.schedule_expression())
        } else if let Some(i) = input.downcast_ref::<UpdateScheduleInput>() {
            (i.name(), i.start_date(), i.schedule_expression())
        } else {
            return Ok(());
        };
        let now = chrono::Utc::now();
        if let Some(problem) = past_instant(start, expression, now) {
            panic!(
                "test `{}` sent moto schedule {} with {problem}, in the past by the real clock \
                 ({now}): derive test instants from etp::testing::instants, never from a literal \
                 date",
                self.test,
                name.unwrap_or("?"),
            );
        }
        Ok(())
    }
}

/// What in a schedule lies before `now`: its start date or its `at()` time.
fn past_instant(
    start: Option<&aws_sdk_scheduler::primitives::DateTime>,
    expression: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    if let Some(start) = start
        && start.secs() < now.timestamp()
    {
        return Some(format!("StartDate {start}"));
    }
    let at = expression?.strip_prefix("at(")?.strip_suffix(')')?;
    let at = chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S").ok()?;
    (at.and_utc() < now).then(|| format!("expression at({at})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_sees_past_start_dates_and_at_times() {
        let now = chrono::Utc::now();
        let secs = |t: chrono::DateTime<chrono::Utc>| {
            aws_sdk_scheduler::primitives::DateTime::from_secs(t.timestamp())
        };
        let past = now - chrono::Duration::minutes(1);
        let future = now + chrono::Duration::minutes(1);
        assert!(past_instant(Some(&secs(past)), None, now).is_some());
        assert!(past_instant(Some(&secs(future)), None, now).is_none());
        let at = |t: chrono::DateTime<chrono::Utc>| crate::testing::instants::at_expression(t);
        assert!(past_instant(None, Some(&at(past)), now).is_some());
        assert!(past_instant(None, Some(&at(future)), now).is_none());
        assert!(past_instant(None, Some("rate(5 minutes)"), now).is_none());
    }
}
