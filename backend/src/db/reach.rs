//! Who created which tenant, and which tenants a service token names: what
//! a token or machine client reaches.

use sqlx::PgConnection;

use crate::error::Error;

/// Serializes tenant creations by one creator until the transaction ends,
/// so two at once cannot both pass the tenants-per-owner count.
pub async fn lock_creator(conn: &mut PgConnection, key: &str) -> Result<(), Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 14))",
        key
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How many tenants, not yet deleted, this creator made.
pub async fn count_created_by(conn: &mut PgConnection, key: &str) -> Result<i64, Error> {
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM tenants WHERE created_by = $1 AND state <> 'deleted'"#,
        key
    )
    .fetch_one(conn)
    .await?)
}

/// The slugs of the tenants this creator made or, for a service token, that
/// are named on it.
pub async fn reachable(
    conn: &mut PgConnection,
    key: &str,
    token_id: Option<i64>,
) -> Result<Vec<String>, Error> {
    Ok(sqlx::query_scalar!(
        "SELECT slug FROM tenants WHERE created_by = $1
         UNION
         SELECT t.slug FROM service_token_tenants n JOIN tenants t ON t.id = n.tenant_id
         WHERE n.token_id = $2
         ORDER BY 1",
        key,
        token_id,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .flatten()
    .collect())
}

/// Names tenants on a token; an unknown slug is an error naming it.
pub async fn name_on_token(
    conn: &mut PgConnection,
    token_id: i64,
    slugs: &[String],
) -> Result<(), Error> {
    let found: Vec<String> = sqlx::query_scalar!(
        "INSERT INTO service_token_tenants (token_id, tenant_id)
         SELECT $1, id FROM tenants WHERE slug = ANY($2) AND state <> 'deleted'
         RETURNING (SELECT slug FROM tenants WHERE id = tenant_id) AS \"slug!\"",
        token_id,
        slugs,
    )
    .fetch_all(conn)
    .await?;
    if let Some(missing) = slugs.iter().find(|s| !found.contains(s)) {
        return Err(Error::invalid(
            "tenants",
            format!("there is no tenant \"{missing}\""),
        ));
    }
    Ok(())
}
