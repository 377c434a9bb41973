//! Domain rules: triggers, schedules, events and their lifecycle. No I/O lives here.

pub mod delivery;
pub mod egress;
pub mod event;
pub mod lifecycle;
pub mod schedule;
pub mod target;
pub mod timestamp;
pub mod trigger;
pub mod validation;

/// A new sortable identifier (ULID): ids sort in creation order.
pub fn new_id() -> String {
    ulid::Ulid::new().to_string().to_ascii_lowercase()
}
