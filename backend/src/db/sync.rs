//! What the reconciler writes back: sync status, usage and tombstones.

use sqlx::PgConnection;

use super::outbox::Claimed;
use crate::error::Error;

/// What recording an applied generation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyRecord {
    /// Written: the status, the outbox row and the trail.
    Kept,
    /// The outbox row is `holder`'s now (or gone): nothing was written.
    Dropped { holder: Option<String> },
}

/// Records `generation` applied, if `lease` still holds the tenant's outbox
/// row, in one statement and so one transaction: under the tenant's and the
/// outbox row's locks it marks the tenant Ready (Pending while a newer
/// generation waits) with its namespaces, removes the outbox row or, for a
/// newer change, releases it, audits the first application of each
/// generation as `tenant.applied` (`after` its figures) and appends
/// `tenant.ready` when the status turns Ready.
///
/// Every decision is taken from the rows as locked, not as the statement's
/// snapshot shows them: a change committed while the statement waited for
/// the locks (a newer generation enqueued) must release the outbox row for
/// the next worker, where the snapshot would have it removed or kept leased.
pub async fn record_ready(
    conn: &mut PgConnection,
    lease: &Claimed,
    generation: i64,
    slug: &str,
    actor: &str,
    after: &serde_json::Value,
) -> Result<ReadyRecord, Error> {
    let ready = serde_json::json!({ "generation": generation });
    let found = sqlx::query!(
        r#"WITH locked AS (
               SELECT t.observed_generation, t.sync_status, o.leased_by,
                      o.generation <= $2 AND NOT o.recheck AS done
               FROM tenants t JOIN outbox o ON o.tenant_id = t.id
               WHERE t.id = $1
               FOR UPDATE OF t, o),
           held AS (
               SELECT observed_generation, sync_status, done FROM locked WHERE leased_by = $3),
           marked AS (
               UPDATE tenants
               SET observed_generation = GREATEST(observed_generation, $2),
                   sync_status = CASE WHEN generation <= $2 THEN 'Ready' ELSE 'Pending' END,
                   sync_message = NULL, last_synced_at = now()
               WHERE id = $1
                 AND (SELECT observed_generation < $2 OR sync_status <> 'Ready' FROM held)
               RETURNING sync_status),
           namespaces_marked AS (
               UPDATE namespaces SET sync_status = 'Ready', sync_message = NULL
               WHERE tenant_id = $1 AND sync_status <> 'Ready' AND EXISTS (SELECT 1 FROM marked)
               RETURNING 1),
           completed AS (
               DELETE FROM outbox WHERE tenant_id = $1 AND (SELECT done FROM held)
               RETURNING 1),
           released AS (
               UPDATE outbox
               SET leased_by = NULL, leased_until = NULL, recheck = false, not_before = now()
               WHERE tenant_id = $1 AND NOT (SELECT done FROM held)
               RETURNING 1),
           trailed AS (
               SELECT tenant_trail($1, $4, $5,
                   CASE WHEN h.observed_generation < $2 THEN 'tenant.applied' END, NULL, $6, NULL,
                   NULL,
                   CASE WHEN m.sync_status = 'Ready' AND h.sync_status <> 'Ready'
                        THEN ARRAY['tenant.ready'] ELSE ARRAY[]::text[] END,
                   CASE WHEN m.sync_status = 'Ready' AND h.sync_status <> 'Ready'
                        THEN ARRAY[$7::jsonb] ELSE ARRAY[]::jsonb[] END)
               FROM held h LEFT JOIN marked m ON true
               -- Uncorrelated, so run once before the first row: the
               -- trail comes after every other write.
               WHERE (SELECT count(*) FROM namespaces_marked) >= 0
                 AND (SELECT count(*) FROM completed) + (SELECT count(*) FROM released) >= 0)
           SELECT l.leased_by AS holder, EXISTS (SELECT 1 FROM trailed) AS "kept!"
           FROM locked l"#,
        lease.tenant_id,
        generation,
        lease.holder,
        slug,
        actor,
        after,
        ready,
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match found {
        Some(row) if row.kept => ReadyRecord::Kept,
        Some(row) => ReadyRecord::Dropped { holder: row.holder },
        None => ReadyRecord::Dropped { holder: None },
    })
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

/// Stores the quota usage of each (full namespace name, `status.used`)
/// pair, where it changed, in one statement, and answers the names it is
/// done with: stored, already as given, or not a namespace of this
/// database. It never waits for a row another transaction holds (a tenant
/// being recorded or changed): those are skipped and left out of the
/// answer, to be written later. Waiting there, a statement that locks many
/// rows in its own order could close a cycle with a transaction that
/// locks a few of them in another, and one of the two would be aborted.
pub async fn store_usage(
    conn: &mut PgConnection,
    changes: &[(&str, &serde_json::Value)],
) -> Result<Vec<String>, Error> {
    let (names, used): (Vec<&str>, Vec<&serde_json::Value>) = changes.iter().copied().unzip();
    Ok(sqlx::query_scalar!(
        r#"WITH wanted AS (
               SELECT * FROM unnest($1::text[], $2::jsonb[]) AS c(full_name, used)),
           held AS (
               SELECT n.id, n.full_name, w.used, n.usage IS DISTINCT FROM w.used AS changed
               FROM namespaces n JOIN wanted w ON w.full_name = n.full_name
               FOR UPDATE OF n SKIP LOCKED),
           stored AS (
               UPDATE namespaces n SET usage = h.used, usage_at = now()
               FROM held h WHERE n.id = h.id AND h.changed)
           SELECT full_name AS "full_name!" FROM held
           UNION ALL
           SELECT w.full_name FROM wanted w
           WHERE NOT EXISTS (SELECT 1 FROM namespaces n WHERE n.full_name = w.full_name)"#,
        &names as &[&str],
        &used as &[&serde_json::Value]
    )
    .fetch_all(conn)
    .await?)
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
