use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::auth::tokens::TokenSecret;
use crate::auth::{Principal, Reach, Scope};
use crate::error::Error;

/// A service token as listed; never its secret.
#[derive(Debug, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Reaches every tenant, not only those it created or names.
    pub all_tenants: bool,
    /// The tenants named on it when it was made.
    pub tenants: Vec<String>,
}

/// What a new token is made of; the tenants it names are added apart.
pub struct NewToken<'a> {
    pub name: &'a str,
    pub scopes: &'a [Scope],
    pub expires_at: Option<DateTime<Utc>>,
    pub all_tenants: bool,
}

pub async fn insert(
    conn: &mut PgConnection,
    new: &NewToken<'_>,
    secret: &TokenSecret,
) -> Result<TokenInfo, Error> {
    let name = new.name;
    let scopes: Vec<String> = new.scopes.iter().map(|s| s.as_str().to_string()).collect();
    sqlx::query_as!(
        TokenInfo,
        r#"INSERT INTO service_tokens (name, lookup, secret_hash, scopes, expires_at, all_tenants)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id, name, scopes, created_at, expires_at, revoked_at, last_used_at,
                     all_tenants, ARRAY[]::text[] AS "tenants!""#,
        name,
        secret.lookup,
        secret.hash(),
        &scopes,
        new.expires_at,
        new.all_tenants,
    )
    .fetch_one(conn)
    .await
    .map_err(|e| match super::violated_constraint(&e) {
        Some("service_tokens_name_key") => {
            Error::conflict(format!("a token named \"{name}\" already exists"))
        }
        _ => e.into(),
    })
}

pub async fn list(conn: &mut PgConnection) -> Result<Vec<TokenInfo>, Error> {
    Ok(sqlx::query_as!(
        TokenInfo,
        r#"SELECT id, name, scopes, created_at, expires_at, revoked_at, last_used_at, all_tenants,
                  ARRAY(SELECT t.slug FROM service_token_tenants n JOIN tenants t ON t.id = n.tenant_id
                        WHERE n.token_id = service_tokens.id ORDER BY t.slug) AS "tenants!"
           FROM service_tokens ORDER BY id"#
    )
    .fetch_all(conn)
    .await?)
}

/// Revokes the named token; `false` when no live token has that name.
pub async fn revoke(conn: &mut PgConnection, name: &str) -> Result<bool, Error> {
    let done = sqlx::query!(
        "UPDATE service_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
        name
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Finds the live token a client presented, or answers 401 saying why not.
pub async fn authenticate(pool: &PgPool, presented: &TokenSecret) -> Result<Principal, Error> {
    let row = sqlx::query!(
        r#"SELECT id, name, secret_hash, scopes, expires_at, revoked_at, all_tenants,
                  (last_used_at IS NULL OR last_used_at < now() - interval '1 minute') AS "stale_use!"
           FROM service_tokens WHERE lookup = $1"#,
        presented.lookup
    )
    .fetch_optional(pool)
    .await?;
    let unknown = || Error::Unauthorized("the service token is not valid".into());
    let row = row.ok_or_else(unknown)?;
    if !presented.matches(&row.secret_hash) {
        return Err(unknown());
    }
    if row.revoked_at.is_some() {
        return Err(Error::Unauthorized(format!(
            "the service token \"{}\" has been revoked",
            row.name
        )));
    }
    if row.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(Error::Unauthorized(format!(
            "the service token \"{}\" expired; create a new one with `tenant-portal token create`",
            row.name
        )));
    }
    // Recording every use would turn each read into a write; a minute's
    // resolution is enough to tell live tokens from forgotten ones.
    if row.stale_use {
        sqlx::query!(
            "UPDATE service_tokens SET last_used_at = now() WHERE id = $1",
            row.id
        )
        .execute(pool)
        .await?;
    }
    let scopes = row.scopes.iter().filter_map(|s| s.parse().ok()).collect();
    let reach = if row.all_tenants {
        Reach::All
    } else {
        let mut conn = pool.acquire().await?;
        let key = format!("token:{}", row.id);
        Reach::Only(super::reach::reachable(&mut conn, &key, Some(row.id)).await?)
    };
    Ok(Principal::ServiceToken {
        id: row.id,
        name: row.name,
        scopes,
        reach,
    })
}
