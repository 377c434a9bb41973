//! Whole numbers as JSON Schema counts them: `300` and `300.0` are the same integer, so a
//! field the document types as `integer` takes both (serde alone refuses the second).

use serde::de::{Deserializer, Error, Unexpected, Visitor};

/// Deserializes an unsigned integer field of type `T` from any JSON number with no fraction.
pub fn whole<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let n = d.deserialize_any(WholeVisitor)?;
    T::try_from(n)
        .map_err(|_| D::Error::invalid_value(Unexpected::Unsigned(n), &"a smaller integer"))
}

/// [`whole`] for an optional field (`null` or absent is `None`).
pub fn whole_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a non-negative whole number or null")
        }
        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(WholeVisitor).map(Some)
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<Self::Value, E> {
            WholeVisitor.visit_u64(v).map(Some)
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<Self::Value, E> {
            WholeVisitor.visit_i64(v).map(Some)
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<Self::Value, E> {
            WholeVisitor.visit_f64(v).map(Some)
        }
    }
    match d.deserialize_option(Opt)? {
        None => Ok(None),
        Some(n) => T::try_from(n)
            .map(Some)
            .map_err(|_| D::Error::invalid_value(Unexpected::Unsigned(n), &"a smaller integer")),
    }
}

struct WholeVisitor;

impl<'de> Visitor<'de> for WholeVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a non-negative whole number")
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<u64, E> {
        // 2^64 is exact as f64; below it every whole f64 converts without loss.
        if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
            Ok(v as u64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::whole")]
        n: u8,
        #[serde(default, deserialize_with = "super::whole_opt")]
        m: Option<u32>,
    }

    fn parse(s: &str) -> Option<(u8, Option<u32>)> {
        serde_json::from_str::<T>(s).ok().map(|t| (t.n, t.m))
    }

    #[test]
    fn whole_numbers_in_any_spelling_and_nothing_else() {
        assert_eq!(parse(r#"{"n": 5}"#), Some((5, None)));
        assert_eq!(parse(r#"{"n": 5.0, "m": 1e3}"#), Some((5, Some(1000))));
        assert_eq!(parse(r#"{"n": 5, "m": null}"#), Some((5, None)));
        for bad in [
            r#"{"n": 5.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 256}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "5"}"#,
            r#"{"n": 5, "m": 4294967296}"#,
            r#"{"n": 5, "m": -0.5}"#,
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
