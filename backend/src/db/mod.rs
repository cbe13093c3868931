//! Queries, one module per aggregate. Functions take a connection or a
//! transaction; handlers own the transaction boundary.

pub mod audit;
pub mod events;
pub mod idempotency;
pub mod members;
pub mod namespaces;
pub mod outbox;
pub mod quota_requests;
pub mod sessions;
pub mod sync;
pub mod tenants;
pub mod tokens;

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::DatabaseConfig;

pub type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Connects the pool; fails with a message saying where it tried to connect.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(config.url.expose())
        .await
        .context("failed to connect to PostgreSQL; check --database-url / DATABASE_URL and that the server is running")
}

/// Applies pending migrations. sqlx holds a PostgreSQL advisory lock while
/// it migrates, so replicas starting together apply each migration once.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("failed to apply database migrations")
}

/// The name of the constraint a database error violated, if any.
pub fn violated_constraint(e: &sqlx::Error) -> Option<&str> {
    e.as_database_error().and_then(|d| d.constraint())
}
