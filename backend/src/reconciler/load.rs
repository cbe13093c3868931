use sqlx::PgConnection;

use std::sync::Arc;

use crate::cluster::guardrails::Guardrails;
use crate::cluster::render::TenantState as Desired;
use crate::db::{self, tenants::TenantRow};
use crate::domain::{MemberKind, Role, TenantPolicy, TenantState};
use crate::error::Error;

/// The tenant row and what its cluster should hold. A tenant being deleted
/// should hold nothing.
pub async fn load_state(
    conn: &mut PgConnection,
    tenant_id: i64,
    guardrails: &Arc<Guardrails>,
) -> Result<Option<(TenantRow, Desired)>, Error> {
    let Some(row) = db::tenants::get_by_id(conn, tenant_id).await? else {
        return Ok(None);
    };
    let state = row.state();
    let keeps_objects = matches!(state, TenantState::Active | TenantState::Suspended);
    let children = db::tenants::children(conn, &[row.id])
        .await?
        .remove(&row.id)
        .unwrap_or_default();
    let namespaces = if keeps_objects {
        children
            .namespaces
            .iter()
            .map(|n| (n.full_name.clone(), n.allocations()))
            .collect()
    } else {
        Vec::new()
    };
    let members = children
        .members
        .into_iter()
        .filter_map(|m| {
            Some((
                MemberKind::parse(&m.kind).ok()?,
                m.subject,
                Role::parse(&m.role).ok()?,
            ))
        })
        .collect();
    let policy = match db::policies::get(conn, row.id).await? {
        None => guardrails.default_policy.clone(),
        Some(stored) => TenantPolicy::from_stored(&stored).map_err(|e| {
            tracing::error!(tenant = %row.slug, tenant_id = row.id, error = %e, "tenant_policies row does not parse");
            Error::Internal(anyhow::anyhow!("tenant {}: {e}", row.slug))
        })?,
    };
    let desired = Desired {
        slug: row.slug.clone(),
        suspended: state == TenantState::Suspended,
        budget: row.budget(),
        namespaces,
        members,
        policy,
        guardrails: guardrails.clone(),
    };
    Ok(Some((row, desired)))
}
