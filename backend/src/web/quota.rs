//! Quota requests in the browser: owners ask from the tenant page, admins
//! decide from the queue, through the same `service::quota_requests` as the API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::home::NoticeQuery;
use super::tenant::RequestRow;
use super::{Form, Nav, PageError, Viewer, field, render, see_other};
use crate::app::{AppState, RequestId};
use crate::error::Error;
use crate::service::quota_requests;

pub async fn ask(
    State(app): State<AppState>,
    viewer: Viewer,
    request_id: RequestId,
    Path(slug): Path<String>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    viewer.check_form(form.get("_csrf").map(String::as_str))?;
    match quota_requests::ask(
        &app.db,
        &viewer.principal,
        &request_id.actor(&viewer.principal),
        &slug,
        field(&form, "resource"),
        field(&form, "amount"),
        field(&form, "reason"),
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
    let mut conn = app.db.acquire().await?;
    let rows = quota_requests::list(&mut conn, &viewer.principal, None, None).await?;
    let (mut pending, decided): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .map(RequestRow::from_row)
        .partition(|r| r.status == "pending");
    for r in &mut pending {
        r.usage = super::showback::use_of(&mut conn, &r.tenant, &r.resource).await?;
    }
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
    let amount = Some(field(&form, "amount")).filter(|a| !a.is_empty());
    let comment = Some(field(&form, "comment")).filter(|c| !c.is_empty());
    let actor = request_id.actor(&viewer.principal);
    let who = &viewer.principal;
    let result = match field(&form, "decision") {
        "approve" => quota_requests::approve(&app.db, who, &actor, id, amount, comment).await,
        "reject" => quota_requests::reject(&app.db, who, &actor, id, comment).await,
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
