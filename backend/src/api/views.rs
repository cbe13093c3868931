//! Loads the API's representation of tenants from rows, in batched queries.

use sqlx::PgConnection;

use super::model::{Member, Namespace, SyncStatus, Tenant};
use crate::db::{self, members::MemberRow, namespaces::NamespaceRow, tenants::TenantRow};
use crate::domain::ResourceList;
use crate::error::Error;

pub fn sync_status(row: &TenantRow) -> SyncStatus {
    SyncStatus {
        status: row.sync_status.clone(),
        observed_generation: row.observed_generation,
        message: row.sync_message.clone(),
        last_synced_at: row.last_synced_at,
    }
}

pub fn namespace(row: &NamespaceRow) -> Namespace {
    Namespace {
        name: row.name.clone(),
        full_name: row.full_name.clone(),
        allocations: row.allocations.to_strings(),
        created_at: row.created_at,
    }
}

pub fn member(row: &MemberRow) -> Member {
    Member {
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
) -> Result<Tenant, Error> {
    Ok(Tenant {
        sync: sync_status(&row),
        allocated: allocated(namespaces)?.to_strings(),
        namespaces: namespaces.iter().map(namespace).collect(),
        members: members.iter().map(member).collect(),
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
            .map(|at| (at - chrono::Utc::now()).num_seconds().max(0)),
        expires_at: row.expires_at,
    })
}

/// The full representation of many tenants, with one query for all their
/// namespaces and members.
pub async fn tenants(conn: &mut PgConnection, rows: Vec<TenantRow>) -> Result<Vec<Tenant>, Error> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut children = db::tenants::children(conn, &ids).await?;
    rows.into_iter()
        .map(|row| {
            let own = children.remove(&row.id).unwrap_or_default();
            assemble(row, &own.namespaces, &own.members)
        })
        .collect()
}

pub async fn tenant(conn: &mut PgConnection, row: TenantRow) -> Result<Tenant, Error> {
    let mut all = tenants(conn, vec![row]).await?;
    all.pop()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a loaded tenant vanished")))
}
