//! `POST /tenants/{slug}:suspend` and `:resume`. The router cannot match a
//! suffix after a path parameter, so one route takes `{slug}:{verb}` apart.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::answer::tenant_response;
use super::extract::{IfMatch, RequestId};
use super::model::Tenant;
use crate::auth::Principal;
use crate::error::Error;
use crate::service::lifecycle::{self, Transition};
use crate::state::AppState;

pub async fn dispatch(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(target): Path<String>,
) -> Result<Response, Error> {
    let (slug, verb) = target.split_once(':').ok_or_else(|| {
        Error::MethodNotAllowed(format!(
            "POST is not allowed on /api/v1/tenants/{target}; use POST /api/v1/tenants/{target}:suspend or :resume"
        ))
    })?;
    let transition = match verb {
        "suspend" => Transition::Suspend,
        "resume" => Transition::Resume,
        _ => {
            return Err(Error::NotFound(format!(
                "there is no action \":{verb}\"; use :suspend or :resume"
            )));
        }
    };
    let tenant = lifecycle::transition(
        &app.db,
        &who,
        &request_id.actor(&who),
        slug,
        &precondition.precondition(),
        transition,
    )
    .await?;
    Ok(tenant_response(StatusCode::OK, &who, tenant))
}

/// Suspend a tenant: its objects stay, but its quota allows no pods and its
/// members can only read.
#[utoipa::path(post, path = "/tenants/{slug}:suspend", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, description = "The suspended tenant", body = Tenant)))]
#[allow(dead_code)]
pub fn suspend() {}

/// Resume a suspended tenant.
#[utoipa::path(post, path = "/tenants/{slug}:resume", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, description = "The active tenant", body = Tenant)))]
#[allow(dead_code)]
pub fn resume() {}
