//! What the reconciler writes back: sync status, usage and tombstones.

use sqlx::PgConnection;

use super::outbox::Claimed;
use crate::error::Error;

/// What marking a tenant Ready changed.
#[derive(Debug, Clone, Copy)]
pub struct Marked {
    /// This generation was not applied before: record the application once.
    pub newly_observed: bool,
    /// The status turned Ready now.
    pub became_ready: bool,
}

/// Marks `generation` applied, if `lease` is still its writer's; `None`
/// (nothing written) when another worker has taken the tenant since.
pub async fn mark_ready(
    conn: &mut PgConnection,
    lease: &Claimed,
    generation: i64,
) -> Result<Option<Marked>, Error> {
    let tenant_id = lease.tenant_id;
    let before = sqlx::query!(
        r#"SELECT t.observed_generation, t.sync_status,
                  EXISTS (SELECT 1 FROM outbox o WHERE o.tenant_id = t.id AND o.leased_by = $2) AS "held!"
           FROM tenants t WHERE t.id = $1 FOR UPDATE OF t"#,
        tenant_id,
        lease.holder
    )
    .fetch_one(&mut *conn)
    .await?;
    if !before.held {
        return Ok(None);
    }
    let newly_observed = before.observed_generation < generation;
    if !newly_observed && before.sync_status == "Ready" {
        return Ok(Some(Marked {
            newly_observed,
            became_ready: false,
        }));
    }
    let status = sqlx::query_scalar!(
        "UPDATE tenants
         SET observed_generation = GREATEST(observed_generation, $2),
             sync_status = CASE WHEN generation <= $2 THEN 'Ready' ELSE 'Pending' END,
             sync_message = NULL, last_synced_at = now()
         WHERE id = $1
         RETURNING sync_status",
        tenant_id,
        generation
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE namespaces SET sync_status = 'Ready', sync_message = NULL
         WHERE tenant_id = $1 AND sync_status <> 'Ready'",
        tenant_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(Some(Marked {
        newly_observed,
        became_ready: status == "Ready" && before.sync_status != "Ready",
    }))
}

/// Records a failed attempt at `generation` with the API server's words, per
/// namespace where the failure belongs to one. Answers whether the status
/// turned Failed now; `None` (nothing written) when `lease` is no longer its
/// writer's or the tenant has moved past `generation`, whose failure then
/// says nothing about the state wanted now.
pub async fn mark_failed(
    conn: &mut PgConnection,
    lease: &Claimed,
    generation: i64,
    message: &str,
    namespace_failures: &[(String, String)],
) -> Result<Option<bool>, Error> {
    let tenant_id = lease.tenant_id;
    let was = sqlx::query!(
        r#"SELECT t.sync_status, t.generation,
                  EXISTS (SELECT 1 FROM outbox o WHERE o.tenant_id = t.id AND o.leased_by = $2) AS "held!"
           FROM tenants t WHERE t.id = $1 FOR UPDATE OF t"#,
        tenant_id,
        lease.holder
    )
    .fetch_one(&mut *conn)
    .await?;
    if !was.held || was.generation != generation {
        return Ok(None);
    }
    sqlx::query!(
        "UPDATE tenants SET sync_status = 'Failed', sync_message = $2, last_synced_at = now()
         WHERE id = $1 AND (sync_status <> 'Failed' OR sync_message IS DISTINCT FROM $2)",
        tenant_id,
        message
    )
    .execute(&mut *conn)
    .await?;
    for (namespace, failure) in namespace_failures {
        sqlx::query!(
            "UPDATE namespaces SET sync_status = 'Failed', sync_message = $3
             WHERE tenant_id = $1 AND full_name = $2",
            tenant_id,
            namespace,
            failure
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(Some(was.sync_status != "Failed"))
}

/// Stores a namespace's quota usage when it changed.
pub async fn store_usage(
    conn: &mut PgConnection,
    full_name: &str,
    used: &serde_json::Value,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE namespaces SET usage = $2, usage_at = now() WHERE full_name = $1 AND usage IS DISTINCT FROM $2",
        full_name,
        used
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds every namespace's current usage to the history, unless a sample
/// was taken less than `gap` ago. Every replica runs the sampler; the lock
/// and the check make one sample per interval for the fleet, not one per
/// replica. Answers how many namespaces were sampled.
pub async fn sample_usage(conn: &mut PgConnection, gap: std::time::Duration) -> Result<u64, Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('usage_samples'))")
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query!(
        "INSERT INTO usage_samples (namespace_id, used)
         SELECT n.id, n.usage FROM namespaces n JOIN tenants t ON t.id = n.tenant_id
         WHERE t.state <> 'deleted' AND n.usage_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM usage_samples
                           WHERE sampled_at > clock_timestamp() - make_interval(secs => $1))",
        gap.as_secs_f64()
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// Forgets usage samples older than `retention`, a batch at a time so that
/// no single statement holds a year of rows. Answers how many went.
pub async fn expire_usage(
    conn: &mut PgConnection,
    retention: std::time::Duration,
) -> Result<u64, Error> {
    let mut gone = 0;
    loop {
        let done = sqlx::query!(
            "DELETE FROM usage_samples WHERE ctid = ANY (ARRAY(
                 SELECT ctid FROM usage_samples
                 WHERE sampled_at < now() - make_interval(secs => $1) LIMIT 10000))",
            retention.as_secs_f64()
        )
        .execute(&mut *conn)
        .await?;
        gone += done.rows_affected();
        if done.rows_affected() < 10_000 {
            return Ok(gone);
        }
    }
}

/// Turns a tenant whose namespaces are gone into a tombstone.
pub async fn tombstone(conn: &mut PgConnection, tenant_id: i64) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE tenants SET state = 'deleted', deleted_at = now(), sync_status = 'Ready',
                observed_generation = generation, sync_message = NULL, last_synced_at = now()
         WHERE id = $1",
        tenant_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("DELETE FROM outbox WHERE tenant_id = $1", tenant_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The tenant's usage history: per sampling time, what each namespace used.
pub async fn usage_history(
    conn: &mut PgConnection,
    tenant_id: i64,
    limit: i64,
) -> Result<Vec<(chrono::DateTime<chrono::Utc>, serde_json::Value)>, Error> {
    Ok(sqlx::query!(
        "SELECT s.sampled_at, s.used FROM usage_samples s JOIN namespaces n ON n.id = s.namespace_id
         WHERE n.tenant_id = $1 ORDER BY s.sampled_at DESC LIMIT $2",
        tenant_id,
        limit
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| (r.sampled_at, r.used))
    .collect())
}
