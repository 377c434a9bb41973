//! Scoped API keys: scopes, the key's stored record, how a key is made and hashed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::validation::Checks;

/// What a key may do. `admin` may do everything, managing keys included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    #[serde(rename = "admin")]
    Admin,
    #[serde(rename = "triggers:read")]
    TriggersRead,
    #[serde(rename = "triggers:write")]
    TriggersWrite,
    #[serde(rename = "events:read")]
    EventsRead,
    #[serde(rename = "fire")]
    Fire,
    #[serde(rename = "metrics:read")]
    MetricsRead,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Admin,
        Scope::TriggersRead,
        Scope::TriggersWrite,
        Scope::EventsRead,
        Scope::Fire,
        Scope::MetricsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::TriggersRead => "triggers:read",
            Scope::TriggersWrite => "triggers:write",
            Scope::EventsRead => "events:read",
            Scope::Fire => "fire",
            Scope::MetricsRead => "metrics:read",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a key's text starts with.
pub const KEY_PREFIX: &str = "etp_";
/// How many characters of a key its listing shows (`etp_` and four more).
pub const SHOWN_PREFIX_LEN: usize = 8;
/// Longest key name.
pub const MAX_NAME_CHARS: usize = 100;
/// Most trigger ids one key may be limited to.
pub const MAX_TRIGGER_IDS: usize = 100;

/// A key as stored and listed: never the key itself nor its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    /// ULID.
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// With `fire`: the only triggers this key may fire (empty: any).
    #[serde(default)]
    pub trigger_ids: Vec<String>,
    /// The key's first characters (e.g. `etp_abcd`), to tell keys apart.
    pub prefix: String,
    #[serde(with = "super::timestamp")]
    pub created_at: DateTime<Utc>,
    /// After this instant the key is refused (401); null: never.
    #[serde(default, with = "super::timestamp::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the key was last accepted, to the minute (written at most once a minute).
    #[serde(default, with = "super::timestamp::option")]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether the key grants `scope` (`admin` grants every scope).
    pub fn grants(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// A new key's text, shown once: `etp_` and 32 bytes from the OS-seeded CSPRNG, URL-safe base64.
pub fn generate_key() -> String {
    use base64::Engine;
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of a key: SHA-256, hex. A key has 256 random bits, so a fast hash is
/// enough: no dictionary or brute force reaches it.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time comparison of two hashes (the store looked one up by the other).
pub fn hashes_match(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The part of a key a listing shows.
pub fn shown_prefix(key: &str) -> String {
    key.chars().take(SHOWN_PREFIX_LEN).collect()
}

/// Checks a new key's fields; `scopes` as sent, so an unknown name is named by its index.
pub fn check_new_key(
    name: &str,
    scopes: &[String],
    trigger_ids: &[String],
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    parse_id: impl Fn(&str) -> Option<String>,
) -> Result<(Vec<Scope>, Vec<String>), super::validation::ValidationError> {
    let mut checks = Checks::default();
    let name_chars = name.trim().chars().count();
    checks.check(name_chars > 0, "name", || "must not be empty".into());
    checks.check(name.chars().count() <= MAX_NAME_CHARS, "name", || {
        format!("must be at most {MAX_NAME_CHARS} characters")
    });
    checks.check(!name.chars().any(char::is_control), "name", || {
        "must not contain control characters".into()
    });
    checks.check(!scopes.is_empty(), "scopes", || {
        "must name at least one scope".into()
    });
    let mut parsed = Vec::new();
    for (i, s) in scopes.iter().enumerate() {
        match Scope::parse(s) {
            Some(scope) if !parsed.contains(&scope) => parsed.push(scope),
            Some(_) => {}
            None => checks.fail(
                format!("scopes[{i}]"),
                format!(
                    "unknown scope {s:?}; one of {}",
                    Scope::ALL.map(Scope::as_str).join(", ")
                ),
            ),
        }
    }
    checks.check(trigger_ids.len() <= MAX_TRIGGER_IDS, "trigger_ids", || {
        format!("at most {MAX_TRIGGER_IDS} ids")
    });
    let mut ids = Vec::new();
    for (i, raw) in trigger_ids.iter().enumerate() {
        match parse_id(raw) {
            Some(id) if !ids.contains(&id) => ids.push(id),
            Some(_) => {}
            None => checks.fail(format!("trigger_ids[{i}]"), "is not a trigger id (ULID)"),
        }
    }
    checks.check(
        ids.is_empty() || parsed.contains(&Scope::Fire),
        "trigger_ids",
        || "limits the `fire` scope: add `fire` to scopes".into(),
    );
    if let Some(t) = expires_at {
        checks.check(t > now, "expires_at", || "must be in the future".into());
        checks.check(t.timestamp_subsec_nanos() == 0, "expires_at", || {
            "must be in whole seconds".into()
        });
    }
    checks.finish()?;
    Ok((parsed, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_url_safe() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        // 32 bytes are 43 base64 characters without padding.
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert!(
            a[KEY_PREFIX.len()..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(shown_prefix(&a).len(), SHOWN_PREFIX_LEN);
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(hashes_match(&hash_key("x"), &hash_key("x")));
        assert!(!hashes_match(&hash_key("x"), &hash_key("y")));
    }

    #[test]
    fn scopes_round_trip_by_name() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
            assert_eq!(
                serde_json::to_string(&scope).unwrap(),
                format!("\"{scope}\"")
            );
        }
        assert_eq!(Scope::parse("events:write"), None);
    }
}
