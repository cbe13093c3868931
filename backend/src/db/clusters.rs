//! What each cluster holds and may hold: the load columns, kept by triggers
//! (migration 0016) in the same transaction as the tenant or namespace that
//! changes them, and the capacity an admin declared. The triggers refuse,
//! with SQLSTATE `TPC01`, to grow a cluster past its capacity; a create
//! counts its tenant as it commits (migration 0028, `db::tenants::commit_counted`); choosing
//! a cluster is `service/placement.rs`.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::{FieldError, ResourceList};
use crate::error::Error;

/// A cluster's load (live tenants, their namespaces and budgets) and its
/// declared capacity (`None`: no limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLoad {
    pub name: String,
    pub tenants: i64,
    pub namespaces: i64,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub max_namespaces: Option<i64>,
    pub max_cpu_millis: Option<i64>,
    pub max_memory_bytes: Option<i64>,
    pub capacity_set_by: Option<String>,
    pub capacity_set_at: Option<DateTime<Utc>>,
}

impl ClusterLoad {
    /// A cluster with nothing placed on it and no declared limit.
    pub fn empty(name: &str) -> Self {
        Self {
            name: name.to_string(),
            tenants: 0,
            namespaces: 0,
            cpu_millis: 0,
            memory_bytes: 0,
            max_namespaces: None,
            max_cpu_millis: None,
            max_memory_bytes: None,
            capacity_set_by: None,
            capacity_set_at: None,
        }
    }
}

/// The loads of `names`, in that order; a cluster that never held a tenant
/// nor was given a capacity has an empty load and no limit. Only reads.
pub async fn list(conn: &mut PgConnection, names: &[&str]) -> Result<Vec<ClusterLoad>, Error> {
    let owned: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut rows = read(conn, &owned).await?.into_iter().peekable();
    Ok(names
        .iter()
        .map(|name| match rows.next_if(|row| row.name == *name) {
            Some(row) => row,
            None => ClusterLoad::empty(name),
        })
        .collect())
}

async fn read(conn: &mut PgConnection, names: &[String]) -> Result<Vec<ClusterLoad>, Error> {
    Ok(sqlx::query_as!(
        ClusterLoad,
        r#"SELECT k.name AS "name!", k.tenants AS "tenants!", k.namespaces AS "namespaces!",
                  k.cpu_millis AS "cpu_millis!", k.memory_bytes AS "memory_bytes!",
                  k.max_namespaces, k.max_cpu_millis, k.max_memory_bytes,
                  k.capacity_set_by, k.capacity_set_at
           FROM unnest($1::text[]) WITH ORDINALITY AS c(name, position)
           JOIN clusters k ON k.name = c.name
           ORDER BY c.position"#,
        names
    )
    .fetch_all(conn)
    .await?)
}

/// The refusal for a change the capacity trigger stopped: more namespaces,
/// CPU or memory on a cluster than it was declared to hold.
pub fn over_capacity(e: &sqlx::Error) -> Option<Error> {
    let db = e.as_database_error()?;
    (db.code().as_deref() == Some("TPC01")).then(|| {
        let detail = format!(
            "{}; a platform admin can declare more capacity for the cluster",
            db.message()
        );
        Error::Conflict {
            errors: vec![FieldError::new("cluster", detail.clone())],
            detail,
        }
    })
}

/// What an admin declares a cluster can hold; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    pub namespaces: Option<i64>,
    pub cpu_millis: Option<i64>,
    pub memory_bytes: Option<i64>,
}

/// Replaces a cluster's declared capacity; answers the row before and after.
pub async fn set_capacity(
    conn: &mut PgConnection,
    name: &str,
    capacity: &Capacity,
    set_by: &str,
) -> Result<(ClusterLoad, ClusterLoad), Error> {
    let before = list(conn, &[name])
        .await?
        .pop()
        .unwrap_or_else(|| ClusterLoad::empty(name));
    let after = sqlx::query_as!(
        ClusterLoad,
        "INSERT INTO clusters AS k (name, max_namespaces, max_cpu_millis, max_memory_bytes,
                                    capacity_set_by, capacity_set_at)
         VALUES ($1, $2, $3, $4, $5, now())
         ON CONFLICT (name) DO UPDATE SET
             max_namespaces = EXCLUDED.max_namespaces, max_cpu_millis = EXCLUDED.max_cpu_millis,
             max_memory_bytes = EXCLUDED.max_memory_bytes,
             capacity_set_by = EXCLUDED.capacity_set_by, capacity_set_at = EXCLUDED.capacity_set_at
         RETURNING name, tenants, namespaces, cpu_millis, memory_bytes,
                   max_namespaces, max_cpu_millis, max_memory_bytes, capacity_set_by, capacity_set_at",
        name,
        capacity.namespaces,
        capacity.cpu_millis,
        capacity.memory_bytes,
        set_by,
    )
    .fetch_one(conn)
    .await?;
    Ok((before, after))
}

type StoredBudget = sqlx::types::Json<std::collections::BTreeMap<String, String>>;

/// Writes the CPU and memory figures of tenants created before placement
/// counted them (migration 0016 leaves them NULL); the triggers add them to
/// their clusters' loads. Answers how many tenants were written.
pub async fn count_old_budgets(db: &PgPool) -> Result<u64, Error> {
    let mut written = 0;
    loop {
        let mut tx = db.begin().await?;
        let rows = sqlx::query!(
            r#"SELECT id, budget AS "budget: StoredBudget"
               FROM tenants WHERE cpu_millis IS NULL ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED"#
        )
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(written);
        }
        for row in rows {
            // A stored budget always parsed once; one that no longer does counts as empty.
            let demand = ResourceList::parse(&row.budget.0, "budget")
                .unwrap_or_default()
                .cluster_demand();
            sqlx::query!(
                "UPDATE tenants SET cpu_millis = $2, memory_bytes = $3 WHERE id = $1",
                row.id,
                demand.cpu_millis,
                demand.memory_bytes
            )
            .execute(&mut *tx)
            .await?;
            written += 1;
        }
        tx.commit().await?;
    }
}
