//! Which tenants keep GitOps credentials, the token each Secret carries now,
//! and how the last attempt to keep them went.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Error;

/// Who issued a token the GitOps keeper rotates (`gateway_tokens.issued_by`).
pub const ISSUER: &str = "gitops";

/// A tenant's GitOps credentials, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitopsRow {
    pub argocd: bool,
    pub flux: bool,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub kept_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

pub async fn get(conn: &mut PgConnection, tenant_id: i64) -> Result<Option<GitopsRow>, Error> {
    Ok(sqlx::query_as!(
        GitopsRow,
        "SELECT argocd, flux, requested_by, requested_at, token_expires_at, kept_at, error
         FROM gitops_credentials WHERE tenant_id = $1",
        tenant_id
    )
    .fetch_optional(conn)
    .await?)
}

/// Records what the owner asked for; the keeper writes the Secrets. A new
/// choice of tools is kept at once by the next pass, with the current token.
pub async fn set(
    conn: &mut PgConnection,
    tenant_id: i64,
    argocd: bool,
    flux: bool,
    requested_by: &str,
) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO gitops_credentials (tenant_id, argocd, flux, requested_by)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id) DO UPDATE
           SET argocd = EXCLUDED.argocd, flux = EXCLUDED.flux,
               requested_by = EXCLUDED.requested_by, requested_at = now(), kept_at = NULL",
        tenant_id,
        argocd,
        flux,
        requested_by
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The channel a change of a tenant's GitOps credentials is announced on,
/// so the keeper writes the Secrets at once rather than at its next tick.
pub const WAKE_CHANNEL: &str = "tenant_portal_gitops";

/// Wakes the keeper for the tenant `slug` when the transaction commits.
pub async fn wake_keeper(conn: &mut PgConnection, slug: &str) -> Result<(), Error> {
    sqlx::query!("SELECT pg_notify($1, $2)", WAKE_CHANNEL, slug)
        .execute(conn)
        .await?;
    Ok(())
}

/// The tenant keeps no GitOps credentials any more: its row goes, and
/// every token the keeper issued for it stops working now.
pub async fn clear(conn: &mut PgConnection, tenant_id: i64) -> Result<(), Error> {
    sqlx::query!(
        "DELETE FROM gitops_credentials WHERE tenant_id = $1",
        tenant_id
    )
    .execute(&mut *conn)
    .await?;
    revoke_tokens(conn, tenant_id).await
}

/// Ends every token the keeper issued for the tenant; the next it keeps
/// Secrets for again gets a new one.
pub async fn revoke_tokens(conn: &mut PgConnection, tenant_id: i64) -> Result<(), Error> {
    sqlx::query!(
        "DELETE FROM gateway_tokens WHERE tenant_id = $1 AND issued_by = $2",
        tenant_id,
        ISSUER
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE gitops_credentials SET token_id = NULL, token_expires_at = NULL WHERE tenant_id = $1",
        tenant_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A tenant whose credentials the keeper looks after in this pass.
#[derive(Debug, Clone)]
pub struct KeptRow {
    pub tenant_id: i64,
    pub slug: String,
    pub argocd: bool,
    pub flux: bool,
    /// Whether the tenant is active: only an active tenant's credentials
    /// are kept; a suspended one's come back when it resumes.
    pub active: bool,
    pub token_expires_at: Option<DateTime<Utc>>,
    /// The tenant's namespaces by its own names.
    pub namespaces: Vec<String>,
    /// What the last pass recorded: kept (since `kept_at`), or the error.
    pub kept: bool,
    pub error: Option<String>,
}

pub async fn all(conn: &mut PgConnection) -> Result<Vec<KeptRow>, Error> {
    Ok(sqlx::query_as!(
        KeptRow,
        r#"SELECT g.tenant_id, t.slug, g.argocd, g.flux,
                  t.state = 'active' AS "active!",
                  g.token_expires_at, g.kept_at IS NOT NULL AS "kept!", g.error,
                  ARRAY(SELECT n.name FROM namespaces n WHERE n.tenant_id = g.tenant_id ORDER BY n.name)
                    AS "namespaces!"
           FROM gitops_credentials g JOIN tenants t ON t.id = g.tenant_id
           ORDER BY t.slug"#
    )
    .fetch_all(conn)
    .await?)
}

/// Puts a new token in the tenant's record (the caller has inserted it).
pub async fn set_token(
    conn: &mut PgConnection,
    tenant_id: i64,
    token_id: i64,
    expires_at: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE gitops_credentials SET token_id = $2, token_expires_at = $3 WHERE tenant_id = $1",
        tenant_id,
        token_id,
        expires_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How the last pass went for the tenant: `None` when its Secrets say what
/// they should (`kept_at` is then since when).
pub async fn record_outcome(
    conn: &mut PgConnection,
    tenant_id: i64,
    error: Option<&str>,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE gitops_credentials
         SET kept_at = CASE WHEN $2::text IS NULL THEN now() END, error = $2
         WHERE tenant_id = $1",
        tenant_id,
        error
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether this replica holds the keeper's turn: one replica a pass, so a
/// token is rotated once. Released when `conn` is returned or closed.
pub async fn try_lock(conn: &mut PgConnection) -> Result<bool, Error> {
    Ok(sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_lock(hashtext('tenant-portal:gitops')) AS "locked!""#
    )
    .fetch_one(conn)
    .await?)
}

pub async fn unlock(conn: &mut PgConnection) -> Result<(), Error> {
    sqlx::query_scalar!("SELECT pg_advisory_unlock(hashtext('tenant-portal:gitops'))")
        .fetch_one(conn)
        .await?;
    Ok(())
}
