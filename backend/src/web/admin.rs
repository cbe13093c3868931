//! The admin page: clusters, service tokens and audit search.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::display::when;
use super::edit::ButtonForm;
use super::tenant::AuditLine;
use super::{DashboardForm, Nav, PageError, Posted, Viewer, render, see_other};
use crate::auth::Scope;
use crate::auth::policy::{Action, authorize};
use crate::db::{self, audit::AuditFilter};
use crate::error::Error;
use crate::service::clusters::CapacityRequest;
use crate::service::tokens::{self, Issuer, TokenRequest};
use crate::state::AppState;

pub struct ClusterLine {
    pub name: String,
    pub reachable: bool,
    pub tenants: i64,
    /// Namespaces placed, with the declared capacity when there is one.
    pub namespaces: String,
    /// CPU / memory the tenants' budgets promise, with the capacity.
    pub budgets: String,
    pub error: String,
}

pub struct TokenLine {
    pub name: String,
    pub scopes: String,
    /// "all tenants", or those named on it besides the ones it creates.
    pub reach: String,
    pub expires: String,
    pub last_used: String,
    pub state: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    nav: Nav,
    clusters: Vec<ClusterLine>,
    tokens: Vec<TokenLine>,
    scopes: Vec<&'static str>,
    new_secret: Option<String>,
    token_problem: Option<String>,
    capacity_problem: Option<String>,
    audit: Vec<AuditLine>,
    templates: Vec<TemplateLine>,
    filter_tenant: String,
    filter_actor: String,
    filter_action: String,
}

#[derive(Deserialize, Default)]
pub struct AdminQuery {
    tenant: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    notice: Option<String>,
}

pub async fn page(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<AdminQuery>,
) -> Result<Response, PageError> {
    admin_page(&app, &viewer, q, Answer::default()).await
}

/// What the page says after a form: a new token's secret, or a form's problem.
#[derive(Default)]
struct Answer {
    new_secret: Option<String>,
    token_problem: Option<String>,
    capacity_problem: Option<String>,
}

async fn admin_page(
    app: &AppState,
    viewer: &Viewer,
    q: AdminQuery,
    answer: Answer,
) -> Result<Response, PageError> {
    let clusters =
        crate::service::clusters::list(&app.db, &app.config, &app.clusters, &viewer.principal)
            .await?
            .into_iter()
            .map(|c| {
                let of = |placed: String, max: Option<String>| match max {
                    Some(max) => format!("{placed} of {max}"),
                    None => placed,
                };
                ClusterLine {
                    namespaces: of(
                        c.placed.namespaces.to_string(),
                        c.capacity.namespaces.map(|n| n.to_string()),
                    ),
                    budgets: format!(
                        "{} / {}",
                        of(c.placed.cpu, c.capacity.cpu),
                        of(c.placed.memory, c.capacity.memory)
                    ),
                    name: c.name,
                    reachable: c.reachable,
                    tenants: c.tenants,
                    error: c.last_error.unwrap_or_default(),
                }
            })
            .collect();
    let mut conn = app.db.acquire().await?;
    let at = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(when).unwrap_or_else(|| "–".into());
    let tokens = db::tokens::list(&mut conn)
        .await?
        .into_iter()
        .map(|t| TokenLine {
            state: if t.revoked_at.is_some() {
                "revoked".into()
            } else if t.expires_at.is_some_and(|e| e <= chrono::Utc::now()) {
                "expired".into()
            } else {
                "active".into()
            },
            reach: if t.all_tenants {
                "all tenants".into()
            } else if t.tenants.is_empty() {
                "its own".into()
            } else {
                format!("its own + {}", t.tenants.join(", "))
            },
            name: t.name,
            scopes: t.scopes.join(" "),
            expires: at(t.expires_at),
            last_used: at(t.last_used_at),
        })
        .collect();
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let filter = AuditFilter {
        tenant: nonempty(&q.tenant),
        actor: nonempty(&q.actor),
        action: nonempty(&q.action),
        since: None,
        reach: None,
    };
    let audit = db::audit::list_page(&mut conn, &filter, i64::MAX, 50)
        .await?
        .into_iter()
        .map(|a| AuditLine {
            at: when(a.occurred_at),
            actor: a.actor,
            action: a.action,
            tenant: a.tenant_slug.unwrap_or_default(),
        })
        .collect();
    let templates = template_lines(&mut conn, viewer).await?;
    let status = if answer.token_problem.is_some() || answer.capacity_problem.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let mut response = render(&AdminPage {
        nav: viewer.nav("admin", q.notice),
        clusters,
        tokens,
        scopes: Scope::ALL.iter().map(|s| s.as_str()).collect(),
        new_secret: answer.new_secret,
        token_problem: answer.token_problem,
        capacity_problem: answer.capacity_problem,
        audit,
        templates,
        filter_tenant: q.tenant.unwrap_or_default(),
        filter_actor: q.actor.unwrap_or_default(),
        filter_action: q.action.unwrap_or_default(),
    })?;
    *response.status_mut() = status;
    Ok(response)
}

/// A template's newest version, as the admin page lists it.
struct TemplateLine {
    name: String,
    description: String,
    version: i32,
    budget: String,
    namespaces: String,
    labels: String,
    ttl: String,
    /// Tenants on it: on the newest version, and in all.
    tenants: String,
}

async fn template_lines(
    conn: &mut sqlx::PgConnection,
    viewer: &Viewer,
) -> Result<Vec<TemplateLine>, PageError> {
    let pairs = |map: &std::collections::BTreeMap<String, String>| {
        map.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lines = Vec::new();
    for t in crate::service::templates::list(conn, &viewer.principal).await? {
        let on = db::templates::tenants_on(conn, &t.at.name).await?;
        let newest = on.iter().filter(|o| o.version == t.at.version).count();
        lines.push(TemplateLine {
            tenants: format!("{newest} of {} on v{}", on.len(), t.at.version),
            budget: pairs(&t.spec.budget),
            namespaces: t
                .spec
                .namespaces
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            labels: pairs(&t.spec.labels),
            ttl: t.spec.ttl.clone().unwrap_or_else(|| "–".into()),
            description: t.spec.description,
            name: t.at.name,
            version: t.at.version,
        });
    }
    Ok(lines)
}

/// A new service token: its name, scopes (checkboxes of one name), the
/// tenants it reaches besides those it creates, and its lifetime.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenForm {
    name: String,
    scope: Vec<String>,
    /// Slugs, separated by commas or spaces.
    tenants: String,
    all_tenants: bool,
    expires_in: Option<String>,
}

impl DashboardForm for TokenForm {}

pub async fn create_token(
    State(app): State<AppState>,
    posted: Posted<TokenForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        form,
        ..
    } = posted;
    authorize(&viewer.principal, Action::ManageTokens)?;
    let scopes: Result<Vec<Scope>, String> = form.scope.iter().map(|v| v.parse()).collect();
    let problem = |text: String| {
        let answer = Answer {
            token_problem: Some(text),
            ..Answer::default()
        };
        admin_page(&app, &viewer, AdminQuery::default(), answer)
    };
    let scopes = match scopes {
        Ok(scopes) => scopes,
        Err(rule) => return problem(format!("scopes: {rule}")).await,
    };
    let expires_at = match form.expires_in {
        None => None,
        Some(expires) => match crate::domain::parse_duration(&expires)
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
        {
            Some(d) => Some(chrono::Utc::now() + d),
            None => {
                return problem(format!(
                    "expires in: \"{expires}\" is not a duration such as 90d"
                ))
                .await;
            }
        },
    };
    let request = TokenRequest {
        name: form.name,
        scopes,
        expires_at,
        tenants: super::form::names(&form.tenants),
        all_tenants: form.all_tenants,
    };
    match tokens::create(&app.db, Issuer::Caller(&viewer.principal), &actor, request).await {
        Ok((_, secret)) => {
            let answer = Answer {
                new_secret: Some(secret.reveal()),
                ..Answer::default()
            };
            admin_page(&app, &viewer, AdminQuery::default(), answer).await
        }
        Err(Error::Conflict { detail, .. }) => problem(detail).await,
        Err(Error::Invalid(errors)) => problem(fields(&errors)).await,
        Err(e) => Err(e.into()),
    }
}

pub(super) fn fields(errors: &[crate::domain::FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.rule))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A cluster's declared capacity; an empty field has no limit.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CapacityForm {
    cluster: String,
    namespaces: Option<String>,
    cpu: Option<String>,
    memory: Option<String>,
}

impl DashboardForm for CapacityForm {}

/// Declares a cluster's capacity from the admin page's form.
pub async fn set_capacity(
    State(app): State<AppState>,
    posted: Posted<CapacityForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        form,
        ..
    } = posted;
    let problem = |text: String| {
        let answer = Answer {
            capacity_problem: Some(text),
            ..Answer::default()
        };
        admin_page(&app, &viewer, AdminQuery::default(), answer)
    };
    let namespaces = match form.namespaces.map(|n| n.parse::<i64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return problem("namespaces: must be a whole number from 0 to 1000000000".into()).await;
        }
    };
    let cluster = form.cluster;
    let request = CapacityRequest {
        namespaces,
        cpu: form.cpu,
        memory: form.memory,
    };
    match crate::service::clusters::set_capacity(
        &app.db,
        &app.config,
        &app.clusters,
        &viewer.principal,
        &actor,
        &cluster,
        &request,
    )
    .await
    {
        Ok(_) => Ok(see_other(
            "/admin",
            &format!("Capacity of cluster {cluster} declared."),
        )),
        Err(Error::Invalid(errors)) => problem(fields(&errors)).await,
        Err(Error::NotFound(detail)) => problem(detail).await,
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_token(
    State(app): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<ButtonForm>,
) -> Result<Response, PageError> {
    let Posted { viewer, actor, .. } = posted;
    tokens::revoke(&app.db, Issuer::Caller(&viewer.principal), &actor, &name).await?;
    Ok(see_other("/admin", &format!("Token {name} revoked.")))
}
