use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::change::{Actor, TenantChange, tenant_response, view_authorized};
use super::extract::{ApiJson, IfMatch, RequestId};
use super::model::{CreateMember, Member, Tenant, TenantItems, UpdateMember};
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::db;
use crate::error::Error;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(update, remove))
}

/// The users and IdP groups with a role in the tenant.
#[utoipa::path(get, path = "/tenants/{slug}/members", tag = "members",
    params(("slug" = String, Path, description = "The tenant's slug")),
    responses((status = 200, description = "The members", body = TenantItems<Member>)))]
async fn list(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
) -> Result<axum::Json<TenantItems<Member>>, Error> {
    precheck(&who, Action::ReadTenants)?;
    let mut conn = app.db.acquire().await?;
    let tenant = view_authorized(&mut conn, &who, &slug, Action::ReadTenants).await?;
    Ok(axum::Json(TenantItems {
        items: tenant.members,
        generation: tenant.generation,
        sync: tenant.sync,
    }))
}

/// Give a user or an IdP group a role in the tenant.
#[utoipa::path(post, path = "/tenants/{slug}/members", tag = "members",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read"),
           ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key get the first answer")),
    request_body = CreateMember,
    responses((status = 201, description = "The tenant with its new member", body = Tenant)))]
pub(crate) async fn add(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateMember>,
) -> Result<Response, Error> {
    precheck(&who, Action::EditTenant)?;
    let subject = body.kind.parse_subject(&body.subject)?;
    let mut change = TenantChange::begin(&app.db, &slug, &precondition).await?;
    change.authorize(&who, Action::EditTenant)?;
    change.require_editable()?;
    let id = change.tenant.id;
    db::members::insert(&mut change.tx, id, body.kind, &subject, body.role).await?;
    let tenant = change
        .commit(&Actor::of(&who, &request_id), "member.added")
        .await?;
    Ok(tenant_response(StatusCode::CREATED, tenant))
}

fn find_member(tenant: &Tenant, id: i64) -> Result<(), Error> {
    if tenant.members.iter().any(|m| m.id == id) {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "the tenant \"{}\" has no member {id}",
            tenant.slug
        )))
    }
}

/// Change a member's role.
#[utoipa::path(patch, path = "/tenants/{slug}/members/{id}", tag = "members",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("id" = i64, Path, description = "The member's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    request_body = UpdateMember,
    responses((status = 200, description = "The tenant with the changed member", body = Tenant)))]
async fn update(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path((slug, id)): Path<(String, i64)>,
    ApiJson(body): ApiJson<UpdateMember>,
) -> Result<Response, Error> {
    precheck(&who, Action::EditTenant)?;
    let mut change = TenantChange::begin(&app.db, &slug, &precondition).await?;
    change.authorize(&who, Action::EditTenant)?;
    change.require_editable()?;
    find_member(change.before(), id)?;
    db::members::set_role(&mut change.tx, id, body.role).await?;
    let tenant = change
        .commit(&Actor::of(&who, &request_id), "member.role_changed")
        .await?;
    Ok(tenant_response(StatusCode::OK, tenant))
}

/// Take a member's role away.
#[utoipa::path(delete, path = "/tenants/{slug}/members/{id}", tag = "members",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("id" = i64, Path, description = "The member's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, description = "The tenant without the member", body = Tenant)))]
pub(crate) async fn remove(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path((slug, id)): Path<(String, i64)>,
) -> Result<Response, Error> {
    precheck(&who, Action::EditTenant)?;
    let mut change = TenantChange::begin(&app.db, &slug, &precondition).await?;
    change.authorize(&who, Action::EditTenant)?;
    change.require_editable()?;
    find_member(change.before(), id)?;
    db::members::delete(&mut change.tx, id).await?;
    let tenant = change
        .commit(&Actor::of(&who, &request_id), "member.removed")
        .await?;
    Ok(tenant_response(StatusCode::OK, tenant))
}
