//! Quota requests in the browser: owners ask from the tenant page, admins
//! decide from the queue. Both go through the API's handlers.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::home::NoticeQuery;
use super::tenant::RequestRow;
use super::{Form, Nav, PageError, Viewer, field, render, see_other};
use crate::api::extract::{ApiJson, RequestId};
use crate::api::quota_requests::{Decision, NewQuotaRequest};
use crate::app::AppState;
use crate::db::{self, quota_requests::RequestFilter};
use crate::error::Error;

pub async fn ask(
    State(app): State<AppState>,
    viewer: Viewer,
    request_id: RequestId,
    Path(slug): Path<String>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    viewer.check_form(form.get("_csrf").map(String::as_str))?;
    let body = NewQuotaRequest {
        tenant: slug.clone(),
        resource: field(&form, "resource").to_string(),
        amount: field(&form, "amount").to_string(),
        reason: field(&form, "reason").to_string(),
    };
    match crate::api::quota_requests::create(
        State(app),
        viewer.principal.clone(),
        request_id,
        ApiJson(body),
    )
    .await
    {
        Ok(_) => Ok(see_other(
            &format!("/tenants/{slug}"),
            "Quota requested; a platform admin will decide.",
        )),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => Ok(see_other(
            &format!("/tenants/{slug}"),
            &format!("The request was not sent: {}", e.problem().detail),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "quota_requests.html")]
struct QueuePage {
    nav: Nav,
    pending: Vec<RequestRow>,
    decided: Vec<RequestRow>,
}

pub async fn queue(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let member =
        (!viewer.user.admin).then(|| (viewer.user.email.clone(), viewer.user.groups.clone()));
    let mut conn = app.db.acquire().await?;
    let rows = db::quota_requests::list(
        &mut conn,
        &RequestFilter {
            member,
            ..Default::default()
        },
        500,
    )
    .await?;
    let (pending, decided): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .map(RequestRow::from_row)
        .partition(|r| r.status == "pending");
    render(&QueuePage {
        nav: viewer.nav("quota", q.notice),
        pending,
        decided,
    })
}

pub async fn decide(
    State(app): State<AppState>,
    viewer: Viewer,
    request_id: RequestId,
    Path(id): Path<i64>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    viewer.check_form(form.get("_csrf").map(String::as_str))?;
    let decision = Decision {
        amount: Some(field(&form, "amount").to_string()).filter(|a| !a.is_empty()),
        comment: Some(field(&form, "comment").to_string()).filter(|c| !c.is_empty()),
    };
    let principal = viewer.principal.clone();
    let result = match field(&form, "decision").to_string().as_str() {
        "approve" => {
            crate::api::quota_requests::approve(
                State(app),
                principal,
                request_id,
                Path(id),
                ApiJson(decision),
            )
            .await
        }
        "reject" => {
            crate::api::quota_requests::reject(
                State(app),
                principal,
                request_id,
                Path(id),
                ApiJson(decision),
            )
            .await
        }
        _ => Err(Error::invalid("decision", "must be approve or reject")),
    };
    match result {
        Ok(decided) => Ok(see_other(
            "/quota-requests",
            &format!("Request {id} {}.", decided.status),
        )),
        Err(e) if e.status().is_client_error() => Ok(see_other(
            "/quota-requests",
            &format!("Request {id} was not decided: {}", e.problem().detail),
        )),
        Err(e) => Err(e.into()),
    }
}
