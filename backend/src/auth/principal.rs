use std::fmt;
use std::str::FromStr;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, ORIGIN};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AuthParts;
use super::session;
use super::tokens::TokenSecret;
use crate::db;
use crate::error::Error;

/// What a service token or machine client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    /// Read tenants, their namespaces, members, usage and the audit trail.
    #[serde(rename = "tenants:read")]
    TenantsRead,
    /// Create, change and delete tenants, namespaces, allocations and members.
    #[serde(rename = "tenants:write")]
    TenantsWrite,
    /// Change tenant budgets.
    #[serde(rename = "quota:write")]
    QuotaWrite,
    /// Everything, including suspending tenants.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Self::TenantsRead,
        Self::TenantsWrite,
        Self::QuotaWrite,
        Self::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantsRead => "tenants:read",
            Self::TenantsWrite => "tenants:write",
            Self::QuotaWrite => "quota:write",
            Self::Admin => "admin",
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scope \"{s}\"; use tenants:read, tenants:write, quota:write or admin"
                )
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An employee signed in through the identity provider.
#[derive(Debug, Clone)]
pub struct User {
    pub subject: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
    /// In one of the configured platform-admin groups.
    pub admin: bool,
    /// Must accompany every state-changing request of this session.
    pub csrf_token: String,
}

/// The tenants a service token or machine client may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every tenant: an explicit grant by a platform admin.
    All,
    /// The tenants it created and, for a token, those named on it (slugs,
    /// read when the request was authenticated).
    Only(Vec<String>),
}

impl Reach {
    pub fn covers(&self, slug: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(slugs) => slugs.iter().any(|s| s == slug),
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An internal platform with a service token.
    ServiceToken {
        id: i64,
        name: String,
        scopes: Vec<Scope>,
        reach: Reach,
    },
    /// A machine client with an OAuth2 client-credentials token from the IdP.
    Machine {
        client_id: String,
        scopes: Vec<Scope>,
        reach: Reach,
    },
    /// An employee with a browser session.
    User(User),
}

impl Principal {
    /// How the audit trail names this caller.
    pub fn actor(&self) -> String {
        match self {
            Self::ServiceToken { name, .. } => format!("token:{name}"),
            Self::Machine { client_id, .. } => format!("client:{client_id}"),
            Self::User(user) => format!("user:{}", user.email),
        }
    }

    /// A stable key for per-caller records such as idempotency keys.
    pub fn key(&self) -> String {
        match self {
            Self::ServiceToken { id, .. } => format!("token:{id}"),
            Self::Machine { client_id, .. } => format!("client:{client_id}"),
            Self::User(user) => format!("user:{}", user.subject),
        }
    }
}

impl Principal {
    /// Who the credentials in these headers (a bearer token or a session
    /// cookie) name, if they are valid now. Checking CSRF is the caller's
    /// business: see the extractor.
    pub async fn authenticate(headers: &HeaderMap, app: &AuthParts) -> Result<Self, Error> {
        if let Some(header) = headers.get(AUTHORIZATION) {
            return bearer(header.to_str().unwrap_or(""), app).await;
        }
        let Some(cookie) = session::from_cookies(headers) else {
            return Err(Error::Unauthorized(
                "sign in at /auth/login, or send Authorization: Bearer <token> with a service token".into(),
            ));
        };
        let user = session::find(app, &cookie).await?.ok_or_else(|| {
            Error::Unauthorized(
                "your session has expired or ended; sign in again at /auth/login".into(),
            )
        })?;
        Ok(Self::User(user))
    }

    /// Whether the credentials in these headers are still valid: a token
    /// not revoked or expired, a session not ended or idle. Checking a
    /// session this way does not count as using it.
    pub async fn still_valid(headers: &HeaderMap, app: &AuthParts) -> Result<(), Error> {
        if headers.contains_key(AUTHORIZATION) {
            return Self::authenticate(headers, app).await.map(|_| ());
        }
        match session::from_cookies(headers) {
            Some(cookie) if session::is_live(app, &cookie).await? => Ok(()),
            _ => Err(Error::Unauthorized(
                "the session has expired or ended".into(),
            )),
        }
    }
}

impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync,
    AuthParts: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        if let Some(known) = parts.extensions.get::<Principal>() {
            return Ok(known.clone());
        }
        let auth = AuthParts::from_ref(state);
        let principal = Self::authenticate(&parts.headers, &auth).await?;
        if let Principal::User(user) = &principal {
            check_csrf(parts, &auth, user)?;
        }
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

async fn bearer(header: &str, app: &AuthParts) -> Result<Principal, Error> {
    let presented = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            Error::Unauthorized("the Authorization header must be \"Bearer <token>\"".into())
        })?;
    if let Some(secret) = TokenSecret::parse(presented) {
        return db::tokens::authenticate(&app.db, &secret).await;
    }
    if presented.split('.').count() == 3
        && let Some(login) = &app.login
    {
        let mut principal = login.machine_principal(presented).await?;
        if let Principal::Machine {
            client_id,
            reach: reach @ Reach::Only(_),
            ..
        } = &mut principal
        {
            let mut conn = app.db.acquire().await?;
            let key = format!("client:{client_id}");
            *reach = Reach::Only(db::reach::reachable(&mut conn, &key, None).await?);
        }
        return Ok(principal);
    }
    Err(Error::Unauthorized("the bearer token is neither a tenant-portal service token nor an access token of the identity provider".into()))
}

/// A request that changes state with a session cookie must carry the
/// session's CSRF token (header `X-CSRF-Token`) or come from the portal's own
/// origin, so another site cannot make a signed-in browser act.
fn check_csrf(parts: &Parts, app: &AuthParts, user: &User) -> Result<(), Error> {
    if parts.method.is_safe() {
        return Ok(());
    }
    let token_ok = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| super::constant_time_eq(t, &user.csrf_token));
    let origin_ok = parts
        .headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| origin == app.config.login.public_origin());
    if token_ok || origin_ok {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "this request changes state but carries no valid CSRF token (X-CSRF-Token) and does not come from the portal's own pages".into(),
        ))
    }
}
