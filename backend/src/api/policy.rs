//! `GET|PUT|DELETE /tenants/{slug}/policy`: what a tenant may do inside its
//! namespaces. Members read it; only platform admins change it. The rules
//! are in `service::policy`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ApiJson, IfMatch, RequestId};
use crate::auth::Principal;
use crate::domain::TenantPolicy;
use crate::domain::tenant_policy::PolicyDocument;
use crate::error::Error;
use crate::service::policy::{self, PolicyInForce, Source};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get, put, reset))
}

/// Where a tenant's policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicySource {
    /// The configuration's default (`--pod-security`, `--allowed-service-types`).
    Default,
    /// Set for this tenant by a platform admin.
    Custom,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyView {
    pub tenant: String,
    pub policy: TenantPolicy,
    pub source: PolicySource,
    /// The tenant's generation after the change; the reconciler reports it
    /// as observed once the cluster holds it.
    pub generation: i64,
}

impl From<PolicyInForce> for PolicyView {
    fn from(p: PolicyInForce) -> Self {
        Self {
            tenant: p.tenant,
            policy: p.policy,
            source: match p.source {
                Source::Default => PolicySource::Default,
                Source::Custom => PolicySource::Custom,
            },
            generation: p.generation,
        }
    }
}

/// The tenant's policy.
#[utoipa::path(get, path = "/tenants/{slug}/policy", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug")),
    responses((status = 200, description = "The policy in force", body = PolicyView)))]
async fn get(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
) -> Result<Json<PolicyView>, Error> {
    let mut conn = app.db.acquire().await?;
    let view = policy::read(&mut conn, &app.config.guardrails, &who, &slug).await?;
    Ok(Json(view.into()))
}

/// Set the tenant's policy (platform admins). Fields left out keep their
/// current value; `null` for a list means "any".
#[utoipa::path(put, path = "/tenants/{slug}/policy", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    request_body = PolicyDocument,
    responses((status = 200, description = "The policy now in force", body = PolicyView)))]
async fn put(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
    ApiJson(document): ApiJson<PolicyDocument>,
) -> Result<Json<PolicyView>, Error> {
    let view = policy::set(
        &app.db,
        &app.config.guardrails,
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
        &document,
    )
    .await?;
    Ok(Json(view.into()))
}

/// Back to the configured default (platform admins).
#[utoipa::path(delete, path = "/tenants/{slug}/policy", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, description = "The default policy, now in force", body = PolicyView)))]
async fn reset(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
) -> Result<Json<PolicyView>, Error> {
    let view = policy::reset(
        &app.db,
        &app.config.guardrails,
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
    )
    .await?;
    Ok(Json(view.into()))
}
