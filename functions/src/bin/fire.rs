//! `fire`: the target EventBridge Scheduler invokes once per occurrence, per test run and per
//! pending delivery attempt.

use std::sync::Arc;

use etp::firing::FireInput;
use functions::{Runtime, handle_fire, init_tracing};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let rt = Runtime::from_env().await?;
    let deliverer = Arc::new(rt.deliverer(Arc::new(rt.scheduler()?))?);
    let (store, clock) = (rt.store.clone(), rt.clock.clone());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<FireInput>| {
        let (store, clock, deliverer) = (store.clone(), clock.clone(), deliverer.clone());
        async move {
            handle_fire(store.as_ref(), clock.as_ref(), &deliverer, event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
