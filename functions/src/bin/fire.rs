//! `fire`: the target EventBridge Scheduler invokes once per occurrence (and per test run).

use etp::firing::FireInput;
use functions::{Runtime, handle_fire, init_tracing};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let rt = Runtime::from_env().await?;
    let (store, clock) = (rt.store.clone(), rt.clock.clone());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<FireInput>| {
        let (store, clock) = (store.clone(), clock.clone());
        async move {
            handle_fire(store.as_ref(), clock.as_ref(), event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
