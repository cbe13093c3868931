//! Queries, one module per aggregate. Functions take a connection or a
//! transaction; the service layer owns the transaction boundary.

pub mod audit;
pub mod clusters;
pub mod decode;
pub mod events;
pub mod fleet;
pub mod gateway_tokens;
pub mod gitops;
pub mod health;
pub mod idempotency;
pub mod members;
pub mod namespaces;
pub mod outbox;
pub mod platform_apis;
pub mod policies;
pub mod prices;
pub mod quota_requests;
pub mod reach;
pub mod sessions;
pub mod showback;
pub mod showback_rollups;
pub mod sync;
pub mod templates;
pub mod tenants;
pub mod tokens;
pub mod trail;

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

use crate::config::DatabaseConfig;
use crate::error::Error;

pub type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pooled connection idle this long is pinged before use.
const CHECK_CONNECTIONS_IDLE_FOR: Duration = Duration::from_secs(5);

/// How long a request waits for a connection before it is answered 503;
/// while the server is down that is every request's wait.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The pool's rules, shared by the service and the tests that stand in for it.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // sqlx pings every connection it hands out, a round trip per request
        // (a third of a tenant GET's). A connection in steady use has just
        // proven itself; only one that sat idle, or that was open when a
        // connection was lost (the server restarted), is checked. A failed
        // ping drops the connection and the pool opens a fresh one.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                let suspect =
                    meta.idle_for > CHECK_CONNECTIONS_IDLE_FOR || health::may_have_died(meta.age);
                if suspect && let Err(e) = conn.ping().await {
                    tracing::debug!(error = %e, "dropping a pooled connection that died");
                    return Ok(false);
                }
                Ok(true)
            })
        })
}

/// Connects the pool; fails with a message saying where it tried to connect.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    pool_options(config.max_connections)
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

/// How a failed query reads to the rest of the service: a lost database is
/// an outage (503 at the doors), a cluster over its declared capacity a
/// refusal, a stored value that no longer parses a corrupt row, anything
/// else an internal error.
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if health::is_connection_error(&e) {
            health::connection_lost();
            Error::DatabaseUnavailable(anyhow::Error::new(e).context("lost the database"))
        } else if let Some(refusal) = clusters::over_capacity(&e) {
            refusal
        } else if decode::is_corrupt(&e) {
            Error::Corrupt(anyhow::Error::new(e).context("a stored row does not parse"))
        } else {
            Error::Internal(anyhow::Error::new(e).context("database query failed"))
        }
    }
}
