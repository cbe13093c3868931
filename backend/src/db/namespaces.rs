use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::domain::{FieldError, ResourceList};
use crate::error::Error;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct NamespaceRow {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub full_name: String,
    pub allocations: ResourceList,
    pub created_at: DateTime<Utc>,
    pub sync_status: String,
    pub sync_message: Option<String>,
    /// ResourceQuota `status.used` as the cluster last reported it.
    pub usage: serde_json::Value,
    pub usage_at: Option<DateTime<Utc>>,
}

impl NamespaceRow {
    pub fn allocations(&self) -> ResourceList {
        self.allocations.clone()
    }
}

pub async fn insert(
    conn: &mut PgConnection,
    tenant_id: i64,
    name: &str,
    full_name: &str,
    allocations: &ResourceList,
) -> Result<NamespaceRow, Error> {
    let mut rows = insert_all(conn, tenant_id, &[(name, full_name, allocations)]).await?;
    rows.pop()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("an inserted namespace was not returned")))
}

/// Inserts (short name, full name, allocations) namespaces of one tenant in
/// one statement; a name taken is reported by the namespace it belongs to.
pub async fn insert_all(
    conn: &mut PgConnection,
    tenant_id: i64,
    namespaces: &[(&str, &str, &ResourceList)],
) -> Result<Vec<NamespaceRow>, Error> {
    let names: Vec<&str> = namespaces.iter().map(|n| n.0).collect();
    let full_names: Vec<&str> = namespaces.iter().map(|n| n.1).collect();
    let allocations: Vec<serde_json::Value> = namespaces
        .iter()
        .map(|n| serde_json::to_value(n.2.to_strings()))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Internal(e.into()))?;
    sqlx::query_as!(
        NamespaceRow,
        r#"INSERT INTO namespaces (tenant_id, name, full_name, allocations)
           SELECT $1, n.name, n.full_name, n.allocations
           FROM unnest($2::text[], $3::text[], $4::jsonb[]) WITH ORDINALITY AS n(name, full_name, allocations, i)
           ORDER BY n.i
           RETURNING id, tenant_id, name, full_name, allocations AS "allocations: _", created_at,
                     sync_status, sync_message, usage, usage_at"#,
        tenant_id,
        &names as &[&str],
        &full_names as &[&str],
        &allocations,
    )
    .fetch_all(conn)
    .await
    .map_err(|e| taken(e, namespaces))
}

/// The error of a failed insert of `namespaces` ((short name, full name,
/// allocations)): a name the database already holds is a conflict naming
/// the namespace it belongs to.
pub(crate) fn taken(e: sqlx::Error, namespaces: &[(&str, &str, &ResourceList)]) -> Error {
    let constraint = super::violated_constraint(&e);
    // The error names the value that was taken: PostgreSQL's detail
    // says "Key (...)=(value) already exists.", the name-claim trigger
    // (`claim_namespace_name`) says "the namespace name value was used".
    let said = e.as_database_error().map_or_else(String::new, |d| {
        let detail = d
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|d| d.detail())
            .unwrap_or_default();
        format!("{} {detail}", d.message())
    });
    let taken = namespaces
        .iter()
        .find(|(name, full_name, _)| {
            said.contains(&format!("=({full_name})"))
                || said.contains(&format!(" {full_name} "))
                || said.contains(&format!(", {name})"))
        })
        .or(namespaces.first());
    match (constraint, taken) {
        (Some(constraint), Some((name, full_name, _))) => {
            conflict(constraint, name, full_name).unwrap_or_else(|| e.into())
        }
        _ => e.into(),
    }
}

/// The answer for a namespace whose name the database already holds.
fn conflict(constraint: &str, name: &str, full_name: &str) -> Option<Error> {
    Some(match constraint {
        "namespaces_tenant_name_key" => Error::Conflict {
            detail: format!("the tenant already has a namespace \"{name}\""),
            errors: vec![FieldError::new("name", "must be unique within the tenant")],
        },
        "namespaces_full_name_key" => Error::Conflict {
            detail: format!(
                "the cluster namespace \"{full_name}\" already belongs to another tenant"
            ),
            errors: vec![FieldError::new(
                "name",
                "the full namespace name must be unique in the cluster",
            )],
        },
        "namespace_names_pkey" => Error::Conflict {
            detail: format!(
                "the cluster namespace \"{full_name}\" was used by another tenant; a namespace name is never given to a second tenant"
            ),
            errors: vec![FieldError::new(
                "name",
                "the full namespace name must never have belonged to another tenant",
            )],
        },
        _ => return None,
    })
}

pub async fn list_for_tenants(
    conn: &mut PgConnection,
    tenant_ids: &[i64],
) -> Result<Vec<NamespaceRow>, Error> {
    Ok(sqlx::query_as!(
        NamespaceRow,
        r#"SELECT id, tenant_id, name, full_name, allocations AS "allocations: _", created_at,
                     sync_status, sync_message, usage, usage_at
           FROM namespaces WHERE tenant_id = ANY($1) ORDER BY tenant_id, name"#,
        tenant_ids
    )
    .fetch_all(conn)
    .await?)
}

pub async fn set_allocations(
    conn: &mut PgConnection,
    id: i64,
    allocations: &ResourceList,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE namespaces SET allocations = $2 WHERE id = $1",
        id,
        Json(allocations.to_strings()) as _
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete(conn: &mut PgConnection, id: i64) -> Result<(), Error> {
    sqlx::query!("DELETE FROM namespaces WHERE id = $1", id)
        .execute(conn)
        .await?;
    Ok(())
}
