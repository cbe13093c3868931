//! `POST /tenants/{slug}:suspend` and `:resume`. The router cannot match a
//! suffix after a path parameter, so one route takes `{slug}:{verb}` apart.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::change::{Actor, TenantChange, tenant_response};
use super::extract::{IfMatch, RequestId};
use super::model::Tenant;
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::db;
use crate::domain::TenantState;
use crate::error::Error;

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
    let (from, to, action) = match verb {
        "suspend" => (
            TenantState::Active,
            TenantState::Suspended,
            "tenant.suspended",
        ),
        "resume" => (
            TenantState::Suspended,
            TenantState::Active,
            "tenant.resumed",
        ),
        _ => {
            return Err(Error::NotFound(format!(
                "there is no action \":{verb}\"; use :suspend or :resume"
            )));
        }
    };
    precheck(&who, Action::SuspendTenant)?;
    let mut change = TenantChange::begin(&app.db, slug, &precondition).await?;
    change.authorize(&who, Action::SuspendTenant)?;
    change.require_editable()?;
    let state = change.tenant.state();
    if state == to {
        // Already there: nothing changes, nothing is recorded.
        let tenant = change.before().clone();
        return Ok(tenant_response(StatusCode::OK, tenant));
    }
    debug_assert_eq!(state, from);
    let id = change.tenant.id;
    db::tenants::set_state(&mut change.tx, id, to).await?;
    let tenant = change.commit(&Actor::of(&who, &request_id), action).await?;
    Ok(tenant_response(StatusCode::OK, tenant))
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
