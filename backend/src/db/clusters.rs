//! What each cluster holds and may hold, and choosing one for a new tenant.
//!
//! The load columns are kept by triggers (migration 0016) in the same
//! transaction as the tenant or namespace that changes them, and those
//! triggers refuse, with SQLSTATE `TPC01`, to grow a cluster past its declared
//! capacity. Placement here only chooses; the triggers are the rule.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::quantity::{Format, Quantity};
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

/// What a new tenant asks of its cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    pub namespaces: i64,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl Demand {
    pub fn of(namespaces: usize, budget: &ResourceList) -> Self {
        let budget = budget.cluster_demand();
        Self {
            namespaces: i64::try_from(namespaces).unwrap_or(i64::MAX),
            cpu_millis: budget.cpu_millis,
            memory_bytes: budget.memory_bytes,
        }
    }
}

impl std::fmt::Display for Demand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} namespace(s), {} CPU and {} memory in its budget",
            self.namespaces,
            cpu(self.cpu_millis),
            memory(self.memory_bytes)
        )
    }
}

/// Millicores as Kubernetes writes CPU (`1500m`, `4`).
pub fn cpu(millis: i64) -> String {
    Quantity::from_nanos(i128::from(millis) * 1_000_000, Format::DecimalSI)
        .map_or_else(|| format!("{millis}m"), |q| q.to_string())
}

/// Bytes as Kubernetes writes memory (`8Gi`, `1500M`).
pub fn memory(bytes: i64) -> String {
    Quantity::from_nanos(i128::from(bytes) * 1_000_000_000, Format::BinarySI)
        .map_or_else(|| bytes.to_string(), |q| q.to_string())
}

impl ClusterLoad {
    /// Why `demand` does not fit on this cluster, or `None` when it does.
    /// Like the trigger's, the reason names the declared limit and the
    /// demand, never the load: it tells nobody what the other tenants hold.
    pub fn lacks_room(&self, demand: &Demand) -> Option<String> {
        let over = |have: i64, asks: i64, max: Option<i64>| {
            max.filter(|&max| asks > 0 && have.saturating_add(asks) > max)
        };
        let name = &self.name;
        if let Some(max) = over(self.namespaces, demand.namespaces, self.max_namespaces) {
            return Some(format!(
                "\"{name}\" cannot take {} more namespace(s) within its declared {max}",
                demand.namespaces
            ));
        }
        if let Some(max) = over(self.cpu_millis, demand.cpu_millis, self.max_cpu_millis) {
            return Some(format!(
                "\"{name}\" cannot take {} more CPU in budgets within its declared {}",
                cpu(demand.cpu_millis),
                cpu(max)
            ));
        }
        if let Some(max) = over(
            self.memory_bytes,
            demand.memory_bytes,
            self.max_memory_bytes,
        ) {
            return Some(format!(
                "\"{name}\" cannot take {} more memory in budgets within its declared {}",
                memory(demand.memory_bytes),
                memory(max)
            ));
        }
        None
    }
}

/// The loads of `names`, in that order; a cluster that holds nothing yet
/// gets its row now, so that placement can lock it.
pub async fn list(conn: &mut PgConnection, names: &[&str]) -> Result<Vec<ClusterLoad>, Error> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let rows = read(conn, &names).await?;
    if rows.len() == names.len() {
        return Ok(rows);
    }
    sqlx::query!(
        "INSERT INTO clusters (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING",
        &names
    )
    .execute(&mut *conn)
    .await?;
    read(conn, &names).await
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

/// Locks a cluster's row for the rest of the transaction and reads it fresh;
/// with `skip_locked`, `None` when another transaction holds it.
async fn lock(
    conn: &mut PgConnection,
    name: &str,
    skip_locked: bool,
) -> Result<Option<ClusterLoad>, Error> {
    Ok(if skip_locked {
        sqlx::query_as!(
            ClusterLoad,
            "SELECT name, tenants, namespaces, cpu_millis, memory_bytes,
                    max_namespaces, max_cpu_millis, max_memory_bytes, capacity_set_by, capacity_set_at
             FROM clusters WHERE name = $1 FOR UPDATE SKIP LOCKED",
            name
        )
        .fetch_optional(conn)
        .await?
    } else {
        sqlx::query_as!(
            ClusterLoad,
            "SELECT name, tenants, namespaces, cpu_millis, memory_bytes,
                    max_namespaces, max_cpu_millis, max_memory_bytes, capacity_set_by, capacity_set_at
             FROM clusters WHERE name = $1 FOR UPDATE",
            name
        )
        .fetch_optional(conn)
        .await?
    })
}

enum Claim {
    /// Locked with room: the tenant goes here.
    Placed(String),
    /// Another create holds it.
    Held,
    /// Locked, but the create that held it used the room.
    Full(String),
}

/// Tries to lock a cluster with room for `demand`. A cluster found full is
/// let go at once (its lock was taken under a savepoint), so two creates
/// that each found the other's cluster full cannot deadlock.
async fn claim(
    conn: &mut PgConnection,
    name: &str,
    demand: &Demand,
    skip_locked: bool,
) -> Result<Claim, Error> {
    let mut savepoint = sqlx::Connection::begin(&mut *conn).await?;
    let Some(fresh) = lock(&mut savepoint, name, skip_locked).await? else {
        savepoint.rollback().await?;
        return Ok(Claim::Held);
    };
    match fresh.lacks_room(demand) {
        None => {
            savepoint.commit().await?;
            Ok(Claim::Placed(fresh.name))
        }
        Some(why) => {
            savepoint.rollback().await?;
            Ok(Claim::Full(why))
        }
    }
}

/// A cluster a tenant may be placed on, and whether its API server answered
/// at the portal's last try.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub reachable: bool,
}

/// Chooses the cluster for a new tenant and locks its row until the
/// transaction ends: among the clusters with room, reachable ones first,
/// then the fewest tenants, then the order configured.
///
/// Creates in flight together must not all see the same counts and pick the
/// same cluster, so each takes the best cluster no other create holds; when
/// every cluster with room is held, it waits for one chosen by `spread` (a
/// hash of the slug), which scatters a burst instead of queueing it behind
/// one cluster. The row read under the lock is checked again, since the
/// create that held it may have used the room.
pub async fn place(
    conn: &mut PgConnection,
    candidates: &[Candidate<'_>],
    demand: &Demand,
    spread: u64,
) -> Result<String, Error> {
    let names: Vec<&str> = candidates.iter().map(|c| c.name).collect();
    if let [only] = candidates {
        // Nothing to choose: the room is checked now for a clear answer, and
        // again by the trigger when the tenant is written.
        let load = list(conn, &names).await?;
        return match load.first().and_then(|l| l.lacks_room(demand)) {
            Some(why) => Err(no_room(demand, &[why])),
            None => Ok(only.name.to_string()),
        };
    }
    let mut refusals = Vec::new();
    for _ in 0..3 {
        let loads = list(conn, &names).await?;
        let mut fitting = Vec::new();
        refusals.clear();
        for (candidate, load) in candidates.iter().zip(&loads) {
            match load.lacks_room(demand) {
                Some(why) => refusals.push(why),
                None => fitting.push((candidate, load)),
            }
        }
        fitting.sort_by_key(|(c, load)| (!c.reachable, load.tenants));
        for (candidate, _) in &fitting {
            match claim(conn, candidate.name, demand, true).await? {
                Claim::Placed(name) => return Ok(name),
                Claim::Full(why) => refusals.push(why),
                Claim::Held => {}
            }
        }
        let reachable = fitting.iter().filter(|(c, _)| c.reachable).count();
        let choices = if reachable > 0 {
            reachable
        } else {
            fitting.len()
        };
        if choices == 0 {
            break;
        }
        let (chosen, _) = fitting[(spread % choices as u64) as usize];
        match claim(conn, chosen.name, demand, false).await? {
            Claim::Placed(name) => return Ok(name),
            Claim::Full(why) => refusals.push(why),
            Claim::Held => {}
        }
    }
    Err(no_room(demand, &refusals))
}

/// The refusal for a tenant no cluster has room for, naming each reason.
pub fn no_room(demand: &Demand, reasons: &[String]) -> Error {
    let mut reasons = reasons.to_vec();
    reasons.sort();
    reasons.dedup();
    let detail = format!(
        "no cluster has room for this tenant ({demand}): {}; an admin can declare more capacity (PUT /api/v1/clusters/{{name}}/capacity) or add a cluster",
        reasons.join("; ")
    );
    Error::Conflict {
        errors: vec![FieldError::new("cluster", detail.clone())],
        detail,
    }
}

/// The refusal for a change the capacity trigger stopped: more namespaces,
/// CPU or memory on a cluster than it was declared to hold.
pub fn over_capacity(e: &sqlx::Error) -> Option<Error> {
    let db = e.as_database_error()?;
    (db.code().as_deref() == Some("TPC01")).then(|| {
        let detail = format!(
            "{}; an admin can declare more capacity (PUT /api/v1/clusters/{{name}}/capacity)",
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
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("cluster row {name} was not created")))?;
    let after = sqlx::query_as!(
        ClusterLoad,
        "UPDATE clusters SET max_namespaces = $2, max_cpu_millis = $3, max_memory_bytes = $4,
                capacity_set_by = $5, capacity_set_at = now()
         WHERE name = $1
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(namespaces: i64, cpu_millis: i64) -> ClusterLoad {
        ClusterLoad {
            name: "edge".into(),
            tenants: 3,
            namespaces,
            cpu_millis,
            memory_bytes: 0,
            max_namespaces: Some(10),
            max_cpu_millis: Some(8000),
            max_memory_bytes: None,
            capacity_set_by: None,
            capacity_set_at: None,
        }
    }

    #[test]
    fn room_is_checked_against_each_declared_limit() {
        let two = Demand {
            namespaces: 2,
            cpu_millis: 2000,
            memory_bytes: 1 << 40,
        };
        assert_eq!(load(8, 6000).lacks_room(&two), None);
        assert_eq!(
            load(9, 0).lacks_room(&two).unwrap(),
            "\"edge\" cannot take 2 more namespace(s) within its declared 10"
        );
        assert_eq!(
            load(0, 6500).lacks_room(&two).unwrap(),
            "\"edge\" cannot take 2 more CPU in budgets within its declared 8"
        );
        // Nothing asked, nothing refused, even on a cluster already over its limit.
        assert_eq!(load(12, 9000).lacks_room(&Demand::default()), None);
    }

    #[test]
    fn quantities_are_written_as_kubernetes_writes_them() {
        assert_eq!(cpu(1500), "1500m");
        assert_eq!(cpu(4000), "4");
        assert_eq!(memory(8 << 30), "8Gi");
        assert_eq!(memory(0), "0");
    }
}
