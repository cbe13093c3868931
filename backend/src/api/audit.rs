use axum::extract::State;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::ApiQuery;
use super::model::{AuditEvent, AuditPage, AuditQuery};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize, reach_limit};
use crate::db::{self, audit::AuditFilter};
use crate::error::Error;
use crate::service::pagination;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// The audit trail, newest first.
#[utoipa::path(get, path = "/audit-events", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "A page of audit events", body = AuditPage)))]
async fn list(
    State(app): State<AppState>,
    who: Principal,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<axum::Json<AuditPage>, Error> {
    authorize(&who, Action::ReadAudit)?;
    let limit = pagination::page_size(query.page_size)?;
    let before = match &query.page_token {
        Some(token) => pagination::position("audit", token)?,
        None => i64::MAX,
    };
    let filter = AuditFilter {
        tenant: query.tenant,
        actor: query.actor,
        action: query.action,
        since: query.since,
        reach: reach_limit(&who),
    };
    let mut conn = app.db.acquire().await?;
    let mut rows = db::audit::list_page(&mut conn, &filter, before, limit + 1).await?;
    let next_page_token = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|last| pagination::token("audit", last.id))
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|r| AuditEvent {
            id: r.id,
            occurred_at: r.occurred_at,
            actor: r.actor,
            action: r.action,
            tenant: r.tenant_slug,
            before: r.before,
            after: r.after,
            request_id: r.request_id,
        })
        .collect();
    Ok(axum::Json(AuditPage {
        items,
        next_page_token,
    }))
}
