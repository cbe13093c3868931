//! A tenant's page and its kubeconfig download; the edit page and its forms
//! are in `edit.rs`.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::display::{Bar, Chart, bars, charts, time_left, when};
use super::home::NoticeQuery;
use super::{DashboardForm, Nav, PageError, Posted, Viewer, render};
use crate::auth::policy::Action;
use crate::db::{self, audit::AuditFilter};
use crate::domain::{Quantity, ResourceList};
use crate::service::budget::BudgetSummary;
use crate::service::gitops::GitopsStatus;
use crate::service::views::{self, TenantView};
use crate::service::{self, access};
use crate::state::AppState;

/// The tenant's facts as pages show them.
pub struct TenantFacts {
    pub slug: String,
    pub display_name: String,
    pub description: String,
    pub state: String,
    pub sync: String,
    pub sync_message: String,
    pub generation: i64,
    pub cluster: String,
    pub expires: Option<String>,
}

pub struct NamespaceRow {
    pub name: String,
    pub full_name: String,
    pub status: String,
    pub message: String,
    pub bars: Vec<Bar>,
}

pub struct BudgetRow {
    pub resource: String,
    pub budget: String,
    pub allocated: String,
    pub available: String,
}

pub struct MemberRow {
    pub id: i64,
    pub subject: String,
    pub kind: String,
    pub role: String,
}

pub struct RequestRow {
    pub id: i64,
    pub tenant: String,
    pub requested_by: String,
    pub resource: String,
    pub amount: String,
    pub current: String,
    pub reason: String,
    pub status: String,
    pub granted: Option<String>,
    pub decided_by: String,
    pub comment: String,
    /// The tenant's use of the resource, beside a pending request.
    pub usage: String,
}

impl RequestRow {
    pub fn from_row(r: db::quota_requests::QuotaRequestRow) -> Self {
        Self {
            current: r.current_budget.unwrap_or_else(|| "none".into()),
            id: r.id,
            tenant: r.tenant_slug,
            requested_by: r.requested_by,
            resource: r.resource,
            amount: r.amount,
            reason: r.reason,
            status: r.status,
            granted: r.granted_amount,
            decided_by: r.decided_by.unwrap_or_default(),
            comment: r.comment.unwrap_or_default(),
            usage: String::new(),
        }
    }
}

pub struct AuditLine {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub tenant: String,
}

pub(super) fn facts(t: &TenantView) -> TenantFacts {
    TenantFacts {
        slug: t.slug.clone(),
        display_name: t.display_name.clone(),
        description: t.description.clone(),
        state: serde_json::to_value(t.state)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        sync: t.sync.status.clone(),
        sync_message: t.sync.message.clone().unwrap_or_default(),
        generation: t.generation,
        cluster: t.cluster.clone(),
        expires: time_left(t.expires_at),
    }
}

pub(super) fn members(t: &TenantView) -> Vec<MemberRow> {
    t.members
        .iter()
        .map(|m| MemberRow {
            id: m.id,
            subject: m.subject.clone(),
            kind: m.kind.as_str().into(),
            role: m.role.as_str().into(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "tenant.html")]
struct TenantPage {
    nav: Nav,
    t: TenantFacts,
    can_edit: bool,
    can_kubeconfig: bool,
    /// Kubeconfigs that sign in with the identity provider are offered.
    idp_kubeconfig: bool,
    namespaces: Vec<NamespaceRow>,
    budget: Vec<BudgetRow>,
    charts: Vec<Chart>,
    requests: Vec<RequestRow>,
    resources: Vec<String>,
    members: Vec<MemberRow>,
    policy: Vec<super::policy::PolicyLine>,
    policy_is_default: bool,
    audit: Vec<AuditLine>,
    cost: super::showback::TenantCost,
    gitops: GitopsStatus,
    /// This portal keeps GitOps credentials (`--gitops-cluster`).
    gitops_offered: bool,
    can_gitops: bool,
}

/// Resources an owner may ask quota for: what the budget has, and the usual ones.
fn requestable(budget: &ResourceList) -> Vec<String> {
    let mut names: Vec<String> = budget.iter().map(|(r, _)| r.to_string()).collect();
    for usual in [
        "requests.cpu",
        "requests.memory",
        "pods",
        "limits.cpu",
        "limits.memory",
        "requests.storage",
        "namespaces",
    ] {
        if !names.iter().any(|n| n == usual) {
            names.push(usual.into());
        }
    }
    names.sort();
    names
}

pub async fn show(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(slug): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let mut conn = app.db.acquire().await?;
    let row =
        access::load_authorized(&mut conn, &viewer.principal, &slug, Action::ReadTenants).await?;
    let tenant_id = row.id;
    let namespace_rows = db::namespaces::list_for_tenants(&mut conn, &[tenant_id]).await?;
    let summary = BudgetSummary::of(&row, &namespace_rows)?;
    let tenant = views::tenant(&mut conn, row).await?;
    let may = |action| access::may(&viewer.principal, action, &tenant);
    // The view already holds the tenant's own policy: no second query.
    let (policy, source) = service::policy::in_force(&tenant, &app.config.guardrails);

    let namespaces = namespace_rows
        .iter()
        .map(|ns| NamespaceRow {
            name: ns.name.clone(),
            full_name: ns.full_name.clone(),
            status: ns.sync_status.clone(),
            message: ns.sync_message.clone().unwrap_or_default(),
            bars: bars(&ns.allocations.to_strings(), &ns.usage),
        })
        .collect();
    let budget = summary
        .lines()
        .into_iter()
        .map(|line| BudgetRow {
            resource: line.resource.to_string(),
            budget: line.budget.to_string(),
            allocated: line.used.to_string(),
            available: line.available.to_string(),
        })
        .collect();
    let history = db::sync::usage_history(&mut conn, tenant_id, 2000).await?;
    let requests = service::quota_requests::of_tenant(&mut conn, &slug, 50)
        .await?
        .into_iter()
        .map(RequestRow::from_row)
        .collect();
    let audit = db::audit::list_page(
        &mut conn,
        &AuditFilter {
            tenant: Some(slug.clone()),
            ..Default::default()
        },
        i64::MAX,
        15,
    )
    .await?
    .into_iter()
    .map(|a| AuditLine {
        at: when(a.occurred_at),
        actor: a.actor,
        action: a.action,
        tenant: a.tenant_slug.unwrap_or_default(),
    })
    .collect();
    let cost = super::showback::of_tenant(&mut conn, &viewer.principal, &slug, app.config.currency)
        .await?;
    let gitops = service::gitops::of_tenant(
        &mut conn,
        tenant_id,
        &slug,
        &app.config.gitops,
        &app.config.login.public_url,
    )
    .await?;
    let page = TenantPage {
        cost,
        nav: viewer.nav("tenants", q.notice),
        can_edit: may(Action::EditTenant),
        can_kubeconfig: may(Action::IssueKubeconfig),
        can_gitops: may(Action::ManageGitops),
        gitops_offered: app.config.gitops.cluster.is_some(),
        gitops,
        idp_kubeconfig: service::kubeconfig::SignIn::identity_provider(&app.config.login).is_some(),
        t: facts(&tenant),
        namespaces,
        budget,
        charts: charts(&history_totals(history)),
        requests,
        resources: requestable(&summary.budget),
        members: members(&tenant),
        policy: super::policy::lines(&policy),
        policy_is_default: source == service::policy::Source::Default,
        audit,
    };
    render(&page)
}

/// Sums each sampling time's namespaces into one total per resource, oldest first.
fn history_totals(
    samples: Vec<(chrono::DateTime<chrono::Utc>, serde_json::Value)>,
) -> Vec<BTreeMap<String, Quantity>> {
    let mut by_time: BTreeMap<chrono::DateTime<chrono::Utc>, BTreeMap<String, Quantity>> =
        BTreeMap::new();
    for (at, used) in samples {
        let totals = by_time.entry(at).or_default();
        for (resource, amount) in used.as_object().into_iter().flatten() {
            if let Some(Ok(amount)) = amount.as_str().map(str::parse::<Quantity>) {
                let sum = match totals.get(resource) {
                    Some(have) => have.checked_add(&amount).unwrap_or(amount),
                    None => amount,
                };
                totals.insert(resource.clone(), sum);
            }
        }
    }
    by_time.into_values().collect()
}

/// Which kubeconfig: the tenant API's with a short-lived token (the
/// default) or the identity provider's sign-in, or the cluster's own.
#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum KubeconfigView {
    #[default]
    Tenant,
    TenantIdp,
    Cluster,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct KubeconfigForm {
    view: KubeconfigView,
}

impl DashboardForm for KubeconfigForm {}

pub async fn kubeconfig(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    posted: Posted<KubeconfigForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        form,
        ..
    } = posted;
    let ttl = app.config.kubeconfig_ttl;
    let issued = match form.view {
        KubeconfigView::Cluster => {
            service::kubeconfig::issue(
                &app.db,
                &app.clusters,
                &viewer.principal,
                &actor,
                &slug,
                ttl,
            )
            .await?
        }
        view => {
            let login = &app.config.login;
            let idp = service::kubeconfig::SignIn::identity_provider(login);
            let sign_in = match (view, idp) {
                (KubeconfigView::TenantIdp, Some(idp)) => idp,
                _ => service::kubeconfig::SignIn::Token { ttl },
            };
            service::kubeconfig::issue_tenant_view(
                &app.db,
                &viewer.principal,
                &actor,
                &slug,
                &app.public_endpoint()?,
                sign_in,
            )
            .await?
        }
    };
    let mut response = issued.yaml.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{slug}.kubeconfig\""))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    Ok(response)
}
