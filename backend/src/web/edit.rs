//! A tenant's edit page and the forms that change it. Changes go through
//! `service::`, like the API's, so the rules and the audit trail are one.
//! Every form carries the generation the page showed, so a change made
//! meanwhile is not overwritten.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::home::NoticeQuery;
use super::tenant::{MemberRow, TenantFacts, facts, members};
use super::{DashboardForm, Nav, PageError, Posted, Refusal, Viewer, render, see_other};
use crate::auth::policy::Action;
use crate::domain::{MemberKind, Role};
use crate::error::Error;
use crate::service::tenants::TenantEdit;
use crate::service::views;
use crate::service::{self, access};
use crate::state::AppState;

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

/// The edit page, perhaps with the refusal of one of its forms.
async fn edit_page(
    app: &AppState,
    viewer: &Viewer,
    slug: &str,
    notice: Option<String>,
    problem: Option<Refusal>,
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
    let status = problem.as_ref().map(|p| p.error.status());
    let errors = problem
        .as_ref()
        .map(|p| p.fields.clone())
        .unwrap_or_default();
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
        problem: problem.map(|p| p.error.problem().detail),
    };
    let mut response = render(&page)?;
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    Ok(response)
}

/// Answers a form's change: on success back to the page with a notice, on
/// a refusal the edit page with the reason (a stale page's change included).
pub(super) async fn apply<F: DashboardForm, T>(
    app: &AppState,
    viewer: &Viewer,
    slug: &str,
    done: &str,
    result: Result<T, Error>,
) -> Result<Response, PageError> {
    match result.map_err(F::refused) {
        Ok(_) => Ok(see_other(&format!("/tenants/{slug}/edit"), done)),
        Err(refusal)
            if refusal.error.status().is_client_error()
                && refusal.error.status() != StatusCode::NOT_FOUND =>
        {
            edit_page(app, viewer, slug, None, Some(refusal)).await
        }
        Err(refusal) => Err(refusal.error.into()),
    }
}

/// The tenant's name and description.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SettingsForm {
    display_name: String,
    description: String,
}

impl DashboardForm for SettingsForm {}

pub async fn settings(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    posted: Posted<SettingsForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        precondition,
        form,
    } = posted;
    let edit = TenantEdit {
        display_name: Some(form.display_name),
        description: Some(form.description),
        ..Default::default()
    };
    let result = service::tenants::edit(
        &app.db,
        &viewer.principal,
        &actor,
        &slug,
        &precondition,
        edit,
    )
    .await;
    apply::<SettingsForm, _>(&app, &viewer, &slug, "Saved.", result).await
}

/// A new namespace, by its short name.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewNamespaceForm {
    name: String,
}

impl DashboardForm for NewNamespaceForm {}

pub async fn add_namespace(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    posted: Posted<NewNamespaceForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        precondition,
        form,
    } = posted;
    let result = service::namespaces::create(
        &app.db,
        &app.clusters,
        &viewer.principal,
        &actor,
        &slug,
        &precondition,
        service::namespaces::NewNamespace {
            name: &form.name,
            allocations: &BTreeMap::new(),
        },
    )
    .await;
    apply::<NewNamespaceForm, _>(&app, &viewer, &slug, "Namespace added.", result).await
}

/// A namespace's allocations: one field per resource of the budget, named
/// after it (`requests.cpu`); an empty one is no allocation.
#[derive(Deserialize)]
pub struct AllocationsForm {
    #[serde(flatten)]
    allocations: BTreeMap<String, String>,
}

impl DashboardForm for AllocationsForm {}

pub async fn allocations(
    State(app): State<AppState>,
    Path((slug, name)): Path<(String, String)>,
    posted: Posted<AllocationsForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        precondition,
        form,
    } = posted;
    let allocations = form
        .allocations
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    let result = service::namespaces::set_allocations(
        &app.db,
        &viewer.principal,
        &actor,
        &slug,
        &precondition,
        &name,
        &allocations,
    )
    .await;
    apply::<AllocationsForm, _>(
        &app,
        &viewer,
        &slug,
        &format!("Allocations of {name} saved."),
        result,
    )
    .await
}

/// A removal confirmed by typing the name of what goes.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConfirmForm {
    confirm: String,
}

impl DashboardForm for ConfirmForm {}

pub async fn remove_namespace(
    State(app): State<AppState>,
    Path((slug, name)): Path<(String, String)>,
    posted: Posted<ConfirmForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        precondition,
        form,
    } = posted;
    if form.confirm != name {
        let refusal = Error::invalid("confirm", format!("type {name} to remove the namespace"));
        return edit_page(
            &app,
            &viewer,
            &slug,
            None,
            Some(ConfirmForm::refused(refusal)),
        )
        .await;
    }
    let result = service::namespaces::delete(
        &app.db,
        &viewer.principal,
        &actor,
        &slug,
        &precondition,
        &name,
    )
    .await;
    apply::<ConfirmForm, _>(
        &app,
        &viewer,
        &slug,
        &format!("Namespace {name} is being removed."),
        result,
    )
    .await
}

/// A new member: a user's email or an IdP group, and a role.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewMemberForm {
    kind: String,
    subject: String,
    role: String,
}

impl DashboardForm for NewMemberForm {}

pub async fn add_member(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    posted: Posted<NewMemberForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        precondition,
        form,
    } = posted;
    let parsed = (MemberKind::parse(&form.kind), Role::parse(&form.role));
    let (Ok(kind), Ok(role)) = parsed else {
        let refusal = Error::invalid("kind", "choose a kind and a role from the lists");
        return edit_page(
            &app,
            &viewer,
            &slug,
            None,
            Some(NewMemberForm::refused(refusal)),
        )
        .await;
    };
    let result = service::members::add(
        &app.db,
        &viewer.principal,
        &actor,
        &slug,
        &precondition,
        kind,
        &form.subject,
        role,
    )
    .await;
    apply::<NewMemberForm, _>(&app, &viewer, &slug, "Member added.", result).await
}

/// A form that is only a button: its token, and perhaps the generation.
#[derive(Deserialize)]
pub struct ButtonForm {}

impl DashboardForm for ButtonForm {}

pub async fn remove_member(
    State(app): State<AppState>,
    Path((slug, id)): Path<(String, i64)>,
    posted: Posted<ButtonForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        precondition,
        ..
    } = posted;
    let result =
        service::members::remove(&app.db, &viewer.principal, &actor, &slug, &precondition, id)
            .await;
    apply::<ButtonForm, _>(&app, &viewer, &slug, "Member removed.", result).await
}

pub async fn delete(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    posted: Posted<ConfirmForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        precondition,
        form,
    } = posted;
    if form.confirm != slug {
        let refusal = Error::invalid("confirm", format!("type {slug} to delete the tenant"));
        return edit_page(
            &app,
            &viewer,
            &slug,
            None,
            Some(ConfirmForm::refused(refusal)),
        )
        .await;
    }
    match service::tenants::delete(&app.db, &viewer.principal, &actor, &slug, &precondition).await {
        Ok(_) => Ok(see_other("/", &format!("{slug} is being deleted."))),
        Err(e) => Err(ConfirmForm::refused(e).error.into()),
    }
}
