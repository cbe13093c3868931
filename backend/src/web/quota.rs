//! Quota requests in the browser: owners ask from the tenant page, admins
//! decide from the queue, through the same `service::quota_requests` as the API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::home::NoticeQuery;
use super::tenant::RequestRow;
use super::{DashboardForm, Nav, PageError, Posted, Viewer, back_to, render, see_other};
use crate::service::quota_requests;
use crate::state::AppState;

/// A tenant's request for a bigger budget of one resource.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AskForm {
    resource: String,
    amount: String,
    reason: String,
}

impl DashboardForm for AskForm {}

pub async fn ask(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    posted: Posted<AskForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        form,
        ..
    } = posted;
    let result = quota_requests::ask(
        &app.db,
        &viewer.principal,
        &actor,
        &slug,
        &form.resource,
        &form.amount,
        &form.reason,
    )
    .await;
    back_to(
        &format!("/tenants/{slug}"),
        result,
        |_| "Quota requested; a platform admin will decide.".into(),
        "The request was not sent",
    )
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

/// The button a platform admin pressed.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Decision {
    Approve,
    Reject,
}

/// A platform admin's answer to a quota request: perhaps less than asked.
#[derive(Deserialize)]
pub struct DecideForm {
    decision: Decision,
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

impl DashboardForm for DecideForm {}

pub async fn decide(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    posted: Posted<DecideForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        form,
        ..
    } = posted;
    let who = &viewer.principal;
    let (amount, comment) = (form.amount.as_deref(), form.comment.as_deref());
    let result = match form.decision {
        Decision::Approve => {
            quota_requests::approve(&app.db, who, &actor, id, amount, comment).await
        }
        Decision::Reject => quota_requests::reject(&app.db, who, &actor, id, comment).await,
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
