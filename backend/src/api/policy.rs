//! `GET|PUT|DELETE /tenants/{slug}/policy`: what a tenant may do inside its
//! namespaces. Members read it; only platform admins change it.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::change::{Actor, TenantChange, load_authorized};
use super::extract::{ApiJson, IfMatch, RequestId};
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::db;
use crate::domain::TenantPolicy;
use crate::domain::tenant_policy::PolicyDocument;
use crate::error::Error;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get, put, reset))
}

/// Where a tenant's policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicySource {
    /// The configuration's default (`--pod-security`, `--allowed-service-types`).
    Default,
    /// Set for this tenant by a platform admin.
    Custom,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyView {
    pub tenant: String,
    pub policy: TenantPolicy,
    pub source: PolicySource,
    /// The tenant's generation after the change; the reconciler reports it
    /// as observed once the cluster holds it.
    pub generation: i64,
}

/// The tenant's policy as it applies now: its own, or the default.
pub async fn effective(
    conn: &mut sqlx::PgConnection,
    app: &AppState,
    tenant_id: i64,
) -> Result<(TenantPolicy, PolicySource), Error> {
    match db::policies::get(conn, tenant_id).await? {
        None => Ok((
            app.config.guardrails.default_policy(),
            PolicySource::Default,
        )),
        Some(stored) => TenantPolicy::from_stored(&stored)
            .map(|p| (p, PolicySource::Custom))
            .map_err(|e| Error::Internal(anyhow::anyhow!("tenant {tenant_id}: {e}"))),
    }
}

/// The tenant's policy.
#[utoipa::path(get, path = "/tenants/{slug}/policy", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug")),
    responses((status = 200, description = "The policy in force", body = PolicyView)))]
async fn get(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
) -> Result<Json<PolicyView>, Error> {
    precheck(&who, Action::ReadTenants)?;
    let mut conn = app.db.acquire().await?;
    let row = load_authorized(&mut conn, &who, &slug, Action::ReadTenants).await?;
    let (policy, source) = effective(&mut conn, &app, row.id).await?;
    Ok(Json(PolicyView {
        tenant: row.slug,
        policy,
        source,
        generation: row.generation,
    }))
}

/// Set the tenant's policy (platform admins). Fields left out keep their
/// current value; `null` for a list means "any".
#[utoipa::path(put, path = "/tenants/{slug}/policy", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    request_body = PolicyDocument,
    responses((status = 200, description = "The policy now in force", body = PolicyView)))]
async fn put(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
    ApiJson(document): ApiJson<PolicyDocument>,
) -> Result<Json<PolicyView>, Error> {
    precheck(&who, Action::ChangePolicy)?;
    let mut change = TenantChange::begin(&app.db, &slug, &precondition).await?;
    change.authorize(&who, Action::ChangePolicy)?;
    change.require_editable()?;
    let id = change.tenant.id;
    let (current, _) = effective(&mut change.tx, &app, id).await?;
    let policy = TenantPolicy::parse(&document, &current).map_err(Error::Invalid)?;
    db::policies::put(&mut change.tx, id, &policy).await?;
    commit(
        change,
        &who,
        &request_id,
        &current,
        policy,
        PolicySource::Custom,
    )
    .await
}

/// Back to the configured default (platform admins).
#[utoipa::path(delete, path = "/tenants/{slug}/policy", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, description = "The default policy, now in force", body = PolicyView)))]
async fn reset(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
) -> Result<Json<PolicyView>, Error> {
    precheck(&who, Action::ChangePolicy)?;
    let mut change = TenantChange::begin(&app.db, &slug, &precondition).await?;
    change.authorize(&who, Action::ChangePolicy)?;
    change.require_editable()?;
    let id = change.tenant.id;
    let (current, _) = effective(&mut change.tx, &app, id).await?;
    db::policies::clear(&mut change.tx, id).await?;
    let policy = app.config.guardrails.default_policy();
    commit(
        change,
        &who,
        &request_id,
        &current,
        policy,
        PolicySource::Default,
    )
    .await
}

async fn commit(
    mut change: TenantChange,
    who: &Principal,
    request_id: &RequestId,
    before: &TenantPolicy,
    policy: TenantPolicy,
    source: PolicySource,
) -> Result<Json<PolicyView>, Error> {
    let to_json = |p: &TenantPolicy| serde_json::to_value(p).map_err(|e| Error::Internal(e.into()));
    let actor = Actor::of(who, request_id);
    db::audit::record(
        &mut change.tx,
        db::audit::NewEvent {
            actor: &actor.name,
            action: "tenant.policy_changed",
            tenant: Some((change.tenant.id, &change.tenant.slug)),
            before: Some(&to_json(before)?),
            after: Some(&to_json(&policy)?),
            request_id: actor.request_id.as_deref(),
        },
    )
    .await?;
    let tenant = change.commit(&actor, "tenant.policy_changed").await?;
    Ok(Json(PolicyView {
        tenant: tenant.slug,
        policy,
        source,
        generation: tenant.generation,
    }))
}
