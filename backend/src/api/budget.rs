use axum::extract::{Path, State};
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::answer::budget_response;
use super::extract::{ApiJson, IfMatch, RequestId};
use super::model::{Budget, BudgetAnswer, SetBudget};
use crate::auth::Principal;
use crate::error::Error;
use crate::service::{self, views};
use crate::state::AppState;

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
    let mut conn = app.db.acquire().await?;
    let (row, summary) = service::budget::read(&mut conn, &who, &slug).await?;
    Ok(axum::Json(Budget {
        budget: summary.budget.to_strings(),
        allocated: summary.allocated.to_strings(),
        available: summary.available().to_strings(),
        generation: row.generation,
        sync: views::sync_status(&row).into(),
    }))
}

/// Replace the tenant's budget; it must still cover every allocation.
#[utoipa::path(put, path = "/tenants/{slug}/budget", tag = "quota",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    request_body = SetBudget,
    responses((status = 200, description = "The tenant with its new budget; a caller who may not read the tenant gets the budget alone", body = BudgetAnswer)))]
async fn set(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<SetBudget>,
) -> Result<Response, Error> {
    let tenant = service::budget::set(
        &app.db,
        &who,
        &request_id.actor(&who),
        &slug,
        &precondition.precondition(),
        &body.budget,
    )
    .await?;
    budget_response(&who, tenant)
}
