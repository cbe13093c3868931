use sqlx::PgConnection;

use crate::error::Error;

/// Asks the reconciler to bring the tenant's cluster objects to `generation`.
/// One row per tenant: a newer change replaces the generation of an older
/// one not yet applied, and makes the row due at once.
pub async fn enqueue(
    conn: &mut PgConnection,
    tenant_id: i64,
    generation: i64,
) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO outbox (tenant_id, generation) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE
         SET generation = GREATEST(outbox.generation, excluded.generation),
             enqueued_at = now(), not_before = now(), attempts = 0",
        tenant_id,
        generation
    )
    .execute(conn)
    .await?;
    Ok(())
}
