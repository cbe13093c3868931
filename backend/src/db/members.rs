use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::{FieldError, MemberKind, Role};
use crate::error::Error;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct MemberRow {
    pub id: i64,
    pub tenant_id: i64,
    pub kind: MemberKind,
    pub subject: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(
    conn: &mut PgConnection,
    tenant_id: i64,
    kind: MemberKind,
    subject: &str,
    role: Role,
) -> Result<MemberRow, Error> {
    sqlx::query_as!(
        MemberRow,
        r#"INSERT INTO members (tenant_id, kind, subject, role) VALUES ($1, $2, $3, $4)
           RETURNING id, tenant_id, kind AS "kind: _", subject, role AS "role: _", created_at"#,
        tenant_id,
        kind.as_str(),
        subject,
        role.as_str(),
    )
    .fetch_one(conn)
    .await
    .map_err(|e| match super::violated_constraint(&e) {
        Some("members_tenant_subject_key") => Error::Conflict {
            detail: format!(
                "{} \"{subject}\" is already a member; change its role instead",
                kind.as_str()
            ),
            errors: vec![FieldError::new("subject", "must not already be a member")],
        },
        _ => e.into(),
    })
}

pub async fn list_for_tenants(
    conn: &mut PgConnection,
    tenant_ids: &[i64],
) -> Result<Vec<MemberRow>, Error> {
    Ok(sqlx::query_as!(
        MemberRow,
        r#"SELECT id, tenant_id, kind AS "kind: _", subject, role AS "role: _", created_at
         FROM members WHERE tenant_id = ANY($1) ORDER BY tenant_id, id"#,
        tenant_ids
    )
    .fetch_all(conn)
    .await?)
}

pub async fn set_role(conn: &mut PgConnection, id: i64, role: Role) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE members SET role = $2 WHERE id = $1",
        id,
        role.as_str()
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete(conn: &mut PgConnection, id: i64) -> Result<(), Error> {
    sqlx::query!("DELETE FROM members WHERE id = $1", id)
        .execute(conn)
        .await?;
    Ok(())
}
