//! What a change of a tenant leaves behind besides its state: an audit
//! event, the outbox row that hands it to the reconciler and its
//! change-stream events, written in one statement (one round trip instead
//! of one each).

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

/// Writes the trail. The events take their numbers from `event_sequence`,
/// whose row stays locked until the transaction ends, so numbers are handed
/// out in commit order and a reader who sees a number sees everything the
/// transaction wrote. The outbox keeps one row per tenant: a newer change
/// replaces the generation of an older one not yet applied, and makes the
/// row due at once.
pub async fn write(conn: &mut PgConnection, trail: Trail<'_>) -> Result<(), Error> {
    let (tenant_id, slug) = trail.tenant;
    if trail.audit.is_none() && trail.enqueue.is_none() && trail.events.is_empty() {
        return Ok(());
    }
    let audit = trail.audit.as_ref();
    let (kinds, data): (Vec<&str>, Vec<&serde_json::Value>) = trail.events.iter().copied().unzip();
    sqlx::query!(
        "WITH audited AS (
             INSERT INTO audit_events (actor, action, tenant_id, tenant_slug, before, after, request_id)
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE $2::text IS NOT NULL),
         queued AS (
             INSERT INTO outbox (tenant_id, generation) SELECT $3, $8 WHERE $8::bigint IS NOT NULL
             ON CONFLICT (tenant_id) DO UPDATE
             SET generation = GREATEST(outbox.generation, excluded.generation),
                 enqueued_at = now(), not_before = now(), attempts = 0),
         numbered AS (
             UPDATE event_sequence SET last_id = last_id + cardinality($9::text[])
             WHERE cardinality($9::text[]) > 0
             RETURNING last_id)
         INSERT INTO events (id, type, tenant_id, tenant_slug, data)
         SELECT numbered.last_id - cardinality($9::text[]) + e.i, e.type, $3, $4, e.data
         FROM numbered, unnest($9::text[], $10::jsonb[]) WITH ORDINALITY AS e(type, data, i)",
        audit.map(|a| a.actor),
        audit.map(|a| a.action),
        tenant_id,
        slug,
        audit.and_then(|a| a.before),
        audit.and_then(|a| a.after),
        audit.and_then(|a| a.request_id),
        trail.enqueue,
        &kinds as &[&str],
        &data as &[&serde_json::Value],
    )
    .execute(conn)
    .await?;
    Ok(())
}
