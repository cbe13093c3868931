//! What every replica keeps knowing of each cluster, reconciler or not:
//! whether its API server answers, and the names of its namespaces with
//! whose they are, so a request for a taken name is refused from memory
//! rather than by asking the API server on each create.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::objects::{MANAGED_BY, MANAGER, TENANT_LABEL};
use super::{Cluster, SeenNamespace, live};

/// Starts, on `tasks`, the health probe and the namespace watch of
/// `cluster`; a second call for the same cluster adds nothing.
pub fn observe(cluster: &Arc<Cluster>, tasks: &mut JoinSet<()>, stop: &CancellationToken) {
    if !cluster.claim_observation() {
        return;
    }
    tasks.spawn(probe_health(cluster.clone(), stop.clone()));
    tasks.spawn(watch_namespaces(cluster.clone(), stop.clone()));
}

/// Asks the API server for its version now and then, so health is current
/// even when nothing changes.
async fn probe_health(cluster: Arc<Cluster>, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        match tokio::time::timeout(Duration::from_secs(5), cluster.client.apiserver_version()).await
        {
            Ok(Ok(_)) => cluster.set_health(true, None),
            Ok(Err(e)) => cluster.set_health(false, Some(super::describe(&e))),
            Err(_) => cluster.set_health(
                false,
                Some("the API server did not answer within 5s".into()),
            ),
        }
    }
}

/// Watches every namespace's name and the two labels that say whose it is.
/// Only those are kept, as shared strings: about 40 bytes a namespace.
async fn watch_namespaces(cluster: Arc<Cluster>, stop: CancellationToken) {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(cluster.client.clone());
    let events = watcher(api, watcher::Config::default()).default_backoff();
    tokio::pin!(events);
    let mut listing = HashMap::new();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = stop.cancelled() => return,
        };
        let Some(event) = event else { return };
        // The health probe reports an unreachable cluster, and while it
        // does nothing is answered from here; the backoff retries.
        let Ok(event) = event else { continue };
        match event {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitApply(namespace) => {
                if let Some(name) = &namespace.metadata.name {
                    listing.insert(live::intern(name), whose(&namespace));
                }
            }
            watcher::Event::InitDone => cluster.list_namespaces(std::mem::take(&mut listing)),
            watcher::Event::Apply(namespace) => {
                if let Some(name) = &namespace.metadata.name {
                    cluster.note_namespace(name, Some(whose(&namespace)));
                }
            }
            watcher::Event::Delete(namespace) => {
                if let Some(name) = &namespace.metadata.name {
                    cluster.note_namespace(name, None);
                }
            }
        }
    }
}

/// Whose the namespace is, by its labels.
fn whose(namespace: &PartialObjectMeta<Namespace>) -> SeenNamespace {
    let label = |key: &str| {
        namespace
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(key))
    };
    if label(MANAGED_BY).map(String::as_str) == Some(MANAGER) {
        SeenNamespace::Managed {
            tenant: label(TENANT_LABEL).map(|tenant| live::intern(tenant)),
        }
    } else {
        SeenNamespace::Foreign
    }
}
