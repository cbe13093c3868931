use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::answer::tenant_response;
use super::extract::{ApiJson, IfMatch, RequestId};
use super::model::{CreateMember, Member, TenantAnswer, TenantItems, UpdateMember};
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::error::Error;
use crate::service::{self, access};
use crate::state::AppState;

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
    let tenant = access::view_authorized(&mut conn, &who, &slug, Action::ReadTenants).await?;
    Ok(axum::Json(TenantItems {
        items: tenant.members.into_iter().map(Member::from).collect(),
        generation: tenant.generation,
        sync: tenant.sync.into(),
    }))
}

/// Give a user or an IdP group a role in the tenant.
#[utoipa::path(post, path = "/tenants/{slug}/members", tag = "members",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read"),
           ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key get the first answer")),
    request_body = CreateMember,
    responses((status = 201, description = "The tenant with its new member", body = TenantAnswer)))]
async fn add(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateMember>,
) -> Result<Response, Error> {
    let tenant = service::members::add(
        &app.db,
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
        body.kind,
        &body.subject,
        body.role,
    )
    .await?;
    Ok(tenant_response(StatusCode::CREATED, &who, tenant))
}

/// Change a member's role.
#[utoipa::path(patch, path = "/tenants/{slug}/members/{id}", tag = "members",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("id" = i64, Path, description = "The member's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    request_body = UpdateMember,
    responses((status = 200, description = "The tenant with the changed member", body = TenantAnswer)))]
async fn update(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path((slug, id)): Path<(String, i64)>,
    ApiJson(body): ApiJson<UpdateMember>,
) -> Result<Response, Error> {
    let tenant = service::members::set_role(
        &app.db,
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
        id,
        body.role,
    )
    .await?;
    Ok(tenant_response(StatusCode::OK, &who, tenant))
}

/// Take a member's role away.
#[utoipa::path(delete, path = "/tenants/{slug}/members/{id}", tag = "members",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("id" = i64, Path, description = "The member's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, description = "The tenant without the member", body = TenantAnswer)))]
async fn remove(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path((slug, id)): Path<(String, i64)>,
) -> Result<Response, Error> {
    let tenant = service::members::remove(
        &app.db,
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
        id,
    )
    .await?;
    Ok(tenant_response(StatusCode::OK, &who, tenant))
}
