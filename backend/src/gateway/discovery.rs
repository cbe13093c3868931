//! Discovery as a tenant sees it: exactly what the tenant API serves. The
//! built-in namespaced resources, the tenant's namespaces, reviews of its
//! own access, the cluster-scoped views (read-only) and the platform APIs
//! published to it; not the cluster's other cluster-scoped kinds, and no
//! other resource of the cluster's custom API groups. Tools that walk
//! discovery (`kubectl api-resources`, Helm, GitOps agents) then find
//! nothing they would be refused.

use std::collections::BTreeSet;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::cluster_views::VIEWED;
use super::proxy::REVIEWS;
use crate::domain::PlatformApi;
use crate::domain::platform_api::is_built_in;

/// The platform APIs a tenant may use.
pub type Published = BTreeSet<PlatformApi>;

/// The verbs of a read-only view.
const READ: [&str; 3] = ["get", "list", "watch"];
/// What the tenant API does with namespaces (the portal's own calls; a
/// server-side apply creates one).
const NAMESPACE_VERBS: [&str; 6] = ["create", "delete", "get", "list", "patch", "watch"];

/// Whether the tenant API carries requests of this group at all: one of
/// Kubernetes' own, or the group of a platform API published to the tenant.
pub fn carries(group: &str, published: &Published) -> bool {
    is_built_in(group) || published.iter().any(|api| api.group == group)
}

/// Whether the tenant API serves this namespaced resource (`tail[0]` of a
/// path) of a group it carries.
pub fn serves(group: &str, resource: &str, published: &Published) -> bool {
    is_built_in(group)
        || published
            .iter()
            .any(|api| api.group == group && api.resource == resource)
}

/// How a resource (or one of its subresources) appears to the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// As the API server lists it; RBAC decides each verb.
    AsIs,
    /// With these verbs only.
    Only(&'static [&'static str]),
    Hidden,
}

fn offer(
    group: &str,
    resource: &str,
    subresource: Option<&str>,
    namespaced: bool,
    published: &Published,
) -> Offer {
    if !is_built_in(group) {
        return if namespaced && serves(group, resource, published) {
            Offer::AsIs
        } else {
            Offer::Hidden
        };
    }
    if namespaced || REVIEWS.contains(&(group, resource)) {
        return Offer::AsIs;
    }
    match subresource {
        Some(_) => Offer::Hidden,
        None if (group, resource) == ("", "namespaces") => Offer::Only(&NAMESPACE_VERBS),
        None if VIEWED.contains(&(group, resource)) => Offer::Only(&READ),
        None => Offer::Hidden,
    }
}

/// What a discovery answer is, by the path that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// `/api`, `/apis`, `/api/v1`, `/apis/<group>[/<version>]`: filtered by
    /// the kind of the answer (legacy or aggregated).
    Listing,
    /// `/openapi/v3`: the index of the OpenAPI documents per group version.
    OpenApiIndex,
    /// Anything else (`/version`, `/openapi/v2`, one OpenAPI v3 document):
    /// passed on as it is.
    AsIs,
}

/// Which discovery document a path asks for, or `None` when it names a
/// group the tenant API does not carry (answered `NotFound`).
pub fn document(path: &str, published: &Published) -> Option<Document> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["apis", group, ..] if !carries(group, published) => None,
        ["openapi", "v3", "apis", group, ..] if !carries(group, published) => None,
        ["openapi", "v3"] => Some(Document::OpenApiIndex),
        ["api"] | ["apis"] | ["api", _] | ["apis", _] | ["apis", _, _] => Some(Document::Listing),
        _ => Some(Document::AsIs),
    }
}

/// A discovery listing narrowed to the tenant's offer, by its kind. The
/// groups left in an aggregated answer are returned, for the legacy group
/// list, which cannot tell by itself which groups hold nothing offered.
pub fn narrow(value: &mut Value, published: &Published) -> Option<BTreeSet<String>> {
    match value["kind"].as_str() {
        Some("APIGroupDiscoveryList") => Some(narrow_aggregated(value, published)),
        Some("APIResourceList") => {
            narrow_resource_list(value, published);
            None
        }
        _ => None,
    }
}

/// `/apis` (legacy): the groups with something offered.
pub fn narrow_group_list(value: &mut Value, offered: &BTreeSet<String>) {
    if let Some(groups) = value["groups"].as_array_mut() {
        groups.retain(|group| {
            group["name"]
                .as_str()
                .is_some_and(|name| offered.contains(name))
        });
    }
}

/// `/openapi/v3`: the documents of the groups with something offered
/// (`api/v1`, `apis/apps/v1`), and the documents that belong to no group.
pub fn narrow_openapi_index(value: &mut Value, offered: &BTreeSet<String>) {
    if let Some(paths) = value["paths"].as_object_mut() {
        paths.retain(
            |path, _| match path.split('/').collect::<Vec<_>>().as_slice() {
                ["apis", group, ..] => offered.contains(*group),
                _ => true,
            },
        );
    }
}

fn narrow_aggregated(list: &mut Value, published: &Published) -> BTreeSet<String> {
    let mut kept = BTreeSet::new();
    if let Some(groups) = list["items"].as_array_mut() {
        groups.retain_mut(|group| {
            let name = group["metadata"]["name"].as_str().unwrap_or("").to_string();
            if let Some(versions) = group["versions"].as_array_mut() {
                versions.retain_mut(|version| {
                    if let Some(resources) = version["resources"].as_array_mut() {
                        resources.retain_mut(|resource| {
                            narrow_aggregated_resource(&name, resource, published)
                        });
                    }
                    version["resources"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty())
                });
            }
            let any = group["versions"].as_array().is_some_and(|v| !v.is_empty());
            if any {
                kept.insert(name);
            }
            any
        });
    }
    kept
}

fn narrow_aggregated_resource(group: &str, resource: &mut Value, published: &Published) -> bool {
    let name = resource["resource"].as_str().unwrap_or("");
    let namespaced = resource["scope"] == "Namespaced";
    match offer(group, name, None, namespaced, published) {
        Offer::AsIs => true,
        Offer::Only(verbs) => {
            resource["verbs"] = json!(verbs);
            if let Some(fields) = resource.as_object_mut() {
                fields.remove("subresources");
            }
            true
        }
        Offer::Hidden => false,
    }
}

fn narrow_resource_list(list: &mut Value, published: &Published) {
    let group = list["groupVersion"]
        .as_str()
        .and_then(|gv| gv.split_once('/'))
        .map_or("", |(group, _)| group)
        .to_string();
    if let Some(resources) = list["resources"].as_array_mut() {
        resources.retain_mut(|resource| {
            let name = resource["name"].as_str().unwrap_or("");
            let (base, subresource) = match name.split_once('/') {
                Some((base, sub)) => (base, Some(sub)),
                None => (name, None),
            };
            let namespaced = resource["namespaced"].as_bool().unwrap_or(false);
            match offer(&group, base, subresource, namespaced, published) {
                Offer::AsIs => true,
                Offer::Only(verbs) => {
                    resource["verbs"] = json!(verbs);
                    true
                }
                Offer::Hidden => false,
            }
        });
    }
}

/// The Accept header that asks for the aggregated discovery document.
pub fn aggregated_accept() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        ),
    );
    headers
}

pub fn not_found() -> super::status::KubeStatus {
    super::status::KubeStatus::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Published {
        Published::new()
    }

    fn certificates() -> Published {
        Published::from([PlatformApi::parse("certificates.cert-manager.io").unwrap()])
    }

    #[test]
    fn groups_of_custom_resources_are_not_found_unless_published() {
        let none = none();
        assert_eq!(document("/apis/cert-manager.io/v1", &none), None);
        assert_eq!(document("/apis/cert-manager.io", &none), None);
        assert_eq!(document("/openapi/v3/apis/cert-manager.io/v1", &none), None);
        assert_eq!(document("/apis/apps/v1", &none), Some(Document::Listing));
        assert_eq!(document("/openapi/v3", &none), Some(Document::OpenApiIndex));
        assert_eq!(document("/openapi/v3/api/v1", &none), Some(Document::AsIs));
        assert_eq!(document("/version", &none), Some(Document::AsIs));
        let published = certificates();
        assert_eq!(
            document("/apis/cert-manager.io/v1", &published),
            Some(Document::Listing)
        );
        assert_eq!(
            document("/openapi/v3/apis/cert-manager.io/v1", &published),
            Some(Document::AsIs)
        );
        assert!(serves("cert-manager.io", "certificates", &published));
        assert!(!serves("cert-manager.io", "issuers", &published));
    }

    #[test]
    fn a_published_group_lists_only_its_published_resources() {
        let mut list = json!({"kind": "APIResourceList", "groupVersion": "cert-manager.io/v1",
        "resources": [
            {"name": "certificates", "namespaced": true},
            {"name": "certificates/status", "namespaced": true},
            {"name": "issuers", "namespaced": true},
            {"name": "clusterissuers", "namespaced": false},
        ]});
        narrow(&mut list, &certificates());
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["certificates", "certificates/status"]);
    }

    #[test]
    fn a_resource_list_keeps_the_namespaced_the_views_and_the_reviews() {
        let mut core = json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "pods", "namespaced": true, "verbs": ["create", "get"]},
            {"name": "pods/exec", "namespaced": true, "verbs": ["create", "get"]},
            {"name": "nodes", "namespaced": false, "verbs": ["create", "delete", "get", "list"]},
            {"name": "nodes/proxy", "namespaced": false, "verbs": ["get", "create"]},
            {"name": "componentstatuses", "namespaced": false, "verbs": ["get", "list"]},
            {"name": "namespaces", "namespaced": false, "verbs": ["create", "update"]},
            {"name": "namespaces/finalize", "namespaced": false, "verbs": ["update"]},
        ]});
        narrow(&mut core, &none());
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["pods", "pods/exec", "nodes", "namespaces"]);
        assert_eq!(
            core["resources"][2]["verbs"],
            json!(["get", "list", "watch"])
        );
        let mut rbac = json!({"kind": "APIResourceList",
            "groupVersion": "rbac.authorization.k8s.io/v1", "resources": [
            {"name": "clusterroles", "namespaced": false},
            {"name": "roles", "namespaced": true},
        ]});
        narrow(&mut rbac, &none());
        assert_eq!(rbac["resources"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn the_aggregated_document_drops_what_is_not_offered_and_empty_groups() {
        let mut list = json!({"kind": "APIGroupDiscoveryList", "items": [
            {"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": [
                {"resource": "deployments", "scope": "Namespaced",
                 "subresources": [{"subresource": "scale"}]}]}]},
            {"metadata": {"name": "apiextensions.k8s.io"}, "versions": [{"version": "v1", "resources": [
                {"resource": "customresourcedefinitions", "scope": "Cluster"}]}]},
            {"metadata": {"name": "cert-manager.io"}, "versions": [{"version": "v1", "resources": [
                {"resource": "certificates", "scope": "Namespaced"}]}]},
            {"metadata": {"name": "storage.k8s.io"}, "versions": [{"version": "v1", "resources": [
                {"resource": "storageclasses", "scope": "Cluster", "verbs": ["create"],
                 "subresources": [{"subresource": "status"}]},
                {"resource": "volumeattachments", "scope": "Cluster"}]}]},
        ]});
        let kept = narrow(&mut list, &none()).unwrap();
        assert_eq!(
            kept.into_iter().collect::<Vec<_>>(),
            ["apps", "storage.k8s.io"]
        );
        let storage = &list["items"][1]["versions"][0]["resources"];
        assert_eq!(storage.as_array().unwrap().len(), 1);
        assert_eq!(storage[0]["verbs"], json!(["get", "list", "watch"]));
        assert_eq!(storage[0].get("subresources"), None);
        assert!(list["items"][0]["versions"][0]["resources"][0]["subresources"].is_array());
    }

    #[test]
    fn the_group_list_and_the_openapi_index_keep_the_offered_groups() {
        let offered = BTreeSet::from(["apps".to_string()]);
        let mut groups = json!({"kind": "APIGroupList", "groups": [
            {"name": "apps"}, {"name": "apiregistration.k8s.io"}]});
        narrow_group_list(&mut groups, &offered);
        assert_eq!(groups["groups"], json!([{"name": "apps"}]));
        let mut index = json!({"paths": {"api/v1": {}, "apis/apps/v1": {}, "apis/apps": {},
            "apis/apiregistration.k8s.io/v1": {}, "version": {}}});
        narrow_openapi_index(&mut index, &offered);
        let kept: Vec<&String> = index["paths"].as_object().unwrap().keys().collect();
        assert_eq!(kept, ["api/v1", "apis/apps", "apis/apps/v1", "version"]);
    }
}
