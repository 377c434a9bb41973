//! Domain rules: triggers, schedules, events and their lifecycle. No I/O lives here.

pub mod api_key;
pub mod delivery;
pub mod egress;
pub mod event;
pub mod integral;
pub mod lifecycle;
pub mod limits;
pub mod occurrence;
pub mod payload_schema;
pub mod schedule;
#[cfg(test)]
mod schedule_props;
pub mod target;
pub mod test_run;
pub mod time_range;
pub mod timestamp;
pub mod trigger;
pub mod validation;

/// `object_json` (a non-empty JSON object) with more members written by `more` after its own,
/// each starting with a comma: how listings add read-time fields to stored JSON without
/// decoding it. `None` if `object_json` is not a non-empty object.
pub fn extend_object(object_json: &str, more: impl FnOnce(&mut String)) -> Option<String> {
    let fields = object_json
        .strip_suffix('}')
        .filter(|f| f.starts_with('{') && f.len() > 1)?;
    let mut out = String::with_capacity(object_json.len() + 96);
    out.push_str(fields);
    more(&mut out);
    out.push('}');
    Some(out)
}

/// A new sortable identifier (ULID): ids sort in creation order, within a millisecond too (a
/// monotonic generator), so events recorded in the order they fired sort in that order and the
/// store never has to re-rank the ones after a late arrival.
pub fn new_id() -> String {
    static IDS: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    let next = IDS.lock().unwrap_or_else(|e| e.into_inner()).generate();
    // The random part overflows only after 2^80 ids in one millisecond.
    next.unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
        .to_ascii_lowercase()
}
