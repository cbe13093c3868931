//! What the fleet page reads besides showback: allocations and usage per
//! cluster, and the tenants whose sync failed.

use sqlx::PgConnection;

use crate::error::Error;

/// One live namespace: its cluster, allocations and last usage, as stored.
#[derive(Debug, Clone)]
pub struct NamespaceLoad {
    pub cluster: String,
    pub allocations: String,
    pub usage: String,
}

pub async fn namespace_loads(conn: &mut PgConnection) -> Result<Vec<NamespaceLoad>, Error> {
    Ok(sqlx::query_as!(
        NamespaceLoad,
        r#"SELECT t.cluster, n.allocations::text AS "allocations!", n.usage::text AS "usage!"
           FROM namespaces n JOIN tenants t ON t.id = n.tenant_id
           WHERE t.state <> 'deleted'"#
    )
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone)]
pub struct FailingTenant {
    pub slug: String,
    pub cluster: String,
    pub message: Option<String>,
}

/// Live tenants whose last sync failed, by slug; at most `limit`.
pub async fn failing(conn: &mut PgConnection, limit: i64) -> Result<Vec<FailingTenant>, Error> {
    Ok(sqlx::query_as!(
        FailingTenant,
        r#"SELECT slug, cluster, sync_message AS message FROM tenants
           WHERE sync_status = 'Failed' AND state <> 'deleted' ORDER BY slug LIMIT $1"#,
        limit
    )
    .fetch_all(conn)
    .await?)
}
