//! The first answer to a POST with an `Idempotency-Key`, kept for replay.

use sqlx::PgPool;

use crate::error::Error;

/// What became of a key when a request claimed it.
pub enum Claim {
    /// The key is new: this request runs, then stores its answer.
    Fresh,
    /// A request with this key is still running.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
    /// The answer to replay.
    Done {
        status: u16,
        headers: serde_json::Value,
        body: serde_json::Value,
    },
}

pub async fn claim(
    pool: &PgPool,
    principal: &str,
    key: &str,
    fingerprint: &[u8],
) -> Result<Claim, Error> {
    let inserted = sqlx::query!(
        "INSERT INTO idempotency_keys (principal, key, fingerprint) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        principal,
        key,
        fingerprint
    )
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Fresh);
    }
    let row = sqlx::query!(
        "SELECT fingerprint, status, headers, body FROM idempotency_keys WHERE principal = $1 AND key = $2",
        principal,
        key
    )
    .fetch_one(pool)
    .await?;
    Ok(
        match (
            row.fingerprint == fingerprint,
            row.status,
            row.headers,
            row.body,
        ) {
            (false, ..) => Claim::Mismatch,
            (true, Some(status), Some(headers), Some(body)) => Claim::Done {
                status: status as u16,
                headers,
                body,
            },
            _ => Claim::InFlight,
        },
    )
}

pub async fn complete(
    pool: &PgPool,
    principal: &str,
    key: &str,
    status: u16,
    headers: &serde_json::Value,
    body: &serde_json::Value,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE idempotency_keys SET status = $3, headers = $4, body = $5 WHERE principal = $1 AND key = $2",
        principal,
        key,
        status as i16,
        headers,
        body
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Frees a key whose request failed on the server's side, so a retry runs again.
pub async fn release(pool: &PgPool, principal: &str, key: &str) -> Result<(), Error> {
    sqlx::query!(
        "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2",
        principal,
        key
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets keys older than `ttl`.
pub async fn expire(pool: &PgPool, ttl: std::time::Duration) -> Result<u64, Error> {
    let seconds = ttl.as_secs_f64();
    let done = sqlx::query!(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        seconds
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
