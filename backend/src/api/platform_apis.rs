//! `/platform-apis`: the catalog of platform APIs, namespaced resources of
//! the clusters' custom API groups that platform admins publish to tenants.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ApiJson, RequestId};
use crate::auth::Principal;
use crate::error::Error;
use crate::service::platform_apis::{self, Publication, Published};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(publish, withdraw))
}

/// One published API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlatformApiView {
    /// `<resource>.<group>`, as `kubectl api-resources` names it.
    #[schema(example = "certificates.cert-manager.io")]
    pub name: String,
    #[schema(example = "cert-manager.io")]
    pub group: String,
    #[schema(example = "certificates")]
    pub resource: String,
    pub description: String,
    /// The tenants it is published to, by slug; `null`: every tenant.
    pub tenants: Option<Vec<String>>,
    pub published_by: String,
    pub published_at: DateTime<Utc>,
}

impl From<Published> for PlatformApiView {
    fn from(p: Published) -> Self {
        Self {
            name: p.api.to_string(),
            group: p.api.group,
            resource: p.api.resource,
            description: p.description,
            tenants: p.tenants,
            published_by: p.published_by,
            published_at: p.published_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlatformApiList {
    pub platform_apis: Vec<PlatformApiView>,
}

/// A publication: to whom, and what it is for.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicationInput {
    /// What tenants use it for; at most 500 characters.
    #[serde(default)]
    pub description: String,
    /// The tenants to publish it to, by slug; left out or `null`: every tenant.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
}

/// A published API and, per connected cluster, whether it serves it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishedAnswer {
    #[serde(flatten)]
    pub api: PlatformApiView,
    /// Per cluster: `null` when it serves the resource, else why not
    /// (tenants on that cluster cannot use it until it does).
    pub clusters: BTreeMap<String, Option<String>>,
}

/// Every published API (platform admins).
#[utoipa::path(get, path = "/platform-apis", tag = "platform-apis",
    responses((status = 200, description = "The catalog", body = PlatformApiList)))]
async fn list(State(app): State<AppState>, who: Principal) -> Result<Json<PlatformApiList>, Error> {
    let mut conn = app.db.acquire().await?;
    let published = platform_apis::list(&mut conn, &who).await?;
    Ok(Json(PlatformApiList {
        platform_apis: published.into_iter().map(PlatformApiView::from).collect(),
    }))
}

/// Publish a namespaced resource of a custom API group to every tenant or
/// to a list (platform admins); again, to change to whom. Tenants' roles
/// use it as their role allows (RBAC: the cluster's roles for the resource)
/// once their namespaces carry the new list (a check of each is queued).
#[utoipa::path(put, path = "/platform-apis/{api}", tag = "platform-apis",
    params(("api" = String, Path, description = "`<resource>.<group>`, such as certificates.cert-manager.io")),
    request_body = PublicationInput,
    responses((status = 200, description = "Published", body = PublishedAnswer)))]
async fn publish(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PublicationInput>,
) -> Result<Json<PublishedAnswer>, Error> {
    let publication = Publication {
        description: body.description,
        tenants: body.tenants,
    };
    let (published, clusters) = platform_apis::publish(
        &app.db,
        &app.clusters,
        &who,
        &request_id.actor(&who),
        &name,
        &publication,
    )
    .await?;
    Ok(Json(PublishedAnswer {
        api: published.into(),
        clusters,
    }))
}

/// Withdraw a published API (platform admins): tenants can no longer create
/// or change its objects; they may still delete them.
#[utoipa::path(delete, path = "/platform-apis/{api}", tag = "platform-apis",
    params(("api" = String, Path, description = "`<resource>.<group>`")),
    responses((status = 204, description = "Withdrawn")))]
async fn withdraw(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(name): Path<String>,
) -> Result<StatusCode, Error> {
    platform_apis::withdraw(&app.db, &who, &request_id.actor(&who), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
