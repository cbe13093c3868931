//! The rules and transactions of every change and read that the REST API,
//! the dashboard and the reconciler share. Nothing here knows HTTP: the
//! doors parse their transport, call one function here and render its
//! answer. Every change to a tenant goes through [`TenantChange`].

pub mod access;
pub mod budget;
pub mod change;
mod cluster_check;
pub mod clusters;
pub mod documents;
pub mod fleet;
pub mod gateway;
pub mod gitops;
pub mod grant;
pub mod kubeconfig;
pub mod lifecycle;
pub mod members;
pub mod namespaces;
mod new_tenant;
pub mod pagination;
pub mod placement;
pub mod platform_apis;
pub mod policy;
pub mod prices;
pub mod quota_requests;
pub mod showback;
pub mod showback_rollups;
pub mod templates;
pub mod tenants;
pub mod tokens;
pub mod utilisation;
pub mod views;

pub use change::{Actor, Precondition, TenantChange};
