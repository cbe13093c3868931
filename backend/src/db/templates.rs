//! Templates and their versions (rows are only ever added), and which
//! version each tenant is on.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct TemplateRow {
    pub name: String,
    pub version: i32,
    pub spec: serde_json::Value,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A tenant on a template, with the version it is on.
#[derive(Debug, Clone)]
pub struct TenantOnTemplate {
    pub slug: String,
    pub version: i32,
}

/// Holds the template's name until the transaction ends, so that two
/// writers of one template number their versions one after the other.
pub async fn lock_name(conn: &mut PgConnection, name: &str) -> Result<(), Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtext('template:' || $1::text)::bigint)",
        name
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// The template's newest version.
pub async fn latest(conn: &mut PgConnection, name: &str) -> Result<Option<TemplateRow>, Error> {
    Ok(sqlx::query_as!(
        TemplateRow,
        "SELECT name, version, spec, created_by, created_at FROM templates
         WHERE name = $1 ORDER BY version DESC LIMIT 1",
        name
    )
    .fetch_optional(conn)
    .await?)
}

/// One version of a template.
pub async fn version(
    conn: &mut PgConnection,
    name: &str,
    version: i32,
) -> Result<Option<TemplateRow>, Error> {
    Ok(sqlx::query_as!(
        TemplateRow,
        "SELECT name, version, spec, created_by, created_at FROM templates
         WHERE name = $1 AND version = $2",
        name,
        version
    )
    .fetch_optional(conn)
    .await?)
}

/// The newest version of every template, by name.
pub async fn list_latest(conn: &mut PgConnection) -> Result<Vec<TemplateRow>, Error> {
    Ok(sqlx::query_as!(
        TemplateRow,
        "SELECT DISTINCT ON (name) name, version, spec, created_by, created_at FROM templates
         ORDER BY name, version DESC"
    )
    .fetch_all(conn)
    .await?)
}

pub async fn insert(
    conn: &mut PgConnection,
    name: &str,
    version: i32,
    spec: &serde_json::Value,
    created_by: &str,
) -> Result<TemplateRow, Error> {
    Ok(sqlx::query_as!(
        TemplateRow,
        "INSERT INTO templates (name, version, spec, created_by) VALUES ($1, $2, $3, $4)
         RETURNING name, version, spec, created_by, created_at",
        name,
        version,
        spec,
        created_by
    )
    .fetch_one(conn)
    .await?)
}

/// The tenants on a template that are not being deleted, by slug.
pub async fn tenants_on(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Vec<TenantOnTemplate>, Error> {
    Ok(sqlx::query_as!(
        TenantOnTemplate,
        "SELECT t.slug, tt.version FROM tenant_templates tt JOIN tenants t ON t.id = tt.tenant_id
         WHERE tt.template = $1 AND t.state IN ('active', 'suspended')
         ORDER BY t.slug",
        name
    )
    .fetch_all(conn)
    .await?)
}

/// The template version a tenant is on.
pub async fn of_tenant(
    conn: &mut PgConnection,
    tenant_id: i64,
) -> Result<Option<(String, i32)>, Error> {
    Ok(sqlx::query!(
        "SELECT template, version FROM tenant_templates WHERE tenant_id = $1",
        tenant_id
    )
    .fetch_optional(conn)
    .await?
    .map(|r| (r.template, r.version)))
}

/// Puts a tenant on a template version.
pub async fn set_tenant(
    conn: &mut PgConnection,
    tenant_id: i64,
    name: &str,
    version: i32,
) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO tenant_templates (tenant_id, template, version) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id) DO UPDATE SET template = EXCLUDED.template, version = EXCLUDED.version",
        tenant_id,
        name,
        version
    )
    .execute(conn)
    .await?;
    Ok(())
}
