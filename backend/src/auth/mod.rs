//! Who is calling, and what they may do. Handlers take a [`Principal`] and ask
//! [`policy`]; nothing else decides permissions.

pub mod policy;
mod principal;
pub mod tokens;

pub use principal::{Principal, Scope};
