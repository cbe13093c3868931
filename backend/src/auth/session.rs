//! Server-side sessions: the browser holds an opaque random cookie; the
//! database holds its SHA-256 with who signed in and the session's CSRF token.

use axum::http::{HeaderMap, HeaderValue, header::COOKIE};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use rand::RngExt;
use sha2::{Digest, Sha256};

use super::AuthParts;
use super::User;
use super::oidc::Identity;
use crate::db::{self, sessions::NewSession};
use crate::error::Error;

pub const SESSION_COOKIE: &str = "tp_session";
/// Binds a login in flight to the browser that started it.
pub const LOGIN_COOKIE: &str = "tp_login";

pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(cookie: &str) -> Vec<u8> {
    Sha256::digest(cookie.as_bytes()).to_vec()
}

/// The value of one cookie in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

pub fn from_cookies(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
pub fn set_cookie(
    app: &AuthParts,
    name: &str,
    value: &str,
    max_age: u64,
    path: &str,
) -> HeaderValue {
    let secure = if app.config.login.cookies_secure() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Starts a new session (never reusing an old id) and returns the cookie value.
pub async fn create(app: &AuthParts, identity: &Identity) -> Result<String, Error> {
    let cookie = random_secret();
    let lifetime = chrono::Duration::from_std(app.config.login.session_lifetime)
        .map_err(|e| Error::Internal(anyhow::anyhow!("session lifetime: {e}")))?;
    let mut conn = app.db.acquire().await?;
    db::sessions::insert(
        &mut conn,
        NewSession {
            id_hash: &hash(&cookie),
            subject: &identity.subject,
            email: &identity.email,
            name: &identity.name,
            groups: &identity.groups,
            csrf_token: &random_secret(),
            expires_at: Utc::now() + lifetime,
        },
    )
    .await?;
    Ok(cookie)
}

/// The user behind a session cookie, if the session is live.
pub async fn find(app: &AuthParts, cookie: &str) -> Result<Option<User>, Error> {
    let id_hash = hash(cookie);
    let idle = app.config.login.session_idle_timeout.as_secs_f64();
    let mut conn = app.db.acquire().await?;
    let Some(row) = db::sessions::find_live(&mut conn, &id_hash, idle).await? else {
        return Ok(None);
    };
    // A minute's resolution keeps reads from writing on every request.
    if Utc::now() - row.last_seen_at > chrono::Duration::minutes(1) {
        db::sessions::touch(&mut conn, &id_hash).await?;
    }
    let admin = row
        .groups
        .iter()
        .any(|g| app.config.login.admin_groups.contains(g));
    Ok(Some(User {
        subject: row.subject,
        email: row.email,
        name: row.name,
        groups: row.groups,
        admin,
        csrf_token: row.csrf_token,
    }))
}

/// Whether the session behind a cookie is live, without counting this as a
/// use: a long-open change stream must not keep an unattended session from
/// idling out.
pub async fn is_live(app: &AuthParts, cookie: &str) -> Result<bool, Error> {
    let idle = app.config.login.session_idle_timeout.as_secs_f64();
    let mut conn = app.db.acquire().await?;
    Ok(db::sessions::find_live(&mut conn, &hash(cookie), idle)
        .await?
        .is_some())
}

pub async fn end(app: &AuthParts, cookie: &str) -> Result<(), Error> {
    let mut conn = app.db.acquire().await?;
    db::sessions::delete(&mut conn, &hash(cookie)).await
}
