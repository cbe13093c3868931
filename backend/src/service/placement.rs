//! Choosing the cluster for a new tenant: one with room for its namespaces
//! and budget, reachable first, then the fewest tenants; and the refusal,
//! naming each cluster's reason, when none has room.

use sqlx::PgConnection;

use crate::db::clusters::{ClusterLoad, list, list_for_placement, lock};
use crate::domain::quantity::{Format, Quantity};
use crate::domain::{FieldError, ResourceList};
use crate::error::Error;

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

/// Why `demand` does not fit on this cluster, or `None` when it does.
/// Like the trigger's, the reason names the declared limit and the
/// demand, never the load: it tells nobody what the other tenants hold.
pub fn lacks_room(load: &ClusterLoad, demand: &Demand) -> Option<String> {
    let over = |have: i64, asks: i64, max: Option<i64>| {
        max.filter(|&max| asks > 0 && have.saturating_add(asks) > max)
    };
    let name = &load.name;
    if let Some(max) = over(load.namespaces, demand.namespaces, load.max_namespaces) {
        return Some(format!(
            "\"{name}\" cannot take {} more namespace(s) within its declared {max}",
            demand.namespaces
        ));
    }
    if let Some(max) = over(load.cpu_millis, demand.cpu_millis, load.max_cpu_millis) {
        return Some(format!(
            "\"{name}\" cannot take {} more CPU in budgets within its declared {}",
            cpu(demand.cpu_millis),
            cpu(max)
        ));
    }
    if let Some(max) = over(
        load.memory_bytes,
        demand.memory_bytes,
        load.max_memory_bytes,
    ) {
        return Some(format!(
            "\"{name}\" cannot take {} more memory in budgets within its declared {}",
            memory(demand.memory_bytes),
            memory(max)
        ));
    }
    None
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
    match lacks_room(&fresh, demand) {
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
        return match load.first().and_then(|l| lacks_room(l, demand)) {
            Some(why) => Err(no_room(demand, &[why])),
            None => Ok(only.name.to_string()),
        };
    }
    let mut refusals = Vec::new();
    for _ in 0..3 {
        let loads = list_for_placement(conn, &names).await?;
        let mut fitting = Vec::new();
        refusals.clear();
        for (candidate, load) in candidates.iter().zip(&loads) {
            match lacks_room(load, demand) {
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
        "no cluster has room for this tenant ({demand}): {}; a platform admin can declare more capacity for a cluster or add one",
        reasons.join("; ")
    );
    Error::Conflict {
        errors: vec![FieldError::new("cluster", detail.clone())],
        detail,
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
        assert_eq!(lacks_room(&load(8, 6000), &two), None);
        assert_eq!(
            lacks_room(&load(9, 0), &two).unwrap(),
            "\"edge\" cannot take 2 more namespace(s) within its declared 10"
        );
        assert_eq!(
            lacks_room(&load(0, 6500), &two).unwrap(),
            "\"edge\" cannot take 2 more CPU in budgets within its declared 8"
        );
        // Nothing asked, nothing refused, even on a cluster already over its limit.
        assert_eq!(lacks_room(&load(12, 9000), &Demand::default()), None);
    }

    #[test]
    fn quantities_are_written_as_kubernetes_writes_them() {
        assert_eq!(cpu(1500), "1500m");
        assert_eq!(cpu(4000), "4");
        assert_eq!(memory(8 << 30), "8Gi");
        assert_eq!(memory(0), "0");
    }
}
