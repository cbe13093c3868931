//! Who is calling, and what they may do. Handlers take a [`Principal`] and ask
//! [`policy`]; nothing else decides permissions.

pub mod login;
pub mod oidc;
pub mod policy;
mod principal;
pub mod session;
pub mod tokens;

pub use principal::{Principal, Reach, Scope, User};

/// Compares secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
