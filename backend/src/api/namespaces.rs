use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::answer::tenant_response;
use super::extract::{ApiJson, IfMatch, RequestId};
use super::model::{CreateNamespace, Namespace, TenantAnswer, TenantItems, UpdateNamespace};
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::error::Error;
use crate::service::{self, access};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(update, delete))
}

/// The tenant's namespaces and their allocations.
#[utoipa::path(get, path = "/tenants/{slug}/namespaces", tag = "namespaces",
    params(("slug" = String, Path, description = "The tenant's slug")),
    responses((status = 200, description = "The namespaces", body = TenantItems<Namespace>)))]
async fn list(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
) -> Result<axum::Json<TenantItems<Namespace>>, Error> {
    precheck(&who, Action::ReadTenants)?;
    let mut conn = app.db.acquire().await?;
    let tenant = access::view_authorized(&mut conn, &who, &slug, Action::ReadTenants).await?;
    Ok(axum::Json(TenantItems {
        items: tenant.namespaces.into_iter().map(Namespace::from).collect(),
        generation: tenant.generation,
        sync: tenant.sync.into(),
    }))
}

/// Add a namespace with its share of the budget.
#[utoipa::path(post, path = "/tenants/{slug}/namespaces", tag = "namespaces",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read"),
           ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key get the first answer")),
    request_body = CreateNamespace,
    responses((status = 201, description = "The tenant with its new namespace", body = TenantAnswer)))]
async fn create(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateNamespace>,
) -> Result<Response, Error> {
    let tenant = service::namespaces::create(
        &app.db,
        &app.clusters,
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
        service::namespaces::NewNamespace {
            name: &body.name,
            allocations: &body.allocations,
        },
    )
    .await?;
    let name = &body.name;
    let mut response = tenant_response(StatusCode::CREATED, &who, tenant);
    if let Ok(location) =
        HeaderValue::from_str(&format!("/api/v1/tenants/{slug}/namespaces/{name}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Replace a namespace's allocations.
#[utoipa::path(patch, path = "/tenants/{slug}/namespaces/{name}", tag = "namespaces",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("name" = String, Path, description = "The namespace's short name"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    request_body = UpdateNamespace,
    responses((status = 200, description = "The tenant with the new allocations", body = TenantAnswer)))]
async fn update(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path((slug, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateNamespace>,
) -> Result<Response, Error> {
    let tenant = service::namespaces::set_allocations(
        &app.db,
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
        &name,
        &body.allocations,
    )
    .await?;
    Ok(tenant_response(StatusCode::OK, &who, tenant))
}

/// Remove a namespace; the reconciler deletes it from the cluster.
#[utoipa::path(delete, path = "/tenants/{slug}/namespaces/{name}", tag = "namespaces",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("name" = String, Path, description = "The namespace's short name"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, description = "The tenant without the namespace", body = TenantAnswer)))]
async fn delete(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path((slug, name)): Path<(String, String)>,
) -> Result<Response, Error> {
    let tenant = service::namespaces::delete(
        &app.db,
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
        &name,
    )
    .await?;
    Ok(tenant_response(StatusCode::OK, &who, tenant))
}
