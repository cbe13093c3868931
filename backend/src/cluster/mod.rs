//! The clusters tenants live on: a client, a live cache of the objects the
//! portal manages, and health, for each.

mod apply;
pub mod gitops;
pub mod guardrails;
pub mod kubeconfig;
pub mod live;
pub mod objects;
mod observe;
pub mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub use apply::{
    SyncError, SyncReport, describe, key_of as apply_key, namespace_refusal, remaining_namespaces,
    resource_scope, sync,
};
pub use live::LiveObject;
use objects::{Kind, ObjectKey};
pub use observe::observe;

use crate::config::ClusterSpec;

/// The live objects of one kind by the digest of their key
/// ([`live::key_digest`]): the caches are only ever asked for a key, and a
/// digest is 16 bytes where a key is 40, for every object of the fleet.
pub type Listing = HashMap<live::Digest, Arc<LiveObject>>;

/// Whether the portal can talk to a cluster, as last seen.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub reachable: bool,
    pub last_error: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
}

/// One cluster: its client, the cached live objects and its health.
pub struct Cluster {
    pub name: String,
    pub client: kube::Client,
    /// Where a downloaded kubeconfig points, and the CA that signs it.
    pub server_url: String,
    pub ca_pem: Option<String>,
    /// The live managed objects of each kind, as the watches report them,
    /// each reduced to what the portal reads ([`LiveObject`]).
    caches: BTreeMap<Kind, RwLock<Listing>>,
    /// The kinds a watcher fills; one watcher a kind.
    watched: Mutex<BTreeSet<Kind>>,
    /// The kinds listed whole at least once.
    listed: Mutex<BTreeSet<Kind>>,
    /// True once every kind has been listed whole.
    ready: tokio::sync::watch::Sender<bool>,
    /// The live objects of each tenant, so a sync visits its own objects
    /// rather than the whole cache. Kept by the watchers. A list the size of
    /// its keys: a set of a tenant's 17 keys takes 32 slots.
    by_tenant: Mutex<HashMap<Arc<str>, Vec<ObjectKey>>>,
    health: Mutex<Health>,
    guardrails: tokio::sync::watch::Sender<GuardrailState>,
    /// Every namespace by name and whose it is, as the namespace watch
    /// reports them; `None` until its first complete listing.
    namespaces: RwLock<Option<HashMap<Arc<str>, SeenNamespace>>>,
    /// Whether the health probe and the namespace watch run ([`observe`]).
    observed: std::sync::atomic::AtomicBool,
    /// Resources the cluster's discovery said it serves, (group, resource)
    /// → namespaced, and when it said so: a tenant's status asks on every
    /// read, and discovery changes seldom.
    served: Mutex<HashMap<(String, String), (std::time::Instant, bool)>>,
}

/// A namespace as the watches last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeenNamespace {
    Absent,
    /// Not labelled as the portal's.
    Foreign,
    /// Labelled as the portal's, for this tenant (`None`: no tenant label).
    Managed {
        tenant: Option<Arc<str>>,
    },
}

/// Whether the cluster-wide admission policies are in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardrailState {
    /// Nobody installs them here (no reconciler in this process).
    Unmanaged,
    /// Not installed yet; the last error, if an attempt failed.
    Pending(Option<String>),
    Installed,
}

impl Cluster {
    /// Builds the client from the spec's kubeconfig (or the environment's).
    pub async fn connect(spec: &ClusterSpec, replica: &str) -> anyhow::Result<Arc<Self>> {
        let mut config = match &spec.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("failed to read the kubeconfig {} of cluster \"{}\"", path.display(), spec.name))?;
                let options = KubeConfigOptions { context: spec.context.clone(), ..Default::default() };
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .with_context(|| format!("the kubeconfig of cluster \"{}\" is not usable", spec.name))?
            }
            None => kube::Config::infer().await.with_context(|| {
                format!("no kubeconfig for cluster \"{}\": set KUBECONFIG or give --cluster {}=/path/to/kubeconfig", spec.name, spec.name)
            })?,
        };
        config.connect_timeout = Some(Duration::from_secs(5));
        // Names this replica in the API server's audit log.
        if let Ok(agent) = axum::http::HeaderValue::from_str(&crate::telemetry::user_agent(replica))
        {
            config.headers.push((axum::http::header::USER_AGENT, agent));
        }
        let server_url = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let ca_pem = config
            .root_cert
            .as_ref()
            .and_then(|certs| certs.first())
            .map(|der| pem("CERTIFICATE", der));
        let client = kube::Client::try_from(config)
            .with_context(|| format!("failed to build a client for cluster \"{}\"", spec.name))?;
        Ok(Arc::new(Self {
            name: spec.name.clone(),
            client,
            server_url,
            ca_pem,
            caches: Kind::ALL
                .into_iter()
                .map(|kind| (kind, RwLock::default()))
                .collect(),
            watched: Mutex::default(),
            listed: Mutex::default(),
            served: Mutex::default(),
            ready: tokio::sync::watch::Sender::new(false),
            by_tenant: Mutex::new(HashMap::new()),
            health: Mutex::new(Health::default()),
            guardrails: tokio::sync::watch::Sender::new(GuardrailState::Unmanaged),
            namespaces: RwLock::new(None),
            observed: Default::default(),
        }))
    }

    /// Whether the caller is the one watcher of a kind's cache (the first to ask).
    pub fn claim_watch(&self, kind: Kind) -> bool {
        self.watched
            .lock()
            .is_ok_and(|mut watched| watched.insert(kind))
    }

    /// The cached live object, if the cluster has it.
    pub fn live(&self, key: &ObjectKey) -> Option<Arc<LiveObject>> {
        let digest = live::key_digest(key);
        self.caches[&key.kind].read().ok()?.get(&digest).cloned()
    }

    /// Notes an object the watch reported as it is now.
    pub fn cache(&self, key: &ObjectKey, object: LiveObject) {
        let digest = live::key_digest(key);
        if let Ok(mut cache) = self.caches[&key.kind].write() {
            cache.insert(digest, Arc::new(object));
        }
    }

    /// Forgets an object the watch reported deleted.
    pub fn uncache(&self, key: &ObjectKey) {
        let digest = live::key_digest(key);
        if let Ok(mut cache) = self.caches[&key.kind].write() {
            cache.remove(&digest);
        }
    }

    /// Replaces a kind's whole cache with a complete listing.
    pub fn cache_listing(&self, kind: Kind, listing: Listing) {
        if let Ok(mut cache) = self.caches[&kind].write() {
            *cache = listing;
        }
        if let Ok(mut listed) = self.listed.lock() {
            listed.insert(kind);
            if listed.len() == Kind::ALL.len() {
                self.ready.send_replace(true);
            }
        }
    }

    /// Waits until every cache holds a full listing, or fails after `timeout`.
    pub async fn caches_ready(&self, timeout: Duration) -> Result<(), String> {
        let mut ready = self.ready.subscribe();
        match tokio::time::timeout(timeout, ready.wait_for(|ready| *ready)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(format!(
                "cluster \"{}\" has not answered yet{}; will retry",
                self.name,
                self.health()
                    .last_error
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )),
        }
    }

    /// Notes that a live object of `tenant` exists (`present`) or is gone.
    pub fn index(&self, tenant: &str, key: ObjectKey, present: bool) {
        let Ok(mut index) = self.by_tenant.lock() else {
            return;
        };
        if present {
            let keys = index.entry(live::intern(tenant)).or_default();
            if !keys.contains(&key) {
                keys.reserve_exact(1);
                keys.push(key);
            }
        } else if let Some(keys) = index.get_mut(tenant) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                index.remove(tenant);
            }
        }
    }

    /// Forgets every indexed object of one kind, before a watch lists it anew.
    pub fn forget_kind(&self, kind: Kind) {
        if let Ok(mut index) = self.by_tenant.lock() {
            index.retain(|_, keys| {
                keys.retain(|k| k.kind != kind);
                !keys.is_empty()
            });
        }
    }

    /// The live objects of a tenant, as the watches last reported them.
    pub fn tenant_objects(&self, tenant: &str) -> Vec<ObjectKey> {
        let mut keys: Vec<_> = self
            .by_tenant
            .lock()
            .ok()
            .and_then(|index| index.get(tenant).map(|keys| keys.to_vec()))
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// Whether the caller is the first to [`observe`] this cluster.
    fn claim_observation(&self) -> bool {
        !self
            .observed
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// Replaces the namespaces with a complete listing.
    fn list_namespaces(&self, listing: HashMap<Arc<str>, SeenNamespace>) {
        if let Ok(mut namespaces) = self.namespaces.write() {
            *namespaces = Some(listing);
        }
    }

    /// Notes a namespace the watch reported as it is now, or deleted (`None`).
    fn note_namespace(&self, name: &str, seen: Option<SeenNamespace>) {
        if let Ok(mut namespaces) = self.namespaces.write()
            && let Some(namespaces) = namespaces.as_mut()
        {
            match seen {
                Some(seen) => namespaces.insert(live::intern(name), seen),
                None => namespaces.remove(name),
            };
        }
    }

    /// What the namespace watch knows of namespace `name`, or `None` when it
    /// cannot tell: not listed whole yet (nothing [`observe`]s the cluster
    /// here, or it is still starting), or the cluster is not answering.
    pub fn seen_namespace(&self, name: &str) -> Option<SeenNamespace> {
        if !self.health().reachable {
            return None;
        }
        let namespaces = self.namespaces.read().ok()?;
        Some(
            namespaces
                .as_ref()?
                .get(name)
                .cloned()
                .unwrap_or(SeenNamespace::Absent),
        )
    }

    pub fn set_guardrails(&self, state: GuardrailState) {
        self.guardrails.send_replace(state);
    }

    /// Waits until the admission policies are installed, so that no tenant
    /// namespace exists in this cluster without them; fails after `timeout`.
    pub async fn guardrails_installed(&self, timeout: std::time::Duration) -> Result<(), String> {
        let mut state = self.guardrails.subscribe();
        let wait = state.wait_for(|s| !matches!(s, GuardrailState::Pending(_)));
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(match &*self.guardrails.borrow() {
                GuardrailState::Pending(Some(error)) => format!(
                    "the admission policies of cluster \"{}\" are not installed ({error}); tenants wait until they are",
                    self.name
                ),
                _ => format!(
                    "the admission policies of cluster \"{}\" are not installed yet; will retry",
                    self.name
                ),
            }),
        }
    }

    pub fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn set_health(&self, reachable: bool, error: Option<String>) {
        if let Ok(mut health) = self.health.lock() {
            if health.reachable != reachable {
                match &error {
                    Some(e) => {
                        tracing::warn!(cluster = %self.name, error = %e, "cluster unreachable; changes wait in the outbox")
                    }
                    None => tracing::info!(cluster = %self.name, "cluster reachable"),
                }
            }
            *health = Health {
                reachable,
                last_error: error,
                checked_at: Some(Utc::now()),
            };
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every configured cluster, by name, with the name of the replica whose
/// clients they are.
#[derive(Clone, Default)]
pub struct Clusters(Arc<BTreeMap<String, Arc<Cluster>>>, Arc<str>);

impl Clusters {
    pub async fn connect(specs: &[ClusterSpec]) -> anyhow::Result<Self> {
        let replica = crate::telemetry::new_replica_name();
        let mut clusters = BTreeMap::new();
        for spec in specs {
            clusters.insert(spec.name.clone(), Cluster::connect(spec, &replica).await?);
        }
        Ok(Self(Arc::new(clusters), replica.into()))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.0.values()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The replica these clients write as (their `User-Agent`).
    pub fn replica(&self) -> &str {
        &self.1
    }
}
