//! What showback reads: the namespaces in scope with their tenants, and
//! their usage samples over a period.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::error::Error;

/// A namespace that may have cost something, with what grouping needs of its tenant.
#[derive(Debug, Clone)]
pub struct ScopeRow {
    pub namespace_id: i64,
    pub namespace: String,
    pub tenant_id: i64,
    pub slug: String,
    pub cluster: String,
    pub labels: Json<BTreeMap<String, String>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Which tenants a caller sees; `None` means no limit.
#[derive(Debug, Default)]
pub struct ScopeFilter {
    /// Only tenants where this email, or one of these groups, is a member.
    pub member: Option<(String, Vec<String>)>,
    /// Only these tenants (slugs): what a token or machine client reaches.
    pub reach: Option<Vec<String>>,
    /// Only this tenant.
    pub tenant: Option<String>,
}

/// Every namespace (of live and deleted tenants) the filter lets through,
/// in id order.
pub async fn scope(conn: &mut PgConnection, filter: &ScopeFilter) -> Result<Vec<ScopeRow>, Error> {
    Ok(sqlx::query_as!(
        ScopeRow,
        r#"SELECT n.id AS namespace_id, n.name AS namespace, t.id AS tenant_id, t.slug, t.cluster,
                  t.labels AS "labels: _", t.deleted_at
           FROM namespaces n JOIN tenants t ON t.id = n.tenant_id
           WHERE ($1::text IS NULL OR EXISTS (
                 SELECT 1 FROM members m WHERE m.tenant_id = t.id
                   AND ((m.kind = 'user' AND m.subject = $1) OR (m.kind = 'group' AND m.subject = ANY($2)))))
             AND ($3::text[] IS NULL OR t.slug = ANY($3))
             AND ($4::text IS NULL OR t.slug = $4)
           ORDER BY n.id"#,
        filter.member.as_ref().map(|(email, _)| email.as_str()),
        filter.member.as_ref().map(|(_, groups)| groups.as_slice()).unwrap_or(&[]),
        filter.reach.as_deref(),
        filter.tenant.as_deref(),
    )
    .fetch_all(conn)
    .await?)
}

/// One usage sample, its JSON as stored (compared as text, parsed once per change).
#[derive(Debug, Clone)]
pub struct SampleRow {
    pub namespace_id: i64,
    pub sampled_at: DateTime<Utc>,
    pub used: String,
    pub allocated: String,
}

/// The samples of these namespaces that stand in `[from, to)`: the last one
/// taken at or before `from`, and every later one before `to`; by namespace,
/// then time.
pub async fn samples(
    conn: &mut PgConnection,
    namespace_ids: &[i64],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<SampleRow>, Error> {
    Ok(sqlx::query_as!(
        SampleRow,
        r#"SELECT s.namespace_id, s.sampled_at, s.used::text AS "used!", s.allocated::text AS "allocated!"
           FROM unnest($1::bigint[]) AS ns(id)
           CROSS JOIN LATERAL (
               SELECT COALESCE(max(p.sampled_at), $2) AS start FROM usage_samples p
               WHERE p.namespace_id = ns.id AND p.sampled_at <= $2) AS b
           JOIN usage_samples s ON s.namespace_id = ns.id AND s.sampled_at >= b.start AND s.sampled_at < $3
           ORDER BY s.namespace_id, s.sampled_at"#,
        namespace_ids,
        from,
        to
    )
    .fetch_all(conn)
    .await?)
}
