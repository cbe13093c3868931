//! A tenant's edit page and the forms that change it. Changes go through
//! `service::`, like the API's, so the rules and the audit trail are one.
//! Every form carries the generation the page showed, so a change made
//! meanwhile is not overwritten.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::home::NoticeQuery;
use super::tenant::{MemberRow, TenantFacts, facts, members};
use super::{
    Form, Nav, PageError, Viewer, field, field_errors, form_precondition, render, see_other,
};
use crate::app::{AppState, RequestId};
use crate::auth::policy::Action;
use crate::domain::{MemberKind, Role};
use crate::error::Error;
use crate::service::tenants::TenantEdit;
use crate::service::views;
use crate::service::{self, access};

pub struct AllocationInput {
    pub resource: String,
    pub value: String,
}

pub struct EditNamespace {
    pub name: String,
    pub full_name: String,
    pub allocations: Vec<AllocationInput>,
}

#[derive(Template)]
#[template(path = "edit_tenant.html")]
struct EditPage {
    nav: Nav,
    t: TenantFacts,
    namespaces: Vec<EditNamespace>,
    members: Vec<MemberRow>,
    /// Present for platform admins, who alone change the policy.
    policy: Option<super::policy::PolicyFormView>,
    problem: Option<String>,
    display_name_error: Option<String>,
    description_error: Option<String>,
}

pub async fn edit(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(slug): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    edit_page(&app, &viewer, &slug, q.notice, None).await
}

/// The edit page, perhaps with the problem a form ran into.
async fn edit_page(
    app: &AppState,
    viewer: &Viewer,
    slug: &str,
    notice: Option<String>,
    problem: Option<Error>,
) -> Result<Response, PageError> {
    let mut conn = app.db.acquire().await?;
    let row =
        access::load_authorized(&mut conn, &viewer.principal, slug, Action::EditTenant).await?;
    let budget = row.budget();
    let tenant = views::tenant(&mut conn, row).await?;
    let namespaces = tenant
        .namespaces
        .iter()
        .map(|ns| EditNamespace {
            name: ns.name.clone(),
            full_name: ns.full_name.clone(),
            allocations: budget
                .namespace_items()
                .map(|(resource, _)| AllocationInput {
                    resource: resource.to_string(),
                    value: ns
                        .allocations
                        .get(resource.as_str())
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
    let status = problem.as_ref().map(Error::status);
    let errors = problem.as_ref().map(field_errors).unwrap_or_default();
    let policy = if access::may(&viewer.principal, Action::ChangePolicy, &tenant) {
        let (policy, _) = service::policy::in_force(&tenant, &app.config.guardrails);
        Some(super::policy::PolicyFormView::new(&policy, &errors))
    } else {
        None
    };
    let page = EditPage {
        nav: viewer.nav("tenants", notice),
        t: facts(&tenant),
        namespaces,
        members: members(&tenant),
        policy,
        display_name_error: errors.get("display_name").cloned(),
        description_error: errors.get("description").cloned(),
        problem: problem.map(|e| e.problem().detail),
    };
    let mut response = render(&page)?;
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    Ok(response)
}

/// Answers a form's change: on success back to the page with a notice, on
/// a refusal the edit page with the reason (a stale page's change included).
pub(super) async fn apply<T>(
    app: &AppState,
    viewer: &Viewer,
    slug: &str,
    done: &str,
    result: Result<T, Error>,
) -> Result<Response, PageError> {
    match result.map_err(super::stale_form) {
        Ok(_) => Ok(see_other(&format!("/tenants/{slug}/edit"), done)),
        Err(e) if e.status().is_client_error() && e.status() != StatusCode::NOT_FOUND => {
            edit_page(app, viewer, slug, None, Some(e)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn settings(
    State(app): State<AppState>,
    viewer: Viewer,
    request_id: RequestId,
    Path(slug): Path<String>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    viewer.check_form(form.get("_csrf").map(String::as_str))?;
    let edit = TenantEdit {
        display_name: Some(field(&form, "display_name").to_string()),
        description: Some(field(&form, "description").to_string()),
        ..Default::default()
    };
    let result = service::tenants::edit(
        &app.db,
        &viewer.principal,
        &request_id.actor(&viewer.principal),
        &slug,
        &form_precondition(&form),
        edit,
    )
    .await;
    apply(&app, &viewer, &slug, "Saved.", result).await
}

pub async fn add_namespace(
    State(app): State<AppState>,
    viewer: Viewer,
    request_id: RequestId,
    Path(slug): Path<String>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    viewer.check_form(form.get("_csrf").map(String::as_str))?;
    let result = service::namespaces::create(
        &app.db,
        &app.clusters,
        &viewer.principal,
        &request_id.actor(&viewer.principal),
        &slug,
        &form_precondition(&form),
        service::namespaces::NewNamespace {
            name: field(&form, "name"),
            allocations: &BTreeMap::new(),
        },
    )
    .await;
    apply(&app, &viewer, &slug, "Namespace added.", result).await
}

/// Form fields that are not a resource's allocation.
const NOT_ALLOCATIONS: [&str; 2] = ["_csrf", "generation"];

pub async fn allocations(
    State(app): State<AppState>,
    viewer: Viewer,
    request_id: RequestId,
    Path((slug, name)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    viewer.check_form(form.get("_csrf").map(String::as_str))?;
    let allocations = form
        .iter()
        .filter(|(key, value)| !NOT_ALLOCATIONS.contains(&key.as_str()) && !value.trim().is_empty())
        .map(|(key, value)| (key.clone(), value.trim().to_string()))
        .collect();
    let result = service::namespaces::set_allocations(
        &app.db,
        &viewer.principal,
        &request_id.actor(&viewer.principal),
        &slug,
        &form_precondition(&form),
        &name,
        &allocations,
    )
    .await;
    apply(
        &app,
        &viewer,
        &slug,
        &format!("Allocations of {name} saved."),
        result,
    )
    .await
}

pub async fn remove_namespace(
    State(app): State<AppState>,
    viewer: Viewer,
    request_id: RequestId,
    Path((slug, name)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    viewer.check_form(form.get("_csrf").map(String::as_str))?;
    if field(&form, "confirm") != name {
        let refusal = Error::invalid("confirm", format!("type {name} to remove the namespace"));
        return edit_page(&app, &viewer, &slug, None, Some(refusal)).await;
    }
    let result = service::namespaces::delete(
        &app.db,
        &viewer.principal,
        &request_id.actor(&viewer.principal),
        &slug,
        &form_precondition(&form),
        &name,
    )
    .await;
    apply(
        &app,
        &viewer,
        &slug,
        &format!("Namespace {name} is being removed."),
        result,
    )
    .await
}

pub async fn add_member(
    State(app): State<AppState>,
    viewer: Viewer,
    request_id: RequestId,
    Path(slug): Path<String>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    viewer.check_form(form.get("_csrf").map(String::as_str))?;
    let parsed = (
        MemberKind::parse(field(&form, "kind")),
        Role::parse(field(&form, "role")),
    );
    let (Ok(kind), Ok(role)) = parsed else {
        let refusal = Error::invalid("kind", "choose a kind and a role from the lists");
        return edit_page(&app, &viewer, &slug, None, Some(refusal)).await;
    };
    let result = service::members::add(
        &app.db,
        &viewer.principal,
        &request_id.actor(&viewer.principal),
        &slug,
        &form_precondition(&form),
        kind,
        field(&form, "subject"),
        role,
    )
    .await;
    apply(&app, &viewer, &slug, "Member added.", result).await
}

pub async fn remove_member(
    State(app): State<AppState>,
    viewer: Viewer,
    request_id: RequestId,
    Path((slug, id)): Path<(String, i64)>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    viewer.check_form(form.get("_csrf").map(String::as_str))?;
    let result = service::members::remove(
        &app.db,
        &viewer.principal,
        &request_id.actor(&viewer.principal),
        &slug,
        &form_precondition(&form),
        id,
    )
    .await;
    apply(&app, &viewer, &slug, "Member removed.", result).await
}

pub async fn delete(
    State(app): State<AppState>,
    viewer: Viewer,
    request_id: RequestId,
    Path(slug): Path<String>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    viewer.check_form(form.get("_csrf").map(String::as_str))?;
    if field(&form, "confirm") != slug {
        let refusal = Error::invalid("confirm", format!("type {slug} to delete the tenant"));
        return edit_page(&app, &viewer, &slug, None, Some(refusal)).await;
    }
    match service::tenants::delete(
        &app.db,
        &viewer.principal,
        &request_id.actor(&viewer.principal),
        &slug,
        &form_precondition(&form),
    )
    .await
    {
        Ok(_) => Ok(see_other("/", &format!("{slug} is being deleted."))),
        Err(e) => Err(super::stale_form(e).into()),
    }
}
