use axum::Json;
use axum::extract::State;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::model::ClusterInfo;
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize};
use crate::db;
use crate::error::Error;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// The clusters tenants live on, their health and how many tenants each holds.
#[utoipa::path(get, path = "/clusters", tag = "clusters",
    responses((status = 200, description = "The clusters", body = Vec<ClusterInfo>)))]
async fn list(
    State(app): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<ClusterInfo>>, Error> {
    authorize(&who, Action::ReadClusters)?;
    let mut conn = app.db.acquire().await?;
    let counts = db::tenants::count_by_cluster(&mut conn).await?;
    let clusters = app
        .config
        .cluster_names()
        .into_iter()
        .map(|name| {
            let health = app
                .clusters
                .get(name)
                .map(|c| c.health())
                .unwrap_or_default();
            ClusterInfo {
                name: name.to_string(),
                reachable: health.reachable,
                last_error: health.last_error,
                checked_at: health.checked_at,
                tenants: counts
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, count)| *count),
            }
        })
        .collect();
    Ok(Json(clusters))
}
