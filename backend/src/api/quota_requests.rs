//! Quota requests: an owner asks for a bigger budget with a reason; a
//! platform admin approves (perhaps a smaller amount) or rejects, and an
//! approval changes the budget through the same path as a direct edit.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::budget::replace_budget;
use super::change::{Actor, TenantChange, load_authorized};
use super::extract::{ApiJson, ApiQuery, IfMatch, RequestId};
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize, precheck};
use crate::db::{self, quota_requests::QuotaRequestRow, quota_requests::RequestFilter};
use crate::domain::{FieldError, Quantity, QuotaResource};
use crate::error::Error;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(approve))
        .routes(routes!(reject))
}

/// A request for a bigger budget and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaRequest {
    pub id: i64,
    pub tenant: String,
    pub requested_by: String,
    pub resource: String,
    /// The budget asked for.
    pub amount: String,
    pub reason: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub decided_by: Option<String>,
    /// The budget granted; may be less than asked.
    pub granted_amount: Option<String>,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl From<QuotaRequestRow> for QuotaRequest {
    fn from(r: QuotaRequestRow) -> Self {
        Self {
            id: r.id,
            tenant: r.tenant_slug,
            requested_by: r.requested_by,
            resource: r.resource,
            amount: r.amount,
            reason: r.reason,
            status: r.status,
            decided_by: r.decided_by,
            granted_amount: r.granted_amount,
            comment: r.comment,
            created_at: r.created_at,
            decided_at: r.decided_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewQuotaRequest {
    pub tenant: String,
    #[schema(example = "requests.cpu")]
    pub resource: String,
    /// The whole budget wanted for the resource, such as `8`.
    pub amount: String,
    pub reason: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// On approval, the budget to grant if not the amount asked.
    pub amount: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RequestQuery {
    /// `pending`, `approved` or `rejected`.
    pub status: Option<String>,
    pub tenant: Option<String>,
}

/// The requests the caller may see, newest first: all for admins, those of
/// their tenants for members.
#[utoipa::path(get, path = "/quota-requests", tag = "quota", params(RequestQuery),
    responses((status = 200, description = "Quota requests", body = Vec<QuotaRequest>)))]
pub(crate) async fn list(
    State(app): State<AppState>,
    who: Principal,
    ApiQuery(query): ApiQuery<RequestQuery>,
) -> Result<Json<Vec<QuotaRequest>>, Error> {
    authorize(&who, Action::ReadTenants)?;
    if let Some(status) = &query.status
        && !["pending", "approved", "rejected"].contains(&status.as_str())
    {
        return Err(Error::invalid(
            "query.status",
            "must be pending, approved or rejected",
        ));
    }
    let member = match &who {
        Principal::User(user) if !user.admin => Some((user.email.clone(), user.groups.clone())),
        _ => None,
    };
    let filter = RequestFilter {
        status: query.status,
        tenant: query.tenant,
        member,
        id: None,
    };
    let mut conn = app.db.acquire().await?;
    let rows = db::quota_requests::list(&mut conn, &filter, 500).await?;
    Ok(Json(rows.into_iter().map(QuotaRequest::from).collect()))
}

/// Ask for a bigger budget for one resource, with a reason.
#[utoipa::path(post, path = "/quota-requests", tag = "quota", request_body = NewQuotaRequest,
    responses((status = 201, description = "The request, pending", body = QuotaRequest)))]
pub(crate) async fn create(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    ApiJson(body): ApiJson<NewQuotaRequest>,
) -> Result<(StatusCode, Json<QuotaRequest>), Error> {
    precheck(&who, Action::RequestQuota)?;
    let mut errors = Vec::new();
    let resource = QuotaResource::parse(&body.resource)
        .map_err(|rule| errors.push(FieldError::new("resource", rule)))
        .ok();
    let amount = Quantity::parse_non_negative(&body.amount)
        .map_err(|e| errors.push(FieldError::new("amount", e.to_string())))
        .ok();
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 2000 {
        errors.push(FieldError::new(
            "reason",
            "must say why, in 1 to 2000 characters",
        ));
    }
    let (Some(resource), Some(amount)) = (resource, amount) else {
        return Err(Error::Invalid(errors));
    };
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let mut tx = app.db.begin().await?;
    let tenant = load_authorized(&mut tx, &who, &body.tenant, Action::RequestQuota).await?;
    if !tenant.state().is_editable() {
        return Err(Error::conflict(format!(
            "the tenant \"{}\" is {}",
            tenant.slug,
            tenant.state()
        )));
    }
    let id = db::quota_requests::insert(
        &mut tx,
        tenant.id,
        &who.actor(),
        resource.as_str(),
        &amount.to_string(),
        reason,
    )
    .await?;
    let actor = Actor::of(&who, &request_id);
    let after = serde_json::json!({"request": id, "resource": resource.as_str(), "amount": amount.to_string(), "reason": reason});
    db::audit::record(
        &mut tx,
        db::audit::NewEvent {
            actor: &actor.name,
            action: "quota_request.created",
            tenant: Some((tenant.id, &tenant.slug)),
            before: None,
            after: Some(&after),
            request_id: actor.request_id.as_deref(),
        },
    )
    .await?;
    let filter = RequestFilter {
        id: Some(id),
        ..Default::default()
    };
    let created = db::quota_requests::list(&mut tx, &filter, 1)
        .await?
        .into_iter()
        .next();
    tx.commit().await?;
    let created = created
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the new quota request vanished")))?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Approve a request, granting its amount or the one given.
#[utoipa::path(post, path = "/quota-requests/{id}/approve", tag = "quota",
    params(("id" = i64, Path, description = "The request's id")), request_body = Decision,
    responses((status = 200, description = "The approved request", body = QuotaRequest)))]
pub(crate) async fn approve(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<Json<QuotaRequest>, Error> {
    decide(&app, &who, &Actor::of(&who, &request_id), id, true, body)
        .await
        .map(Json)
}

/// Reject a request, with a comment for the owner.
#[utoipa::path(post, path = "/quota-requests/{id}/reject", tag = "quota",
    params(("id" = i64, Path, description = "The request's id")), request_body = Decision,
    responses((status = 200, description = "The rejected request", body = QuotaRequest)))]
pub(crate) async fn reject(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<Json<QuotaRequest>, Error> {
    decide(&app, &who, &Actor::of(&who, &request_id), id, false, body)
        .await
        .map(Json)
}

async fn decide(
    app: &AppState,
    who: &Principal,
    actor: &Actor,
    id: i64,
    approve: bool,
    decision: Decision,
) -> Result<QuotaRequest, Error> {
    authorize(who, Action::ChangeBudget)?;
    let not_found = || Error::NotFound(format!("there is no quota request {id}"));
    let slug = {
        let mut conn = app.db.acquire().await?;
        db::quota_requests::get_for_update(&mut conn, id)
            .await?
            .ok_or_else(not_found)?
            .tenant_slug
    };
    let comment = decision
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    // The tenant first, then the request: the same order as every other change.
    let mut change = TenantChange::begin(&app.db, &slug, &IfMatch::default()).await?;
    let request = db::quota_requests::get_for_update(&mut change.tx, id)
        .await?
        .ok_or_else(not_found)?;
    if request.status != "pending" {
        return Err(Error::conflict(format!(
            "quota request {id} was already {}",
            request.status
        )));
    }
    let tenant_id = change.tenant.id;
    if approve {
        let resource = QuotaResource::parse(&request.resource)
            .map_err(|rule| Error::invalid("resource", rule))?;
        let granted = match decision
            .amount
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            Some(amount) => Quantity::parse_non_negative(amount)
                .map_err(|e| Error::invalid("amount", e.to_string()))?,
            None => request
                .amount
                .parse::<Quantity>()
                .map_err(|e| Error::invalid("amount", e.to_string()))?,
        };
        let mut budget = change.tenant.budget();
        budget.insert(resource, granted.clone());
        replace_budget(&mut change, &budget).await?;
        db::quota_requests::decide(
            &mut change.tx,
            id,
            "approved",
            &actor.name,
            Some(&granted.to_string()),
            comment,
        )
        .await?;
        let data = serde_json::json!({"request": id, "status": "approved", "resource": request.resource, "granted": granted.to_string()});
        db::events::append(
            &mut change.tx,
            "quota_request.decided",
            tenant_id,
            &slug,
            &data,
        )
        .await?;
        change.commit(actor, "budget.changed").await?;
    } else {
        db::quota_requests::decide(&mut change.tx, id, "rejected", &actor.name, None, comment)
            .await?;
        let data = serde_json::json!({"request": id, "status": "rejected", "comment": comment});
        db::audit::record(
            &mut change.tx,
            db::audit::NewEvent {
                actor: &actor.name,
                action: "quota_request.rejected",
                tenant: Some((tenant_id, &slug)),
                before: None,
                after: Some(&data),
                request_id: actor.request_id.as_deref(),
            },
        )
        .await?;
        db::events::append(
            &mut change.tx,
            "quota_request.decided",
            tenant_id,
            &slug,
            &data,
        )
        .await?;
        change.tx.commit().await?;
    }
    let mut conn = app.db.acquire().await?;
    let filter = RequestFilter {
        id: Some(id),
        ..Default::default()
    };
    db::quota_requests::list(&mut conn, &filter, 1)
        .await?
        .into_iter()
        .next()
        .map(QuotaRequest::from)
        .ok_or_else(not_found)
}
