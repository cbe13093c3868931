//! Tokens of the tenant API (`/k8s/tenants/<slug>`), hashed at rest.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::auth::tokens::TokenSecret;
use crate::error::Error;

/// Who a tenant-API token was issued to, as stored.
#[derive(Debug, Clone)]
pub struct GatewayTokenRow {
    pub tenant_id: i64,
    pub slug: String,
    /// `user` or `automation`.
    pub holder_kind: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub secret_hash: Vec<u8>,
}

pub struct NewGatewayToken<'a> {
    pub tenant_id: i64,
    pub holder_kind: &'a str,
    pub email: Option<&'a str>,
    pub groups: &'a [String],
    pub issued_by: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// Stores a new token; its id.
pub async fn insert(
    conn: &mut PgConnection,
    new: &NewGatewayToken<'_>,
    secret: &TokenSecret,
) -> Result<i64, Error> {
    Ok(sqlx::query_scalar!(
        "INSERT INTO gateway_tokens (lookup, secret_hash, tenant_id, holder_kind, email, groups, issued_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        secret.lookup,
        secret.hash(),
        new.tenant_id,
        new.holder_kind,
        new.email,
        new.groups,
        new.issued_by,
        new.expires_at,
    )
    .fetch_one(conn)
    .await?)
}

/// The token with this lookup half, if any; the caller checks the secret.
pub async fn find(pool: &PgPool, lookup: &str) -> Result<Option<GatewayTokenRow>, Error> {
    Ok(sqlx::query_as!(
        GatewayTokenRow,
        r#"SELECT g.tenant_id, t.slug, g.holder_kind, g.email, g.groups, g.expires_at, g.secret_hash
           FROM gateway_tokens g JOIN tenants t ON t.id = g.tenant_id
           WHERE g.lookup = $1"#,
        lookup
    )
    .fetch_optional(pool)
    .await?)
}

/// Forgets tokens that expired a day ago or more.
pub async fn delete_expired(conn: &mut PgConnection) -> Result<u64, Error> {
    let done =
        sqlx::query!("DELETE FROM gateway_tokens WHERE expires_at < now() - interval '1 day'")
            .execute(conn)
            .await?;
    Ok(done.rows_affected())
}
