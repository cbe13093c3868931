//! Deletes tenants whose time is up, through the same path as a delete
//! request: state `deleting`, the outbox, and the reconciler's tombstone.
//! A crash anywhere leaves the outbox row that finishes the job.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Context;
use crate::db;
use crate::error::Error;
use crate::service::{Actor, lifecycle};

pub const ACTOR: &str = "system:expiry";

pub async fn run(context: Arc<Context>, stop: CancellationToken) {
    let mut every = tokio::time::interval(context.settings.expiry_interval);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        match collect(&context.db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tenants = n, "expired tenants are being deleted"),
            Err(e) => {
                tracing::warn!(error = %e, "failed to collect expired tenants; retrying at the next tick")
            }
        }
    }
}

async fn collect(pool: &sqlx::PgPool) -> Result<usize, Error> {
    let slugs = {
        let mut conn = pool.acquire().await?;
        db::tenants::expired(&mut conn, 100).await?
    };
    let mut collected = 0;
    for slug in slugs {
        if lifecycle::expire(pool, &Actor::system(ACTOR), &slug).await? {
            collected += 1;
        }
    }
    Ok(collected)
}
