use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::change::{Actor, TenantChange, tenant_response, view_authorized};
use super::extract::{ApiJson, IfMatch, RequestId};
use super::model::{CreateNamespace, Namespace, Tenant, TenantItems, UpdateNamespace};
use super::views;
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::db::{self, namespaces::NamespaceRow};
use crate::domain::quota::check_allocation;
use crate::domain::{FieldError, NamespaceName, QuotaResource, ResourceList};
use crate::error::Error;

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
    let tenant = view_authorized(&mut conn, &who, &slug, Action::ReadTenants).await?;
    Ok(axum::Json(TenantItems {
        items: tenant.namespaces,
        generation: tenant.generation,
        sync: tenant.sync,
    }))
}

/// What the other namespaces of the tenant hold.
fn allocated_elsewhere(
    namespaces: &[NamespaceRow],
    except: Option<i64>,
) -> Result<ResourceList, Error> {
    let others: Vec<NamespaceRow> = namespaces
        .iter()
        .filter(|n| Some(n.id) != except)
        .cloned()
        .collect();
    views::allocated(&others)
}

/// Add a namespace with its share of the budget.
#[utoipa::path(post, path = "/tenants/{slug}/namespaces", tag = "namespaces",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read"),
           ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key get the first answer")),
    request_body = CreateNamespace,
    responses((status = 201, description = "The tenant with its new namespace", body = Tenant)))]
pub(crate) async fn create(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateNamespace>,
) -> Result<Response, Error> {
    precheck(&who, Action::EditTenant)?;
    let name = NamespaceName::parse(&body.name)?;
    let allocations = ResourceList::parse(&body.allocations, "allocations")?;
    let mut change = TenantChange::begin(&app.db, &slug, &precondition).await?;
    change.authorize(&who, Action::EditTenant)?;
    change.require_editable()?;
    let full_name = name.full_name(&change.tenant.slug())?;
    let budget = change.tenant.budget();
    let existing = db::namespaces::list_for_tenants(&mut change.tx, &[change.tenant.id]).await?;
    if let Some(max) = budget.get(&QuotaResource::namespaces())
        && !max.fits_count(existing.len() + 1)
    {
        return Err(Error::Conflict {
            detail: format!(
                "the tenant's budget allows {max} namespaces and it has {}; request more quota",
                existing.len()
            ),
            errors: vec![FieldError::new(
                "name",
                "exceeds the tenant's namespace limit",
            )],
        });
    }
    check_allocation(
        &budget,
        &allocated_elsewhere(&existing, None)?,
        &allocations,
        "allocations",
    )
    .map_err(over_budget)?;
    let id = change.tenant.id;
    db::namespaces::insert(&mut change.tx, id, name.as_str(), &full_name, &allocations).await?;
    let tenant = change
        .commit(&Actor::of(&who, &request_id), "namespace.created")
        .await?;
    let mut response = tenant_response(StatusCode::CREATED, tenant);
    if let Ok(location) =
        HeaderValue::from_str(&format!("/api/v1/tenants/{slug}/namespaces/{name}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Going over the budget is a conflict with the tenant's state, not a malformed request.
fn over_budget(errors: Vec<FieldError>) -> Error {
    Error::Conflict {
        detail: "the allocations do not fit the tenant's budget".into(),
        errors,
    }
}

/// Replace a namespace's allocations.
#[utoipa::path(patch, path = "/tenants/{slug}/namespaces/{name}", tag = "namespaces",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("name" = String, Path, description = "The namespace's short name"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    request_body = UpdateNamespace,
    responses((status = 200, description = "The tenant with the new allocations", body = Tenant)))]
pub(crate) async fn update(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path((slug, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateNamespace>,
) -> Result<Response, Error> {
    precheck(&who, Action::EditTenant)?;
    let allocations = ResourceList::parse(&body.allocations, "allocations")?;
    let mut change = TenantChange::begin(&app.db, &slug, &precondition).await?;
    change.authorize(&who, Action::EditTenant)?;
    change.require_editable()?;
    let existing = db::namespaces::list_for_tenants(&mut change.tx, &[change.tenant.id]).await?;
    let target = find(&existing, &slug, &name)?;
    check_allocation(
        &change.tenant.budget(),
        &allocated_elsewhere(&existing, Some(target.id))?,
        &allocations,
        "allocations",
    )
    .map_err(over_budget)?;
    db::namespaces::set_allocations(&mut change.tx, target.id, &allocations).await?;
    let tenant = change
        .commit(
            &Actor::of(&who, &request_id),
            "namespace.allocations_changed",
        )
        .await?;
    Ok(tenant_response(StatusCode::OK, tenant))
}

/// Remove a namespace; the reconciler deletes it from the cluster.
#[utoipa::path(delete, path = "/tenants/{slug}/namespaces/{name}", tag = "namespaces",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("name" = String, Path, description = "The namespace's short name"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, description = "The tenant without the namespace", body = Tenant)))]
pub(crate) async fn delete(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path((slug, name)): Path<(String, String)>,
) -> Result<Response, Error> {
    precheck(&who, Action::EditTenant)?;
    let mut change = TenantChange::begin(&app.db, &slug, &precondition).await?;
    change.authorize(&who, Action::EditTenant)?;
    change.require_editable()?;
    let existing = db::namespaces::list_for_tenants(&mut change.tx, &[change.tenant.id]).await?;
    let target = find(&existing, &slug, &name)?.id;
    db::namespaces::delete(&mut change.tx, target).await?;
    let tenant = change
        .commit(&Actor::of(&who, &request_id), "namespace.deleted")
        .await?;
    Ok(tenant_response(StatusCode::OK, tenant))
}

fn find<'a>(
    namespaces: &'a [NamespaceRow],
    slug: &str,
    name: &str,
) -> Result<&'a NamespaceRow, Error> {
    namespaces.iter().find(|n| n.name == name).ok_or_else(|| {
        Error::NotFound(format!("the tenant \"{slug}\" has no namespace \"{name}\""))
    })
}
