//! The `by_id` listing of triggers, sharded: each trigger is listed under one of
//! [`TRIGGER_SHARDS`] hash keys chosen by its id, so trigger writes (every completion of a
//! one-time trigger in the fire path among them) spread over several index partitions instead
//! of one. A page queries every shard in parallel and merges them in id order.

use super::{Item, get_s};

/// Hash keys the trigger listing is spread over.
pub const TRIGGER_SHARDS: u32 = 4;
/// The single hash key triggers were listed under before sharding: still queried, so items
/// written by an older version stay listed until their next write moves them to their shard.
pub const LEGACY_LIST: &str = "trigger";

/// The `list_pk` of trigger `id`: stable for an id (FNV-1a over its bytes).
pub fn list_key(id: &str) -> String {
    let hash = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("trigger#{}", hash % TRIGGER_SHARDS)
}

/// Every `list_pk` a page must query: the shards, then the legacy key.
pub fn list_keys() -> Vec<String> {
    (0..TRIGGER_SHARDS)
        .map(|s| format!("trigger#{s}"))
        .chain(std::iter::once(LEGACY_LIST.to_string()))
        .collect()
}

/// What one shard's query returned: items in id order, whether it stopped because it had as
/// many as asked (`full`), and where it stopped early when its call budget ran out (`resume`).
pub struct ShardPage {
    pub items: Vec<Item>,
    pub full: bool,
    pub resume: Option<Item>,
}

/// Merges the shards' pages into one page of at most `limit` items and the id to continue
/// after. Every shard has been read up to some id (its last item when it was cut at the page
/// size, its resume key when its budget ran out, everything otherwise); the merged page may
/// only hold ids up to the smallest of those, or it would skip what a shard has not read yet.
pub fn merge(shards: Vec<ShardPage>, limit: usize) -> (Vec<Item>, Option<String>) {
    let mut read_up_to: Option<String> = None;
    let mut all = Vec::new();
    for shard in shards {
        let bound = if shard.full {
            shard.items.last().and_then(|i| get_s(i, "pk").ok())
        } else {
            shard.resume.as_ref().and_then(|k| get_s(k, "pk").ok())
        }
        .map(str::to_string);
        if let Some(b) = bound {
            read_up_to = Some(match read_up_to {
                Some(r) if r <= b => r,
                _ => b,
            });
        }
        all.extend(shard.items);
    }
    let id = |i: &Item| get_s(i, "pk").unwrap_or_default().to_string();
    all.sort_by_key(|i| id(i));
    if let Some(bound) = &read_up_to {
        all.retain(|i| id(i) <= *bound);
    }
    if all.len() > limit {
        all.truncate(limit);
        let next = all.last().map(id);
        return (all, next);
    }
    (all, read_up_to)
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;

    fn item(id: &str) -> Item {
        [("pk".to_string(), AttributeValue::S(id.into()))].into()
    }

    fn ids(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| get_s(i, "pk").unwrap().to_string())
            .collect()
    }

    fn shard(ids: &[&str], full: bool, resume: Option<&str>) -> ShardPage {
        ShardPage {
            items: ids.iter().map(|i| item(i)).collect(),
            full,
            resume: resume.map(item),
        }
    }

    #[test]
    fn keys_are_stable_and_spread() {
        assert_eq!(list_key("01abc"), list_key("01abc"));
        let used: std::collections::HashSet<String> = (0..64)
            .map(|n| list_key(&format!("01jex4mp1e00000000000000{n:02}")))
            .collect();
        assert_eq!(used.len(), TRIGGER_SHARDS as usize);
        assert_eq!(list_keys().len(), TRIGGER_SHARDS as usize + 1);
    }

    #[test]
    fn a_page_never_skips_what_a_shard_has_not_read() {
        // Limit 2, each shard asked for 3: shard a was cut at its third item; the page is the
        // two smallest ids of both shards.
        let (page, next) = merge(
            vec![
                shard(&["a", "c", "e"], true, None),
                shard(&["b", "d"], false, None),
            ],
            2,
        );
        assert_eq!(
            (ids(&page), next.as_deref()),
            (vec!["a".into(), "b".into()], Some("b"))
        );

        // All shards exhausted: no cursor.
        let (page, next) = merge(
            vec![shard(&["b"], false, None), shard(&["a"], false, None)],
            5,
        );
        assert_eq!((ids(&page), next), (vec!["a".into(), "b".into()], None));

        // A shard that ran out of calls at "c": the short page ends there, with "c" to go on.
        let (page, next) = merge(
            vec![
                shard(&["a"], false, Some("c")),
                shard(&["b", "d"], false, None),
            ],
            5,
        );
        assert_eq!(
            (ids(&page), next.as_deref()),
            (vec!["a".into(), "b".into()], Some("c"))
        );
    }
}
