use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::answer::{created_response, tenant_response};
use super::extract::{ApiJson, ApiQuery, IfMatch, RequestId};
use super::model::{CreateTenant, Tenant, TenantAnswer, TenantListQuery, TenantPage, TenantPatch};
use super::tenant_json::TenantJson;
use super::wait::{WaitQuery, until_ready};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize, precheck};
use crate::domain::tenant::parse_label_selector;
use crate::error::Error;
use crate::service::tenants::{ListQuery, PageEntry};
use crate::service::{self, access, pagination, views};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, patch, delete))
}

/// List tenants, a page at a time.
#[utoipa::path(get, path = "/tenants", tag = "tenants", params(TenantListQuery),
    responses((status = 200, description = "A page of tenants", body = TenantPage)))]
async fn list(
    State(app): State<AppState>,
    Extension(tenant_json): Extension<Arc<TenantJson>>,
    who: Principal,
    ApiQuery(query): ApiQuery<TenantListQuery>,
) -> Result<Response, Error> {
    authorize(&who, Action::ReadTenants)?;
    let limit = pagination::page_size(query.page_size)?;
    let after = match &query.page_token {
        Some(token) => pagination::position("tenants", token)?,
        None => 0,
    };
    let labels = query
        .label
        .as_deref()
        .map(parse_label_selector)
        .transpose()
        .map_err(|e| e.within("query"))?;
    let filter = ListQuery {
        state: query.state,
        cluster: query.cluster,
        labels,
        search: query.q,
    };
    let mut conn = app.db.acquire().await?;
    let held = std::sync::Mutex::new(std::collections::HashMap::new());
    let (entries, next) =
        service::tenants::list_views(&mut conn, &who, filter, after, limit, |id, version| {
            let Some(json) = tenant_json.get(id, version) else {
                return false;
            };
            held.lock().map(|mut held| held.insert(id, json)).is_ok()
        })
        .await?;
    let held = held.into_inner().unwrap_or_default();
    // The page as `TenantPage` serializes, with each tenant's JSON from the
    // replica's cache when its view has not changed.
    let mut body = b"{\"items\":[".to_vec();
    for (i, entry) in entries.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        match entry {
            PageEntry::Held { id, .. } => match held.get(&id) {
                Some(json) => body.extend_from_slice(json),
                None => {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "tenant {id} was held and is gone"
                    )));
                }
            },
            PageEntry::Fresh { id, version, view } => {
                let keep = view.expires_at.is_none();
                // Boxed to its length: the cache keeps it, and the vector
                // grew by doubling, up to twice the size.
                let json = Bytes::from(
                    serde_json::to_vec(&Tenant::from(*view))
                        .map_err(anyhow::Error::from)?
                        .into_boxed_slice(),
                );
                body.extend_from_slice(&json);
                if keep {
                    tenant_json.put(id, version, json);
                }
            }
        }
    }
    body.extend_from_slice(b"],\"next_page_token\":");
    serde_json::to_writer(&mut body, &next.map(|id| pagination::token("tenants", id)))
        .map_err(anyhow::Error::from)?;
    body.push(b'}');
    let mut response = Response::new(axum::body::Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Create a tenant, optionally with namespaces, allocations and members.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = CreateTenant,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key get the first answer"), WaitQuery),
    responses((status = 201, description = "Created; sync status Pending", body = TenantAnswer,
        headers(("ETag" = String), ("Location" = String)))))]
async fn create(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    ApiQuery(wait): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<Response, Error> {
    let wait_limit = wait.limit(&app)?;
    let mut tenant = service::tenants::create(
        &app.db,
        &app.config,
        &app.clusters,
        &who,
        &request_id.actor(&who),
        body.into(),
    )
    .await?;
    if let Some(limit) = wait_limit {
        let row = until_ready(&app, &tenant.slug, limit).await?;
        tenant = views::tenant(&mut *app.db.acquire().await?, row).await?;
    }
    let location = format!("/api/v1/tenants/{}", tenant.slug);
    let mut response = created_response(&who, tenant);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Get one tenant, with its namespaces, budget, members and sync status.
/// With `wait_for=Ready`, answers once the tenant is Ready at its current
/// generation, or with its current state when the timeout passes.
#[utoipa::path(get, path = "/tenants/{slug}", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"), WaitQuery),
    responses((status = 200, description = "The tenant", body = Tenant, headers(("ETag" = String)))))]
async fn get(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
    ApiQuery(wait): ApiQuery<WaitQuery>,
) -> Result<Response, Error> {
    precheck(&who, Action::ReadTenants)?;
    let limit = wait.limit(&app)?;
    let mut conn = app.db.acquire().await?;
    let mut tenant = access::view_authorized(&mut conn, &who, &slug, Action::ReadTenants).await?;
    if let Some(limit) = limit {
        drop(conn);
        let row = until_ready(&app, &slug, limit).await?;
        tenant = views::tenant(&mut *app.db.acquire().await?, row).await?;
    }
    Ok(tenant_response(StatusCode::OK, &who, tenant))
}

/// Change the display name, description or labels (JSON merge patch).
#[utoipa::path(patch, path = "/tenants/{slug}", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 if the tenant changed since")),
    request_body(content = TenantPatch, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "The changed tenant", body = TenantAnswer, headers(("ETag" = String)))))]
async fn patch(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<TenantPatch>,
) -> Result<Response, Error> {
    let tenant = service::tenants::edit(
        &app.db,
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
        body.into(),
    )
    .await?;
    Ok(tenant_response(StatusCode::OK, &who, tenant))
}

/// Delete a tenant: it moves to `deleting` until its namespaces are gone.
#[utoipa::path(delete, path = "/tenants/{slug}", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 202, description = "Deletion accepted", body = TenantAnswer)))]
async fn delete(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
) -> Result<Response, Error> {
    let tenant = service::tenants::delete(
        &app.db,
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
    )
    .await?;
    Ok(tenant_response(StatusCode::ACCEPTED, &who, tenant))
}
