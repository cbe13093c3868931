//! Keeps the tenants' GitOps credentials (service::gitops): a pass at
//! start, whenever a tenant changes or an owner changes its choice (the
//! reconciler's notifications), and at least every [`Keeper::interval`] so
//! tokens are replaced in time.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Context;
use crate::cluster::Clusters;
use crate::service::gitops::{self, Keeper};

/// Notifications closer together than this share one pass.
const COALESCE: Duration = Duration::from_millis(500);

pub async fn run(
    context: Arc<Context>,
    clusters: Clusters,
    keeper: Arc<Keeper>,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        match gitops::keep(&context.db, &clusters, &keeper).await {
            Ok(pass) if pass.ran => {
                failing = false;
                let w = pass.written;
                if w.created + w.replaced + w.deleted + pass.tokens_issued > 0 {
                    tracing::info!(
                        created = w.created,
                        replaced = w.replaced,
                        deleted = w.deleted,
                        tokens_issued = pass.tokens_issued,
                        failed = pass.failed,
                        "GitOps credentials kept"
                    );
                }
            }
            Ok(_) => {}
            Err(e) if failing => tracing::debug!(error = %e, "GitOps credentials still not kept"),
            Err(e) => {
                failing = true;
                tracing::warn!(error = %e, cluster = %keeper.cluster, namespace = %keeper.namespace,
                    "failed to keep the GitOps credentials; each tenant's status says why, and the next pass retries");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(keeper.interval()) => {}
            () = context.gitops_wake.notified() => tokio::time::sleep(COALESCE).await,
            () = stop.cancelled() => return,
        }
    }
}
