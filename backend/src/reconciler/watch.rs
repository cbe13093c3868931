//! Watches on the managed objects of one kind in one cluster: they fill the
//! live cache, report drift, carry quota usage back and tell cluster health.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::drift::Verdict;
use crate::cluster::live::{Digest, digest, intern, key_digest};
use crate::cluster::objects::{Kind, MANAGED_SELECTOR, ObjectKey, TENANT_LABEL};
use crate::cluster::{Cluster, Listing, LiveObject};
use crate::db;

pub async fn run(
    context: Arc<Context>,
    cluster: Arc<Cluster>,
    kind: Kind,
    stop: CancellationToken,
) {
    if !cluster.claim_watch(kind) {
        return;
    }
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &kind.api_resource());
    let config = watcher::Config::default().labels(MANAGED_SELECTOR);
    let events = watcher(api, config).default_backoff();
    tokio::pin!(events);
    let mut usage = Usage::default();
    let mut initial_listing = true;
    // A listing in progress: it replaces the cache whole when complete, so
    // objects deleted while the watch was away leave the cache too.
    let mut listing = Listing::new();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = usage.due(), if usage.is_pending() => {
                usage.flush(&context).await;
                continue;
            }
            () = stop.cancelled() => return,
        };
        let Some(event) = event else { return };
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                cluster.set_health(false, Some(e.to_string()));
                continue;
            }
        };
        if !cluster.health().reachable {
            cluster.set_health(true, None);
        }
        match event {
            watcher::Event::Init => {
                cluster.forget_kind(kind);
                listing.clear();
                initial_listing = true;
            }
            watcher::Event::InitDone => {
                cluster.cache_listing(kind, std::mem::take(&mut listing));
                initial_listing = false;
            }
            // The resync at start checks every tenant; the initial listing only fills the cache.
            watcher::Event::InitApply(object) => {
                if kind == Kind::ResourceQuota {
                    usage.note(&object);
                }
                let key = crate::cluster::apply_key(kind, &object);
                let live = LiveObject::of(kind, object);
                index(&cluster, &key, &live, true);
                listing.insert(key_digest(&key), Arc::new(live));
            }
            watcher::Event::Apply(object) => {
                if kind == Kind::ResourceQuota {
                    usage.note(&object);
                }
                let key = crate::cluster::apply_key(kind, &object);
                let live = LiveObject::of(kind, object);
                cluster.cache(&key, live.clone());
                index(&cluster, &key, &live, true);
                check(&context, &cluster, &key, &live, Some(&live)).await;
            }
            watcher::Event::Delete(object) => {
                let key = crate::cluster::apply_key(kind, &object);
                let live = LiveObject::of(kind, object);
                cluster.uncache(&key);
                index(&cluster, &key, &live, false);
                if !initial_listing {
                    check(&context, &cluster, &key, &live, None).await;
                }
            }
        }
    }
}

/// The tenant an object belongs to: for an object in a namespace, the
/// namespace's tenant, whatever the object's own label says, so relabelling
/// an object neither hides it from its tenant's repair nor hands it to
/// another tenant's pruning. The object's label is the fallback only until
/// the namespace is in the cache.
fn tenant_of(cluster: &Cluster, key: &ObjectKey, object: &LiveObject) -> Option<String> {
    if let Some(namespace) = &key.namespace {
        let key = ObjectKey {
            kind: Kind::Namespace,
            namespace: None,
            name: namespace.clone(),
        };
        if let Some(owner) = cluster.live(&key) {
            return owner.label(TENANT_LABEL).map(str::to_string);
        }
    }
    object.label(TENANT_LABEL).map(str::to_string)
}

fn index(cluster: &Cluster, key: &ObjectKey, object: &LiveObject, present: bool) {
    if let Some(slug) = tenant_of(cluster, key, object) {
        cluster.index(&slug, key.clone(), present);
    }
}

/// Queues a check of the object's tenant unless the object is as wanted
/// (`live`: the object as it is now; `None`: it was deleted).
async fn check(
    context: &Context,
    cluster: &Cluster,
    key: &ObjectKey,
    object: &LiveObject,
    live: Option<&LiveObject>,
) {
    let Some(slug) = tenant_of(cluster, key, object) else {
        return;
    };
    let slug = slug.as_str();
    if context.drift.judge(&cluster.name, key, live) == Verdict::AsDesired {
        return;
    }
    let queued = match context.db.acquire().await {
        Ok(mut conn) => db::outbox::enqueue_check(&mut conn, slug)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match queued {
        Ok(true) => {
            tracing::info!(cluster = %cluster.name, tenant = %slug, object = %key, "drift seen; repair queued")
        }
        // Not a tenant of this portal's database, or a check is already waiting.
        Ok(false) => {
            tracing::debug!(cluster = %cluster.name, tenant = %slug, object = %key, "drift seen; nothing to queue")
        }
        Err(e) => {
            tracing::warn!(tenant = %slug, error = %e, "failed to queue a drift repair; the periodic resync will")
        }
    }
}

/// How long a quota's new `status.used` waits for others to be written with
/// it: a burst of new tenants changes many quotas at once.
const USAGE_BATCH: Duration = Duration::from_millis(200);
/// The most changes a batch waits with.
const USAGE_BATCH_ROWS: usize = 1_000;

/// Keeps each namespace's `status.used` in the database when it changes, in
/// batches: one statement for every quota that changed within
/// [`USAGE_BATCH`]. A quota the controller manager has not counted yet (just
/// created) has no `status.used`: that is no news, so nothing is written.
#[derive(Default)]
struct Usage {
    /// What is stored for each namespace, as far as this watch knows. The
    /// names are the caches' shared copies.
    stored: HashMap<Arc<str>, Digest>,
    /// Changes not written yet, by namespace; a later one replaces an earlier.
    pending: HashMap<Arc<str>, (serde_json::Value, Digest)>,
    /// When the pending changes are written: [`USAGE_BATCH`] after the
    /// first of them, however many follow.
    due_at: Option<tokio::time::Instant>,
}

impl Usage {
    fn is_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    async fn due(&self) {
        match self.due_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    fn note(&mut self, quota: &DynamicObject) {
        let Some(namespace) = &quota.metadata.namespace else {
            return;
        };
        let Some(used) = quota.data.get("status").and_then(|s| s.get("used")) else {
            return;
        };
        let used_digest = digest(used);
        if self.stored.get(namespace.as_str()) == Some(&used_digest) {
            self.pending.remove(namespace.as_str());
            return;
        }
        self.pending
            .insert(intern(namespace), (used.clone(), used_digest));
        let now = tokio::time::Instant::now();
        if self.pending.len() >= USAGE_BATCH_ROWS {
            // A listing of a large fleet: written in batches of this size,
            // rather than held whole in memory.
            self.due_at = Some(now);
        }
        self.due_at.get_or_insert(now + USAGE_BATCH);
    }

    /// Writes the pending changes. A change whose row another transaction
    /// holds stays pending for the next batch; on failure nothing is
    /// remembered as stored, so each quota's next change tries again.
    async fn flush(&mut self, context: &Context) {
        let pending = std::mem::take(&mut self.pending);
        self.due_at = None;
        let changes: Vec<(&str, &serde_json::Value)> = pending
            .iter()
            .map(|(namespace, (used, _))| (namespace.as_ref(), used))
            .collect();
        let done = match context.db.acquire().await {
            Ok(mut conn) => db::sync::store_usage(&mut conn, &changes)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let done: HashSet<String> = match done {
            Ok(done) => done.into_iter().collect(),
            Err(e) => {
                tracing::warn!(namespaces = pending.len(), error = %e, "failed to store quota usage; the next change retries");
                return;
            }
        };
        for (namespace, change) in pending {
            if done.contains(namespace.as_ref()) {
                self.stored.insert(namespace, change.1);
            } else {
                self.pending.entry(namespace).or_insert(change);
            }
        }
        if self.is_pending() {
            self.due_at = Some(tokio::time::Instant::now() + USAGE_BATCH);
        }
    }
}
