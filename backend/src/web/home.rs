//! Home, the tenant list and the create form.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sqlx::PgConnection;

use super::display::{Bar, bar, time_left};
use super::{DashboardForm, Nav, PageError, Posted, Viewer, render, see_other};
use crate::db::{self, tenants::ListFilter, tenants::TenantRow};
use crate::domain::{Quantity, QuotaResource, ResourceList, TenantState};
use crate::service::tenants::{ListQuery as TenantQuery, NewTenantRequest};
use crate::service::{self, pagination};
use crate::state::AppState;

/// A tenant at a glance.
pub struct Card {
    pub slug: String,
    pub display_name: String,
    pub state: String,
    pub sync: String,
    pub cluster: String,
    pub namespaces: usize,
    pub expires: Option<String>,
    pub bars: Vec<Bar>,
}

/// Cards for tenant rows, with quota use against the budget in total.
pub async fn cards(conn: &mut PgConnection, rows: Vec<TenantRow>) -> Result<Vec<Card>, PageError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let namespaces = db::namespaces::list_for_tenants(conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let mine: Vec<_> = namespaces
                .iter()
                .filter(|n| n.tenant_id == row.id)
                .collect();
            let mut used = ResourceList::default();
            for ns in &mine {
                for (name, amount) in ns.usage.as_object().into_iter().flatten() {
                    if let (Ok(resource), Some(Ok(amount))) = (
                        QuotaResource::parse(name),
                        amount.as_str().map(str::parse::<Quantity>),
                    ) {
                        let mut one = ResourceList::default();
                        one.insert(resource, amount);
                        let _ = used.add(&one);
                    }
                }
            }
            let used = used.to_strings();
            let bars = row
                .budget()
                .namespace_items()
                .map(|(resource, limit)| {
                    bar(
                        resource.as_str(),
                        used.get(resource.as_str()).map(String::as_str),
                        &limit.to_string(),
                    )
                })
                .collect();
            Card {
                slug: row.slug.clone(),
                display_name: row.display_name.clone(),
                state: row.state.to_string(),
                sync: row.sync_status.clone(),
                cluster: row.cluster.clone(),
                namespaces: mine.len(),
                expires: time_left(row.expires_at),
                bars,
            }
        })
        .collect())
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    nav: Nav,
    tenants: Vec<Card>,
}

pub async fn home(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let mut conn = app.db.acquire().await?;
    let filter = ListFilter {
        member: Some((viewer.user.email.clone(), viewer.user.groups.clone())),
        ..Default::default()
    };
    let rows = db::tenants::list_page(&mut conn, &filter, 0, 200).await?;
    let tenants = cards(&mut conn, rows).await?;
    render(&HomePage {
        nav: viewer.nav("home", q.notice),
        tenants,
    })
}

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    state: Option<String>,
    cluster: Option<String>,
    page_token: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "tenants.html")]
struct ListPage {
    nav: Nav,
    items: Vec<Card>,
    q: String,
    state: String,
    cluster: String,
    states: Vec<String>,
    clusters: Vec<String>,
    next: Option<String>,
}

const PAGE_SIZE: i64 = 50;

pub async fn list(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    let state = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(TenantState::parse)
        .transpose()
        .map_err(crate::error::Error::from)?;
    let after = match q.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => pagination::position("tenants", token)?,
        None => 0,
    };
    let query = TenantQuery {
        state,
        cluster: q.cluster.clone().filter(|c| !c.is_empty()),
        labels: None,
        search: q.q.clone(),
    };
    let mut conn = app.db.acquire().await?;
    let (rows, next) =
        service::tenants::list_page(&mut conn, &viewer.principal, query, after, PAGE_SIZE).await?;
    let next = next.map(|last| {
        let token = pagination::token("tenants", last);
        let keep = |k: &str, v: &Option<String>| {
            v.as_deref()
                .map(|v| format!("&{k}={}", super::urlencode(v)))
                .unwrap_or_default()
        };
        format!(
            "/tenants?page_token={token}{}{}{}",
            keep("q", &q.q),
            keep("state", &q.state),
            keep("cluster", &q.cluster)
        )
    });
    let items = cards(&mut conn, rows).await?;
    render(&ListPage {
        nav: viewer.nav("tenants", q.notice),
        items,
        q: q.q.unwrap_or_default(),
        state: q.state.unwrap_or_default(),
        cluster: q.cluster.unwrap_or_default(),
        states: ["active", "suspended", "deleting", "deleted"]
            .map(String::from)
            .to_vec(),
        clusters: app
            .config
            .cluster_names()
            .into_iter()
            .map(String::from)
            .collect(),
        next,
    })
}

/// One input of the create form, with what was typed.
pub struct FormField {
    pub name: &'static str,
    pub label: &'static str,
    pub hint: &'static str,
    pub value: String,
    pub multiline: bool,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "new_tenant.html")]
struct NewPage {
    nav: Nav,
    fields: Vec<FormField>,
    errors: BTreeMap<String, String>,
    /// The templates a tenant can be made from, and the one chosen.
    templates: Vec<TemplateChoice>,
    template: String,
}

/// A template to pick on the create form.
pub struct TemplateChoice {
    pub name: String,
    pub label: String,
}

/// The templates the viewer may make a tenant from, newest versions.
async fn template_choices(
    app: &AppState,
    viewer: &Viewer,
) -> Result<Vec<TemplateChoice>, PageError> {
    use crate::auth::policy::{Action, authorize};
    if authorize(&viewer.principal, Action::CreateTenant).is_err() {
        return Ok(Vec::new());
    }
    let mut conn = app.db.acquire().await?;
    Ok(service::templates::list(&mut conn, &viewer.principal)
        .await?
        .into_iter()
        .map(|t| TemplateChoice {
            label: if t.spec.description.is_empty() {
                format!("{} (v{})", t.at.name, t.at.version)
            } else {
                format!("{} (v{}): {}", t.at.name, t.at.version, t.spec.description)
            },
            name: t.at.name,
        })
        .collect())
}

fn new_fields(typed: &NewTenantForm, errors: &BTreeMap<String, String>) -> Vec<FormField> {
    let field = |name, label, hint, multiline, value: &Option<String>| FormField {
        name,
        label,
        hint,
        value: value.clone().unwrap_or_default(),
        multiline,
        error: errors.get(name).cloned(),
    };
    let text = |value: &String| Some(value.clone());
    vec![
        field(
            "slug",
            "Slug",
            "3 to 20 lowercase letters, digits or '-'; prefixes every namespace; never changes",
            false,
            &text(&typed.slug),
        ),
        field(
            "display_name",
            "Display name",
            "Shown in the portal",
            false,
            &typed.display_name,
        ),
        field(
            "description",
            "Description",
            "What the tenant is for",
            true,
            &text(&typed.description),
        ),
        field(
            "namespaces",
            "Namespaces",
            "Short names, comma-separated, such as dev, prod",
            false,
            &text(&typed.namespaces),
        ),
        field(
            "budget_cpu",
            "CPU budget (requests.cpu)",
            "Such as 4 or 500m; leave empty for none",
            false,
            &typed.budget_cpu,
        ),
        field(
            "budget_memory",
            "Memory budget (requests.memory)",
            "Such as 8Gi",
            false,
            &typed.budget_memory,
        ),
        field(
            "budget_pods",
            "Pods budget",
            "A whole number",
            false,
            &typed.budget_pods,
        ),
    ]
}

pub async fn new_form(State(app): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let templates = template_choices(&app, &viewer).await?;
    render(&NewPage {
        nav: viewer.nav("tenants", None),
        fields: new_fields(&NewTenantForm::default(), &BTreeMap::new()),
        errors: BTreeMap::new(),
        templates,
        template: String::new(),
    })
}

/// The create form: the API's new tenant in a few text boxes.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewTenantForm {
    slug: String,
    display_name: Option<String>,
    description: String,
    /// Short names, comma-separated.
    namespaces: String,
    budget_cpu: Option<String>,
    budget_memory: Option<String>,
    budget_pods: Option<String>,
    /// A template to make the tenant from; empty: none.
    template: String,
}

/// The API's field names, so its errors land beside the right input.
impl DashboardForm for NewTenantForm {
    const ERROR_FIELDS: &'static [(&'static str, &'static str)] = &[
        ("budget.requests.cpu", "budget_cpu"),
        ("budget.requests.memory", "budget_memory"),
        ("budget.pods", "budget_pods"),
        ("namespaces", "namespaces"),
    ];
}

impl NewTenantForm {
    fn request(&self) -> NewTenantRequest {
        let budget = [
            ("requests.cpu", &self.budget_cpu),
            ("requests.memory", &self.budget_memory),
            ("pods", &self.budget_pods),
        ]
        .into_iter()
        .filter_map(|(resource, value)| Some((resource.to_string(), value.clone()?)))
        .collect();
        let namespaces = super::form::names(&self.namespaces)
            .into_iter()
            .map(|name| (name, BTreeMap::new()))
            .collect();
        NewTenantRequest {
            slug: self.slug.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            budget,
            namespaces,
            ..Default::default()
        }
    }
}

pub async fn create(
    State(app): State<AppState>,
    posted: Posted<NewTenantForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        form,
        ..
    } = posted;
    let created = if form.template.is_empty() {
        service::tenants::create(
            &app.db,
            &app.config,
            &app.clusters,
            &viewer.principal,
            &actor,
            form.request(),
        )
        .await
        .map(|tenant| tenant.slug)
    } else {
        service::templates::create_tenant(
            service::documents::Portal {
                db: &app.db,
                config: &app.config,
                clusters: &app.clusters,
            },
            &viewer.principal,
            &actor,
            &form.template,
            form.request(),
        )
        .await
    };
    match created {
        Ok(slug) => Ok(see_other(
            &format!("/tenants/{slug}"),
            "Tenant created; it is being set up in the cluster.",
        )),
        Err(
            error @ (crate::error::Error::Invalid(_)
            | crate::error::Error::Conflict { .. }
            | crate::error::Error::Refused { .. }),
        ) => {
            let status = match error {
                crate::error::Error::Refused { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let error_text = error.to_string();
            let mut errors = NewTenantForm::refused(error).fields;
            if errors.is_empty() {
                errors.insert("slug".into(), error_text);
            }
            let page = NewPage {
                nav: viewer.nav("tenants", None),
                fields: new_fields(&form, &errors),
                errors,
                templates: template_choices(&app, &viewer).await?,
                template: form.template.clone(),
            };
            let mut response = render(&page)?;
            *response.status_mut() = status;
            Ok(response.into_response())
        }
        Err(other) => Err(other.into()),
    }
}
