//! What a change of a tenant leaves behind besides its state: an audit
//! event, the outbox row that hands it to the reconciler and its
//! change-stream events, written in one call (one round trip instead of
//! one each).

use sqlx::PgConnection;

use crate::error::Error;

/// The trail of one change of tenant `tenant` (id, slug).
pub struct Trail<'a> {
    pub tenant: (i64, &'a str),
    pub audit: Option<Audit<'a>>,
    /// The generation to hand the reconciler; `None` when the cluster need not change.
    pub enqueue: Option<i64>,
    /// (type, data) of each change-stream event, numbered in this order.
    pub events: &'a [(&'a str, &'a serde_json::Value)],
}

/// The audit event of the change: what happened and by whom (the tenant is
/// the trail's).
pub struct Audit<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub before: Option<&'a serde_json::Value>,
    pub after: Option<&'a serde_json::Value>,
    pub request_id: Option<&'a str>,
}

/// Writes the trail (`tenant_trail`, migrations 0020 and 0028, which holds
/// the rules: events numbered as the transaction commits, in commit order;
/// one outbox row per tenant, whose generation a newer change replaces).
pub async fn write(conn: &mut PgConnection, trail: Trail<'_>) -> Result<(), Error> {
    let (tenant_id, slug) = trail.tenant;
    if trail.audit.is_none() && trail.enqueue.is_none() && trail.events.is_empty() {
        return Ok(());
    }
    let audit = trail.audit.as_ref();
    let (kinds, data): (Vec<&str>, Vec<&serde_json::Value>) = trail.events.iter().copied().unzip();
    sqlx::query!(
        "SELECT tenant_trail($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        tenant_id,
        slug,
        audit.map(|a| a.actor),
        audit.map(|a| a.action),
        audit.and_then(|a| a.before),
        audit.and_then(|a| a.after),
        audit.and_then(|a| a.request_id),
        trail.enqueue,
        &kinds as &[&str],
        &data as &[&serde_json::Value],
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}
