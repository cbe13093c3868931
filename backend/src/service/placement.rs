//! Choosing the cluster for a new tenant: one with room for its namespaces
//! and budget, reachable first, then the fewest tenants; and the refusal,
//! naming each cluster's reason, when none has room. The room itself is
//! made sure of when the create counts its tenant (migration 0025).

use std::collections::BTreeMap;
use std::sync::Mutex;

use sqlx::PgConnection;

use crate::db::clusters::{ClusterLoad, list};
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

/// A cluster a tenant may be placed on, and whether its API server answered
/// at the portal's last try.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub reachable: bool,
}

/// Creates this replica is placing now, per cluster: counted beside the
/// committed load so that creates in flight together do not all see the
/// same counts and pick the same cluster.
static IN_FLIGHT: Mutex<BTreeMap<String, i64>> = Mutex::new(BTreeMap::new());

/// The cluster chosen for a new tenant; while it is held, the create counts
/// as in flight there.
#[derive(Debug)]
pub struct Choice {
    pub cluster: String,
}

impl Drop for Choice {
    fn drop(&mut self) {
        let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = in_flight.get_mut(&self.cluster) {
            *n -= 1;
            if *n <= 0 {
                in_flight.remove(&self.cluster);
            }
        }
    }
}

/// Chooses the cluster for a new tenant: among the clusters with room,
/// reachable ones first, then the fewest tenants (those committed and those
/// this replica is placing now), then the order configured.
///
/// Nothing is locked: the choice reads the committed loads, and the room is
/// made sure of when the create counts its tenant, under the cluster's row
/// lock, just before it commits (migration 0025). A create that finds its
/// cluster filled meanwhile by another is refused there, and the caller
/// chooses again.
pub async fn choose(
    conn: &mut PgConnection,
    candidates: &[Candidate<'_>],
    demand: &Demand,
) -> Result<Choice, Error> {
    let names: Vec<&str> = candidates.iter().map(|c| c.name).collect();
    let loads = list(conn, &names).await?;
    let mut refusals = Vec::new();
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    let mut best: Option<((bool, i64), &str)> = None;
    for (candidate, load) in candidates.iter().zip(&loads) {
        if let Some(why) = lacks_room(load, demand) {
            refusals.push(why);
            continue;
        }
        let placing = in_flight.get(candidate.name).copied().unwrap_or(0);
        let key = (!candidate.reachable, load.tenants.saturating_add(placing));
        if best.is_none_or(|(best, _)| key < best) {
            best = Some((key, candidate.name));
        }
    }
    let Some((_, name)) = best else {
        return Err(no_room(demand, &refusals));
    };
    *in_flight.entry(name.to_string()).or_default() += 1;
    Ok(Choice {
        cluster: name.to_string(),
    })
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
