//! Delivery targets: where a firing is POSTed, how long to wait, how often to retry; and the
//! signing secret each trigger holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::egress::EgressPolicy;
use super::validation::Checks;

pub const DEFAULT_TIMEOUT_MS: u32 = 15_000;
pub const MAX_TIMEOUT_MS: u32 = 30_000;
pub const DEFAULT_MAX_ATTEMPTS: u8 = 5;
pub const MAX_MAX_ATTEMPTS: u8 = 10;
pub const MAX_HEADERS: usize = 20;
pub const MAX_URL_CHARS: usize = 2048;
/// Characters of one header value (Unicode scalar values, as JSON Schema's `maxLength` counts).
pub const MAX_HEADER_VALUE_CHARS: usize = 4096;

/// Headers the platform sets itself (or that would break the request) and a target may not.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// An HTTP endpoint that receives every firing of a trigger as a signed JSON POST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `https://` or `http://` URL; no user name or password in it. Private, loopback and
    /// link-local addresses are refused (see the README's SSRF section).
    #[schema(example = "https://example.com/hooks/etp")]
    pub url: String,
    /// Extra request headers, e.g. an `authorization` the receiver expects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Whole-request timeout per attempt, 1 to 30000 ms (default 15000; connecting alone is
    /// limited to 5 s).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::integral::whole_opt"
    )]
    pub timeout_ms: Option<u32>,
    /// Retries after the first attempt, 0 to 10 (default 5: after about 5 s, 30 s, 2 min,
    /// 10 min and 30 min).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::integral::whole_opt"
    )]
    pub max_attempts: Option<u8>,
    /// Pause delivery after this many events in a row failed (1 to 1000; none by default):
    /// later firings are recorded as `failure` with reason `delivery_paused` until
    /// `POST /triggers/{id}/resume-delivery`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::integral::whole_opt"
    )]
    pub pause_after_failures: Option<u32>,
}

/// The largest `pause_after_failures`.
pub const MAX_PAUSE_AFTER_FAILURES: u32 = 1000;

impl Target {
    pub fn timeout_ms(&self) -> u32 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }

    pub fn max_retries(&self) -> u8 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }

    /// Adds every rule this target breaks to `checks`, under `field`.
    pub fn validate(&self, field: &str, policy: &EgressPolicy, checks: &mut Checks) {
        let url_field = format!("{field}.url");
        match url::Url::parse(&self.url) {
            _ if self.url.chars().count() > MAX_URL_CHARS => checks.fail(
                url_field,
                format!("must be at most {MAX_URL_CHARS} characters"),
            ),
            Err(e) => checks.fail(url_field, format!("is not a URL: {e}")),
            Ok(url) => {
                if let Err(rule) = check_url(&url, policy) {
                    checks.fail(url_field, rule);
                }
            }
        }
        if self.headers.len() > MAX_HEADERS {
            checks.fail(
                format!("{field}.headers"),
                format!("at most {MAX_HEADERS} headers"),
            );
        }
        for (name, value) in &self.headers {
            let at = format!("{field}.headers.{name}");
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                checks.fail(at, "is not a valid header name");
            } else if RESERVED_HEADERS.contains(&lower.as_str()) {
                checks.fail(at, "is set by the platform and cannot be overridden");
            } else if value.chars().count() > MAX_HEADER_VALUE_CHARS
                || value.bytes().any(|b| b.is_ascii_control() && b != b'\t')
            {
                checks.fail(
                    at,
                    format!("must be at most {MAX_HEADER_VALUE_CHARS} characters without control characters"),
                );
            }
        }
        if let Some(t) = self.timeout_ms {
            checks.check(
                (1..=MAX_TIMEOUT_MS).contains(&t),
                &format!("{field}.timeout_ms"),
                || format!("must be 1 to {MAX_TIMEOUT_MS}"),
            );
        }
        if let Some(n) = self.max_attempts {
            checks.check(
                n <= MAX_MAX_ATTEMPTS,
                &format!("{field}.max_attempts"),
                || format!("must be 0 to {MAX_MAX_ATTEMPTS} (retries after the first attempt)"),
            );
        }
        if let Some(n) = self.pause_after_failures {
            checks.check(
                (1..=MAX_PAUSE_AFTER_FAILURES).contains(&n),
                &format!("{field}.pause_after_failures"),
                || format!("must be 1 to {MAX_PAUSE_AFTER_FAILURES} (failed events in a row)"),
            );
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The rules a URL must follow before any lookup; addresses are checked again on connect.
pub fn check_url(url: &url::Url, policy: &EgressPolicy) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must use https or http, not `{}`", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password; use headers".into());
    }
    match url.host() {
        None => Err("must name a host".into()),
        Some(url::Host::Ipv4(ip)) => policy
            .check(&ip.to_string(), ip.into())
            .map_err(|rule| format!("points at a {rule}, which deliveries may not reach")),
        Some(url::Host::Ipv6(ip)) => policy
            .check(&ip.to_string(), ip.into())
            .map_err(|rule| format!("points at a {rule}, which deliveries may not reach")),
        Some(url::Host::Domain(name)) => policy
            .check_name(name)
            .map_err(|rule| format!("names a {rule}, which deliveries may not reach")),
    }
}

/// A target as readers see it: header names only, never their values (they are write-only,
/// like the secret, and kept beside the trigger by the stores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetView {
    #[schema(example = "https://example.com/hooks/etp")]
    pub url: String,
    /// The names of the extra headers sent; their values are never shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after_failures: Option<u32>,
}

impl From<&Target> for TargetView {
    fn from(t: &Target) -> Self {
        Self {
            url: t.url.clone(),
            header_names: t.headers.keys().cloned().collect(),
            timeout_ms: t.timeout_ms,
            max_attempts: t.max_attempts,
            pause_after_failures: t.pause_after_failures,
        }
    }
}

/// How a stored trigger's `target` is written and read: as a [`TargetView`] (no header
/// values), read back from either form (bodies written before header values moved out carry
/// them; the stores re-attach the values they keep beside the trigger).
pub mod as_view {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Target, TargetView};

    #[derive(Deserialize)]
    struct Stored {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        timeout_ms: Option<u32>,
        #[serde(default)]
        max_attempts: Option<u8>,
        #[serde(default)]
        pause_after_failures: Option<u32>,
    }

    pub fn serialize<S: Serializer>(t: &Option<Target>, s: S) -> Result<S::Ok, S::Error> {
        t.as_ref().map(TargetView::from).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Target>, D::Error> {
        Ok(Option::<Stored>::deserialize(d)?.map(|s| Target {
            url: s.url,
            headers: s.headers,
            timeout_ms: s.timeout_ms,
            max_attempts: s.max_attempts,
            pause_after_failures: s.pause_after_failures,
        }))
    }
}

/// A trigger's signing secret, `whsec_` + base64 of 32 random bytes (Standard Webhooks).
/// Never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn generate() -> Self {
        use base64::Engine;
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        Self(format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The secret's text, for the one response that shows it and for storage.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key: the bytes the base64 after `whsec_` encodes.
    pub fn key(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(self.0.strip_prefix("whsec_")?)
            .ok()
    }
}

/// The secret a rotation replaced, still signing deliveries (beside the new one) until `until`,
/// so receivers can switch over without dropping a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiringSecret {
    pub secret: Secret,
    pub until: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: serde_json::Value) -> Vec<String> {
        let t: Target = serde_json::from_value(v).unwrap();
        let mut checks = Checks::default();
        t.validate("target", &EgressPolicy::default(), &mut checks);
        match checks.finish() {
            Ok(()) => vec![],
            Err(e) => e.errors.into_iter().map(|f| f.field).collect(),
        }
    }

    #[test]
    fn urls_follow_the_rules() {
        assert!(fields(json!({"url":"https://example.com/hook"})).is_empty());
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]:8080/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://localhost:3000/",
            "not a url",
        ] {
            assert_eq!(fields(json!({ "url": bad })), ["target.url"], "{bad}");
        }
    }

    #[test]
    fn refusals_name_the_rule() {
        let policy = EgressPolicy::default();
        let url = url::Url::parse("http://0177.0.0.1/").unwrap();
        let err = check_url(&url, &policy).unwrap_err();
        assert!(err.contains("loopback"), "{err}");
    }

    #[test]
    fn headers_timeouts_and_retries_are_bounded() {
        assert_eq!(
            fields(
                json!({"url":"https://example.com","headers":{"webhook-id":"x","bad name":"y","x-ok":"fine"},
                          "timeout_ms":30001,"max_attempts":11})
            ),
            [
                "target.headers.bad name",
                "target.headers.webhook-id",
                "target.timeout_ms",
                "target.max_attempts"
            ]
        );
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        let s = Secret::generate();
        assert!(s.expose().starts_with("whsec_"));
        assert_eq!(s.key().unwrap().len(), 32);
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }
}
