//! Opaque page tokens and page-size rules shared by the list endpoints.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::Error;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

pub fn page_size(requested: Option<u32>) -> Result<i64, Error> {
    match requested.unwrap_or(DEFAULT_PAGE_SIZE) {
        n @ 1..=MAX_PAGE_SIZE => Ok(i64::from(n)),
        _ => Err(Error::invalid(
            "query.page_size",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// Encodes the position after `id` in a list of `kind`.
pub fn token(kind: &str, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
}

/// Decodes a token made by [`token`] for the same list.
pub fn position(kind: &str, token: &str) -> Result<i64, Error> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            text.strip_prefix(&format!("{kind}:"))
                .and_then(|id| id.parse().ok())
        })
        .ok_or_else(|| {
            Error::invalid(
                "query.page_token",
                "is not a page token this list issued; start again without it",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_only_within_their_list() {
        let t = token("tenants", 42);
        assert_eq!(position("tenants", &t).unwrap(), 42);
        assert!(position("audit", &t).is_err());
        assert!(position("tenants", "not base64!").is_err());
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size(None).unwrap(), 50);
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(501)).is_err());
    }
}
