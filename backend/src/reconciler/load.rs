use sqlx::PgConnection;

use std::sync::Arc;

use crate::cluster::guardrails::Guardrails;
use crate::cluster::render::TenantState as Desired;
use crate::db::{self, tenants::TenantRow};
use crate::domain::TenantState;
use crate::error::Error;

/// The tenant row and what its cluster should hold. A tenant being deleted
/// should hold nothing. A stored row that does not parse fails the load
/// (`Error::Corrupt`); it never loads as an empty quota or a dropped member.
pub async fn load_state(
    conn: &mut PgConnection,
    tenant_id: i64,
    guardrails: &Arc<Guardrails>,
) -> Result<Option<(TenantRow, Desired)>, Error> {
    let loaded = db::tenants::with_children(conn, tenant_id)
        .await
        .map_err(|e| naming(e, format!("its row in tenants (id {tenant_id})")))?;
    let Some((row, children)) = loaded else {
        return Ok(None);
    };
    let published = children.platform_apis()?;
    let state = row.state();
    let keeps_objects = matches!(state, TenantState::Active | TenantState::Suspended);
    let children = children.parse().map_err(|e| {
        naming(
            e,
            format!("its rows in namespaces or members (tenant_id {tenant_id})"),
        )
    })?;
    let namespaces = if keeps_objects {
        children
            .namespaces
            .iter()
            .map(|n| (n.full_name.clone(), n.allocations()))
            .collect()
    } else {
        Vec::new()
    };
    let policy = match &children.policy {
        None => guardrails.default_policy.clone(),
        Some(stored) => crate::service::policy::decode(row.id, stored)?,
    };
    let members = children
        .members
        .into_iter()
        .map(|m| (m.kind, m.subject, m.role))
        .collect();
    let platform_apis =
        crate::domain::platform_api::in_force(&published, policy.platform_apis.as_ref());
    let desired = Desired {
        platform_apis,
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

/// Says which stored rows did not parse, and why, in words for the sync
/// message: the value's own complaint, without the decoder's plumbing.
fn naming(e: Error, rows: String) -> Error {
    match e {
        Error::Corrupt(cause) => {
            let why = cause.root_cause().to_string();
            Error::Corrupt(anyhow::anyhow!("{rows} does not parse: {why}"))
        }
        other => other,
    }
}
