use sqlx::PgConnection;

use crate::error::Error;

/// An outbox row a worker holds a lease on. `holder` is the lease's token,
/// unique to this claim; every write of the outcome checks the row still
/// names it, so a worker overtaken by another writes nothing.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub tenant_id: i64,
    pub generation: i64,
    pub attempts: i32,
    pub holder: String,
}

/// Leases the most overdue row of a tenant on `cluster` to `holder`. `SKIP
/// LOCKED` lets workers of every replica claim side by side, and the lease
/// keeps one tenant with one worker; a worker that dies loses its lease when
/// it expires. Each candidate row looks up its tenant's cluster by primary
/// key: written as a join, a planner whose statistics still describe a
/// young table walks every tenant in id order to match a few outbox rows.
pub async fn claim(
    conn: &mut PgConnection,
    cluster: &str,
    holder: &str,
    lease: std::time::Duration,
) -> Result<Option<Claimed>, Error> {
    Ok(sqlx::query_as!(
        Claimed,
        r#"UPDATE outbox o
           SET leased_by = $2, leased_until = now() + make_interval(secs => $3), attempts = o.attempts + 1
           WHERE o.tenant_id = (
               SELECT c.tenant_id FROM outbox c
               WHERE c.not_before <= now()
                 AND (c.leased_until IS NULL OR c.leased_until < now())
                 AND (SELECT t.cluster FROM tenants t WHERE t.id = c.tenant_id) = $1
               ORDER BY c.not_before
               LIMIT 1
               FOR UPDATE OF c SKIP LOCKED)
           RETURNING o.tenant_id, o.generation, o.attempts, o.leased_by AS "holder!""#,
        cluster,
        holder,
        lease.as_secs_f64(),
    )
    .fetch_optional(conn)
    .await?)
}

/// Extends the lease while its worker is still at work. False when the lease
/// is no longer this worker's: it expired and another worker claimed the
/// row, or the row is gone.
pub async fn renew(
    conn: &mut PgConnection,
    lease: &Claimed,
    by: std::time::Duration,
) -> Result<bool, Error> {
    let done = sqlx::query!(
        "UPDATE outbox SET leased_until = now() + make_interval(secs => $3)
         WHERE tenant_id = $1 AND leased_by = $2",
        lease.tenant_id,
        lease.holder,
        by.as_secs_f64(),
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Locks the tenant's row, then its outbox row, for the rest of the
/// transaction (the order every change takes them in), and answers who holds
/// the lease now (`None`: nobody, or the row is gone). The outcome of a claim
/// is written only while this is still the claim's holder.
pub async fn holder(conn: &mut PgConnection, tenant_id: i64) -> Result<Option<String>, Error> {
    Ok(sqlx::query_scalar!(
        "SELECT o.leased_by FROM tenants t JOIN outbox o ON o.tenant_id = t.id
         WHERE t.id = $1 FOR UPDATE OF t, o",
        tenant_id
    )
    .fetch_optional(conn)
    .await?
    .flatten())
}

/// Removes the row once `generation` (or a later one) is applied; a row for
/// a newer change stays, released for the next worker. Only the lease's
/// holder can do either.
pub async fn complete(conn: &mut PgConnection, lease: &Claimed, applied: i64) -> Result<(), Error> {
    let removed = sqlx::query!(
        "DELETE FROM outbox
         WHERE tenant_id = $1 AND generation <= $2 AND NOT recheck AND leased_by = $3",
        lease.tenant_id,
        applied,
        lease.holder
    )
    .execute(&mut *conn)
    .await?;
    if removed.rows_affected() == 1 {
        return Ok(());
    }
    sqlx::query!(
        "UPDATE outbox SET leased_by = NULL, leased_until = NULL, recheck = false, not_before = now()
         WHERE tenant_id = $1 AND leased_by = $2",
        lease.tenant_id,
        lease.holder
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Releases the row to be tried again after `delay`, keeping the last error.
/// A change that arrived after the `attempted` generation is not made to
/// wait for the backoff of an older one: the row is due at once.
pub async fn retry_later(
    conn: &mut PgConnection,
    lease: &Claimed,
    attempted: i64,
    delay: std::time::Duration,
    error: Option<&str>,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE outbox SET leased_by = NULL, leased_until = NULL,
                not_before = CASE WHEN generation > $3 THEN now()
                                  ELSE now() + make_interval(secs => $4) END,
                last_error = $5
         WHERE tenant_id = $1 AND leased_by = $2",
        lease.tenant_id,
        lease.holder,
        attempted,
        delay.as_secs_f64(),
        error
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Asks for a check of a tenant without a change to it (drift). A row
/// already waiting, perhaps backing off, is left as it is; a row a worker
/// holds is marked, so the worker looks once more when it is done. Answers
/// whether a check was queued.
pub async fn enqueue_check(conn: &mut PgConnection, slug: &str) -> Result<bool, Error> {
    let done = sqlx::query!(
        "INSERT INTO outbox (tenant_id, generation)
         SELECT id, generation FROM tenants WHERE slug = $1 AND state <> 'deleted'
         ON CONFLICT (tenant_id) DO UPDATE SET recheck = true
         WHERE outbox.leased_until > now() AND NOT outbox.recheck",
        slug
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Queues a check of every live tenant on `cluster`; the periodic resync.
pub async fn enqueue_all(conn: &mut PgConnection, cluster: &str) -> Result<u64, Error> {
    let done = sqlx::query!(
        "INSERT INTO outbox (tenant_id, generation)
         SELECT id, generation FROM tenants WHERE cluster = $1 AND state <> 'deleted'
         ON CONFLICT (tenant_id) DO NOTHING",
        cluster
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Queues a check of live tenants: these (ids), or every one (`None`), as
/// when what the portal renders for them changed outside their own rows.
/// Answers how many were queued.
pub async fn enqueue_checks(
    conn: &mut PgConnection,
    tenant_ids: Option<&[i64]>,
) -> Result<u64, Error> {
    let done = sqlx::query!(
        "INSERT INTO outbox (tenant_id, generation)
         SELECT id, generation FROM tenants
         WHERE state <> 'deleted' AND ($1::bigint[] IS NULL OR id = ANY($1))
         ON CONFLICT (tenant_id) DO UPDATE SET recheck = true
         WHERE outbox.leased_until > now() AND NOT outbox.recheck",
        tenant_ids
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
