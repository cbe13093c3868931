//! Cluster-scoped objects a tenant may read, each kind narrowed to what is
//! the tenant's: the classes its policy lets it name, the nodes of its pool,
//! the PersistentVolumes bound to its claims. Read as the portal (the
//! tenant's own accounts hold no cluster-scoped rights); an object outside
//! the view is `NotFound`, exactly as one that does not exist, so the view
//! tells nothing of other pools or other tenants.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

use super::NameMap;
use super::proxy::Context;
use super::request::{GroupVersion, is_watch};
use super::status::KubeStatus;
use super::wire::{events, is_table, json_body, json_response, watch_response};
use crate::domain::TenantPolicy;

/// The kinds offered, as `kubectl api-resources` names them, for refusals.
pub const OFFERED: &str = "StorageClasses, IngressClasses, PriorityClasses and RuntimeClasses its policy allows, Nodes of its node pool and PersistentVolumes bound to its claims";

/// The kinds with a view, by group and resource.
pub const VIEWED: [(&str, &str); 6] = [
    ("storage.k8s.io", "storageclasses"),
    ("networking.k8s.io", "ingressclasses"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("node.k8s.io", "runtimeclasses"),
    ("", "nodes"),
    ("", "persistentvolumes"),
];

/// Node fields that describe other tenants' work on a shared node: the
/// images pulled for their pods and the volumes attached for them.
const NODE_STATUS_HIDDEN: [&str; 3] = ["images", "volumesInUse", "volumesAttached"];

/// Which objects of one cluster-scoped kind the tenant sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Classes by name; `None`: the policy allows every class of the kind.
    Classes(Option<BTreeSet<String>>),
    /// Nodes whose labels hold the tenant's node selector (all nodes when
    /// the policy sets none: the tenant's pods may run on any).
    Pool(BTreeMap<String, String>),
    /// PersistentVolumes whose claim is in one of these (cluster) namespaces.
    Claimed(BTreeSet<String>),
}

impl View {
    /// The tenant's view of `resource` in `group`, when the tenant API
    /// offers that kind.
    pub fn of(group: &str, resource: &str, policy: &TenantPolicy, names: &NameMap) -> Option<Self> {
        let classes = |allowed: &Option<BTreeSet<String>>| Some(Self::Classes(allowed.clone()));
        match (group, resource) {
            ("storage.k8s.io", "storageclasses") => classes(&policy.storage_classes),
            ("networking.k8s.io", "ingressclasses") => classes(&policy.ingress_classes),
            ("scheduling.k8s.io", "priorityclasses") => classes(&policy.priority_classes),
            ("node.k8s.io", "runtimeclasses") => classes(&policy.runtime_classes),
            ("", "nodes") => Some(Self::Pool(policy.node_selector.clone())),
            ("", "persistentvolumes") => Some(Self::Claimed(
                names.cluster_names().map(str::to_string).collect(),
            )),
            _ => None,
        }
    }

    /// Whether the tenant sees this object (whole, or the metadata a
    /// `Table` row carries when only labels or the name decide).
    pub fn shows(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        match self {
            Self::Classes(None) => true,
            Self::Classes(Some(allowed)) => metadata["name"]
                .as_str()
                .is_some_and(|name| allowed.contains(name)),
            Self::Pool(selector) => selector
                .iter()
                .all(|(key, value)| metadata["labels"][key].as_str() == Some(value.as_str())),
            Self::Claimed(namespaces) => object["spec"]["claimRef"]["namespace"]
                .as_str()
                .is_some_and(|namespace| namespaces.contains(namespace)),
        }
    }

    /// Whether deciding needs the whole object (a `Table` row otherwise
    /// carries only metadata).
    fn needs_whole_object(&self) -> bool {
        matches!(self, Self::Claimed(_))
    }

    /// What the API server can filter itself: the pool's label selector.
    fn label_selector(&self) -> Option<String> {
        match self {
            Self::Pool(selector) if !selector.is_empty() => Some(
                selector
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        }
    }

    /// A name outside the view that is known without asking the cluster.
    fn refuses_name(&self, name: &str) -> bool {
        matches!(self, Self::Classes(Some(allowed)) if !allowed.contains(name))
    }

    /// The object as the tenant reads it: without who wrote which field,
    /// and for a node, without what it holds for others.
    fn tidy(&self, object: &mut Value) {
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("managedFields");
        }
        if matches!(self, Self::Pool(_))
            && let Some(status) = object["status"].as_object_mut()
        {
            for field in NODE_STATUS_HIDDEN {
                status.remove(field);
            }
        }
    }
}

/// A read of a cluster-scoped kind the tenant API offers: get (and its
/// `status`), list and watch, in JSON or as a `Table`.
pub async fn read(
    ctx: &Context<'_>,
    view: View,
    api: &GroupVersion,
    tail: &[String],
    request: Request<Body>,
) -> Result<Response, KubeStatus> {
    let resource = tail[0].as_str();
    let qualified = api.qualified(resource);
    if request.method() != Method::GET {
        return Err(KubeStatus::forbidden(format!(
            "{qualified} is forbidden: the tenant API of \"{}\" offers {resource} read-only (get, list, watch)",
            ctx.slug
        )));
    }
    let name = match tail {
        [_] => None,
        [_, name] | [_, name, _] if tail.get(2).is_none_or(|s| s == "status") => {
            Some(name.as_str())
        }
        _ => {
            return Err(KubeStatus::forbidden(format!(
                "{qualified} is forbidden: the tenant API of \"{}\" does not offer {}",
                ctx.slug,
                tail[1..].join("/")
            )));
        }
    };
    let not_found = || object_not_found(&qualified, name.unwrap_or_default());
    if name.is_some_and(|name| view.refuses_name(name)) {
        return Err(not_found());
    }
    let headers = request.headers();
    let table = is_table(headers);
    let query = request.uri().query();
    let watch = is_watch(query);
    let path = format!("{}/{}", api.path, tail.join("/"));
    let upstream_query = view_query(&view, query.unwrap_or(""), table);
    let answer = ctx
        .send_as_portal(&format!("{path}{upstream_query}"), headers)
        .await?;
    let names = ctx.caller.names.clone();
    let whole_asked = asks_whole_objects(query);
    if watch && answer.status().is_success() {
        let mut shown = HashSet::new();
        let stream = Body::new(answer.into_body()).into_data_stream();
        let kept = events(stream).filter_map(move |event| {
            let kept = watched(&view, &names, &mut shown, event, whole_asked);
            futures::future::ready(kept)
        });
        return Ok(watch_response(kept));
    }
    let status = answer.status();
    let mut value = json_body(Body::new(answer.into_body())).await?;
    if !status.is_success() {
        names.body_outward(&mut value);
        return Ok(json_response(status, &value));
    }
    let one = name.is_some();
    if value["kind"] == "Table" {
        narrow_table(&view, &names, &mut value, whole_asked);
        if one && value["rows"].as_array().is_none_or(Vec::is_empty) {
            return Err(not_found());
        }
    } else if one {
        if !view.shows(&value) {
            return Err(not_found());
        }
        view.tidy(&mut value);
    } else {
        narrow_list(&view, &mut value);
    }
    names.body_outward(&mut value);
    Ok(json_response(StatusCode::OK, &value))
}

/// The client's query for the cluster: the pool's selector added to the
/// client's, whole objects in `Table` rows when the view needs them, and
/// no paging: a page of the cluster's objects filtered could be empty with
/// more to come, and its continue token would name an object outside the
/// view, so lists are answered whole (as the API server does when it does
/// not page).
fn view_query(view: &View, query: &str, table: bool) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut selector = view.label_selector();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" | "continue" => {}
            "includeObject" if table && view.needs_whole_object() => {}
            "labelSelector" => {
                selector = Some(match selector {
                    Some(pool) if !value.is_empty() => format!("{value},{pool}"),
                    Some(pool) => pool,
                    None => value.into_owned(),
                });
            }
            _ => {
                out.append_pair(&key, &value);
            }
        }
    }
    if let Some(selector) = selector {
        out.append_pair("labelSelector", &selector);
    }
    if table && view.needs_whole_object() {
        out.append_pair("includeObject", "Object");
    }
    let encoded = out.finish();
    if encoded.is_empty() {
        String::new()
    } else {
        format!("?{encoded}")
    }
}

fn asks_whole_objects(query: Option<&str>) -> bool {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(key, value)| key == "includeObject" && value == "Object")
}

fn narrow_list(view: &View, list: &mut Value) {
    if let Some(items) = list["items"].as_array_mut() {
        items.retain(|item| view.shows(item));
        items.iter_mut().for_each(|item| view.tidy(item));
    }
    forget_paging(list);
}

/// A `Table`'s rows narrowed to the view; each row's object as the client
/// asked for it (metadata only, unless it asked for whole objects), and
/// the claim column of a volume in the tenant's names.
fn narrow_table(view: &View, names: &NameMap, table: &mut Value, whole_asked: bool) {
    if let Some(rows) = table["rows"].as_array_mut() {
        rows.retain(|row| view.shows(&row["object"]));
        for row in rows.iter_mut() {
            view.tidy(&mut row["object"]);
            if view.needs_whole_object() && !whole_asked {
                row["object"] = json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": row["object"]["metadata"].take(),
                });
            }
            if let Some(cells) = row["cells"].as_array_mut() {
                for cell in cells {
                    rename_claim(names, cell);
                }
            }
        }
    }
    forget_paging(table);
}

/// `acme-dev/data` (a volume's claim, as `kubectl get pv` shows it) as
/// `dev/data`.
fn rename_claim(names: &NameMap, cell: &mut Value) {
    if let Some(text) = cell.as_str()
        && let Some((namespace, claim)) = text.split_once('/')
        && let Some(short) = names.to_tenant(namespace)
    {
        *cell = Value::String(format!("{short}/{claim}"));
    }
}

fn forget_paging(list: &mut Value) {
    if let Some(metadata) = list["metadata"].as_object_mut() {
        metadata.remove("continue");
        metadata.remove("remainingItemCount");
    }
}

/// One watch event as the tenant sees it: an object that enters the view
/// is added, one in it modified, and one that leaves it (a volume bound
/// elsewhere) deleted by name only, so nothing of where it went shows.
fn watched(
    view: &View,
    names: &NameMap,
    shown: &mut HashSet<String>,
    mut event: Value,
    whole_asked: bool,
) -> Option<Value> {
    let kind = event["type"].as_str().unwrap_or_default().to_string();
    if kind == "BOOKMARK" || kind == "ERROR" {
        names.body_outward(&mut event);
        return Some(event);
    }
    let object = &mut event["object"];
    if object["kind"] == "Table" {
        narrow_table(view, names, object, whole_asked);
        let empty = object["rows"].as_array().is_none_or(Vec::is_empty);
        return (!empty).then_some(event);
    }
    let name = object["metadata"]["name"].as_str()?.to_string();
    if view.shows(object) {
        view.tidy(object);
        if kind == "DELETED" {
            shown.remove(&name);
        } else {
            shown.insert(name);
        }
        names.body_outward(&mut event);
        return Some(event);
    }
    if shown.remove(&name) {
        let gone = json!({
            "apiVersion": object["apiVersion"],
            "kind": object["kind"],
            "metadata": {
                "name": name,
                "uid": object["metadata"]["uid"],
                "resourceVersion": object["metadata"]["resourceVersion"],
            },
        });
        return Some(json!({"type": "DELETED", "object": gone}));
    }
    None
}

/// `nodes "x" not found`, as the API server says it.
fn object_not_found(qualified: &str, name: &str) -> KubeStatus {
    let (resource, group) = qualified.split_once('.').unwrap_or((qualified, ""));
    KubeStatus {
        details: Some(json!({"name": name, "group": group, "kind": resource})),
        ..KubeStatus::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{qualified} \"{name}\" not found"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TenantPolicy {
        let mut policy = crate::config::GuardrailConfig::default().default_policy();
        policy.storage_classes = Some(BTreeSet::from(["fast".to_string()]));
        policy.node_selector = BTreeMap::from([("pool".to_string(), "tenants".to_string())]);
        policy
    }

    fn names() -> NameMap {
        NameMap::new([("dev".to_string(), "acme-dev".to_string())])
    }

    fn view(group: &str, resource: &str) -> View {
        View::of(group, resource, &policy(), &names()).expect("offered")
    }

    #[test]
    fn only_the_offered_kinds_have_a_view() {
        for (group, resource) in VIEWED {
            assert!(
                View::of(group, resource, &policy(), &names()).is_some(),
                "{resource}"
            );
        }
        for (group, resource) in [
            ("", "namespaces"),
            ("rbac.authorization.k8s.io", "clusterroles"),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("storage.k8s.io", "csidrivers"),
            ("", "componentstatuses"),
        ] {
            assert_eq!(
                View::of(group, resource, &policy(), &names()),
                None,
                "{resource}"
            );
        }
    }

    #[test]
    fn classes_show_only_what_the_policy_names() {
        let storage = view("storage.k8s.io", "storageclasses");
        assert!(storage.shows(&json!({"metadata": {"name": "fast"}})));
        assert!(!storage.shows(&json!({"metadata": {"name": "slow"}})));
        assert!(storage.refuses_name("slow"));
        let any = view("networking.k8s.io", "ingressclasses");
        assert!(any.shows(&json!({"metadata": {"name": "nginx"}})));
    }

    #[test]
    fn nodes_show_only_the_pool_and_hide_what_they_hold_for_others() {
        let nodes = view("", "nodes");
        let mut node = json!({
            "metadata": {"name": "n1", "labels": {"pool": "tenants"}, "managedFields": []},
            "status": {"images": [{"names": ["ghcr.io/other/secret:1"]}], "volumesInUse": ["x"],
                       "allocatable": {"cpu": "4"}},
        });
        assert!(nodes.shows(&node));
        assert!(!nodes.shows(&json!({"metadata": {"name": "n2", "labels": {"pool": "batch"}}})));
        assert!(!nodes.shows(&json!({"metadata": {"name": "n3"}})));
        nodes.tidy(&mut node);
        assert_eq!(node["status"], json!({"allocatable": {"cpu": "4"}}));
        assert_eq!(node["metadata"].get("managedFields"), None);
        assert_eq!(nodes.label_selector().as_deref(), Some("pool=tenants"));
    }

    #[test]
    fn the_pool_selector_narrows_the_clients_own() {
        let nodes = view("", "nodes");
        let query = view_query(&nodes, "labelSelector=zone%3Da&limit=500&continue=x", false);
        assert_eq!(query, "?labelSelector=zone%3Da%2Cpool%3Dtenants");
    }

    #[test]
    fn volumes_show_only_the_tenants_claims_and_tables_carry_them_whole() {
        let volumes = view("", "persistentvolumes");
        assert!(volumes.shows(&json!({"spec": {"claimRef": {"namespace": "acme-dev"}}})));
        assert!(!volumes.shows(&json!({"spec": {"claimRef": {"namespace": "globex-dev"}}})));
        assert!(!volumes.shows(&json!({"spec": {}})));
        assert_eq!(
            view_query(&volumes, "includeObject=Metadata", true),
            "?includeObject=Object"
        );
        let mut table = json!({"kind": "Table", "metadata": {"continue": "x"}, "rows": [
            {"cells": ["pv-1", "acme-dev/data"], "object": {"metadata": {"name": "pv-1"},
                "spec": {"claimRef": {"namespace": "acme-dev"}}}},
            {"cells": ["pv-2", "globex-dev/data"], "object": {"metadata": {"name": "pv-2"},
                "spec": {"claimRef": {"namespace": "globex-dev"}}}},
        ]});
        narrow_table(&volumes, &names(), &mut table, false);
        assert_eq!(table["rows"].as_array().map(Vec::len), Some(1));
        assert_eq!(table["rows"][0]["cells"][1], "dev/data");
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(table["rows"][0]["object"].get("spec"), None);
        assert_eq!(table["metadata"].get("continue"), None);
    }

    #[test]
    fn a_volume_that_leaves_the_view_is_deleted_by_name_only() {
        let volumes = view("", "persistentvolumes");
        let mut shown = HashSet::new();
        let ours = json!({"type": "ADDED", "object": {"kind": "PersistentVolume",
            "metadata": {"name": "pv-1", "resourceVersion": "5"},
            "spec": {"claimRef": {"namespace": "acme-dev", "name": "data"}}}});
        let added = watched(&volumes, &names(), &mut shown, ours, false).expect("shown");
        assert_eq!(added["object"]["spec"]["claimRef"]["namespace"], "dev");
        let elsewhere = json!({"type": "MODIFIED", "object": {"kind": "PersistentVolume",
            "metadata": {"name": "pv-1", "resourceVersion": "6"},
            "spec": {"claimRef": {"namespace": "globex-dev", "name": "db"}}}});
        let gone =
            watched(&volumes, &names(), &mut shown, elsewhere.clone(), false).expect("a deletion");
        assert_eq!(gone["type"], "DELETED");
        assert_eq!(gone["object"].get("spec"), None);
        assert!(!gone.to_string().contains("globex"));
        assert_eq!(
            watched(&volumes, &names(), &mut shown, elsewhere, false),
            None
        );
    }
}
