use std::fmt;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::db;
use crate::error::Error;

use super::tokens::TokenSecret;

/// What a service token may do.
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

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An internal platform with a service token.
    ServiceToken {
        id: i64,
        name: String,
        scopes: Vec<Scope>,
    },
}

impl Principal {
    /// How the audit trail names this caller.
    pub fn actor(&self) -> String {
        match self {
            Self::ServiceToken { name, .. } => format!("token:{name}"),
        }
    }

    /// A stable key for per-caller records such as idempotency keys.
    pub fn key(&self) -> String {
        match self {
            Self::ServiceToken { id, .. } => format!("token:{id}"),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Error> {
        if let Some(known) = parts.extensions.get::<Principal>() {
            return Ok(known.clone());
        }
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            Error::Unauthorized(
                "this API needs a service token: send Authorization: Bearer <token>".into(),
            )
        })?;
        let presented = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                Error::Unauthorized("the Authorization header must be \"Bearer <token>\"".into())
            })?;
        let secret = TokenSecret::parse(presented.trim()).ok_or_else(|| {
            Error::Unauthorized("the bearer token is not a tenant-portal service token".into())
        })?;
        let principal = db::tokens::authenticate(&app.db, &secret).await?;
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}
