//! `triggers-api`: trigger routes, test runs and api firing, behind API Gateway.

use std::sync::Arc;

use functions::{Runtime, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let rt = Runtime::from_env().await?;
    let scheduler = Arc::new(rt.scheduler()?);
    let app = rt.app(scheduler.clone(), scheduler);
    let router = etp::http::router(app, rt.token().await?);
    lambda_http::run(etp::telemetry::emf::flushing(router)).await
}
