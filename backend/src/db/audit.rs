use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Error;

/// One entry of the audit trail.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub tenant_slug: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: Option<String>,
}

/// What happened, by whom, to which tenant.
pub struct NewEvent<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub tenant: Option<(i64, &'a str)>,
    pub before: Option<&'a serde_json::Value>,
    pub after: Option<&'a serde_json::Value>,
    pub request_id: Option<&'a str>,
}

pub async fn record(conn: &mut PgConnection, event: NewEvent<'_>) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO audit_events (actor, action, tenant_id, tenant_slug, before, after, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        event.actor,
        event.action,
        event.tenant.map(|(id, _)| id),
        event.tenant.map(|(_, slug)| slug),
        event.before,
        event.after,
        event.request_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Default)]
pub struct AuditFilter {
    pub tenant: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Only events of these tenants (slugs): what a token or machine client reaches.
    pub reach: Option<Vec<String>>,
}

/// The newest events first, older than `before_id`.
pub async fn list_page(
    conn: &mut PgConnection,
    filter: &AuditFilter,
    before_id: i64,
    limit: i64,
) -> Result<Vec<AuditRow>, Error> {
    Ok(sqlx::query_as!(
        AuditRow,
        "SELECT id, occurred_at, actor, action, tenant_slug, before, after, request_id
         FROM audit_events
         WHERE id < $1
           AND ($2::text IS NULL OR tenant_slug = $2)
           AND ($3::text IS NULL OR actor = $3)
           AND ($4::text IS NULL OR action = $4)
           AND ($5::timestamptz IS NULL OR occurred_at >= $5)
           AND ($7::text[] IS NULL OR tenant_slug = ANY($7))
         ORDER BY id DESC
         LIMIT $6",
        before_id,
        filter.tenant.as_deref(),
        filter.actor.as_deref(),
        filter.action.as_deref(),
        filter.since,
        limit,
        filter.reach.as_deref(),
    )
    .fetch_all(conn)
    .await?)
}
