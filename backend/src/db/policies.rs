//! Tenant policies set by platform admins. A tenant without a row has the
//! configured default.

use sqlx::PgConnection;
use sqlx::types::Json;

use crate::domain::TenantPolicy;
use crate::error::Error;

/// The tenant's stored policy as written; `None` when it has the default.
/// Decoding is the caller's, so a row that no longer parses fails that
/// tenant instead of reading as the default.
pub async fn get(
    conn: &mut PgConnection,
    tenant_id: i64,
) -> Result<Option<serde_json::Value>, Error> {
    Ok(sqlx::query_scalar!(
        r#"SELECT policy AS "policy: Json<serde_json::Value>" FROM tenant_policies WHERE tenant_id = $1"#,
        tenant_id
    )
    .fetch_optional(conn)
    .await?
    .map(|Json(policy)| policy))
}

pub async fn put(
    conn: &mut PgConnection,
    tenant_id: i64,
    policy: &TenantPolicy,
) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO tenant_policies (tenant_id, policy) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()",
        tenant_id,
        Json(policy) as _,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Back to the configured default.
pub async fn clear(conn: &mut PgConnection, tenant_id: i64) -> Result<(), Error> {
    sqlx::query!(
        "DELETE FROM tenant_policies WHERE tenant_id = $1",
        tenant_id
    )
    .execute(conn)
    .await?;
    Ok(())
}
