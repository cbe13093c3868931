//! The clusters tenants live on: their health, what is placed on them and
//! what an admin declared they can hold. Anyone who may read clusters reads
//! them; only platform admins declare capacity, and each change is audited.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::Actor;
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize};
use crate::cluster::Clusters;
use crate::config::ServeConfig;
use crate::db;
use crate::db::clusters::{Capacity, ClusterLoad};
use crate::domain::FieldError;
use crate::domain::quantity::Quantity;
use crate::error::Error;
use crate::service::placement::{cpu, memory};

/// A cluster tenants can live on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    pub name: String,
    /// Whether the portal reached the API server at its last try.
    pub reachable: bool,
    pub last_error: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
    /// Tenants placed on it, deleted ones aside.
    pub tenants: i64,
    /// What its live tenants hold: namespaces, and the CPU and memory
    /// requests their budgets promise.
    pub placed: Placed,
    /// What an admin declared it can hold; placement puts no tenant past it.
    pub capacity: CapacityView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Placed {
    pub namespaces: i64,
    /// A Kubernetes quantity, such as `96` or `1500m`.
    pub cpu: String,
    /// A Kubernetes quantity, such as `384Gi`.
    pub memory: String,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CapacityView {
    /// `null`: no limit.
    pub namespaces: Option<i64>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub set_by: Option<String>,
    pub set_at: Option<DateTime<Utc>>,
}

/// What an admin declares a cluster can hold. A field left out or `null`
/// has no limit; the whole declaration is replaced.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityRequest {
    /// Namespaces of live tenants, at most.
    pub namespaces: Option<i64>,
    /// CPU requests the budgets of its tenants may promise in all, as a
    /// Kubernetes quantity (`400`, `96500m`).
    pub cpu: Option<String>,
    /// Memory requests the budgets may promise in all (`1536Gi`).
    pub memory: Option<String>,
}

impl CapacityRequest {
    /// Every bad field reported at once.
    fn parse(&self) -> Result<Capacity, Error> {
        let mut errors = Vec::new();
        if let Some(n) = self.namespaces
            && !(0..=1_000_000_000).contains(&n)
        {
            errors.push(FieldError::new(
                "namespaces",
                "must be a whole number from 0 to 1000000000",
            ));
        }
        let mut amount = |field: &str, raw: &Option<String>, unit: i128| {
            let raw = raw.as_ref()?;
            match Quantity::parse_non_negative(raw) {
                Ok(q) => match i64::try_from(q.nanos().div_euclid(unit)) {
                    Ok(whole) => Some(whole),
                    Err(_) => {
                        errors.push(FieldError::new(field, "is too large"));
                        None
                    }
                },
                Err(e) => {
                    errors.push(FieldError::new(field, e.to_string()));
                    None
                }
            }
        };
        let cpu_millis = amount("cpu", &self.cpu, 1_000_000);
        let memory_bytes = amount("memory", &self.memory, 1_000_000_000);
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        Ok(Capacity {
            namespaces: self.namespaces,
            cpu_millis,
            memory_bytes,
        })
    }
}

/// The configured clusters, in the order configured.
pub async fn list(
    db: &PgPool,
    config: &ServeConfig,
    clusters: &Clusters,
    who: &Principal,
) -> Result<Vec<ClusterView>, Error> {
    authorize(who, Action::ReadClusters)?;
    let mut conn = db.acquire().await?;
    let loads = db::clusters::list(&mut conn, &config.cluster_names()).await?;
    Ok(loads.into_iter().map(|load| view(clusters, load)).collect())
}

/// Declares what a cluster can hold (platform admins). Lowering it below
/// what is placed there already is allowed: it only stops new tenants,
/// namespaces and budget rises on that cluster.
pub async fn set_capacity(
    db: &PgPool,
    config: &ServeConfig,
    clusters: &Clusters,
    who: &Principal,
    actor: &Actor,
    name: &str,
    request: &CapacityRequest,
) -> Result<ClusterView, Error> {
    authorize(who, Action::SetClusterCapacity)?;
    if !config.cluster_names().contains(&name) {
        return Err(Error::NotFound(format!(
            "there is no cluster \"{name}\"; the configured ones are {}",
            config.cluster_names().join(", ")
        )));
    }
    let capacity = request.parse()?;
    let mut tx = db.begin().await?;
    let (before, after) = db::clusters::set_capacity(&mut tx, name, &capacity, &actor.name).await?;
    let json = |load: &ClusterLoad| serde_json::json!({"cluster": load.name, "capacity": capacity_view(load)});
    db::audit::record(
        &mut tx,
        db::audit::NewEvent {
            actor: &actor.name,
            action: "cluster.capacity_set",
            tenant: None,
            before: Some(&json(&before)),
            after: Some(&json(&after)),
            request_id: actor.request_id.as_deref(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(view(clusters, after))
}

fn view(clusters: &Clusters, load: ClusterLoad) -> ClusterView {
    let health = clusters
        .get(&load.name)
        .map(|c| c.health())
        .unwrap_or_default();
    ClusterView {
        reachable: health.reachable,
        last_error: health.last_error,
        checked_at: health.checked_at,
        tenants: load.tenants,
        placed: Placed {
            namespaces: load.namespaces,
            cpu: cpu(load.cpu_millis),
            memory: memory(load.memory_bytes),
        },
        capacity: capacity_view(&load),
        name: load.name,
    }
}

fn capacity_view(load: &ClusterLoad) -> CapacityView {
    CapacityView {
        namespaces: load.max_namespaces,
        cpu: load.max_cpu_millis.map(cpu),
        memory: load.max_memory_bytes.map(memory),
        set_by: load.capacity_set_by.clone(),
        set_at: load.capacity_set_at,
    }
}
