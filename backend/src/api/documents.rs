//! A tenant as one document: `GET /tenants/{slug}/document` reads it,
//! `PUT /tenants/{slug}` makes the tenant exactly so (or, with
//! `dry_run=true`, says what it would change).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ApiJson, ApiQuery, IfMatch, RequestId, etag};
use crate::auth::Principal;
use crate::domain::tenant_document::{Outcome, TenantDocument, TenantPlan};
use crate::error::Error;
use crate::service::documents::{self, Portal};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put))
        .routes(routes!(document))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// Check the document and plan the change without committing anything.
    #[serde(default)]
    pub dry_run: bool,
}

/// Make the tenant exactly as the document says: create it, or change
/// whatever differs, in one transaction with one audit event
/// (`tenant.created` or `tenant.applied`, with before and after; also
/// `gitops.changed` when the GitOps tools change). Fields the
/// document leaves out keep their value. The same document again changes
/// nothing and keeps the generation. The answer is the plan: each change
/// made, or with `dry_run=true` each change an apply would make.
#[utoipa::path(put, path = "/tenants/{slug}", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 if the tenant changed since (or does not exist)"),
           PutQuery),
    request_body = TenantDocument,
    responses(
        (status = 200, description = "Changed, unchanged, or planned (dry run)", body = TenantPlan, headers(("ETag" = String))),
        (status = 201, description = "Created; sync status Pending", body = TenantPlan, headers(("ETag" = String), ("Location" = String)))))]
async fn put(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
    ApiQuery(query): ApiQuery<PutQuery>,
    ApiJson(body): ApiJson<TenantDocument>,
) -> Result<Response, Error> {
    let applied = documents::put(
        Portal {
            db: &app.db,
            config: &app.config,
            clusters: &app.clusters,
        },
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
        body,
        query.dry_run,
    )
    .await?;
    let plan = applied.plan;
    let created = plan.outcome == Outcome::Created && !plan.dry_run;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(&plan)).into_response();
    let headers = response.headers_mut();
    if plan.generation > 0
        && let Ok(tag) = HeaderValue::from_str(&etag(plan.generation))
    {
        headers.insert(header::ETAG, tag);
    }
    if created && let Ok(location) = HeaderValue::from_str(&format!("/api/v1/tenants/{slug}")) {
        headers.insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The tenant as a document: what `PUT /tenants/{slug}` takes to make it
/// as it is (its policy only when a platform admin set one, its expiry only
/// when it has one).
#[utoipa::path(get, path = "/tenants/{slug}/document", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug")),
    responses((status = 200, description = "The tenant as a document", body = TenantDocument, headers(("ETag" = String)))))]
async fn document(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
) -> Result<Response, Error> {
    let mut conn = app.db.acquire().await?;
    let (document, generation) = documents::read(&mut conn, &who, &slug).await?;
    let mut response = Json(document).into_response();
    if let Ok(tag) = HeaderValue::from_str(&etag(generation)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}
