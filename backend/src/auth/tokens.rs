//! Service token secrets: `tpat_<lookup>_<secret>`. The lookup half finds the
//! row; only the SHA-256 of the secret half is stored, and compared in
//! constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "tpat_";
const LOOKUP_LEN: usize = 12;
const SECRET_LEN: usize = 43;

/// A token as presented by a client or freshly generated.
#[derive(Clone)]
pub struct TokenSecret {
    pub lookup: String,
    secret: String,
}

impl TokenSecret {
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let lookup: String = (0..LOOKUP_LEN)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
            .collect();
        let bytes: [u8; 32] = rng.random();
        Self {
            lookup,
            secret: URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    /// Splits a presented token; `None` when it cannot be one of ours.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(PREFIX)?;
        if rest.len() != LOOKUP_LEN + 1 + SECRET_LEN || !rest.is_char_boundary(LOOKUP_LEN) {
            return None;
        }
        let (lookup, secret) = rest.split_at(LOOKUP_LEN);
        let secret = secret.strip_prefix('_')?;
        let lookup_ok = lookup
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        let secret_ok = secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (lookup_ok && secret_ok).then(|| Self {
            lookup: lookup.into(),
            secret: secret.into(),
        })
    }

    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.secret.as_bytes()).to_vec()
    }

    /// Whether this token's secret hashes to `stored`, in constant time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        self.hash().ct_eq(stored).into()
    }

    /// The whole token, shown once to whoever created it.
    pub fn reveal(&self) -> String {
        format!("{PREFIX}{}_{}", self.lookup, self.secret)
    }
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSecret({PREFIX}{}_[redacted])", self.lookup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_back_and_matches_its_hash() {
        let token = TokenSecret::generate();
        let parsed = TokenSecret::parse(&token.reveal()).unwrap();
        assert_eq!(parsed.lookup, token.lookup);
        assert!(parsed.matches(&token.hash()));
        assert!(!TokenSecret::generate().matches(&token.hash()));
    }

    #[test]
    fn foreign_strings_are_not_tokens() {
        let good = TokenSecret::generate().reveal();
        for bad in [
            "",
            "tpat_",
            "Bearer x",
            &good[..good.len() - 1],
            &good.replace("tpat_", "tpxx_"),
            &format!("{good}x"),
        ] {
            assert!(TokenSecret::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let token = TokenSecret::generate();
        assert!(!format!("{token:?}").contains(&token.secret));
    }
}
