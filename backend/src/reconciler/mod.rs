//! The reconciler: every accepted change reaches its cluster, drift is
//! repaired, usage flows back. Durable work comes from the outbox; watches
//! on the managed objects and a periodic resync add checks to it.

mod backoff;
mod drift;
mod expiry;
mod gitops;
mod load;
mod watch;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cluster::guardrails::{self, Guardrails};
use crate::cluster::{Cluster, Clusters, GuardrailState};
use crate::config::ServeConfig;

pub use load::load_state;

/// How the reconciler paces itself.
#[derive(Debug, Clone)]
pub struct Settings {
    pub workers_per_cluster: u16,
    pub resync_interval: Duration,
    pub usage_sample_interval: Duration,
    /// How long a claimed outbox row stays with its worker before another
    /// may take it, unless the worker renews it.
    pub lease: Duration,
    /// How often a worker at work renews its lease; well inside `lease`.
    pub lease_renewal: Duration,
    /// The longest one tenant's apply may take before it counts as failed
    /// and is retried.
    pub sync_timeout: Duration,
    /// The backstop when no notification arrives.
    pub poll_interval: Duration,
    /// How often tenants past their expiry are collected.
    pub expiry_interval: Duration,
    /// The cluster-wide admission rules and the tenants' default policy.
    pub guardrails: Arc<Guardrails>,
    /// Where tenants' GitOps credentials are kept; `None`: nowhere.
    pub gitops: Option<Arc<crate::service::gitops::Keeper>>,
}

impl Settings {
    pub fn from_config(config: &ServeConfig) -> Self {
        Self {
            workers_per_cluster: config.reconcile_workers,
            resync_interval: config.resync_interval,
            usage_sample_interval: config.usage_sample_interval,
            lease: Duration::from_secs(30),
            lease_renewal: Duration::from_secs(10),
            sync_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
            expiry_interval: Duration::from_secs(10),
            guardrails: Arc::new(Guardrails::from_config(config)),
            gitops: crate::service::gitops::Keeper::from_config(config).map(Arc::new),
        }
    }
}

/// What the reconciler's tasks share.
pub struct Context {
    pub db: PgPool,
    pub settings: Settings,
    /// Woken when a change commits (LISTEN/NOTIFY on the outbox).
    pub wake: Wakes,
    pub drift: drift::DriftIndex,
    /// Names this replica in leases, so a lease can be traced to its holder.
    pub identity: String,
    /// Woken when a tenant changes or an owner changes its GitOps choice.
    pub gitops_wake: Arc<Notify>,
}

/// Starts every reconciler task; they stop when `stop` is cancelled.
/// Aborting the returned set instead is a crash: leases are left to expire.
pub fn start(
    db: PgPool,
    clusters: &Clusters,
    settings: Settings,
    stop: CancellationToken,
) -> JoinSet<()> {
    // The replica's name, as its cluster clients give it to the API server,
    // and this reconciler's own mark: lease holders must never repeat.
    let replica = match clusters.replica() {
        "" => crate::telemetry::new_replica_name(),
        replica => replica.to_string(),
    };
    let identity = format!(
        "{replica}/{}",
        uuid::Uuid::new_v4().simple().to_string().split_at(4).0
    );
    let served: Vec<(Arc<Cluster>, Arc<Notify>)> = clusters
        .iter()
        .map(|cluster| (cluster.clone(), Arc::new(Notify::new())))
        .collect();
    let context = Arc::new(Context {
        db,
        settings,
        wake: Wakes(
            served
                .iter()
                .map(|(cluster, wake)| (cluster.name.clone(), wake.clone()))
                .collect(),
        ),
        drift: Default::default(),
        identity,
        gitops_wake: Default::default(),
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(listen(context.clone(), stop.clone()));
    tasks.spawn(sample_usage(context.clone(), stop.clone()));
    tasks.spawn(expiry::run(context.clone(), stop.clone()));
    if let Some(keeper) = context.settings.gitops.clone() {
        tasks.spawn(gitops::run(
            context.clone(),
            clusters.clone(),
            keeper,
            stop.clone(),
        ));
    }
    for (cluster, wake) in &served {
        start_cluster(&mut tasks, &context, cluster, wake, &stop);
    }
    tasks
}

fn start_cluster(
    tasks: &mut JoinSet<()>,
    context: &Arc<Context>,
    cluster: &Arc<Cluster>,
    wake: &Arc<Notify>,
    stop: &CancellationToken,
) {
    for kind in crate::cluster::objects::Kind::ALL {
        tasks.spawn(watch::run(
            context.clone(),
            cluster.clone(),
            kind,
            stop.clone(),
        ));
    }
    for n in 0..context.settings.workers_per_cluster {
        tasks.spawn(worker::run(
            context.clone(),
            cluster.clone(),
            wake.clone(),
            n,
            stop.clone(),
        ));
    }
    cluster.set_guardrails(GuardrailState::Pending(None));
    tasks.spawn(keep_guardrails(
        context.clone(),
        cluster.clone(),
        stop.clone(),
    ));
    tasks.spawn(resync(context.clone(), cluster.clone(), stop.clone()));
    crate::cluster::observe(cluster, tasks, stop);
}

/// Installs the cluster-wide admission policies before any tenant is
/// synced there, and puts them back at each resync interval if someone
/// changed them. Retries every few seconds while the cluster refuses.
async fn keep_guardrails(context: Arc<Context>, cluster: Arc<Cluster>, stop: CancellationToken) {
    let objects = context.settings.guardrails.objects();
    let mut installed = false;
    loop {
        match guardrails::install(&cluster.client, &objects).await {
            Ok(written) => {
                if written > 0 || !installed {
                    tracing::info!(cluster = %cluster.name, written, "admission policies in place");
                }
                installed = true;
                cluster.set_guardrails(GuardrailState::Installed);
            }
            Err(e) if installed => {
                tracing::warn!(cluster = %cluster.name, error = %e, "failed to check the admission policies; next interval retries")
            }
            Err(e) => {
                tracing::warn!(cluster = %cluster.name, error = %e, "failed to install the admission policies; tenants of this cluster wait");
                cluster.set_guardrails(GuardrailState::Pending(Some(e)));
            }
        }
        let pause = if installed {
            context.settings.resync_interval
        } else {
            Duration::from_secs(2)
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The idle workers of each cluster, woken when one of its tenants changes.
pub struct Wakes(HashMap<String, Arc<Notify>>);

impl Wakes {
    /// One outbox row changed (`<tenant id> <cluster>`): one idle worker of
    /// its cluster claims it. Waking one is enough because a worker that
    /// finishes claims again before it waits, so rows that arrive while all
    /// are busy are taken as workers come free. A tenant of a cluster this
    /// replica does not serve wakes nobody; a payload without a cluster
    /// (written before migration 0019) wakes everyone.
    fn one_for(&self, payload: &str) {
        match payload.split_once(' ') {
            Some((_, cluster)) => {
                if let Some(wake) = self.0.get(cluster) {
                    wake.notify_one();
                }
            }
            None => self.everyone(),
        }
    }

    /// Every idle worker looks for work: after (re)connecting, when
    /// notifications may have been missed.
    fn everyone(&self) {
        self.0.values().for_each(|wake| wake.notify_waiters());
    }
}

/// Wakes workers when a change commits; polling is only the backstop.
/// Notifications sent while the connection was down are lost, so every
/// (re)connection wakes the workers once to look for what they missed.
async fn listen(context: Arc<Context>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&context.db).await?;
            listener
                .listen_all(["tenant_outbox", crate::service::gitops::WAKE_CHANNEL])
                .await?;
            context.wake.everyone();
            context.gitops_wake.notify_one();
            loop {
                match listener.try_recv().await? {
                    Some(notification) => {
                        // A tenant that changes may gain or lose its GitOps Secrets.
                        context.gitops_wake.notify_one();
                        if notification.channel() != crate::service::gitops::WAKE_CHANNEL {
                            context.wake.one_for(notification.payload());
                        }
                    }
                    // The connection was lost; the next call reconnects.
                    None => {
                        crate::db::health::connection_lost();
                        tracing::warn!("lost the outbox notifications; reconnecting");
                        context.wake.everyone();
                    }
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            result = listener => {
                if let Err(e) = result {
                    crate::db::health::connection_lost();
                    tracing::warn!(error = %e, "lost the outbox notifications; workers poll until they are back");
                }
            }
            () = stop.cancelled() => return,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Queues a check of every tenant on the cluster now and then at each
/// interval, the backstop for drift no watch reported.
async fn resync(context: Arc<Context>, cluster: Arc<Cluster>, stop: CancellationToken) {
    let mut every = tokio::time::interval(context.settings.resync_interval);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        let queued = match context.db.acquire().await {
            Ok(mut conn) => crate::db::outbox::enqueue_all(&mut conn, &cluster.name)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match queued {
            Ok(n) => tracing::debug!(cluster = %cluster.name, tenants = n, "resync queued"),
            Err(e) => {
                tracing::warn!(cluster = %cluster.name, error = %e, "failed to queue the resync; next interval retries")
            }
        }
    }
}

async fn sample_usage(context: Arc<Context>, stop: CancellationToken) {
    let mut every = tokio::time::interval(context.settings.usage_sample_interval);
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Ok(mut conn) = context.db.acquire().await
            && let Err(e) =
                crate::db::sync::sample_usage(&mut conn, context.settings.usage_sample_interval / 2)
                    .await
        {
            tracing::warn!(error = %e, "failed to record usage history; next interval retries");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn wakes(names: &[&str]) -> Wakes {
        Wakes(
            names
                .iter()
                .map(|name| (name.to_string(), Arc::new(Notify::new())))
                .collect(),
        )
    }

    fn woken(wakes: &Wakes, cluster: &str) -> bool {
        wakes.0[cluster].notified().now_or_never().is_some()
    }

    #[test]
    fn a_change_wakes_one_worker_of_its_own_cluster_only() {
        let wakes = wakes(&["local", "edge"]);
        wakes.one_for("42 edge");
        assert!(woken(&wakes, "edge"));
        assert!(!woken(&wakes, "edge"), "one change, one worker");
        assert!(!woken(&wakes, "local"));

        wakes.one_for("43 elsewhere");
        assert!(!woken(&wakes, "local") && !woken(&wakes, "edge"));
    }

    #[test]
    fn a_payload_without_a_cluster_wakes_every_waiting_worker() {
        let wakes = wakes(&["local", "edge"]);
        let local = wakes.0["local"].notified();
        let edge = wakes.0["edge"].notified();
        tokio::pin!(local, edge);
        local.as_mut().enable();
        edge.as_mut().enable();
        wakes.one_for("42");
        assert!(local.now_or_never().is_some() && edge.now_or_never().is_some());
    }
}
