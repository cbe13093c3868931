use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct QuotaRequestRow {
    pub id: i64,
    pub tenant_id: i64,
    pub tenant_slug: String,
    pub requested_by: String,
    pub resource: String,
    pub amount: String,
    pub reason: String,
    pub status: String,
    pub decided_by: Option<String>,
    pub granted_amount: Option<String>,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    /// The tenant's budget for the resource now.
    pub current_budget: Option<String>,
}

pub async fn insert(
    conn: &mut PgConnection,
    tenant_id: i64,
    requested_by: &str,
    resource: &str,
    amount: &str,
    reason: &str,
) -> Result<i64, Error> {
    Ok(sqlx::query_scalar!(
        "INSERT INTO quota_requests (tenant_id, requested_by, resource, amount, reason)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        tenant_id,
        requested_by,
        resource,
        amount,
        reason
    )
    .fetch_one(conn)
    .await?)
}

/// Filters of the request list; `None` means no filter.
#[derive(Debug, Default)]
pub struct RequestFilter {
    pub status: Option<String>,
    pub tenant: Option<String>,
    /// Only tenants where this email or one of these groups is a member.
    pub member: Option<(String, Vec<String>)>,
    /// Only these tenants (slugs): what a token or machine client reaches.
    pub reach: Option<Vec<String>>,
    /// Only this request.
    pub id: Option<i64>,
}

pub async fn list(
    conn: &mut PgConnection,
    filter: &RequestFilter,
    limit: i64,
) -> Result<Vec<QuotaRequestRow>, Error> {
    Ok(sqlx::query_as!(
        QuotaRequestRow,
        r#"SELECT q.id, q.tenant_id, t.slug AS tenant_slug, q.requested_by, q.resource, q.amount, q.reason,
                  q.status, q.decided_by, q.granted_amount, q.comment, q.created_at, q.decided_at,
                  t.budget ->> q.resource AS current_budget
           FROM quota_requests q JOIN tenants t ON t.id = q.tenant_id
           WHERE ($1::text IS NULL OR q.status = $1)
             AND ($2::text IS NULL OR t.slug = $2)
             AND ($3::text IS NULL OR EXISTS (
                 SELECT 1 FROM members m WHERE m.tenant_id = q.tenant_id
                   AND ((m.kind = 'user' AND m.subject = $3) OR (m.kind = 'group' AND m.subject = ANY($4)))))
             AND ($6::bigint IS NULL OR q.id = $6)
             AND ($7::text[] IS NULL OR t.slug = ANY($7))
           ORDER BY q.id DESC
           LIMIT $5"#,
        filter.status.as_deref(),
        filter.tenant.as_deref(),
        filter.member.as_ref().map(|(email, _)| email.as_str()),
        filter.member.as_ref().map(|(_, groups)| groups.as_slice()).unwrap_or(&[]),
        limit,
        filter.id,
        filter.reach.as_deref(),
    )
    .fetch_all(conn)
    .await?)
}

/// Locks a request for a decision.
pub async fn get_for_update(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<QuotaRequestRow>, Error> {
    Ok(sqlx::query_as!(
        QuotaRequestRow,
        r#"SELECT q.id, q.tenant_id, t.slug AS tenant_slug, q.requested_by, q.resource, q.amount, q.reason,
                  q.status, q.decided_by, q.granted_amount, q.comment, q.created_at, q.decided_at,
                  t.budget ->> q.resource AS current_budget
           FROM quota_requests q JOIN tenants t ON t.id = q.tenant_id
           WHERE q.id = $1 FOR UPDATE OF q"#,
        id
    )
    .fetch_optional(conn)
    .await?)
}

pub async fn decide(
    conn: &mut PgConnection,
    id: i64,
    status: &str,
    decided_by: &str,
    granted_amount: Option<&str>,
    comment: Option<&str>,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE quota_requests SET status = $2, decided_by = $3, granted_amount = $4, comment = $5, decided_at = now()
         WHERE id = $1",
        id,
        status,
        decided_by,
        granted_amount,
        comment
    )
    .execute(conn)
    .await?;
    Ok(())
}
