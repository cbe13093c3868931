//! What a tenant looks like to its readers, loaded from rows in batched
//! queries: the one read model the API, the pages and the audit trail use.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::db::{self, members::MemberRow, namespaces::NamespaceRow, tenants::TenantRow};
use crate::domain::{MemberKind, ResourceList, Role, TenantPolicy, TenantState};
use crate::error::Error;

/// Resource name to quantity, in the Kubernetes quantity grammar.
pub type Quantities = BTreeMap<String, String>;

/// Whether the cluster holds what the portal last accepted.
#[derive(Debug, Clone, Serialize)]
pub struct SyncView {
    pub status: String,
    pub observed_generation: i64,
    pub message: Option<String>,
    pub last_synced_at: Option<DateTime<Utc>>,
}

/// A tenant with its namespaces, budget, members and sync status. Its JSON
/// is what the audit trail records before and after a change.
#[derive(Debug, Clone, Serialize)]
pub struct TenantView {
    pub slug: String,
    pub display_name: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub cluster: String,
    pub state: TenantState,
    pub budget: Quantities,
    pub allocated: Quantities,
    pub namespaces: Vec<NamespaceView>,
    pub members: Vec<MemberView>,
    /// The policy a platform admin set; `None`: the configured default.
    pub policy: Option<TenantPolicy>,
    pub generation: i64,
    pub sync: SyncView,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub expires_in_seconds: Option<i64>,
}

impl TenantView {
    /// Who has which role, as the policy reads it.
    pub fn memberships(&self) -> impl Iterator<Item = (MemberKind, &str, Role)> {
        self.members
            .iter()
            .map(|m| (m.kind, m.subject.as_str(), m.role))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NamespaceView {
    pub name: String,
    pub full_name: String,
    pub allocations: Quantities,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub id: i64,
    pub kind: MemberKind,
    pub subject: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

pub fn sync_status(row: &TenantRow) -> SyncView {
    SyncView {
        status: row.sync_status.clone(),
        observed_generation: row.observed_generation,
        message: row.sync_message.clone(),
        last_synced_at: row.last_synced_at,
    }
}

pub fn namespace(row: &NamespaceRow) -> NamespaceView {
    NamespaceView {
        name: row.name.clone(),
        full_name: row.full_name.clone(),
        allocations: row.allocations.to_strings(),
        created_at: row.created_at,
    }
}

pub fn member(row: &MemberRow) -> MemberView {
    MemberView {
        id: row.id,
        kind: row.kind,
        subject: row.subject.clone(),
        role: row.role,
        created_at: row.created_at,
    }
}

/// The sum of the namespaces' allocations.
pub fn allocated(namespaces: &[NamespaceRow]) -> Result<ResourceList, Error> {
    let lists: Vec<ResourceList> = namespaces.iter().map(NamespaceRow::allocations).collect();
    ResourceList::total(&lists)
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored allocations overflow: {e}")))
}

fn assemble(
    row: TenantRow,
    namespaces: &[NamespaceRow],
    members: &[MemberRow],
    policy: Option<TenantPolicy>,
) -> Result<TenantView, Error> {
    Ok(TenantView {
        sync: sync_status(&row),
        allocated: allocated(namespaces)?.to_strings(),
        namespaces: namespaces.iter().map(namespace).collect(),
        members: members.iter().map(member).collect(),
        policy,
        slug: row.slug,
        display_name: row.display_name,
        description: row.description,
        labels: row.labels.0,
        cluster: row.cluster,
        state: row.state,
        budget: row.budget.to_strings(),
        generation: row.generation,
        created_at: row.created_at,
        updated_at: row.updated_at,
        deleted_at: row.deleted_at,
        expires_in_seconds: row
            .expires_at
            .map(|at| (at - Utc::now()).num_seconds().max(0)),
        expires_at: row.expires_at,
    })
}

/// The views of many tenants, with one query for all their namespaces and members.
pub async fn tenants(
    conn: &mut PgConnection,
    rows: Vec<TenantRow>,
) -> Result<Vec<TenantView>, Error> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut children = db::tenants::children(conn, &ids).await?;
    let rows = rows.into_iter().map(|row| {
        let own = children.remove(&row.id).unwrap_or_default();
        (row, own)
    });
    assemble_all(rows)
}

/// The views of tenants whose children were read with them.
pub fn assemble_all(
    rows: impl IntoIterator<Item = (TenantRow, db::tenants::Children)>,
) -> Result<Vec<TenantView>, Error> {
    rows.into_iter()
        .map(|(row, own)| assemble_with(row, &own))
        .collect()
}

/// The view of one tenant whose children were read with it.
pub fn assemble_with(row: TenantRow, own: &db::tenants::Children) -> Result<TenantView, Error> {
    let policy = own
        .policy
        .as_ref()
        .map(|stored| super::policy::decode(row.id, stored))
        .transpose()?;
    assemble(row, &own.namespaces, &own.members, policy)
}

/// The view of a tenant created in this transaction, from the rows it wrote,
/// in the order the stored view lists them (namespaces by name, byte by
/// byte as `db::tenants::children` sorts them; members as added).
pub fn new_tenant(
    row: TenantRow,
    mut namespaces: Vec<NamespaceRow>,
    mut members: Vec<MemberRow>,
) -> Result<TenantView, Error> {
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    members.sort_by_key(|m| m.id);
    assemble(row, &namespaces, &members, None)
}

pub async fn tenant(conn: &mut PgConnection, row: TenantRow) -> Result<TenantView, Error> {
    let mut all = tenants(conn, vec![row]).await?;
    all.pop()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a loaded tenant vanished")))
}
