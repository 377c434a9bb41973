//! Embedded adapters for the local runtime: a durable SQLite store, an in-process timer and
//! the delivery queue.

pub mod deliveries;
pub mod sqlite;
pub mod timer;

pub use deliveries::{DeliveryWorker, LocalDeliveryQueue};
pub use sqlite::SqliteStore;
pub use timer::LocalTimer;
