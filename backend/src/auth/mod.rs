//! Who is calling, and what they may do. Handlers take a [`Principal`] and ask
//! [`policy`]; nothing else decides permissions.

pub mod login;
pub mod oidc;
pub mod policy;
mod principal;
pub mod session;
pub mod tokens;

pub use principal::{Principal, Reach, Scope, User};

use std::sync::Arc;

/// What signing in and telling who calls need of the portal: its database,
/// its configuration and the identity provider. A door's state hands it
/// over by axum's `FromRef`, so `auth/` depends on no door's state.
#[derive(Clone)]
pub struct AuthParts {
    pub db: sqlx::PgPool,
    pub config: Arc<crate::config::ServeConfig>,
    /// `None` when no identity provider is configured.
    pub login: Option<Arc<oidc::Login>>,
}

/// Compares secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
