//! What the Lambda entry points share: their set-up (`env`), the fire handler (`fire`) and the
//! read-only scheduler of `events-api` (`read_only`). Each `main.rs` stays a few lines.

pub mod env;
pub mod fire;
pub mod read_only;

pub use env::{Runtime, init_tracing};
pub use fire::{FireError, FireReport, handle_fire};
pub use read_only::ReadOnlyScheduler;
