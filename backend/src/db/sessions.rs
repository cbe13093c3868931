use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Error;

#[derive(Debug)]
pub struct SessionRow {
    pub subject: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
    pub csrf_token: String,
    pub last_seen_at: DateTime<Utc>,
}

pub struct NewSession<'a> {
    pub id_hash: &'a [u8],
    pub subject: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub groups: &'a [String],
    pub csrf_token: &'a str,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut PgConnection, new: NewSession<'_>) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO sessions (id_hash, subject, email, name, groups, csrf_token, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        new.id_hash,
        new.subject,
        new.email,
        new.name,
        new.groups,
        new.csrf_token,
        new.expires_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The live session: not past its absolute expiry, and used within `idle_seconds`.
pub async fn find_live(
    conn: &mut PgConnection,
    id_hash: &[u8],
    idle_seconds: f64,
) -> Result<Option<SessionRow>, Error> {
    Ok(sqlx::query_as!(
        SessionRow,
        "SELECT subject, email, name, groups, csrf_token, last_seen_at FROM sessions
         WHERE id_hash = $1 AND expires_at > now() AND last_seen_at > now() - make_interval(secs => $2)",
        id_hash,
        idle_seconds
    )
    .fetch_optional(conn)
    .await?)
}

pub async fn touch(conn: &mut PgConnection, id_hash: &[u8]) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE sessions SET last_seen_at = now() WHERE id_hash = $1",
        id_hash
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete(conn: &mut PgConnection, id_hash: &[u8]) -> Result<(), Error> {
    sqlx::query!("DELETE FROM sessions WHERE id_hash = $1", id_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets ended sessions and abandoned logins.
pub async fn expire(conn: &mut PgConnection) -> Result<(), Error> {
    sqlx::query!("DELETE FROM sessions WHERE expires_at < now()")
        .execute(&mut *conn)
        .await?;
    sqlx::query!("DELETE FROM login_attempts WHERE created_at < now() - interval '1 hour'")
        .execute(conn)
        .await?;
    Ok(())
}

pub struct LoginAttempt {
    pub pkce_verifier: String,
    pub nonce: String,
    pub return_to: String,
}

pub async fn insert_login(
    conn: &mut PgConnection,
    state: &str,
    pkce_verifier: &str,
    nonce: &str,
    return_to: &str,
) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO login_attempts (state, pkce_verifier, nonce, return_to) VALUES ($1, $2, $3, $4)",
        state,
        pkce_verifier,
        nonce,
        return_to
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes the login with this state, once: a replayed state finds nothing.
/// Logins older than ten minutes have expired.
pub async fn take_login(
    conn: &mut PgConnection,
    state: &str,
) -> Result<Option<LoginAttempt>, Error> {
    Ok(sqlx::query_as!(
        LoginAttempt,
        "DELETE FROM login_attempts WHERE state = $1 AND created_at > now() - interval '10 minutes'
         RETURNING pkce_verifier, nonce, return_to",
        state
    )
    .fetch_optional(conn)
    .await?)
}
