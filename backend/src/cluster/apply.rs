//! Writes a tenant's desired objects, and prunes what the portal manages for
//! the tenant but no longer wants. Objects the cache does not hold are
//! created; objects that differ are server-side applied; objects the cache
//! shows already as desired are not sent at all, so an unchanged fleet costs
//! the API server no writes.

use std::collections::{BTreeSet, HashMap};
use std::sync::PoisonError;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};

use super::Cluster;
use super::objects::{Desired, Kind, MANAGED_SELECTOR, MANAGER, ObjectKey, TENANT_LABEL};

/// What one sync did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub applied: usize,
    pub deleted: usize,
    pub unchanged: usize,
}

/// The objects the cluster refused, each with the API server's own message.
#[derive(Debug, Clone)]
pub struct SyncError {
    pub failures: Vec<(ObjectKey, String)>,
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .failures
            .iter()
            .map(|(key, message)| format!("{key}: {message}"))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

fn api(cluster: &Cluster, key: &ObjectKey) -> Api<DynamicObject> {
    let resource = key.kind.api_resource();
    match &key.namespace {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &resource),
        None => Api::all_with(cluster.client.clone(), &resource),
    }
}

/// Server-side applies `body` as `key`. The answer (the whole object with
/// its managed fields) is left unread: the watch brings the object to the
/// cache, so decoding it here was work thrown away.
async fn apply(
    cluster: &Cluster,
    key: &ObjectKey,
    params: &PatchParams,
    body: &serde_json::Value,
) -> Result<(), kube::Error> {
    let api = api(cluster, key);
    let mut request = kube::core::Request::new(api.resource_url())
        .patch(&key.name, params, &Patch::Apply(body))
        .map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert("patch");
    cluster.client.request_text(request).await.map(drop)
}

/// Creates `body` through `api` as the portal's field manager, the answer
/// left unread as in [`apply`].
async fn create(
    cluster: &Cluster,
    api: &Api<DynamicObject>,
    body: &serde_json::Value,
) -> Result<(), kube::Error> {
    let post = PostParams {
        field_manager: Some(MANAGER.to_string()),
        ..Default::default()
    };
    let body = serde_json::to_vec(body).map_err(kube::Error::SerdeError)?;
    let mut request = kube::core::Request::new(api.resource_url())
        .create(&post, body)
        .map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert("create");
    cluster.client.request_text(request).await.map(drop)
}

/// Makes the portal's hold on an object it created an applier's, before its
/// first apply: a create leaves the portal an update entry in
/// `metadata.managedFields`, and fields held only by an update entry stay
/// when an apply no longer sets them, so a field the portal drops would
/// linger (and a spec compared whole would be applied again forever). The
/// entry's operation is rewritten to `Apply`, the upgrade kubectl makes for
/// client-side-applied objects; if the portal also applies already (it
/// applied over a create the watch had not shown yet), the update entry holds
/// what the apply entry holds and is removed. A JSON patch whose tests pin
/// the resourceVersion the watch reported, so a changed object is refused
/// and this sync fails for a retry with the watch's newer view.
async fn hold_as_applier(
    cluster: &Cluster,
    key: &ObjectKey,
    live: &super::LiveObject,
) -> Result<(), String> {
    let (Some(index), Some(version)) = (live.ownership.update_entry, &live.resource_version) else {
        return Ok(());
    };
    let entry = format!("/metadata/managedFields/{index}");
    let rewrite = if live.ownership.applies {
        serde_json::json!({"op": "remove", "path": entry})
    } else {
        serde_json::json!({"op": "replace", "path": format!("{entry}/operation"), "value": "Apply"})
    };
    let patch = serde_json::json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": version.to_string()},
        {"op": "test", "path": format!("{entry}/manager"), "value": MANAGER},
        {"op": "test", "path": format!("{entry}/operation"), "value": "Update"},
        rewrite,
    ]);
    let url = format!(
        "{}/{}?fieldManager={MANAGER}",
        api(cluster, key).resource_url(),
        key.name
    );
    let mut request = axum::http::Request::patch(url)
        .header(
            axum::http::header::CONTENT_TYPE,
            "application/json-patch+json",
        )
        .body(patch.to_string().into_bytes())
        .map_err(|e| e.to_string())?;
    request.extensions_mut().insert("patch");
    match cluster.client.request_text(request).await {
        Ok(_) => Ok(()),
        // A test of the patch failed; the API server says only "Invalid".
        Err(kube::Error::Api(status)) if status.code == 422 => Err(
            "changed since the portal's watch last showed it; written again at the next sync"
                .to_string(),
        ),
        Err(e) => Err(describe(&e)),
    }
}

/// The API server's words for a failed request.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

pub fn key_of(kind: Kind, object: &DynamicObject) -> ObjectKey {
    ObjectKey::interned(
        kind,
        object.metadata.namespace.as_deref(),
        object.metadata.name.as_deref().unwrap_or_default(),
    )
}

fn belongs_to(object: &super::LiveObject, slug: &str) -> bool {
    object.label(TENANT_LABEL) == Some(slug)
}

/// Brings the tenant's objects in `cluster` to `desired`.
pub async fn sync(
    cluster: &Cluster,
    slug: &str,
    desired: &[Desired],
) -> Result<SyncReport, SyncError> {
    let unreachable = |message: String| SyncError {
        failures: vec![(
            ObjectKey {
                kind: Kind::Namespace,
                namespace: None,
                name: slug.into(),
            },
            message,
        )],
    };
    cluster
        .caches_ready(std::time::Duration::from_secs(10))
        .await
        .map_err(unreachable)?;
    cluster
        .guardrails_installed(std::time::Duration::from_secs(10))
        .await
        .map_err(unreachable)?;

    let mut report = SyncReport::default();
    let mut failures = Vec::new();
    // Namespaces the tenant may not have: nothing is written into them.
    let mut refused = BTreeSet::new();
    let params = PatchParams::apply(MANAGER).force();
    for object in desired {
        let namespace = match object.key.kind {
            Kind::Namespace => Some(&object.key.name),
            _ => object.key.namespace.as_ref(),
        };
        if namespace.is_some_and(|ns| refused.contains(ns)) {
            continue;
        }
        if object.key.kind == Kind::Namespace {
            match claim_namespace(cluster, slug, object).await {
                Ok(Claim::Created) => {
                    report.applied += 1;
                    continue;
                }
                Ok(Claim::Ours) => {}
                Err(message) => {
                    refused.insert(object.key.name.clone());
                    failures.push((object.key.clone(), message));
                    continue;
                }
            }
        }
        match cluster.live(&object.key) {
            Some(live) if live.satisfies(object.key.kind, &object.body) => {
                report.unchanged += 1;
                continue;
            }
            Some(live) => {
                if let Err(message) = hold_as_applier(cluster, &object.key, &live).await {
                    failures.push((object.key.clone(), message));
                    continue;
                }
            }
            // Not in the cache: created, which costs the API server about a
            // third less than an apply that creates (BENCHMARKS.md §1). An
            // object that exists after all (not labelled as the portal's,
            // or not yet seen by the watch) is applied over as before.
            None if object.key.kind != Kind::Namespace => {
                match create(cluster, &api(cluster, &object.key), &object.body).await {
                    Ok(()) => {
                        report.applied += 1;
                        continue;
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    Err(e) => {
                        failures.push((object.key.clone(), describe(&e)));
                        continue;
                    }
                }
            }
            None => {}
        }
        match apply(cluster, &object.key, &params, &object.body).await {
            Ok(()) => report.applied += 1,
            Err(e) => failures.push((object.key.clone(), describe(&e))),
        }
    }

    let wanted: BTreeSet<&ObjectKey> = desired.iter().map(|d| &d.key).collect();
    let mut doomed_namespaces = BTreeSet::new();
    // The tenant's own live objects, sorted with namespaces first, so the
    // contents of a namespace being deleted are left to go with it.
    for key in cluster.tenant_objects(slug) {
        let Some(live) = cluster.live(&key) else {
            continue;
        };
        let in_doomed_namespace = key
            .namespace
            .as_ref()
            .is_some_and(|ns| doomed_namespaces.contains(ns));
        if !belongs_to(&live, slug) || wanted.contains(&key) || in_doomed_namespace {
            continue;
        }
        if key.kind == Kind::Namespace {
            doomed_namespaces.insert(key.name.clone());
        }
        if live.deleting {
            continue;
        }
        match api(cluster, &key)
            .delete(&key.name, &DeleteParams::default())
            .await
        {
            Ok(_) => report.deleted += 1,
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => failures.push((key, describe(&e))),
        }
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(SyncError { failures })
    }
}

enum Claim {
    /// The namespace did not exist; it was created for the tenant.
    Created,
    /// The namespace is the tenant's, created by the portal earlier.
    Ours,
}

/// Takes a namespace for the tenant only if the portal created it for this
/// tenant or it does not exist yet. A namespace that exists without the
/// portal's labels for this tenant (another team's, another tenant's) is
/// never taken over: its contents would become the tenant's.
async fn claim_namespace(cluster: &Cluster, slug: &str, object: &Desired) -> Result<Claim, String> {
    let name = &object.key.name;
    let refusal = |other_tenant: bool| {
        if other_tenant {
            format!(
                "namespace \"{name}\" belongs to another tenant; the portal will not give it to tenant {slug}"
            )
        } else {
            format!(
                "namespace \"{name}\" already exists in the cluster and was not created by the portal for tenant {slug}; \
                 the portal will not take it over (remove the namespace from the tenant and choose another name, or have a cluster admin delete the existing one)"
            )
        }
    };
    let verdict = |label: &dyn Fn(&str) -> Option<String>| {
        if label(super::objects::MANAGED_BY).as_deref() != Some(MANAGER) {
            return Err(refusal(false));
        }
        match label(TENANT_LABEL) {
            Some(tenant) if tenant == slug => Ok(Claim::Ours),
            Some(_) => Err(refusal(true)),
            None => Err(refusal(false)),
        }
    };
    if let Some(live) = cluster.live(&object.key) {
        return verdict(&|key| live.label(key).map(str::to_string));
    }
    // Not in the cache of managed namespaces: create it, and if it exists
    // after all, look at whose it is. Creating first leaves no gap in which
    // someone else's namespace could appear between a look and a write.
    let api = self::api(cluster, &object.key);
    match create(cluster, &api, &object.body).await {
        Ok(()) => Ok(Claim::Created),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let found = api
                .list_metadata(&ListParams::default().fields(&format!("metadata.name={name}")))
                .await
                .map_err(|e| describe(&e))?;
            match found.items.first() {
                Some(live) => {
                    let labels = live.metadata.labels.as_ref();
                    verdict(&|key| labels.and_then(|l| l.get(key)).cloned())
                }
                None => Err(format!(
                    "namespace \"{name}\" was being deleted; will retry"
                )),
            }
        }
        Err(e) => Err(describe(&e)),
    }
}

/// Why the tenant may not have namespace `name` in this cluster, if the
/// cluster already holds it for someone else; asked before a namespace is
/// accepted, so the caller hears of it at once. The reconciler refuses the
/// namespace all the same if it appears later, so this reads what the
/// portal's own watches know when they can tell, and otherwise the API
/// server's watch cache (`resourceVersion=0`, no etcd read); a namespace
/// created a moment ago may be missed here and is caught there.
pub async fn namespace_refusal(
    cluster: &Cluster,
    slug: &str,
    name: &str,
) -> Result<Option<String>, String> {
    let seen = match cluster.seen_namespace(name) {
        Some(seen) => seen,
        None => ask_for_namespace(cluster, name).await?,
    };
    let ours = match seen {
        super::SeenNamespace::Absent => return Ok(None),
        super::SeenNamespace::Foreign => false,
        super::SeenNamespace::Managed { tenant } => tenant.as_deref() == Some(slug),
    };
    Ok((!ours).then(|| format!("the cluster already has a namespace \"{name}\", not created by the portal for this tenant; choose another name")))
}

/// Namespace `name` as the API server's watch cache holds it.
async fn ask_for_namespace(cluster: &Cluster, name: &str) -> Result<super::SeenNamespace, String> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client.clone());
    let found = api
        .list_metadata(
            &ListParams::default()
                .fields(&format!("metadata.name={name}"))
                .match_any(),
        )
        .await
        .map_err(|e| describe(&e))?;
    let Some(live) = found.items.first() else {
        return Ok(super::SeenNamespace::Absent);
    };
    let labels = live.metadata.labels.clone().unwrap_or_default();
    if labels.get(super::objects::MANAGED_BY).map(String::as_str) != Some(MANAGER) {
        return Ok(super::SeenNamespace::Foreign);
    }
    Ok(super::SeenNamespace::Managed {
        tenant: labels
            .get(TENANT_LABEL)
            .map(|tenant| tenant.as_str().into()),
    })
}

/// How many of the tenant's namespaces still exist, asked of the API server
/// itself rather than the cache, since deletion completes only when it says so.
pub async fn remaining_namespaces(cluster: &Cluster, slug: &str) -> Result<usize, String> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client.clone());
    let selector = format!("{MANAGED_SELECTOR},{TENANT_LABEL}={slug}");
    api.list_metadata(&ListParams::default().labels(&selector))
        .await
        .map(|list| list.items.len())
        .map_err(|e| describe(&e))
}

/// How a cluster serves a resource of an API group: namespaced (`true`),
/// cluster-scoped (`false`), or not at all (`None`), read from its
/// discovery at the group's preferred version.
pub async fn resource_scope(
    cluster: &Cluster,
    group: &str,
    resource: &str,
) -> Result<Option<bool>, String> {
    /// How long a served resource is taken as served without asking again;
    /// one no longer served shows within it.
    const FRESH: Duration = Duration::from_secs(10);
    let key = (group.to_string(), resource.to_string());
    let known = |served: &HashMap<_, (std::time::Instant, bool)>| {
        served
            .get(&key)
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, namespaced)| *namespaced)
    };
    if let Some(namespaced) = known(
        &cluster
            .served
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    ) {
        return Ok(Some(namespaced));
    }
    let scope = ask_resource_scope(cluster, group, resource).await?;
    if let Some(namespaced) = scope {
        cluster
            .served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (std::time::Instant::now(), namespaced));
    }
    Ok(scope)
}

async fn ask_resource_scope(
    cluster: &Cluster,
    group: &str,
    resource: &str,
) -> Result<Option<bool>, String> {
    let get = |path: String| async move {
        let request = axum::http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        match cluster.client.request::<serde_json::Value>(request).await {
            Ok(answer) => Ok(Some(answer)),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(e) => Err(super::describe(&e)),
        }
    };
    let Some(api_group) = get(format!("/apis/{group}")).await? else {
        return Ok(None);
    };
    let Some(version) = api_group["preferredVersion"]["groupVersion"].as_str() else {
        return Ok(None);
    };
    let Some(resources) = get(format!("/apis/{version}")).await? else {
        return Ok(None);
    };
    Ok(resources["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == resource)
        .map(|r| r["namespaced"].as_bool().unwrap_or(false)))
}
