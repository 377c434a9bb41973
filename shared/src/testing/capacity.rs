//! DynamoDB capacity units from item sizes, by the rules AWS documents (moto reports no
//! consumed capacity): what a firing or a delivery attempt really costs, measured on the
//! items the adapter wrote.

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// Extra bytes DynamoDB counts for each global secondary index entry.
pub const INDEX_ENTRY_OVERHEAD: usize = 100;

/// The size of an item as DynamoDB bills it: each attribute's name plus its value.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// "Approximately 1 byte per two significant digits, plus 1 byte."
fn number_size(n: &str) -> usize {
    let digits = n
        .trim_start_matches('-')
        .replace('.', "")
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1);
    digits.div_ceil(2) + 1
}

/// What one DynamoDB call read or wrote, sized by DynamoDB's rules. Reads come from the
/// response (every item a Query returns is one it read: the adapter's Queries filter nothing
/// they are measured with); writes from the request: a put's item is known exactly, an update
/// or delete bills the larger of the item before and after, which only the table knows, so
/// those are listed (`unsized_writes`) for the caller to size from the item as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallCost {
    pub op: String,
    pub items_read: usize,
    pub bytes_read: usize,
    pub read_units: f64,
    /// Puts: items, bytes, and units (their index entries included).
    pub items_written: usize,
    pub bytes_written: usize,
    pub write_units: usize,
    pub unsized_writes: Vec<UnsizedWrite>,
}

/// An update or delete: the table and key of the item it wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsizedWrite {
    pub table: String,
    pub key: HashMap<String, AttributeValue>,
    pub transactional: bool,
}

/// The global secondary indexes an item is written into, by the key attributes it carries
/// (`lifecycle` and `by_trigger` on events, `by_id` on triggers).
pub fn index_entries<'a>(mut attributes: impl Iterator<Item = &'a String>) -> usize {
    let mut n = 0;
    attributes.try_for_each(|a| {
        n += usize::from(matches!(a.as_str(), "lc_pk" | "trigger_key" | "list_pk"));
        Some(())
    });
    n
}

/// String-keyed item keys from DynamoDB JSON (every key of ours is a string).
fn json_key(key: &serde_json::Value) -> HashMap<String, AttributeValue> {
    key.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), AttributeValue::S(v["S"].as_str()?.into()))))
                .collect()
        })
        .unwrap_or_default()
}

impl CallCost {
    /// A read of these items: 4 KB units over the total, halved when eventually consistent,
    /// and never less than one (half) unit.
    pub fn read<'a>(
        op: &str,
        items: impl Iterator<Item = &'a HashMap<String, AttributeValue>>,
        consistent: bool,
    ) -> Self {
        let sizes: Vec<usize> = items.map(item_size).collect();
        let bytes: usize = sizes.iter().sum();
        let units = bytes.div_ceil(4096).max(1) as f64;
        CallCost {
            op: op.into(),
            items_read: sizes.len(),
            bytes_read: bytes,
            read_units: if consistent { units } else { units / 2.0 },
            ..Default::default()
        }
    }

    fn put(&mut self, item: &serde_json::Value, transactional: bool) {
        let size = json_item_size(item);
        self.items_written += 1;
        self.bytes_written += size;
        let indexes = item.as_object().map_or(0, |m| index_entries(m.keys()));
        self.write_units += write_units(size, transactional) + indexes * index_write_units(size);
    }

    fn unsized_write(&mut self, table: &str, key: &serde_json::Value, transactional: bool) {
        self.items_written += 1;
        self.unsized_writes.push(UnsizedWrite {
            table: table.into(),
            key: json_key(key),
            transactional,
        });
    }

    /// The writes of one request body (DynamoDB JSON), or None for a call that writes nothing.
    pub fn of_request(op: &str, body: &[u8]) -> Option<Self> {
        let json: serde_json::Value = serde_json::from_slice(body).ok()?;
        let mut cost = CallCost {
            op: op.into(),
            ..Default::default()
        };
        match op {
            "PutItem" => cost.put(&json["Item"], false),
            "UpdateItem" | "DeleteItem" => {
                cost.unsized_write(json["TableName"].as_str()?, &json["Key"], false)
            }
            "TransactWriteItems" => {
                for t in json["TransactItems"].as_array()? {
                    if let Some(p) = t.get("Put") {
                        cost.put(&p["Item"], true);
                    } else if let Some(u) = t.get("Update").or_else(|| t.get("Delete")) {
                        cost.unsized_write(u["TableName"].as_str()?, &u["Key"], true);
                    }
                }
            }
            "BatchWriteItem" => {
                for (table, requests) in json["RequestItems"].as_object()? {
                    for r in requests.as_array()? {
                        match (r.get("PutRequest"), r.get("DeleteRequest")) {
                            (Some(p), _) => cost.put(&p["Item"], false),
                            (None, Some(d)) => cost.unsized_write(table, &d["Key"], false),
                            (None, None) => {}
                        }
                    }
                }
            }
            _ => return None,
        }
        Some(cost)
    }
}

/// [`item_size`] of an item in DynamoDB's JSON wire form.
pub fn json_item_size(item: &serde_json::Value) -> usize {
    item.as_object().map_or(0, |m| {
        m.iter().map(|(k, v)| k.len() + json_value_size(v)).sum()
    })
}

fn json_value_size(v: &serde_json::Value) -> usize {
    use base64::Engine;
    let Some((kind, inner)) = v.as_object().and_then(|m| m.iter().next()) else {
        return 0;
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    match kind.as_str() {
        "S" => text(inner).len(),
        "N" => number_size(&text(inner)),
        "B" => base64::engine::general_purpose::STANDARD
            .decode(text(inner))
            .map_or(0, |b| b.len()),
        "BOOL" | "NULL" => 1,
        "SS" => inner
            .as_array()
            .map_or(0, |a| a.iter().map(|e| text(e).len()).sum()),
        "NS" => inner
            .as_array()
            .map_or(0, |a| a.iter().map(|e| number_size(&text(e))).sum()),
        "L" => {
            3 + inner.as_array().map_or(0, |a| {
                a.iter().map(|e| 1 + json_value_size(e)).sum::<usize>()
            })
        }
        "M" => {
            3 + inner.as_object().map_or(0, |m| {
                m.iter()
                    .map(|(k, e)| 1 + k.len() + json_value_size(e))
                    .sum::<usize>()
            })
        }
        _ => 0,
    }
}

/// Write units of one write of an item this large (1 KB each, rounded up), doubled inside a
/// transaction.
pub fn write_units(size: usize, transactional: bool) -> usize {
    size.div_ceil(1024).max(1) * if transactional { 2 } else { 1 }
}

/// Write units of writing this item's entry into one index (projection ALL).
pub fn index_write_units(size: usize) -> usize {
    write_units(size + INDEX_ENTRY_OVERHEAD, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_units_follow_the_documented_rules() {
        let item = HashMap::from([
            ("pk".to_string(), AttributeValue::S("abc".into())),
            ("n".to_string(), AttributeValue::N("12345".into())),
            ("b".to_string(), AttributeValue::Bool(true)),
        ]);
        // "pk"+"abc" = 5, "n" + 3 digits-bytes+1 = 1 + 4, "b" + 1 = 2.
        assert_eq!(item_size(&item), 5 + 5 + 2);
        assert_eq!(write_units(1024, false), 1);
        assert_eq!(write_units(1025, false), 2);
        assert_eq!(write_units(10, true), 2);
        assert_eq!(index_write_units(924), 1);
        assert_eq!(index_write_units(925), 2);
    }

    #[test]
    fn wire_json_sizes_like_the_sdk_items() {
        let json = serde_json::json!({
            "pk": {"S": "abc"}, "n": {"N": "12345"}, "b": {"BOOL": true},
            "m": {"M": {"k": {"S": "v"}}}, "l": {"L": [{"N": "1"}]}
        });
        let item = HashMap::from([
            ("pk".to_string(), AttributeValue::S("abc".into())),
            ("n".to_string(), AttributeValue::N("12345".into())),
            ("b".to_string(), AttributeValue::Bool(true)),
            (
                "m".to_string(),
                AttributeValue::M(HashMap::from([("k".into(), AttributeValue::S("v".into()))])),
            ),
            (
                "l".to_string(),
                AttributeValue::L(vec![AttributeValue::N("1".into())]),
            ),
        ]);
        assert_eq!(json_item_size(&json), item_size(&item));
        let put = serde_json::to_vec(&serde_json::json!({"Item": json})).unwrap();
        let cost = CallCost::of_request("PutItem", &put).unwrap();
        assert_eq!(
            (cost.bytes_written, cost.write_units),
            (item_size(&item), 1)
        );
        let read = CallCost::read("Query", [&item, &item].into_iter(), false);
        assert_eq!((read.items_read, read.read_units), (2, 0.5));
        assert!(CallCost::of_request("GetItem", b"{}").is_none());
    }
}
