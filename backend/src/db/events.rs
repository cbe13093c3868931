//! The change stream's store. An appended event is numbered as its
//! transaction commits, under the sequence row's lock (migration 0028), so
//! ids follow commit order and no writer holds the lock across a round trip.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub tenant_slug: String,
    pub data: serde_json::Value,
}

/// Appends one event of the tenant, numbered as `db::trail` numbers them.
pub async fn append(
    conn: &mut PgConnection,
    kind: &str,
    tenant_id: i64,
    tenant_slug: &str,
    data: &serde_json::Value,
) -> Result<(), Error> {
    super::trail::write(
        conn,
        super::trail::Trail {
            tenant: (tenant_id, tenant_slug),
            audit: None,
            enqueue: None,
            events: &[(kind, data)],
        },
    )
    .await
}

/// Which events a reader may and wants to see.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub tenant: Option<String>,
    pub kinds: Option<Vec<String>>,
    /// Only tenants where this email or one of these groups is a member.
    pub member: Option<(String, Vec<String>)>,
    /// Only these tenants (slugs): what a token or machine client reaches.
    pub reach: Option<Vec<String>>,
}

pub async fn after(
    conn: &mut PgConnection,
    after_id: i64,
    filter: &EventFilter,
    limit: i64,
) -> Result<Vec<EventRow>, Error> {
    Ok(sqlx::query_as!(
        EventRow,
        r#"SELECT e.id, e.occurred_at, e.type AS kind, e.tenant_slug, e.data FROM events e
           WHERE e.id > $1
             AND ($2::text IS NULL OR e.tenant_slug = $2)
             AND ($3::text[] IS NULL OR e.type = ANY($3))
             AND ($4::text IS NULL OR EXISTS (
                 SELECT 1 FROM members m WHERE m.tenant_id = e.tenant_id
                   AND ((m.kind = 'user' AND m.subject = $4) OR (m.kind = 'group' AND m.subject = ANY($5)))))
             AND ($7::text[] IS NULL OR e.tenant_slug = ANY($7))
           ORDER BY e.id
           LIMIT $6"#,
        after_id,
        filter.tenant.as_deref(),
        filter.kinds.as_deref(),
        filter.member.as_ref().map(|(email, _)| email.as_str()),
        filter.member.as_ref().map(|(_, groups)| groups.as_slice()).unwrap_or(&[]),
        limit,
        filter.reach.as_deref(),
    )
    .fetch_all(conn)
    .await?)
}

/// Forgets events older than `retention`.
pub async fn expire(conn: &mut PgConnection, retention: std::time::Duration) -> Result<u64, Error> {
    let done = sqlx::query!(
        "DELETE FROM events WHERE occurred_at < now() - make_interval(secs => $1)",
        retention.as_secs_f64()
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
