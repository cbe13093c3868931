use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::model::{
    NamespaceStatus, NamespaceUsage, PlatformApiStatus, ResourceUsage, TenantStatus, TenantUsage,
};
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::db;
use crate::domain::{Quantity, QuotaResource, ResourceList};
use crate::error::Error;
use crate::service::access::load_authorized;
use crate::service::views;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(usage))
}

/// Whether the cluster holds the tenant's current generation, per
/// namespace, and serves each platform API the tenant may use.
#[utoipa::path(get, path = "/tenants/{slug}/status", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug")),
    responses((status = 200, description = "The sync status", body = TenantStatus)))]
async fn status(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
) -> Result<Json<TenantStatus>, Error> {
    precheck(&who, Action::ReadTenants)?;
    let mut conn = app.db.acquire().await?;
    let row = load_authorized(&mut conn, &who, &slug, Action::ReadTenants).await?;
    let namespaces = db::namespaces::list_for_tenants(&mut conn, &[row.id]).await?;
    let platform_apis = crate::service::platform_apis::served_to(
        &mut conn,
        &app.clusters,
        &app.config.guardrails,
        row.id,
        &row.cluster,
    )
    .await?
    .into_iter()
    .map(|(api, why_not)| PlatformApiStatus {
        name: api.to_string(),
        served: why_not.is_none(),
        message: why_not,
    })
    .collect();
    Ok(Json(TenantStatus {
        platform_apis,
        slug: row.slug.clone(),
        state: row.state,
        generation: row.generation,
        sync: views::sync_status(&row).into(),
        namespaces: namespaces
            .into_iter()
            .map(|n| NamespaceStatus {
                name: n.name,
                full_name: n.full_name,
                status: n.sync_status,
                message: n.sync_message,
            })
            .collect(),
    }))
}

/// Quota use against allocations and the budget, per namespace and in total.
#[utoipa::path(get, path = "/tenants/{slug}/usage", tag = "quota",
    params(("slug" = String, Path, description = "The tenant's slug")),
    responses((status = 200, description = "The usage", body = TenantUsage)))]
async fn usage(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
) -> Result<Json<TenantUsage>, Error> {
    precheck(&who, Action::ReadTenants)?;
    let mut conn = app.db.acquire().await?;
    let row = load_authorized(&mut conn, &who, &slug, Action::ReadTenants).await?;
    let namespaces = db::namespaces::list_for_tenants(&mut conn, &[row.id]).await?;
    let mut used_total = ResourceList::default();
    let mut per_namespace = Vec::new();
    for ns in &namespaces {
        // The cluster may report resources the portal does not know; keep what parses.
        let mut used = ResourceList::default();
        for (name, amount) in ns.usage.as_object().into_iter().flatten() {
            if let (Ok(resource), Some(Ok(amount))) = (
                QuotaResource::parse(name),
                amount.as_str().map(str::parse::<Quantity>),
            ) {
                used.insert(resource, amount);
            }
        }
        used_total
            .add(&used)
            .map_err(|e| Error::Internal(anyhow::anyhow!("usage overflows: {e}")))?;
        per_namespace.push(NamespaceUsage {
            name: ns.name.clone(),
            full_name: ns.full_name.clone(),
            resources: combine(&used.to_strings(), &ns.allocations.to_strings(), None),
            reported_at: ns.usage_at,
        });
    }
    let allocated = views::allocated(&namespaces)?;
    Ok(Json(TenantUsage {
        slug: row.slug.clone(),
        namespaces: per_namespace,
        total: combine(
            &used_total.to_strings(),
            &allocated.to_strings(),
            Some(&row.budget.to_strings()),
        ),
    }))
}

/// One entry per resource named in any of the three lists.
fn combine(
    used: &BTreeMap<String, String>,
    allocated: &BTreeMap<String, String>,
    budget: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, ResourceUsage> {
    let mut names: Vec<&String> = used
        .keys()
        .chain(allocated.keys())
        .chain(budget.into_iter().flat_map(|b| b.keys()))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            (
                name.clone(),
                ResourceUsage {
                    used: used.get(name).cloned(),
                    allocated: allocated.get(name).cloned(),
                    budget: budget.and_then(|b| b.get(name).cloned()),
                },
            )
        })
        .collect()
}
