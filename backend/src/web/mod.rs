//! Pages for people in browsers.

pub mod page;
