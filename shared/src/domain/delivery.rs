//! Delivery outcomes: what one attempt recorded, and when (and whether) to try again.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::target::{Secret, Target};

/// Response bodies kept per attempt, at most (the rest is cut off).
pub const MAX_RESPONSE_BODY: usize = 4096;

/// How an event is to be delivered, fixed when it fires (later edits of the trigger apply to
/// later firings only). Stored with the event, never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPlan {
    pub target: Target,
    pub secret: Secret,
}

/// Why an attempt got no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptError {
    /// No complete response within the target's timeout.
    Timeout,
    /// The name did not resolve, or no connection (or TLS session) could be made.
    Connect,
    /// Every address of the host is one deliveries may not reach (SSRF guard).
    RefusedByPolicy,
}

/// One try at delivering an event to its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// 1 for the first delivery, 2 for the first retry, ... (counted across series).
    pub number: u32,
    /// The delivery series this attempt belongs to: 1 for the firing's, one more for each
    /// redelivery (`POST /events/{id}/redeliver`).
    #[serde(default = "first_series")]
    #[schema(minimum = 1)]
    pub series: u32,
    #[serde(with = "super::timestamp")]
    pub at: DateTime<Utc>,
    /// The response status, when there was a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AttemptError>,
    /// Words about the error (never internal text), e.g. the rule an address broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub duration_ms: u64,
    /// The first 4 KiB of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

fn first_series() -> u32 {
    1
}

/// What an attempt means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another try; `not_before` is what the receiver asked for (`Retry-After`).
    Retry {
        not_before: Option<Duration>,
    },
    /// Final: a 3xx or a 4xx other than 429, or refused by policy.
    Failed,
}

impl Attempt {
    pub fn verdict(&self, retry_after: Option<Duration>) -> Verdict {
        match (self.status_code, self.error) {
            (Some(200..=299), _) => Verdict::Delivered,
            (Some(429), _) => Verdict::Retry {
                not_before: retry_after,
            },
            (Some(500..=599), _) => Verdict::Retry {
                not_before: retry_after,
            },
            (Some(_), _) => Verdict::Failed,
            (None, Some(AttemptError::RefusedByPolicy)) => Verdict::Failed,
            (None, _) => Verdict::Retry { not_before: None },
        }
    }
}

/// The waits before retry 1, 2, ...; the last repeats for retries beyond the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl Default for RetrySchedule {
    fn default() -> Self {
        Self(
            [5, 30, 120, 600, 1800]
                .into_iter()
                .map(Duration::seconds)
                .collect(),
        )
    }
}

/// The longest `Retry-After` honoured; a receiver asking for more gets this.
const MAX_RETRY_AFTER: i64 = 3600;

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Result<Self, &'static str> {
        if delays.is_empty() || delays.iter().any(|d| *d <= Duration::zero()) {
            return Err("needs at least one delay, each longer than zero");
        }
        Ok(Self(delays))
    }

    /// When retry `retry` (1-based) is due after an attempt at `now`: the scheduled wait with
    /// +/-20 % jitter (`jitter` in 0..1), or the receiver's `Retry-After` when that is later.
    pub fn next_at(
        &self,
        retry: u32,
        now: DateTime<Utc>,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> DateTime<Utc> {
        let idx = (retry.max(1) as usize - 1).min(self.0.len() - 1);
        let base = self.0[idx].num_milliseconds() as f64;
        let wait = Duration::milliseconds((base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0))) as i64);
        let asked = retry_after
            .map(|d| d.clamp(Duration::zero(), Duration::seconds(MAX_RETRY_AFTER)))
            .unwrap_or_else(Duration::zero);
        super::time_range::add_saturating(now, wait.max(asked))
    }
}

/// Parses `Retry-After` (RFC 9110: delay seconds, or an HTTP date), relative to `now`, into a
/// wait of 0 to 1 hour. Whatever a receiver sends is safe here: any number of digits (held at
/// the hour), dates far in the past (no wait) or future (the hour); anything else (negative,
/// fractional, garbage, over 128 bytes) is ignored, and the usual backoff applies.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || value.len() > 128 {
        return None;
    }
    let cap = Duration::seconds(MAX_RETRY_AFTER);
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::seconds(
            i64::try_from(secs).unwrap_or(i64::MAX).min(MAX_RETRY_AFTER),
        ));
    }
    DateTime::parse_from_rfc2822(value).ok().map(|at| {
        at.with_timezone(&Utc)
            .signed_duration_since(now)
            .clamp(Duration::zero(), cap)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(status: Option<u16>, error: Option<AttemptError>) -> Attempt {
        Attempt {
            number: 1,
            series: 1,
            at: Utc::now(),
            status_code: status,
            error,
            detail: None,
            duration_ms: 1,
            response_body: None,
        }
    }

    #[test]
    fn what_is_retried() {
        assert_eq!(attempt(Some(204), None).verdict(None), Verdict::Delivered);
        for s in [429, 500, 502, 503] {
            assert!(matches!(
                attempt(Some(s), None).verdict(None),
                Verdict::Retry { .. }
            ));
        }
        for s in [301, 302, 400, 401, 404, 410] {
            assert_eq!(attempt(Some(s), None).verdict(None), Verdict::Failed, "{s}");
        }
        assert!(matches!(
            attempt(None, Some(AttemptError::Timeout)).verdict(None),
            Verdict::Retry { .. }
        ));
        assert_eq!(
            attempt(None, Some(AttemptError::RefusedByPolicy)).verdict(None),
            Verdict::Failed
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let s = RetrySchedule::default();
        let now = Utc::now();
        assert_eq!(s.next_at(1, now, 0.5, None) - now, Duration::seconds(5));
        assert_eq!(s.next_at(1, now, 0.0, None) - now, Duration::seconds(4));
        assert_eq!(s.next_at(2, now, 1.0, None) - now, Duration::seconds(36));
        assert_eq!(s.next_at(9, now, 0.5, None) - now, Duration::seconds(1800));
        assert_eq!(
            s.next_at(1, now, 0.5, Some(Duration::seconds(120))) - now,
            Duration::seconds(120)
        );
        assert_eq!(
            s.next_at(1, now, 0.5, Some(Duration::days(2))) - now,
            Duration::seconds(3600)
        );
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::seconds(7)));
        assert_eq!(
            parse_retry_after("Tue, 24 Nov 2026 10:01:00 GMT", now),
            Some(Duration::seconds(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    /// Whatever a receiver answers, nothing panics and the wait stays within 0 to 1 hour.
    #[test]
    fn hostile_retry_after_values_are_bounded() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let hour = Some(Duration::seconds(3600));
        for huge in [
            "9223372036854776",
            "9223372036854775807",
            "99999999999999999999999999999",
            "3601",
        ] {
            assert_eq!(parse_retry_after(huge, now), hour, "{huge}");
        }
        let long = "9".repeat(200);
        for ignored in ["-5", "1.5", "1e9", "", " ", "0x10", "\u{0}", long.as_str()] {
            assert_eq!(parse_retry_after(ignored, now), None, "{ignored:?}");
        }
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            hour
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now),
            Some(Duration::zero())
        );
        let s = RetrySchedule::default();
        for asked in [Some(Duration::MAX), Some(Duration::MIN), None] {
            let at = s.next_at(u32::MAX, DateTime::<Utc>::MAX_UTC, 2.0, asked);
            assert_eq!(at, DateTime::<Utc>::MAX_UTC);
        }
    }
}
