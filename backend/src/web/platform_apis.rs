//! The platform APIs page for platform admins (`/admin/platform-apis`):
//! what is published to whom, publishing and withdrawing.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::admin::fields;
use super::display::when;
use super::edit::ButtonForm;
use super::{DashboardForm, Nav, PageError, Posted, Viewer, render, see_other};
use crate::error::Error;
use crate::service::platform_apis::{self, Publication};
use crate::state::AppState;

pub struct ApiLine {
    pub name: String,
    pub description: String,
    /// "every tenant", or the slugs.
    pub tenants: String,
    pub published: String,
}

#[derive(Template)]
#[template(path = "platform_apis.html")]
struct PlatformApisPage {
    nav: Nav,
    apis: Vec<ApiLine>,
    problem: Option<String>,
    name: String,
    description: String,
    tenants: String,
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    notice: Option<String>,
}

pub async fn page(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    show(&app, &viewer, q.notice, None, PublishForm::default()).await
}

async fn show(
    app: &AppState,
    viewer: &Viewer,
    notice: Option<String>,
    problem: Option<String>,
    asked: PublishForm,
) -> Result<Response, PageError> {
    let mut conn = app.db.acquire().await?;
    let apis = platform_apis::list(&mut conn, &viewer.principal)
        .await?
        .into_iter()
        .map(|p| ApiLine {
            name: p.api.to_string(),
            description: p.description,
            tenants: p
                .tenants
                .map_or_else(|| "every tenant".into(), |t| t.join(", ")),
            published: format!("{} by {}", when(p.published_at), p.published_by),
        })
        .collect();
    let status = if problem.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let mut response = render(&PlatformApisPage {
        nav: viewer.nav("admin", notice),
        apis,
        problem,
        name: asked.name,
        description: asked.description.unwrap_or_default(),
        tenants: asked.tenants.unwrap_or_default(),
    })?;
    *response.status_mut() = status;
    Ok(response)
}

#[derive(Deserialize, Default)]
pub struct PublishForm {
    name: String,
    description: Option<String>,
    /// Comma-separated slugs; empty: every tenant.
    tenants: Option<String>,
}

impl DashboardForm for PublishForm {}

pub async fn publish(
    State(app): State<AppState>,
    posted: Posted<PublishForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        form,
        ..
    } = posted;
    let tenants = super::form::names(form.tenants.as_deref().unwrap_or_default());
    let publication = Publication {
        description: form.description.clone().unwrap_or_default(),
        tenants: (!tenants.is_empty()).then_some(tenants),
    };
    match platform_apis::publish(
        &app.db,
        &app.clusters,
        &viewer.principal,
        &actor,
        &form.name,
        &publication,
    )
    .await
    {
        Ok((published, _)) => Ok(see_other(
            "/admin/platform-apis",
            &format!("{} published.", published.api),
        )),
        Err(Error::Invalid(errors)) => show(&app, &viewer, None, Some(fields(&errors)), form).await,
        Err(e) => Err(e.into()),
    }
}

pub async fn withdraw(
    State(app): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<ButtonForm>,
) -> Result<Response, PageError> {
    let Posted { viewer, actor, .. } = posted;
    platform_apis::withdraw(&app.db, &viewer.principal, &actor, &name).await?;
    Ok(see_other(
        "/admin/platform-apis",
        &format!("{name} withdrawn."),
    ))
}
