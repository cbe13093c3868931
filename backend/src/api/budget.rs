use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::change::{Actor, TenantChange, load_authorized, tenant_response};
use super::extract::{ApiJson, IfMatch, RequestId};
use super::model::{Budget, SetBudget, Tenant};
use super::views;
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::db;
use crate::domain::quota::check_budget_covers;
use crate::domain::{Quantity, ResourceList};
use crate::error::Error;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get, set))
}

/// The tenant's budget, what its namespaces hold, and what is left.
#[utoipa::path(get, path = "/tenants/{slug}/budget", tag = "quota",
    params(("slug" = String, Path, description = "The tenant's slug")),
    responses((status = 200, description = "The budget", body = Budget)))]
async fn get(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
) -> Result<axum::Json<Budget>, Error> {
    precheck(&who, Action::ReadTenants)?;
    let mut conn = app.db.acquire().await?;
    let row = load_authorized(&mut conn, &who, &slug, Action::ReadTenants).await?;
    let budget = row.budget();
    let namespaces = db::namespaces::list_for_tenants(&mut conn, &[row.id]).await?;
    let allocated = views::allocated(&namespaces)?;
    let mut available = ResourceList::default();
    for (resource, limit) in budget.namespace_items() {
        let used = allocated
            .get(resource)
            .cloned()
            .unwrap_or_else(Quantity::zero);
        available.insert(
            resource.clone(),
            limit.checked_sub(&used).unwrap_or_else(Quantity::zero),
        );
    }
    Ok(axum::Json(Budget {
        budget: budget.to_strings(),
        allocated: allocated.to_strings(),
        available: available.to_strings(),
        generation: row.generation,
        sync: views::sync_status(&row),
    }))
}

/// Replace the tenant's budget; it must still cover every allocation.
#[utoipa::path(put, path = "/tenants/{slug}/budget", tag = "quota",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    request_body = SetBudget,
    responses((status = 200, description = "The tenant with its new budget", body = Tenant)))]
async fn set(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<SetBudget>,
) -> Result<Response, Error> {
    precheck(&who, Action::ChangeBudget)?;
    let budget = ResourceList::parse(&body.budget, "budget")?;
    let mut change = TenantChange::begin(&app.db, &slug, &precondition).await?;
    change.authorize(&who, Action::ChangeBudget)?;
    replace_budget(&mut change, &budget).await?;
    let tenant = change
        .commit(&Actor::of(&who, &request_id), "budget.changed")
        .await?;
    Ok(tenant_response(StatusCode::OK, tenant))
}

/// Replaces a locked tenant's budget if it still covers every allocation and
/// the namespaces it has; the one path for direct edits and approved requests.
pub(crate) async fn replace_budget(
    change: &mut TenantChange,
    budget: &ResourceList,
) -> Result<(), Error> {
    change.require_editable()?;
    let namespaces = db::namespaces::list_for_tenants(&mut change.tx, &[change.tenant.id]).await?;
    check_budget_covers(
        budget,
        &views::allocated(&namespaces)?,
        namespaces.len(),
        "budget",
    )
    .map_err(|errors| Error::Conflict {
        detail: "the new budget is smaller than what the namespaces already hold".into(),
        errors,
    })?;
    let id = change.tenant.id;
    db::tenants::set_budget(&mut change.tx, id, budget).await
}
