//! Kubeconfigs for a tenant's automation account.

use std::time::Duration;

use sqlx::PgPool;

use super::Actor;
use super::access::load_authorized;
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::cluster::{Clusters, kubeconfig};
use crate::db;
use crate::error::Error;

pub use kubeconfig::IssuedKubeconfig as Issued;

/// Issues a kubeconfig with a token valid for `ttl`, and records who got it.
pub async fn issue(
    db: &PgPool,
    clusters: &Clusters,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    ttl: Duration,
) -> Result<Issued, Error> {
    precheck(who, Action::IssueKubeconfig)?;
    let mut conn = db.acquire().await?;
    let row = load_authorized(&mut conn, who, slug, Action::IssueKubeconfig).await?;
    if !row.state().is_editable() {
        return Err(Error::conflict(format!(
            "the tenant \"{slug}\" is {} and issues no credentials",
            row.state()
        )));
    }
    let namespaces: Vec<String> = db::namespaces::list_for_tenants(&mut conn, &[row.id])
        .await?
        .into_iter()
        .map(|n| n.full_name)
        .collect();
    let cluster = clusters.get(&row.cluster).ok_or_else(|| {
        Error::Unavailable(format!(
            "the cluster \"{}\" is not connected to this portal",
            row.cluster
        ))
    })?;
    let issued = kubeconfig::issue(cluster, slug, &namespaces, ttl)
        .await
        .map_err(Error::Unavailable)?;
    db::audit::record(
        &mut conn,
        db::audit::NewEvent {
            actor: &actor.name,
            action: "kubeconfig.issued",
            tenant: Some((row.id, &row.slug)),
            before: None,
            after: Some(
                &serde_json::json!({"expires_at": issued.expires_at, "ttl_seconds": ttl.as_secs()}),
            ),
            request_id: actor.request_id.as_deref(),
        },
    )
    .await?;
    Ok(issued)
}
