//! Page cursors handed to clients are sealed: the store's cursor plus an HMAC over it and the
//! listing it belongs to, keyed from the API token. A cursor a client made up or altered is
//! refused before any store call, so it cannot steer a listing anywhere the server did not
//! send it (e.g. make a DynamoDB listing walk millions of empty hours).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::ApiToken;
use crate::domain::validation::ValidationError;

/// Bytes of the MAC kept in a cursor: 128 bits.
const MAC_BYTES: usize = 16;
/// Longest sealed cursor accepted; the stores' own cursors are far shorter.
pub const MAX_CURSOR_CHARS: usize = 512;

/// Which listing a cursor continues: a cursor of one is refused by the others.
#[derive(Debug, Clone, Copy)]
pub enum Listing {
    Triggers,
    Events,
    TestRuns,
}

impl Listing {
    fn name(self) -> &'static [u8] {
        match self {
            Listing::Triggers => b"triggers",
            Listing::Events => b"events",
            Listing::TestRuns => b"test-runs",
        }
    }
}

/// Seals and opens cursors with a key derived from the API token (every function of a stack
/// shares it, so a cursor from one Lambda continues on another).
#[derive(Clone)]
pub struct CursorSeal {
    key: [u8; 32],
}

impl CursorSeal {
    pub fn from_token(token: &ApiToken) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"etp page cursors v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, listing: Listing, raw: &str) -> [u8; MAC_BYTES] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(listing.name());
        mac.update(b"\n");
        mac.update(raw.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    /// `raw` (a store's base64url cursor) sealed for `listing`: `raw.mac`.
    pub fn seal(&self, listing: Listing, raw: &str) -> String {
        format!("{raw}.{}", URL_SAFE_NO_PAD.encode(self.mac(listing, raw)))
    }

    /// The store's cursor inside `sealed`, if this server sealed it for `listing`.
    pub fn open(&self, listing: Listing, sealed: &str) -> Result<String, ValidationError> {
        let refused = || ValidationError::field("cursor", "is not a cursor this listing returned");
        if sealed.len() > MAX_CURSOR_CHARS {
            return Err(refused());
        }
        let (raw, mac) = sealed.rsplit_once('.').ok_or_else(refused)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| refused())?;
        if mac.len() == MAC_BYTES && bool::from(mac.ct_eq(&self.mac(listing, raw))) {
            Ok(raw.to_string())
        } else {
            Err(refused())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sealed_cursors_open_and_only_for_their_listing() {
        let seal = CursorSeal::from_token(&ApiToken::new("a-token-of-some-length"));
        let sealed = seal.seal(Listing::Events, "MTIzOjAxYWI");
        assert_eq!(seal.open(Listing::Events, &sealed).unwrap(), "MTIzOjAxYWI");
        assert!(seal.open(Listing::Triggers, &sealed).is_err());
        let forged = sealed.replacen("MTIz", "OTk5", 1);
        assert!(seal.open(Listing::Events, &forged).is_err());
        let other = CursorSeal::from_token(&ApiToken::new("another-token-entirely"));
        assert!(other.open(Listing::Events, &sealed).is_err());
        for junk in ["", ".", "abc", "abc.", &"a".repeat(600)] {
            assert!(seal.open(Listing::Events, junk).is_err(), "{junk}");
        }
    }
}
