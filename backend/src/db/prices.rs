//! Prices and their history. Rows are only ever added.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::FieldError;
use crate::error::Error;

#[derive(Debug, Clone)]
pub struct PriceRow {
    pub id: i64,
    pub resource: String,
    pub cluster: Option<String>,
    pub micros: i64,
    pub effective_from: DateTime<Utc>,
    pub set_by: String,
    pub set_at: DateTime<Utc>,
}

/// Every price ever set, by resource, cluster (all clusters first) and start.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<PriceRow>, Error> {
    Ok(sqlx::query_as!(
        PriceRow,
        "SELECT id, resource, cluster, micros, effective_from, set_by, set_at FROM prices
         ORDER BY resource, cluster NULLS FIRST, effective_from"
    )
    .fetch_all(conn)
    .await?)
}

/// The prices that can apply to `[.., to)`: all that started before its end.
pub async fn list_started_before(
    conn: &mut PgConnection,
    to: DateTime<Utc>,
) -> Result<Vec<PriceRow>, Error> {
    Ok(sqlx::query_as!(
        PriceRow,
        "SELECT id, resource, cluster, micros, effective_from, set_by, set_at FROM prices
         WHERE effective_from < $1 ORDER BY resource, cluster NULLS FIRST, effective_from",
        to
    )
    .fetch_all(conn)
    .await?)
}

/// A new price; `field` names the entry in errors.
pub async fn insert(
    conn: &mut PgConnection,
    resource: &str,
    cluster: Option<&str>,
    micros: i64,
    effective_from: DateTime<Utc>,
    set_by: &str,
    field: &str,
) -> Result<PriceRow, Error> {
    sqlx::query_as!(
        PriceRow,
        "INSERT INTO prices (resource, cluster, micros, effective_from, set_by)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, resource, cluster, micros, effective_from, set_by, set_at",
        resource,
        cluster,
        micros,
        effective_from,
        set_by
    )
    .fetch_one(conn)
    .await
    .map_err(|e| match super::violated_constraint(&e) {
        Some("prices_resource_cluster_from_key") => Error::Conflict {
            detail: format!(
                "a price of {resource} for {} already starts at {effective_from}; prices are history and are never changed, so start the new one at another time",
                cluster.unwrap_or("every cluster")
            ),
            errors: vec![FieldError::new(
                format!("{field}.effective_from"),
                "must differ from the start of every other price of the resource and cluster",
            )],
        },
        _ => e.into(),
    })
}
