//! The one path every change to a tenant takes: lock the row, check the
//! precondition, change, then in the same transaction bump the generation,
//! append the audit event, enqueue the reconciler and append to the change
//! stream.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::{IfMatch, RequestId, etag};
use super::model::Tenant;
use super::views;
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize_tenant};
use crate::db::{self, Tx, tenants::TenantRow};
use crate::error::Error;

/// Who asked for a change, for the audit trail.
pub struct Actor {
    pub name: String,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn of(who: &Principal, request_id: &RequestId) -> Self {
        Self {
            name: who.actor(),
            request_id: request_id.0.clone(),
        }
    }

    /// The portal itself, such as `system:expiry`.
    pub fn system(name: &str) -> Self {
        Self {
            name: name.to_string(),
            request_id: None,
        }
    }
}

/// A change in progress on one locked tenant.
pub struct TenantChange {
    pub tx: Tx,
    pub tenant: TenantRow,
    before: Tenant,
}

impl TenantChange {
    /// Locks the tenant and checks `If-Match`; 404 when there is no such tenant.
    pub async fn begin(
        db: &sqlx::PgPool,
        slug: &str,
        precondition: &IfMatch,
    ) -> Result<Self, Error> {
        let mut tx = db.begin().await?;
        let tenant = db::tenants::get_for_update(&mut tx, slug)
            .await?
            .ok_or_else(|| not_found(slug))?;
        precondition.check(tenant.generation)?;
        let before = views::tenant(&mut tx, tenant.clone()).await?;
        Ok(Self { tx, tenant, before })
    }

    /// Refuses changes to tenants on their way out.
    pub fn require_editable(&self) -> Result<(), Error> {
        let state = self.tenant.state();
        if state.is_editable() {
            Ok(())
        } else {
            Err(Error::conflict(format!(
                "the tenant \"{}\" is {state} and can no longer be changed",
                self.tenant.slug
            )))
        }
    }

    pub fn before(&self) -> &Tenant {
        &self.before
    }

    /// Asks the policy whether `who` may do `action` to this tenant.
    pub fn authorize(&self, who: &Principal, action: Action) -> Result<(), Error> {
        authorize_tenant(who, action, &self.before.slug, self.before.memberships())
    }

    /// Records the change and commits; returns the tenant as it now is.
    pub async fn commit(mut self, actor: &Actor, action: &str) -> Result<Tenant, Error> {
        db::tenants::bump_generation(&mut self.tx, self.tenant.id).await?;
        let row = db::tenants::get(&mut self.tx, &self.tenant.slug)
            .await?
            .ok_or_else(|| not_found(&self.tenant.slug))?;
        let after = views::tenant(&mut self.tx, row).await?;
        record(
            &mut self.tx,
            actor,
            action,
            self.tenant.id,
            Some(&self.before),
            &after,
        )
        .await?;
        self.tx.commit().await?;
        Ok(after)
    }
}

/// Appends the audit event and enqueues the reconciler for a changed tenant.
pub async fn record(
    tx: &mut Tx,
    actor: &Actor,
    action: &str,
    tenant_id: i64,
    before: Option<&Tenant>,
    after: &Tenant,
) -> Result<(), Error> {
    let to_json = |t: &Tenant| serde_json::to_value(t).map_err(|e| Error::Internal(e.into()));
    let before = before.map(to_json).transpose()?;
    let after_json = to_json(after)?;
    db::audit::record(
        tx,
        db::audit::NewEvent {
            actor: &actor.name,
            action,
            tenant: Some((tenant_id, &after.slug)),
            before: before.as_ref(),
            after: Some(&after_json),
            request_id: actor.request_id.as_deref(),
        },
    )
    .await?;
    db::outbox::enqueue(tx, tenant_id, after.generation).await?;
    let data = serde_json::json!({"action": action, "actor": actor.name, "generation": after.generation, "state": after.state});
    db::events::append(tx, stream_kind(action), tenant_id, &after.slug, &data).await?;
    Ok(())
}

/// How the change stream names an audited action.
fn stream_kind(action: &str) -> &'static str {
    match action {
        "tenant.created" => "tenant.created",
        "tenant.suspended" => "tenant.suspended",
        "tenant.resumed" => "tenant.resumed",
        "tenant.deletion_requested" | "tenant.expired" => "tenant.deleting",
        _ => "tenant.updated",
    }
}

/// Loads a tenant row for a read or an action outside a change, after the
/// policy allowed `action` to `who` on it.
pub async fn load_authorized(
    conn: &mut sqlx::PgConnection,
    who: &Principal,
    slug: &str,
    action: Action,
) -> Result<TenantRow, Error> {
    let row = db::tenants::get(conn, slug)
        .await?
        .ok_or_else(|| not_found(slug))?;
    let members = db::members::list_for_tenants(conn, &[row.id]).await?;
    let memberships = members.iter().map(|m| (m.kind, m.subject.as_str(), m.role));
    authorize_tenant(who, action, slug, memberships)?;
    Ok(row)
}

/// The tenant's full representation, after the policy allowed `action` to
/// `who` on it; the view already holds the members the policy needs.
pub async fn view_authorized(
    conn: &mut sqlx::PgConnection,
    who: &Principal,
    slug: &str,
    action: Action,
) -> Result<Tenant, Error> {
    let row = db::tenants::get(conn, slug)
        .await?
        .ok_or_else(|| not_found(slug))?;
    let tenant = views::tenant(conn, row).await?;
    authorize_tenant(who, action, slug, tenant.memberships())?;
    Ok(tenant)
}

pub fn not_found(slug: &str) -> Error {
    Error::NotFound(format!("there is no tenant \"{slug}\""))
}

/// A tenant answer with its ETag.
pub fn tenant_response(status: StatusCode, tenant: Tenant) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(tag) = HeaderValue::from_str(&etag(tenant.generation)) {
        headers.insert(header::ETAG, tag);
    }
    (status, headers, Json(tenant)).into_response()
}
