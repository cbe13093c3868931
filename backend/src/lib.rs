//! Tenant Portal: self-service tenants on shared Kubernetes clusters.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod gateway;
pub mod metrics;
pub mod page;
pub mod problem;
pub mod reconciler;
pub mod router;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod web;
