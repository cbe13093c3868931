//! Deletes tenants whose time is up, through the same path as a delete
//! request: state `deleting`, the outbox, and the reconciler's tombstone.
//! A crash anywhere leaves the outbox row that finishes the job.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Context;
use crate::api::change::{Actor, TenantChange};
use crate::api::extract::IfMatch;
use crate::db;
use crate::domain::TenantState;
use crate::error::Error;

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
        let mut change = TenantChange::begin(pool, &slug, &IfMatch::default()).await?;
        // Another replica got here first, or the tenant was extended meanwhile.
        let due = change
            .tenant
            .expires_at
            .is_some_and(|at| at <= chrono::Utc::now());
        if !change.tenant.state().is_editable() || !due {
            continue;
        }
        let id = change.tenant.id;
        db::tenants::set_state(&mut change.tx, id, TenantState::Deleting).await?;
        change
            .commit(&Actor::system(ACTOR), "tenant.expired")
            .await?;
        collected += 1;
    }
    Ok(collected)
}
