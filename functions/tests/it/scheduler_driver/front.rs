//! The driver's AWS front door: an in-process HTTP proxy the driver's DynamoDB and EventBridge
//! Scheduler clients talk to instead of moto, which forwards to moto what AWS would accept.
//!
//! - DynamoDB requests go to moto one at a time. Moto's server is threaded and its
//!   TransactWriteItems are not isolated (a cancelled transaction restores a copy of the tables
//!   it touched, undoing a concurrent request's writes); DynamoDB's transactions are
//!   serializable. Only the driver's clients use the driver's tables, so serializing the
//!   driver's requests makes each of them atomic, as on DynamoDB, and concurrent duplicate
//!   invocations can run concurrently.
//! - CreateSchedule and UpdateSchedule are judged, by the manual clock, when they "arrive": some
//!   arrive seconds after they were sent (a stall advances the manual clock, as a slow network,
//!   the SDK's own retries after throttling or a frozen Lambda would); a `StartDate` more than
//!   five minutes in the past is refused with ValidationException (documented); an `at()`
//!   already past meets the fate the seed chose (undocumented): refused with
//!   ValidationException, or accepted but never run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use etp::clock::{Clock, ManualClock};

use super::draw;

/// What EventBridge Scheduler does with an `at()` that is already past when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PastAt {
    /// CreateSchedule / UpdateSchedule answer ValidationException.
    Rejected,
    /// The schedule is stored (and listed) but never runs, so it never completes either.
    NeverRuns,
}

/// The last accepted write of a schedule.
#[derive(Debug, Clone)]
pub struct Written {
    pub expression: String,
    /// When it arrived, by the manual clock: a cron schedule runs from then on.
    pub arrived: DateTime<Utc>,
    /// Its `at()` was past on arrival and the fate is [`PastAt::NeverRuns`].
    pub never_runs: bool,
}

/// What the front door did, for the report and the assertions.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub stalls: u32,
    /// Each `at()` past on arrival: the label of its schedule and its fate.
    pub past_at: Vec<(String, PastAt)>,
    pub old_start_rejected: u32,
}

#[derive(Default)]
struct Book {
    written: HashMap<String, Written>,
    /// When each schedule's writes last stalled: a stall is a passing hiccup, so a schedule's
    /// writes do not stall again within [`HICCUP`].
    stalled: HashMap<String, DateTime<Utc>>,
    /// Stalls promised to the next write of a schedule whose name starts so.
    forced: Vec<(String, Duration)>,
    tally: Tally,
}

struct Shared {
    moto: String,
    http: reqwest::Client,
    clock: Arc<ManualClock>,
    seed: u64,
    anchor: DateTime<Utc>,
    fate: PastAt,
    /// Maps a schedule name to a stable label for the seeded draws (names hold fresh ids).
    label: Box<dyn Fn(&str) -> String + Send + Sync>,
    dynamo: tokio::sync::Mutex<()>,
    book: Mutex<Book>,
}

#[derive(Clone)]
pub struct Front {
    pub endpoint: String,
    shared: Arc<Shared>,
}

/// How long after a stall the same schedule's writes arrive promptly.
const HICCUP: Duration = Duration::seconds(60);
/// AWS allows a `StartDate` at most this far in the past.
const START_DATE_SLACK: Duration = Duration::minutes(5);

impl Front {
    pub async fn start(
        moto: &str,
        clock: Arc<ManualClock>,
        seed: u64,
        anchor: DateTime<Utc>,
        fate: PastAt,
        label: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Self {
        etp::delivery::install_crypto_provider();
        let shared = Arc::new(Shared {
            moto: moto.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            clock,
            seed,
            anchor,
            fate,
            label: Box::new(label),
            dynamo: tokio::sync::Mutex::new(()),
            book: Mutex::new(Book::default()),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let addr = etp::testing::fixtures::spawn_http(router).await;
        Self {
            endpoint: format!("http://{addr}"),
            shared,
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.shared.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next write of a schedule whose name starts with `prefix` arrives `by` late, whatever
    /// the draw says.
    pub fn stall_next(&self, prefix: &str, by: Duration) {
        self.book().forced.push((prefix.to_string(), by));
    }

    pub fn written(&self, name: &str) -> Option<Written> {
        self.book().written.get(name).cloned()
    }

    pub fn tally(&self) -> Tally {
        self.book().tally.clone()
    }
}

fn validation(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [
            ("x-amzn-errortype", "ValidationException"),
            ("content-type", "application/json"),
        ],
        serde_json::json!({ "Message": message }).to_string(),
    )
        .into_response()
}

/// The instant of `at(yyyy-mm-ddThh:mm:ss)` in `zone`.
pub fn at_instant(expression: &str, zone: &str) -> Option<DateTime<Utc>> {
    let at = expression.strip_prefix("at(")?.strip_suffix(')')?;
    let local = NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S").ok()?;
    let tz: Tz = zone.parse().ok()?;
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.to_utc())
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let dynamo = headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.starts_with("DynamoDB_"));
    if dynamo {
        let _turn = s.dynamo.lock().await;
        return forward(&s, method, &uri, &headers, body).await;
    }
    let write =
        (method == Method::POST || method == Method::PUT) && uri.path().starts_with("/schedules/");
    if !write {
        return forward(&s, method, &uri, &headers, body).await;
    }
    let name = uri.path().trim_start_matches("/schedules/").to_string();
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let expression = request["ScheduleExpression"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let zone = request["ScheduleExpressionTimezone"]
        .as_str()
        .unwrap_or("UTC");
    let start = request["StartDate"]
        .as_f64()
        .and_then(|secs| DateTime::from_timestamp_millis((secs * 1000.0).round() as i64));

    // When it arrives.
    let now = {
        let mut book = s.book.lock().unwrap_or_else(|e| e.into_inner());
        let since = (s.clock.now() - s.anchor).num_milliseconds();
        let label = (s.label)(&name);
        let drawn = draw(s.seed, &label, since, 20);
        let forced = book
            .forced
            .iter()
            .position(|(p, _)| name.starts_with(p.as_str()));
        let forced = forced.map(|i| book.forced.remove(i).1);
        let stall = forced.or_else(|| {
            // One write in four is held up 1 to 8 s, not again soon for the same schedule.
            let recent = book
                .stalled
                .get(&name)
                .is_some_and(|at| s.clock.now() - *at < HICCUP);
            (drawn % 4 == 0 && !recent)
                .then(|| Duration::seconds(1 + (draw(s.seed, &label, since, 21) % 8) as i64))
        });
        if let Some(by) = stall {
            s.clock.advance(by);
            book.tally.stalls += 1;
            book.stalled.insert(name.clone(), s.clock.now());
        }
        s.clock.now()
    };

    if start.is_some_and(|start| start < now - START_DATE_SLACK) {
        s.book
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tally
            .old_start_rejected += 1;
        return validation("The StartDate you specify cannot be earlier than 5 minutes ago.");
    }
    let past = at_instant(&expression, zone).is_some_and(|at| at <= now);
    if past && s.fate == PastAt::Rejected {
        let label = (s.label)(&name);
        let mut book = s.book.lock().unwrap_or_else(|e| e.into_inner());
        book.tally.past_at.push((label, PastAt::Rejected));
        eprintln!("front door: {name} {expression} arrived at {now}: past, rejected");
        return validation(&format!(
            "The schedule expression {expression} is in the past."
        ));
    }
    let response = forward(&s, method, &uri, &headers, body).await;
    if response.status().is_success() {
        let mut book = s.book.lock().unwrap_or_else(|e| e.into_inner());
        if past {
            let label = (s.label)(&name);
            book.tally.past_at.push((label, PastAt::NeverRuns));
            eprintln!("front door: {name} {expression} arrived at {now}: past, will never run");
        }
        book.written.insert(
            name,
            Written {
                expression,
                arrived: now,
                never_runs: past,
            },
        );
    }
    response
}

async fn forward(
    s: &Shared,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = s
        .http
        .request(method, format!("{}{path}", s.moto))
        .body(body);
    for (k, v) in headers {
        if ![
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
        ]
        .contains(k)
        {
            request = request.header(k, v);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let mut out = HeaderMap::new();
            for (k, v) in answer.headers() {
                if ![
                    header::CONTENT_LENGTH,
                    header::CONNECTION,
                    header::TRANSFER_ENCODING,
                ]
                .contains(k)
                {
                    out.append(k.clone(), v.clone());
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("moto: {e}")).into_response(),
    }
}
