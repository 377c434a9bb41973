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
}
