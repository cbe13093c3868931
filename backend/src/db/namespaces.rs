use std::collections::BTreeMap;

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
    pub allocations: Json<BTreeMap<String, String>>,
    pub created_at: DateTime<Utc>,
    pub sync_status: String,
    pub sync_message: Option<String>,
    /// ResourceQuota `status.used` as the cluster last reported it.
    pub usage: serde_json::Value,
    pub usage_at: Option<DateTime<Utc>>,
}

impl NamespaceRow {
    pub fn allocations(&self) -> ResourceList {
        ResourceList::parse(&self.allocations.0, "allocations").unwrap_or_default()
    }
}

pub async fn insert(
    conn: &mut PgConnection,
    tenant_id: i64,
    name: &str,
    full_name: &str,
    allocations: &ResourceList,
) -> Result<NamespaceRow, Error> {
    sqlx::query_as!(
        NamespaceRow,
        r#"INSERT INTO namespaces (tenant_id, name, full_name, allocations) VALUES ($1, $2, $3, $4)
           RETURNING id, tenant_id, name, full_name, allocations AS "allocations: _", created_at,
                     sync_status, sync_message, usage, usage_at"#,
        tenant_id,
        name,
        full_name,
        Json(allocations.to_strings()) as _,
    )
    .fetch_one(conn)
    .await
    .map_err(|e| match super::violated_constraint(&e) {
        Some("namespaces_tenant_name_key") => Error::Conflict {
            detail: format!("the tenant already has a namespace \"{name}\""),
            errors: vec![FieldError::new("name", "must be unique within the tenant")],
        },
        Some("namespaces_full_name_key") => Error::Conflict {
            detail: format!(
                "the cluster namespace \"{full_name}\" already belongs to another tenant"
            ),
            errors: vec![FieldError::new(
                "name",
                "the full namespace name must be unique in the cluster",
            )],
        },
        Some("namespace_names_pkey") => Error::Conflict {
            detail: format!(
                "the cluster namespace \"{full_name}\" was used by another tenant; a namespace name is never given to a second tenant"
            ),
            errors: vec![FieldError::new(
                "name",
                "the full namespace name must never have belonged to another tenant",
            )],
        },
        _ => e.into(),
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
