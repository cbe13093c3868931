//! `/tenants/{slug}/gitops`: the tenant's GitOps credentials, an Argo CD
//! cluster Secret and/or a Flux kubeconfig Secret the portal keeps on the
//! management cluster, pointing at the tenant API with a rotated token.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ApiJson, RequestId};
use crate::auth::Principal;
use crate::error::Error;
use crate::service::gitops::{self, GitopsStatus, Tools};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get, put))
}

/// Which GitOps tools the tenant keeps a credential for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GitopsInput {
    /// An Argo CD cluster Secret (`argocd.argoproj.io/secret-type: cluster`).
    pub argocd: bool,
    /// A Flux kubeconfig Secret (the kubeconfig under the key `value`).
    pub flux: bool,
}

/// A Secret the portal keeps for the tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GitopsSecret {
    /// `argocd` or `flux`.
    #[schema(example = "argocd")]
    pub tool: String,
    #[schema(example = "tenant-acme-argocd")]
    pub name: String,
}

/// The tenant's GitOps credentials and how keeping them goes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GitopsView {
    pub argocd: bool,
    pub flux: bool,
    /// The cluster and namespace the Secrets are kept in; `null` when this
    /// portal keeps no GitOps credentials (`--gitops-cluster` unset).
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub secrets: Vec<GitopsSecret>,
    /// The tenant API the Secrets point at.
    #[schema(example = "https://portal.example.com/k8s/tenants/acme")]
    pub server: String,
    /// When the token in the Secrets expires; a new one is written when a
    /// third of its lifetime is left.
    pub token_expires_at: Option<DateTime<Utc>>,
    /// Since when the Secrets have said what they should; `null` while they
    /// are being written or cannot be.
    pub kept_at: Option<DateTime<Utc>>,
    /// Why they could not be kept the last time, if they could not.
    pub error: Option<String>,
    pub requested_by: Option<String>,
}

impl From<GitopsStatus> for GitopsView {
    fn from(s: GitopsStatus) -> Self {
        Self {
            argocd: s.tools.argocd,
            flux: s.tools.flux,
            cluster: s.cluster,
            namespace: s.namespace,
            secrets: s
                .secrets
                .into_iter()
                .map(|r| GitopsSecret {
                    tool: r.tool.to_string(),
                    name: r.name,
                })
                .collect(),
            server: s.server,
            token_expires_at: s.token_expires_at,
            kept_at: s.kept_at,
            error: s.error,
            requested_by: s.requested_by,
        }
    }
}

/// The tenant's GitOps credentials (any member).
#[utoipa::path(get, path = "/tenants/{slug}/gitops", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug")),
    responses((status = 200, description = "Which Secrets are kept, where, and how it goes", body = GitopsView)))]
async fn get(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
) -> Result<Json<GitopsView>, Error> {
    let status = gitops::status(
        &app.db,
        &who,
        &slug,
        &app.config.gitops,
        &app.config.login.public_url,
    )
    .await?;
    Ok(Json(status.into()))
}

/// Choose the GitOps credentials the portal keeps for the tenant (owners).
/// The Secrets appear on the management cluster within seconds; `false`
/// for both removes them and revokes their token (a replica of the tenant
/// API that checked it in the last 30 s may still take it until then).
#[utoipa::path(put, path = "/tenants/{slug}/gitops", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug")),
    request_body = GitopsInput,
    responses((status = 200, description = "The choice, recorded", body = GitopsView),
              (status = 409, description = "This portal keeps no GitOps credentials, or the tenant is being deleted")))]
async fn put(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(slug): Path<String>,
    ApiJson(input): ApiJson<GitopsInput>,
) -> Result<Json<GitopsView>, Error> {
    let status = gitops::set(
        &app.db,
        &who,
        &request_id.actor(&who),
        &slug,
        Tools {
            argocd: input.argocd,
            flux: input.flux,
        },
        &app.config.gitops,
        &app.config.login.public_url,
    )
    .await?;
    Ok(Json(status.into()))
}
