//! `events-api`: the event log routes and stats, behind API Gateway; read-only on the tables.

use std::sync::Arc;

use functions::{ReadOnlyScheduler, Runtime, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let rt = Runtime::from_env().await?;
    let app = rt.app(Arc::new(ReadOnlyScheduler), Arc::new(ReadOnlyScheduler));
    let router = etp::http::router(app, rt.token().await?);
    lambda_http::run(etp::telemetry::emf::flushing(router)).await
}
