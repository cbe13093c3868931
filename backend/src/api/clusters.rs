//! `GET /clusters`, `PUT /clusters/{name}/capacity`: the clusters tenants
//! live on, what each holds and what an admin declared it can hold.

use axum::Json;
use axum::extract::{Path, State};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ApiJson, RequestId};
use crate::auth::Principal;
use crate::error::Error;
use crate::service::clusters::{self, CapacityRequest, ClusterView};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(set_capacity))
}

/// The clusters tenants live on: health, tenants, namespaces and budgets
/// placed, and declared capacity.
#[utoipa::path(get, path = "/clusters", tag = "clusters",
    responses((status = 200, description = "The clusters", body = Vec<ClusterView>)))]
async fn list(
    State(app): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<ClusterView>>, Error> {
    Ok(Json(
        clusters::list(&app.db, &app.config, &app.clusters, &who).await?,
    ))
}

/// Declare what a cluster can hold (platform admins): namespaces, and the
/// CPU and memory requests its tenants' budgets may promise in all. New
/// tenants are placed only where they fit; a namespace or budget rise past
/// it gets 409.
#[utoipa::path(put, path = "/clusters/{name}/capacity", tag = "clusters",
    params(("name" = String, Path, description = "A configured cluster")),
    request_body = CapacityRequest,
    responses((status = 200, description = "The cluster with its new capacity", body = ClusterView)))]
async fn set_capacity(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<CapacityRequest>,
) -> Result<Json<ClusterView>, Error> {
    let actor = request_id.actor(&who);
    Ok(Json(
        clusters::set_capacity(
            &app.db,
            &app.config,
            &app.clusters,
            &who,
            &actor,
            &name,
            &body,
        )
        .await?,
    ))
}
