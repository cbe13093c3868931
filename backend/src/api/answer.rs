//! HTTP answers carrying a tenant, built for the caller's read right.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::extract::etag;
use super::model::{Budget, Tenant, TenantReceipt};
use crate::auth::Principal;
use crate::auth::policy::Action;
use crate::error::Error;
use crate::service::views::TenantView;
use crate::service::{access, budget};

fn with_etag(status: StatusCode, generation: i64, body: impl Serialize) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(tag) = HeaderValue::from_str(&etag(generation)) {
        headers.insert(header::ETAG, tag);
    }
    (status, headers, Json(body)).into_response()
}

/// A tenant answer with its ETag: the whole tenant when `who` may read it,
/// else a receipt (a token that may write but not read, an employee who
/// just gave up their role).
pub fn tenant_response(status: StatusCode, who: &Principal, tenant: TenantView) -> Response {
    let generation = tenant.generation;
    if access::may(who, Action::ReadTenants, &tenant) {
        with_etag(status, generation, Tenant::from(tenant))
    } else {
        let receipt = TenantReceipt {
            slug: tenant.slug,
            state: tenant.state,
            generation,
        };
        with_etag(status, generation, receipt)
    }
}

/// The answer to creating a tenant: its creator reads what it created
/// whenever it may read tenants at all. A token's reach was read before the
/// tenant existed, and an employee need not have made themselves a member.
pub fn created_response(who: &Principal, tenant: TenantView) -> Response {
    let generation = tenant.generation;
    if crate::auth::policy::precheck(who, Action::ReadTenants).is_ok() {
        return with_etag(StatusCode::CREATED, generation, Tenant::from(tenant));
    }
    tenant_response(StatusCode::CREATED, who, tenant)
}

/// The answer to a budget change: the tenant when `who` may read it, else
/// the budget with what is allocated and left.
pub fn budget_response(who: &Principal, tenant: TenantView) -> Result<Response, Error> {
    if access::may(who, Action::ReadTenants, &tenant) {
        return Ok(tenant_response(StatusCode::OK, who, tenant));
    }
    let summary = budget::summary_of(&tenant)?;
    let body = Budget {
        budget: summary.budget.to_strings(),
        allocated: summary.allocated.to_strings(),
        available: summary.available().to_strings(),
        generation: tenant.generation,
        sync: tenant.sync.into(),
    };
    Ok(with_etag(StatusCode::OK, tenant.generation, body))
}
