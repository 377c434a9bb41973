//! Embedded adapters for the local runtime: a durable SQLite store and an in-process timer.

pub mod sqlite;
pub mod timer;

pub use sqlite::SqliteStore;
pub use timer::LocalTimer;
