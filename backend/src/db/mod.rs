//! Queries, one module per aggregate. Functions take a connection or a
//! transaction; the service layer owns the transaction boundary.

pub mod audit;
pub mod events;
pub mod idempotency;
pub mod members;
pub mod namespaces;
pub mod outbox;
pub mod policies;
pub mod quota_requests;
pub mod sessions;
pub mod sync;
pub mod tenants;
pub mod tokens;

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

use crate::config::DatabaseConfig;

pub type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pooled connection idle this long is pinged before use.
const CHECK_CONNECTIONS_IDLE_FOR: Duration = Duration::from_secs(5);

/// Connects the pool; fails with a message saying where it tried to connect.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings every connection it hands out, a round trip per request
        // (a third of a tenant GET's). A connection in steady use has just
        // proven itself; only one that sat idle is checked.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > CHECK_CONNECTIONS_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
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
