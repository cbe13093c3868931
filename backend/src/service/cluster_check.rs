//! Refuses, when a namespace is asked for, a name the tenant's cluster
//! already holds for someone else, so the caller hears of it at once. The
//! reconciler refuses such a namespace all the same if it appears later
//! (`cluster::apply`), so a cluster that cannot be asked now lets the
//! request through rather than failing it.

use std::time::Duration;

use crate::cluster::{Clusters, namespace_refusal};
use crate::domain::FieldError;
use crate::error::Error;

/// How long a request waits for the cluster's answer.
const ASK_FOR: Duration = Duration::from_secs(2);

/// `names` are (field, full namespace name) pairs of the request.
pub async fn namespaces_free(
    clusters: &Clusters,
    cluster: &str,
    slug: &str,
    names: &[(String, String)],
) -> Result<(), Error> {
    let Some(cluster) = clusters.get(cluster) else {
        return Ok(());
    };
    let answers =
        futures::future::join_all(names.iter().map(|(_, name)| {
            tokio::time::timeout(ASK_FOR, namespace_refusal(cluster, slug, name))
        }))
        .await;
    let mut errors = Vec::new();
    let mut details = Vec::new();
    for ((field, name), answer) in names.iter().zip(answers) {
        match answer {
            Ok(Ok(Some(refusal))) => {
                errors.push(FieldError::new(field.clone(), refusal.clone()));
                details.push(refusal);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::debug!(cluster = %cluster.name, namespace = %name, error = %e, "could not ask the cluster about a namespace; the reconciler will check")
            }
            Err(_) => {
                tracing::debug!(cluster = %cluster.name, namespace = %name, "the cluster did not answer about a namespace in time; the reconciler will check")
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Conflict {
            detail: details.join("; "),
            errors,
        })
    }
}
