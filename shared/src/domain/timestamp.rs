//! RFC 3339 timestamps in and out of JSON without chrono's general formatter and parser.
//!
//! Every listed event carries five timestamps, and serializing them through chrono's `Display`
//! (escaped one character at a time by serde_json) was the largest single cost of a page. The
//! output is byte for byte what chrono's serde writes (`SecondsFormat::AutoSi`, `Z`); input in
//! that shape takes the fast path and anything else RFC 3339 goes through chrono as before.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// Longest fast-path form: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX_LEN: usize = 30;

fn two(buf: &mut [u8], at: usize, v: u32) {
    buf[at] = b'0' + (v / 10) as u8;
    buf[at + 1] = b'0' + (v % 10) as u8;
}

/// Writes `t` as chrono's serde does; `None` for years outside 0..=9999 (chrono's own form).
fn format(t: &DateTime<Utc>, buf: &mut [u8; MAX_LEN]) -> Option<usize> {
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    two(buf, 0, year / 100);
    two(buf, 2, year % 100);
    buf[4] = b'-';
    two(buf, 5, t.month());
    buf[7] = b'-';
    two(buf, 8, t.day());
    buf[10] = b'T';
    two(buf, 11, t.hour());
    buf[13] = b':';
    two(buf, 14, t.minute());
    buf[16] = b':';
    // A leap second is stored as nanoseconds >= 1e9 of second 59.
    let nanos = t.nanosecond();
    let (second, nanos) = if nanos >= 1_000_000_000 {
        (60, nanos - 1_000_000_000)
    } else {
        (t.second(), nanos)
    };
    two(buf, 17, second);
    let (digits, mut frac) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (3, n / 1_000_000),
        n if n % 1_000 == 0 => (6, n / 1_000),
        n => (9, n),
    };
    let mut len = 19;
    if digits > 0 {
        buf[19] = b'.';
        for i in (0..digits).rev() {
            buf[20 + i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        len = 20 + digits;
    }
    buf[len] = b'Z';
    Some(len + 1)
}

fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// The fast path: exactly `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`.
fn parse_fast(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > MAX_LEN || b[b.len() - 1] != b'Z' {
        return None;
    }
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', frac @ ..] if !frac.is_empty() && frac.len() <= 9 => {
            digits(frac)? * 10u32.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(digits(&b[0..4])?).ok()?,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )?;
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let time = if second == 60 {
        // RFC 3339 allows a leap second; chrono keeps it as second 59 plus a second of nanos.
        NaiveTime::from_hms_nano_opt(hour, minute, 59, nanos + 1_000_000_000)?
    } else {
        NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?
    };
    Some(NaiveDateTime::new(date, time).and_utc())
}

/// Parses what chrono's serde accepts (its lenient `FromStr`), faster for the form this crate
/// writes.
pub fn parse(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_fast(s) {
        Some(t) => Ok(t),
        None => s
            .parse::<DateTime<chrono::FixedOffset>>()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// Appends `t` as a JSON string, exactly as [`serialize`] writes it.
pub fn push_json(out: &mut String, t: &DateTime<Utc>) {
    let mut buf = [0u8; MAX_LEN];
    match format(t, &mut buf) {
        Some(len) => {
            out.push('"');
            out.push_str(std::str::from_utf8(&buf[..len]).unwrap_or_default());
            out.push('"');
        }
        None => out.push_str(&serde_json::to_string(t).unwrap_or_else(|_| "null".into())),
    }
}

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    match format(t, &mut buf) {
        // Only ASCII digits and separators were written.
        Some(len) => serializer.serialize_str(std::str::from_utf8(&buf[..len]).unwrap_or_default()),
        None => serde::Serialize::serialize(t, serializer),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// The same for `Option<DateTime<Utc>>` (`null` is `None`); use with `#[serde(default)]`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(
        t: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::serialize(t, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
        s.map(|s| parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn chrono_json(t: &DateTime<Utc>) -> String {
        serde_json::to_string(t).unwrap()
    }

    fn ours_json(t: &DateTime<Utc>) -> String {
        let mut out = Vec::new();
        serialize(t, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_exactly_what_chrono_writes() {
        let base = Utc.with_ymd_and_hms(2026, 11, 24, 15, 21, 14).unwrap();
        let cases = [
            base,
            base + chrono::Duration::milliseconds(387),
            base + chrono::Duration::microseconds(387_001),
            base + chrono::Duration::nanoseconds(387_000_001),
            base + chrono::Duration::nanoseconds(1),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-5, 1, 1, 0, 0, 0).unwrap(),
            NaiveDate::from_ymd_opt(2016, 12, 31)
                .unwrap()
                .and_hms_milli_opt(23, 59, 59, 1_500)
                .unwrap()
                .and_utc(),
        ];
        for t in cases {
            assert_eq!(ours_json(&t), chrono_json(&t), "{t:?}");
            let json = ours_json(&t);
            let back = deserialize(&mut serde_json::Deserializer::from_str(&json)).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn reads_exactly_what_chrono_reads() {
        for s in [
            "2026-11-24T15:21:14Z",
            "2026-11-24T15:21:14.3Z",
            "2026-11-24T15:21:14.387654321Z",
            "2026-11-24T15:21:14+02:00",
            "2026-11-24t15:21:14z",
            "2026-11-24 15:21:14Z",
            "2016-12-31T23:59:60Z",
            "2026-11-24T15:21:14.1234567890Z",
            "-0005-01-01T00:00:00Z",
            "",
            "2026-11-24",
            "2026-13-24T15:21:14Z",
            "2026-02-30T15:21:14Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T15:21:14.Z",
            "2026-11-24T15:2a:14Z",
            "+2026-11-24T15:21:14Z",
        ] {
            let chrono: Result<DateTime<Utc>, _> = serde_json::from_value(serde_json::json!(s));
            assert_eq!(parse(s).ok(), chrono.ok(), "{s}");
        }
    }
}
