//! The `etp` crate's integration tests in one binary (one link, one moto server), a module per
//! area. Shared helpers live in `etp::testing` (`fixtures`, `instants`, `contract`, `moto`).

mod api;
mod api_keys;
mod contract_dynamo;
mod contract_sqlite;
mod delivery;
mod metrics;
mod occurrences;
mod oneshot;
mod repair;
mod scheduler_eventbridge;
mod timer;
