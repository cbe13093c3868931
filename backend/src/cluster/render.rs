//! What a tenant becomes in its cluster: a pure function from the tenant's
//! state in the database to the objects the cluster should hold.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use super::guardrails::{self, Guardrails};
use super::objects::{Desired, Kind, MANAGED_BY, MANAGER, ObjectKey, TENANT_LABEL};
use crate::domain::{MemberKind, Quantity, ResourceList, Role, TenantPolicy};

pub const QUOTA_NAME: &str = "tenant-quota";
pub const LIMIT_RANGE_NAME: &str = "tenant-defaults";
pub const NETWORK_POLICY_NAME: &str = "tenant-isolation";
pub const AUTOMATION_ACCOUNT: &str = "tenant-automation";
/// The tenant API acts as one of these, by the caller's role: owners as
/// `tenant-owner` (bound to `admin`), editors as the automation account
/// (`edit`), viewers as `tenant-viewer` (`view`). They live in the home
/// namespace and are bound in the tenant's namespaces only.
pub const OWNER_ACCOUNT: &str = "tenant-owner";
pub const VIEWER_ACCOUNT: &str = "tenant-viewer";

/// The account the tenant API acts as for a role.
pub fn account_for(role: Role) -> &'static str {
    match role {
        Role::Owner => OWNER_ACCOUNT,
        Role::Editor => AUTOMATION_ACCOUNT,
        Role::Viewer => VIEWER_ACCOUNT,
    }
}

/// Default container requests and limits, so that plain pods pass quota
/// admission in namespaces whose quota names CPU and memory.
const DEFAULT_REQUESTS: [(&str, &str); 2] = [("cpu", "100m"), ("memory", "128Mi")];
const DEFAULT_LIMITS: [(&str, &str); 2] = [("cpu", "500m"), ("memory", "512Mi")];

/// Everything rendering needs to know about a tenant.
#[derive(Debug, Clone)]
pub struct TenantState {
    pub slug: String,
    pub suspended: bool,
    pub budget: ResourceList,
    /// Full namespace name and its allocations.
    pub namespaces: Vec<(String, ResourceList)>,
    pub members: Vec<(MemberKind, String, Role)>,
    /// What the tenant may do in its namespaces.
    pub policy: TenantPolicy,
    /// The platform APIs the tenant may use: published to it, kept by its policy.
    pub platform_apis: std::collections::BTreeSet<crate::domain::PlatformApi>,
    /// The rules of the cluster, the same for every tenant.
    pub guardrails: std::sync::Arc<Guardrails>,
}

impl TenantState {
    /// The namespace that holds the tenant's automation ServiceAccount: the
    /// first by name, so the choice is stable.
    pub fn home_namespace(&self) -> Option<&str> {
        self.namespaces.iter().map(|(name, _)| name.as_str()).min()
    }
}

fn meta(tenant: &str, namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(BTreeMap::from([
            (MANAGED_BY.to_string(), MANAGER.to_string()),
            (TENANT_LABEL.to_string(), tenant.to_string()),
        ])),
        ..ObjectMeta::default()
    }
}

fn desired<T: Serialize + k8s_openapi::Resource>(
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
    object: &T,
) -> Desired {
    let mut body = serde_json::to_value(object).unwrap_or_default();
    // k8s-openapi leaves these to the client; server-side apply needs them in the body.
    body["apiVersion"] = T::API_VERSION.into();
    body["kind"] = T::KIND.into();
    Desired {
        key: ObjectKey {
            kind,
            namespace: namespace.map(Into::into),
            name: name.into(),
        },
        body,
    }
}

fn quantities(pairs: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, K8sQuantity> {
    pairs
        .into_iter()
        .map(|(k, v)| (k, K8sQuantity(v)))
        .collect()
}

/// The objects the tenant should have; empty for a tenant being deleted.
pub fn render(tenant: &TenantState) -> Vec<Desired> {
    let slug = tenant.slug.as_str();
    let mut objects = Vec::new();
    let home = tenant.home_namespace();
    for (namespace, allocations) in &tenant.namespaces {
        let ns = namespace.as_str();
        objects.push(desired(
            Kind::Namespace,
            None,
            ns,
            &namespace_object(tenant, ns),
        ));
        objects.push(desired(
            Kind::ResourceQuota,
            Some(ns),
            QUOTA_NAME,
            &quota(tenant, ns, allocations),
        ));
        objects.push(desired(
            Kind::LimitRange,
            Some(ns),
            LIMIT_RANGE_NAME,
            &limit_range(slug, ns),
        ));
        objects.push(desired(
            Kind::NetworkPolicy,
            Some(ns),
            NETWORK_POLICY_NAME,
            &isolation(tenant, ns),
        ));
        for binding in role_bindings(tenant, ns, home) {
            let name = binding.metadata.name.clone().unwrap_or_default();
            objects.push(desired(Kind::RoleBinding, Some(ns), &name, &binding));
        }
    }
    if let Some(home) = home {
        for name in [AUTOMATION_ACCOUNT, OWNER_ACCOUNT, VIEWER_ACCOUNT] {
            let account = ServiceAccount {
                metadata: meta(slug, Some(home), name),
                ..Default::default()
            };
            objects.push(desired(Kind::ServiceAccount, Some(home), name, &account));
        }
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    objects
}

/// The namespace's share of the budget. Every budgeted resource is named, at
/// zero when unallocated, so no namespace can use what the budget does not give it.
fn quota(tenant: &TenantState, namespace: &str, allocations: &ResourceList) -> ResourceQuota {
    let mut hard: BTreeMap<String, String> = tenant
        .budget
        .namespace_items()
        .map(|(resource, _)| (resource.to_string(), Quantity::zero().to_string()))
        .collect();
    hard.extend(
        allocations
            .namespace_items()
            .map(|(r, q)| (r.to_string(), q.to_string())),
    );
    if tenant.suspended {
        hard.insert("pods".into(), "0".into());
    }
    ResourceQuota {
        metadata: meta(&tenant.slug, Some(namespace), QUOTA_NAME),
        spec: Some(ResourceQuotaSpec {
            hard: Some(quantities(hard)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn limit_range(slug: &str, namespace: &str) -> LimitRange {
    let pairs =
        |list: [(&str, &str); 2]| quantities(list.map(|(k, v)| (k.to_string(), v.to_string())));
    LimitRange {
        metadata: meta(slug, Some(namespace), LIMIT_RANGE_NAME),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(pairs(DEFAULT_LIMITS)),
                default_request: Some(pairs(DEFAULT_REQUESTS)),
                ..Default::default()
            }],
        }),
    }
}

/// The namespace, carrying the tenant's Pod Security level and the rules
/// the cluster's admission policies read. Every rule is written, `*` for
/// "any", so that widening a rule is a changed value, never a stale one.
fn namespace_object(tenant: &TenantState, name: &str) -> Namespace {
    let policy = &tenant.policy;
    let mut metadata = meta(&tenant.slug, None, name);
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    for mode in ["enforce", "warn", "audit"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            policy.pod_security.as_str().to_string(),
        );
    }
    labels.insert(
        guardrails::SUSPENDED_LABEL.to_string(),
        tenant.suspended.to_string(),
    );
    let list = |names: &Option<std::collections::BTreeSet<String>>| match names {
        None => guardrails::ANY.to_string(),
        Some(names) => names.iter().cloned().collect::<Vec<_>>().join(","),
    };
    let types: Vec<&str> = policy.service_types.iter().map(|t| t.as_str()).collect();
    let selector: Vec<String> = policy
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    metadata.annotations = Some(BTreeMap::from([
        (guardrails::SERVICE_TYPES.to_string(), types.join(",")),
        (
            guardrails::STORAGE_CLASSES.to_string(),
            list(&policy.storage_classes),
        ),
        (
            guardrails::INGRESS_CLASSES.to_string(),
            list(&policy.ingress_classes),
        ),
        (
            guardrails::PRIORITY_CLASSES.to_string(),
            list(&policy.priority_classes),
        ),
        (
            guardrails::RUNTIME_CLASSES.to_string(),
            list(&policy.runtime_classes),
        ),
        (guardrails::REGISTRIES.to_string(), list(&policy.registries)),
        (guardrails::NODE_SELECTOR.to_string(), selector.join(",")),
        (
            guardrails::PLATFORM_APIS.to_string(),
            tenant
                .platform_apis
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]));
    Namespace {
        metadata,
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn namespaces_named(names: Vec<String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".into(),
                operator: "In".into(),
                values: Some(names),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ip_block(cidr: &str, except: Vec<String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.into(),
            except: (!except.is_empty()).then_some(except),
        }),
        ..Default::default()
    }
}

/// Traffic stays within the tenant: in from its own namespaces (and those
/// the configuration or its policy names), out to its own namespaces, the
/// cluster's DNS and the world outside the cluster, but never to the cloud
/// metadata service or the networks the configuration denies.
fn isolation(tenant: &TenantState, namespace: &str) -> NetworkPolicy {
    let slug = tenant.slug.as_str();
    let same_tenant = NetworkPolicyPeer {
        namespace_selector: Some(labels(&[(TENANT_LABEL, slug)])),
        ..Default::default()
    };
    let mut from = vec![same_tenant.clone()];
    let mut admitted: Vec<String> = tenant.guardrails.ingress_from_namespaces.clone();
    admitted.extend(
        tenant
            .policy
            .network
            .ingress_from_namespaces
            .iter()
            .cloned(),
    );
    admitted.sort();
    admitted.dedup();
    if !admitted.is_empty() {
        from.push(namespaces_named(admitted));
    }
    let dns = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(labels(&[("kubernetes.io/metadata.name", "kube-system")])),
            pod_selector: Some(labels(&[("k8s-app", "kube-dns")])),
            ..Default::default()
        }]),
        ports: Some(
            ["UDP", "TCP"]
                .map(|protocol| NetworkPolicyPort {
                    protocol: Some(protocol.into()),
                    port: Some(IntOrString::Int(53)),
                    ..Default::default()
                })
                .to_vec(),
        ),
    };
    let mut egress = vec![
        NetworkPolicyEgressRule {
            to: Some(vec![same_tenant]),
            ..Default::default()
        },
        dns,
        NetworkPolicyEgressRule {
            to: Some(vec![
                ip_block("0.0.0.0/0", tenant.guardrails.egress_deny(true)),
                ip_block("::/0", tenant.guardrails.egress_deny(false)),
            ]),
            ..Default::default()
        },
    ];
    if !tenant.policy.network.egress_cidrs.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(
                tenant
                    .policy
                    .network
                    .egress_cidrs
                    .iter()
                    .map(|cidr| ip_block(&cidr.to_string(), Vec::new()))
                    .collect(),
            ),
            ..Default::default()
        });
    }
    NetworkPolicy {
        metadata: meta(slug, Some(namespace), NETWORK_POLICY_NAME),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ..Default::default()
            }]),
            egress: Some(egress),
        }),
    }
}

/// One binding per role with members, plus the automation account's; the
/// owners' and viewers' bindings also name the tenant API's account of that
/// role, so they exist once the tenant has a home namespace. The cluster
/// role is part of the name because a RoleBinding's roleRef cannot change:
/// suspension swaps bindings instead of editing them.
fn role_bindings(tenant: &TenantState, namespace: &str, home: Option<&str>) -> Vec<RoleBinding> {
    let effective = |role: &'static str| if tenant.suspended { "view" } else { role };
    let mut bindings = Vec::new();
    for (role, group, cluster_role) in [
        (Role::Owner, "owners", "admin"),
        (Role::Editor, "editors", "edit"),
        (Role::Viewer, "viewers", "view"),
    ] {
        let mut subjects: Vec<Subject> = tenant
            .members
            .iter()
            .filter(|(_, _, r)| *r == role)
            .map(|(kind, subject, _)| Subject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: match kind {
                    MemberKind::User => "User".into(),
                    MemberKind::Group => "Group".into(),
                },
                name: subject.clone(),
                namespace: None,
            })
            .collect();
        if let Some(home) = home
            && role != Role::Editor
        {
            subjects.push(account_subject(account_for(role), home));
        }
        if subjects.is_empty() {
            continue;
        }
        let cluster_role = effective(cluster_role);
        bindings.push(binding(
            &tenant.slug,
            namespace,
            &format!("tenant-{group}-{cluster_role}"),
            cluster_role,
            subjects,
        ));
    }
    if let Some(home) = home {
        let cluster_role = effective("edit");
        bindings.push(binding(
            &tenant.slug,
            namespace,
            &format!("{AUTOMATION_ACCOUNT}-{cluster_role}"),
            cluster_role,
            vec![account_subject(AUTOMATION_ACCOUNT, home)],
        ));
    }
    bindings
}

fn account_subject(name: &str, home: &str) -> Subject {
    Subject {
        // The server omits an empty apiGroup; sending one would look like drift.
        api_group: None,
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(home.to_string()),
    }
}

fn binding(
    slug: &str,
    namespace: &str,
    name: &str,
    cluster_role: &str,
    subjects: Vec<Subject>,
) -> RoleBinding {
    RoleBinding {
        metadata: meta(slug, Some(namespace), name),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: cluster_role.into(),
        },
        subjects: Some(subjects),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        let raw = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ResourceList::parse(&raw, "test").unwrap()
    }

    fn acme(suspended: bool) -> TenantState {
        TenantState {
            platform_apis: Default::default(),
            slug: "acme".into(),
            suspended,
            budget: list(&[
                ("requests.cpu", "4"),
                ("requests.memory", "8Gi"),
                ("pods", "20"),
                ("namespaces", "5"),
            ]),
            namespaces: vec![
                (
                    "acme-prod".into(),
                    list(&[
                        ("requests.cpu", "2500m"),
                        ("requests.memory", "4Gi"),
                        ("pods", "10"),
                    ]),
                ),
                ("acme-dev".into(), list(&[("requests.cpu", "1")])),
            ],
            members: vec![
                (MemberKind::Group, "team-acme".into(), Role::Owner),
                (MemberKind::User, "bob@example.com".into(), Role::Viewer),
            ],
            policy: TenantPolicy::defaults(crate::domain::PodSecurityLevel::Baseline, &[]),
            guardrails: Default::default(),
        }
    }

    fn assert_snapshot(name: &str, objects: &[Desired]) {
        let bodies: Vec<&serde_json::Value> = objects.iter().map(|o| &o.body).collect();
        assert_snapshot_text(name, &serde_saphyr::to_string(&bodies).unwrap());
    }

    /// Compares with the committed snapshot; `UPDATE_SNAPSHOTS=1` rewrites it.
    pub fn assert_snapshot_text(name: &str, yaml: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/cluster/snapshots")
            .join(name);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, yaml).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "no snapshot {}; run with UPDATE_SNAPSHOTS=1 and review it",
                path.display()
            )
        });
        assert_eq!(
            yaml, expected,
            "rendering changed; review and run with UPDATE_SNAPSHOTS=1"
        );
    }

    #[test]
    fn an_active_tenant_renders_as_the_design_says() {
        assert_snapshot("acme-active.yaml", &render(&acme(false)));
    }

    #[test]
    fn a_suspended_tenant_allows_no_pods_and_only_reads() {
        let objects = render(&acme(true));
        assert_snapshot("acme-suspended.yaml", &objects);
        let quotas: Vec<_> = objects
            .iter()
            .filter(|o| o.key.kind == Kind::ResourceQuota)
            .collect();
        assert!(quotas.iter().all(|q| q.body["spec"]["hard"]["pods"] == "0"));
        let roles: Vec<_> = objects
            .iter()
            .filter(|o| o.key.kind == Kind::RoleBinding)
            .map(|o| o.body["roleRef"]["name"].as_str().unwrap())
            .collect();
        assert!(
            !roles.is_empty() && roles.iter().all(|r| *r == "view"),
            "{roles:?}"
        );
    }

    #[test]
    fn every_budgeted_resource_is_limited_in_every_namespace() {
        let objects = render(&acme(false));
        let dev = objects
            .iter()
            .find(|o| {
                o.key.kind == Kind::ResourceQuota && o.key.namespace.as_deref() == Some("acme-dev")
            })
            .unwrap();
        assert_eq!(dev.body["spec"]["hard"]["requests.memory"], "0");
        assert_eq!(dev.body["spec"]["hard"]["requests.cpu"], "1");
        assert!(
            dev.body["spec"]["hard"].get("namespaces").is_none(),
            "tenant-level items stay out of quotas"
        );
    }

    #[test]
    fn every_object_carries_the_managed_by_and_tenant_labels() {
        for object in render(&acme(false)) {
            let labels = &object.body["metadata"]["labels"];
            assert_eq!(labels[MANAGED_BY], MANAGER, "{}", object.key);
            assert_eq!(labels[TENANT_LABEL], "acme", "{}", object.key);
        }
    }

    #[test]
    fn a_tenant_policy_is_written_where_the_admission_policies_read_it() {
        let mut tenant = acme(false);
        let document = serde_json::from_value(serde_json::json!({
            "pod_security": "restricted",
            "service_types": ["NodePort"],
            "storage_classes": ["fast", "standard"],
            "registries": ["registry.example.com/", "ghcr.io/acme/"],
            "node_selector": {"pool": "tenants", "zone": "a"},
            "network": {"ingress_from_namespaces": ["monitoring"], "egress_cidrs": ["10.20.0.0/16"]}
        }))
        .unwrap();
        tenant.policy = TenantPolicy::parse(&document, &tenant.policy).unwrap();
        tenant.guardrails = std::sync::Arc::new(Guardrails {
            ingress_from_namespaces: vec!["ingress-nginx".into()],
            egress_deny: vec!["10.0.0.0/8".parse().unwrap()],
            ..Guardrails::default()
        });
        let objects = render(&tenant);
        let namespace = &objects[0].body["metadata"];
        assert_eq!(
            namespace["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
        let annotations = &namespace["annotations"];
        assert_eq!(annotations[guardrails::SERVICE_TYPES], "ClusterIP,NodePort");
        assert_eq!(annotations[guardrails::STORAGE_CLASSES], "fast,standard");
        assert_eq!(annotations[guardrails::INGRESS_CLASSES], guardrails::ANY);
        assert_eq!(
            annotations[guardrails::REGISTRIES],
            "ghcr.io/acme/,registry.example.com/"
        );
        assert_eq!(
            annotations[guardrails::NODE_SELECTOR],
            "pool=tenants,zone=a"
        );
        let isolation = objects
            .iter()
            .find(|o| o.key.kind == Kind::NetworkPolicy)
            .unwrap();
        let spec = &isolation.body["spec"];
        assert_eq!(
            spec["ingress"][0]["from"][1]["namespaceSelector"]["matchExpressions"][0]["values"],
            serde_json::json!(["ingress-nginx", "monitoring"])
        );
        assert_eq!(
            spec["egress"][2]["to"][0]["ipBlock"]["except"],
            serde_json::json!(["169.254.169.254/32", "10.0.0.0/8"])
        );
        assert_eq!(
            spec["egress"][3]["to"][0]["ipBlock"]["cidr"],
            "10.20.0.0/16"
        );
    }

    #[test]
    fn a_suspended_tenant_s_namespaces_carry_the_cordon_label() {
        let objects = render(&acme(true));
        assert!(
            objects
                .iter()
                .filter(|o| o.key.kind == Kind::Namespace)
                .all(|o| o.body["metadata"]["labels"][guardrails::SUSPENDED_LABEL] == "true")
        );
    }

    #[test]
    fn the_automation_account_lives_in_the_first_namespace_and_is_bound_in_all() {
        let objects = render(&acme(false));
        let account = objects
            .iter()
            .find(|o| o.key.kind == Kind::ServiceAccount)
            .unwrap();
        assert_eq!(account.key.namespace.as_deref(), Some("acme-dev"));
        let bound_in: Vec<_> = objects
            .iter()
            .filter(|o| &*o.key.name == "tenant-automation-edit")
            .map(|o| o.key.namespace.as_deref().unwrap())
            .collect();
        assert_eq!(bound_in, ["acme-dev", "acme-prod"]);
    }
}
