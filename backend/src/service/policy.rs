//! What a tenant may do inside its namespaces: its own policy or the
//! configured default. Members read it; only platform admins change it.

use sqlx::{PgConnection, PgPool};

use super::access::load_authorized;
use super::views::TenantView;
use super::{Actor, Precondition, TenantChange};
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::config::GuardrailConfig;
use crate::db;
use crate::domain::TenantPolicy;
use crate::domain::tenant_policy::PolicyDocument;
use crate::error::Error;

/// Where a tenant's policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The configuration's default (`--pod-security`, `--allowed-service-types`).
    Default,
    /// Set for this tenant by a platform admin.
    Custom,
}

/// A tenant's policy in force, at the tenant's generation.
#[derive(Debug, Clone)]
pub struct PolicyInForce {
    pub tenant: String,
    pub policy: TenantPolicy,
    pub source: Source,
    pub generation: i64,
}

/// A stored policy, checked again: one that no longer parses fails the
/// tenant (`Error::Corrupt`), never reads as the default.
pub fn decode(tenant_id: i64, stored: &serde_json::Value) -> Result<TenantPolicy, Error> {
    TenantPolicy::from_stored(stored).map_err(|e| {
        Error::Corrupt(anyhow::anyhow!(
            "its row in tenant_policies (tenant id {tenant_id}) does not parse: {e}"
        ))
    })
}

/// The policy in force for a loaded tenant: its own, or the default.
pub fn in_force(tenant: &TenantView, guardrails: &GuardrailConfig) -> (TenantPolicy, Source) {
    match &tenant.policy {
        Some(policy) => (policy.clone(), Source::Custom),
        None => (guardrails.default_policy(), Source::Default),
    }
}

/// The tenant's policy as it applies now: its own, or the default.
pub async fn effective(
    conn: &mut PgConnection,
    guardrails: &GuardrailConfig,
    tenant_id: i64,
) -> Result<(TenantPolicy, Source), Error> {
    match db::policies::get(conn, tenant_id).await? {
        None => Ok((guardrails.default_policy(), Source::Default)),
        Some(stored) => Ok((decode(tenant_id, &stored)?, Source::Custom)),
    }
}

/// The policy of a tenant `who` may read.
pub async fn read(
    conn: &mut PgConnection,
    guardrails: &GuardrailConfig,
    who: &Principal,
    slug: &str,
) -> Result<PolicyInForce, Error> {
    precheck(who, Action::ReadTenants)?;
    let row = load_authorized(conn, who, slug, Action::ReadTenants).await?;
    let (policy, source) = effective(conn, guardrails, row.id).await?;
    Ok(PolicyInForce {
        tenant: row.slug,
        policy,
        source,
        generation: row.generation,
    })
}

/// Sets the tenant's policy; fields the document leaves out keep their value.
pub async fn set(
    db: &PgPool,
    guardrails: &GuardrailConfig,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    document: &PolicyDocument,
) -> Result<PolicyInForce, Error> {
    let (mut change, current) = begin(db, guardrails, who, slug, precondition).await?;
    let policy = TenantPolicy::parse(document, &current).map_err(Error::Invalid)?;
    db::policies::put(&mut change.tx, change.tenant.id, &policy).await?;
    commit(change, actor, policy, Source::Custom).await
}

/// Puts the tenant back on the configured default.
pub async fn reset(
    db: &PgPool,
    guardrails: &GuardrailConfig,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
) -> Result<PolicyInForce, Error> {
    let (mut change, _) = begin(db, guardrails, who, slug, precondition).await?;
    db::policies::clear(&mut change.tx, change.tenant.id).await?;
    commit(change, actor, guardrails.default_policy(), Source::Default).await
}

/// Locks the tenant for a policy change by a platform admin, with the policy in force.
async fn begin(
    db: &PgPool,
    guardrails: &GuardrailConfig,
    who: &Principal,
    slug: &str,
    precondition: &Precondition,
) -> Result<(TenantChange, TenantPolicy), Error> {
    precheck(who, Action::ChangePolicy)?;
    let mut change = TenantChange::begin(db, who, Action::ChangePolicy, slug, precondition).await?;
    change.require_editable()?;
    let id = change.tenant.id;
    let (current, _) = effective(&mut change.tx, guardrails, id).await?;
    Ok((change, current))
}

async fn commit(
    change: TenantChange,
    actor: &Actor,
    policy: TenantPolicy,
    source: Source,
) -> Result<PolicyInForce, Error> {
    // The tenant's view carries its policy: the audit event records both.
    let tenant = change.commit(actor, "tenant.policy_changed").await?;
    Ok(PolicyInForce {
        tenant: tenant.slug,
        policy,
        source,
        generation: tenant.generation,
    })
}
