//! Event Trigger Platform: domain rules, ports, the HTTP API and the embedded adapters.

pub mod app;
#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod domain;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod firing;
pub mod http;
pub mod ports;
pub mod supervise;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
