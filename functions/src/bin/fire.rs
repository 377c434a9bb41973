//! `fire`: the target EventBridge Scheduler invokes once per occurrence, per test run and per
//! pending delivery attempt.

use std::sync::Arc;

use etp::firing::FireInput;
use functions::{Runtime, handle_fire, init_tracing};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let rt = Arc::new(Runtime::from_env().await?);
    let sender = rt.sender()?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<FireInput>| {
        let (rt, sender) = (rt.clone(), sender.clone());
        async move {
            // Retries are schedules that invoke this very function, named by the invocation.
            let queue = rt.scheduler_for(event.context.invoked_function_arn.clone())?;
            let deliverer = rt.deliverer(Arc::new(queue), sender);
            let (store, clock) = (rt.timed.as_ref(), rt.clock.as_ref());
            let report = handle_fire(store, clock, &deliverer, event.payload).await;
            // This invocation's metrics, as one EMF line, whatever its outcome.
            etp::telemetry::emf::flush();
            report
        }
    }))
    .await
}
