//! The catalog of platform APIs and the tenants each is published to.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct PlatformApiRow {
    pub api_group: String,
    pub resource: String,
    pub description: String,
    pub all_tenants: bool,
    /// The tenants it is published to, by slug (when not to all).
    pub tenants: Vec<String>,
    pub published_by: String,
    pub published_at: DateTime<Utc>,
}

/// Every published API, by group and resource.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<PlatformApiRow>, Error> {
    Ok(sqlx::query_as!(
        PlatformApiRow,
        r#"SELECT a.api_group, a.resource, a.description, a.all_tenants,
                  ARRAY(SELECT t.slug FROM platform_api_tenants p JOIN tenants t ON t.id = p.tenant_id
                        WHERE p.platform_api_id = a.id ORDER BY t.slug COLLATE "C") AS "tenants!",
                  a.published_by, a.published_at
           FROM platform_apis a ORDER BY a.api_group COLLATE "C", a.resource COLLATE "C""#
    )
    .fetch_all(conn)
    .await?)
}

/// Publishes (or publishes again) an API to every tenant or to these
/// tenants (ids); locks its row for the rest of the transaction.
pub async fn upsert(
    conn: &mut PgConnection,
    api_group: &str,
    resource: &str,
    description: &str,
    tenant_ids: Option<&[i64]>,
    published_by: &str,
) -> Result<(), Error> {
    let id = sqlx::query_scalar!(
        "INSERT INTO platform_apis (api_group, resource, description, all_tenants, published_by)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (api_group, resource) DO UPDATE
           SET description = EXCLUDED.description, all_tenants = EXCLUDED.all_tenants,
               published_by = EXCLUDED.published_by, published_at = now()
         RETURNING id",
        api_group,
        resource,
        description,
        tenant_ids.is_none(),
        published_by
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "DELETE FROM platform_api_tenants WHERE platform_api_id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    if let Some(ids) = tenant_ids {
        sqlx::query!(
            "INSERT INTO platform_api_tenants (platform_api_id, tenant_id)
             SELECT $1, t FROM unnest($2::bigint[]) AS t ON CONFLICT DO NOTHING",
            id,
            ids
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Unpublishes an API; `false` when it was not published.
pub async fn delete(
    conn: &mut PgConnection,
    api_group: &str,
    resource: &str,
) -> Result<bool, Error> {
    let done = sqlx::query!(
        "DELETE FROM platform_apis WHERE api_group = $1 AND resource = $2",
        api_group,
        resource
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The ids of the live tenants with these slugs, and the slugs not found.
pub async fn tenant_ids(
    conn: &mut PgConnection,
    slugs: &[String],
) -> Result<(Vec<i64>, Vec<String>), Error> {
    let found = sqlx::query!(
        "SELECT id, slug FROM tenants WHERE slug = ANY($1) AND state <> 'deleted'",
        slugs
    )
    .fetch_all(conn)
    .await?;
    let missing = slugs
        .iter()
        .filter(|s| !found.iter().any(|f| &f.slug == *s))
        .cloned()
        .collect();
    Ok((found.into_iter().map(|f| f.id).collect(), missing))
}

/// The platform APIs published to a tenant (`<resource>.<group>`), before
/// its policy narrows them.
pub async fn published_to(conn: &mut PgConnection, tenant_id: i64) -> Result<Vec<String>, Error> {
    let listed = sqlx::query_scalar!(r#"SELECT platform_apis_of($1)::text AS "apis!""#, tenant_id)
        .fetch_one(conn)
        .await?;
    serde_json::from_str(&listed).map_err(|e| {
        Error::Corrupt(
            anyhow::Error::new(e)
                .context("platform_apis_of answered something that is not a list of names"),
        )
    })
}
