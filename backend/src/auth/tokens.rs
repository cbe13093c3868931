//! Token secrets: `tpat_<lookup>_<secret>` for service tokens, `tpgw_…` for
//! the tenant API's tokens. The lookup half finds the row; only the SHA-256
//! of the secret half is stored, and compared in constant time. The prefix
//! keeps one kind from ever being accepted as the other.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const SERVICE_PREFIX: &str = "tpat_";
const GATEWAY_PREFIX: &str = "tpgw_";
const LOOKUP_LEN: usize = 12;
const SECRET_LEN: usize = 43;

/// A token as presented by a client or freshly generated.
#[derive(Clone)]
pub struct TokenSecret {
    pub lookup: String,
    secret: String,
    prefix: &'static str,
}

impl TokenSecret {
    /// A new service token.
    pub fn generate() -> Self {
        Self::generate_with(SERVICE_PREFIX)
    }

    /// A new token for the tenant API (`/k8s/tenants/<slug>`).
    pub fn generate_gateway() -> Self {
        Self::generate_with(GATEWAY_PREFIX)
    }

    /// A presented service token; `None` when it cannot be one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::parse_with(SERVICE_PREFIX, s)
    }

    /// A presented tenant-API token; `None` when it cannot be one.
    pub fn parse_gateway(s: &str) -> Option<Self> {
        Self::parse_with(GATEWAY_PREFIX, s)
    }

    fn generate_with(prefix: &'static str) -> Self {
        let mut rng = rand::rng();
        let lookup: String = (0..LOOKUP_LEN)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
            .collect();
        let bytes: [u8; 32] = rng.random();
        Self {
            lookup,
            secret: URL_SAFE_NO_PAD.encode(bytes),
            prefix,
        }
    }

    fn parse_with(prefix: &'static str, s: &str) -> Option<Self> {
        let rest = s.strip_prefix(prefix)?;
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
            prefix,
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
        format!("{}{}_{}", self.prefix, self.lookup, self.secret)
    }
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSecret({}{}_[redacted])", self.prefix, self.lookup)
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
    fn a_tenant_api_token_is_never_a_service_token() {
        let gateway = TokenSecret::generate_gateway().reveal();
        assert!(gateway.starts_with("tpgw_"));
        assert!(TokenSecret::parse(&gateway).is_none());
        assert!(TokenSecret::parse_gateway(&gateway).is_some());
        assert!(TokenSecret::parse_gateway(&TokenSecret::generate().reveal()).is_none());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let token = TokenSecret::generate();
        assert!(!format!("{token:?}").contains(&token.secret));
    }
}
