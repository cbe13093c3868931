//! What the doors share: the portal's infrastructure (`AppState`), the
//! request id, and what signing in needs of it. The doors (`api/`, `web/`,
//! `gateway/`) name this module; it names none of them, so the state holds
//! no door's caches (each door keeps its own, in its router).

use std::sync::Arc;

use axum::extract::FromRef;
use axum::http::HeaderName;
use sqlx::PgPool;

use crate::auth::AuthParts;
use crate::cluster::Clusters;
use crate::config::ServeConfig;
use crate::error::Error;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of this request, as set by the request-id layer.
#[derive(Debug, Clone)]
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .headers
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ))
    }
}

impl RequestId {
    /// Who asked, for the audit trail.
    pub fn actor(&self, who: &crate::auth::Principal) -> crate::service::Actor {
        crate::service::Actor::of(who, self.0.clone())
    }
}

/// What every handler can reach: the portal's infrastructure. Each door
/// keeps its own caches (the API's change streams and list JSON, the tenant
/// API's clients and shares) in its own router.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<ServeConfig>,
    pub clusters: Clusters,
    /// Employee login; `None` when no identity provider is configured.
    pub login: Option<Arc<crate::auth::oidc::Login>>,
    /// Wakes requests waiting for tenants to change.
    pub events: crate::events::EventHub,
}

/// Signing in and telling who calls need the database, the configuration
/// and the identity provider, and nothing of any door.
impl FromRef<AppState> for AuthParts {
    fn from_ref(app: &AppState) -> Self {
        AuthParts {
            db: app.db.clone(),
            config: app.config.clone(),
            login: app.login.clone(),
        }
    }
}

impl AppState {
    /// Where kubeconfigs send kubectl, with the CA to trust, read now so a
    /// renewed CA file is what the next download carries.
    pub fn public_endpoint(&self) -> Result<crate::service::kubeconfig::PublicEndpoint<'_>, Error> {
        let ca_data = self.config.tls.ca_data().map_err(Error::Internal)?;
        Ok(crate::service::kubeconfig::PublicEndpoint {
            url: &self.config.login.public_url,
            ca_data,
        })
    }
}
