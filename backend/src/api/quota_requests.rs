//! Quota requests: an owner asks for a bigger budget with a reason; a
//! platform admin approves (perhaps a smaller amount) or rejects; the rules
//! are in `service::quota_requests`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ApiJson, ApiQuery, RequestId};
use crate::auth::Principal;
use crate::db::quota_requests::QuotaRequestRow;
use crate::error::Error;
use crate::service;
use crate::state::AppState;

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
async fn list(
    State(app): State<AppState>,
    who: Principal,
    ApiQuery(query): ApiQuery<RequestQuery>,
) -> Result<Json<Vec<QuotaRequest>>, Error> {
    let mut conn = app.db.acquire().await?;
    let rows = service::quota_requests::list(&mut conn, &who, query.status, query.tenant).await?;
    Ok(Json(rows.into_iter().map(QuotaRequest::from).collect()))
}

/// Ask for a bigger budget for one resource, with a reason.
#[utoipa::path(post, path = "/quota-requests", tag = "quota", request_body = NewQuotaRequest,
    responses((status = 201, description = "The request, pending", body = QuotaRequest)))]
async fn create(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    ApiJson(body): ApiJson<NewQuotaRequest>,
) -> Result<(StatusCode, Json<QuotaRequest>), Error> {
    let created = service::quota_requests::ask(
        &app.db,
        &who,
        &request_id.actor(&who),
        &body.tenant,
        &body.resource,
        &body.amount,
        &body.reason,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Approve a request, granting its amount or the one given.
#[utoipa::path(post, path = "/quota-requests/{id}/approve", tag = "quota",
    params(("id" = i64, Path, description = "The request's id")), request_body = Decision,
    responses((status = 200, description = "The approved request", body = QuotaRequest)))]
async fn approve(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<Json<QuotaRequest>, Error> {
    let decided = service::quota_requests::approve(
        &app.db,
        &who,
        &request_id.actor(&who),
        id,
        body.amount.as_deref(),
        body.comment.as_deref(),
    )
    .await?;
    Ok(Json(decided.into()))
}

/// Reject a request, with a comment for the owner.
#[utoipa::path(post, path = "/quota-requests/{id}/reject", tag = "quota",
    params(("id" = i64, Path, description = "The request's id")), request_body = Decision,
    responses((status = 200, description = "The rejected request", body = QuotaRequest)))]
async fn reject(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<Json<QuotaRequest>, Error> {
    let decided = service::quota_requests::reject(
        &app.db,
        &who,
        &request_id.actor(&who),
        id,
        body.comment.as_deref(),
    )
    .await?;
    Ok(Json(decided.into()))
}
