//! What a tenant may do inside its namespaces beyond RBAC: its Pod Security
//! level, the Service types, classes and registries it may use, where its
//! pods run and where its traffic may go. Only platform admins change it;
//! the API server enforces it (see `cluster/guardrails.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FieldError, is_dns_label, is_dns_subdomain, is_qualified_name};

/// A Pod Security Standard level, as the namespace label takes it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// No restriction: host namespaces, privileged containers. Admins only.
    Privileged,
    /// Known privilege escalations refused (the cluster default).
    Baseline,
    /// Hardened: non-root, no capabilities, seccomp.
    Restricted,
}

impl PodSecurityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

impl FromStr for PodSecurityLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "privileged" => Ok(Self::Privileged),
            "baseline" => Ok(Self::Baseline),
            "restricted" => Ok(Self::Restricted),
            _ => Err(format!(
                "\"{s}\" is not a Pod Security level; use baseline, restricted or privileged"
            )),
        }
    }
}

/// A Kubernetes Service type. `ClusterIP` is always allowed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
            Self::ExternalName => "ExternalName",
        }
    }
}

impl FromStr for ServiceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Self::ClusterIP,
            Self::NodePort,
            Self::LoadBalancer,
            Self::ExternalName,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| {
            format!(
                "\"{s}\" is not a Service type; use ClusterIP, NodePort, LoadBalancer or ExternalName"
            )
        })
    }
}

/// An IPv4 or IPv6 network in CIDR notation, with no host bits set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    address: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn is_ipv4(&self) -> bool {
        self.address.is_ipv4()
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rule = || format!("\"{s}\" is not a CIDR such as 10.0.0.0/8 or fd00::/8");
        let (address, prefix) = s.split_once('/').ok_or_else(rule)?;
        let address: IpAddr = address.parse().map_err(|_| rule())?;
        let prefix: u8 = prefix.parse().map_err(|_| rule())?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(rule());
        }
        let host_bits_clear = match address {
            IpAddr::V4(a) => u32::from(a).checked_shl(u32::from(prefix)).unwrap_or(0) == 0,
            IpAddr::V6(a) => u128::from(a).checked_shl(u32::from(prefix)).unwrap_or(0) == 0,
        };
        if !host_bits_clear {
            return Err(format!(
                "\"{s}\" has host bits set; write the network address (e.g. 10.0.0.0/8)"
            ));
        }
        Ok(Self { address, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Traffic a tenant's namespaces accept or send beyond their own tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkRules {
    /// Cluster namespaces (full names) whose pods may connect to the tenant's.
    pub ingress_from_namespaces: Vec<String>,
    /// Networks the tenant may reach even where the cluster's egress rules deny them.
    #[schema(value_type = Vec<String>)]
    pub egress_cidrs: Vec<Cidr>,
}

/// A tenant's policy, whole and valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantPolicy {
    pub pod_security: PodSecurityLevel,
    /// Service types the tenant may create; ClusterIP always among them.
    pub service_types: BTreeSet<ServiceType>,
    /// `null`: any StorageClass; a list narrows it (empty: none).
    pub storage_classes: Option<BTreeSet<String>>,
    pub ingress_classes: Option<BTreeSet<String>>,
    pub priority_classes: Option<BTreeSet<String>>,
    pub runtime_classes: Option<BTreeSet<String>>,
    /// `null`: any registry; otherwise image prefixes, each ending in `/`
    /// (`registry.example.com/`, `ghcr.io/acme/`).
    pub registries: Option<BTreeSet<String>>,
    /// Labels every pod of the tenant must select (its node pool).
    pub node_selector: BTreeMap<String, String>,
    pub network: NetworkRules,
    /// The tenant's share of its tenant API; `null`: the configured default.
    #[serde(default)]
    pub tenant_api: Option<ApiShare>,
    /// `null`: every platform API published to the tenant; a list
    /// (`<resource>.<group>`) narrows them (empty: none).
    #[serde(default)]
    pub platform_apis: Option<BTreeSet<String>>,
}

/// The most any one figure of a tenant-API share may be.
pub const MAX_SHARE: i64 = 100_000;

/// A tenant's fair share of the tenant API (`/k8s/tenants/<slug>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiShare {
    /// Requests per second, sustained.
    #[schema(minimum = 1, maximum = 100000)]
    pub requests_per_second: u32,
    /// Requests at once above the rate.
    #[schema(minimum = 1, maximum = 100000)]
    pub burst: u32,
    /// Requests handled at the same time.
    #[schema(minimum = 1, maximum = 100000)]
    pub max_in_flight: u32,
    /// Watches open at the same time.
    #[schema(minimum = 1, maximum = 100000)]
    pub max_watches: u32,
    /// exec, attach and port-forward sessions open at the same time;
    /// `null`: the configured default.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100000)]
    pub max_sessions: Option<u32>,
}

/// A share as a caller writes it; every figure is needed.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiShareDocument {
    #[schema(minimum = 1, maximum = 100000)]
    pub requests_per_second: Option<i64>,
    #[schema(minimum = 1, maximum = 100000)]
    pub burst: Option<i64>,
    #[schema(minimum = 1, maximum = 100000)]
    pub max_in_flight: Option<i64>,
    #[schema(minimum = 1, maximum = 100000)]
    pub max_watches: Option<i64>,
    /// Optional: without it, the configured default.
    #[schema(minimum = 1, maximum = 100000)]
    pub max_sessions: Option<i64>,
}

impl ApiShareDocument {
    fn parse(&self, errors: &mut Vec<FieldError>) -> Option<ApiShare> {
        let mut figure = |name: &str, given: Option<i64>| match given {
            Some(n) if (1..=MAX_SHARE).contains(&n) => Some(n as u32),
            Some(_) => {
                errors.push(FieldError::new(
                    format!("tenant_api.{name}"),
                    format!("must be a whole number from 1 to {MAX_SHARE}"),
                ));
                None
            }
            None => {
                errors.push(FieldError::new(
                    format!("tenant_api.{name}"),
                    "is required: give all four figures, or null for the configured default",
                ));
                None
            }
        };
        let max_sessions = match self.max_sessions {
            None => None,
            given => figure("max_sessions", given),
        };
        let share = (
            figure("requests_per_second", self.requests_per_second),
            figure("burst", self.burst),
            figure("max_in_flight", self.max_in_flight),
            figure("max_watches", self.max_watches),
        );
        match share {
            (Some(requests_per_second), Some(burst), Some(max_in_flight), Some(max_watches)) => {
                Some(ApiShare {
                    requests_per_second,
                    burst,
                    max_in_flight,
                    max_watches,
                    max_sessions,
                })
            }
            _ => None,
        }
    }
}

/// A policy as a caller writes it: absent fields keep the defaults.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    #[schema(value_type = Option<PodSecurityLevel>)]
    pub pod_security: Option<String>,
    pub service_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub storage_classes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub ingress_classes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub priority_classes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub runtime_classes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub registries: Option<Option<Vec<String>>>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub network: Option<NetworkDocument>,
    /// The tenant's share of its tenant API; `null` puts it back on the default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ApiShareDocument>)]
    pub tenant_api: Option<Option<ApiShareDocument>>,
    /// Narrows the platform APIs published to the tenant; `null`: all of them.
    #[serde(default, deserialize_with = "present")]
    pub platform_apis: Option<Option<Vec<String>>>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkDocument {
    pub ingress_from_namespaces: Option<Vec<String>>,
    pub egress_cidrs: Option<Vec<String>>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl TenantPolicy {
    /// The policy of a tenant no admin has set one for.
    pub fn defaults(pod_security: PodSecurityLevel, service_types: &[ServiceType]) -> Self {
        let mut types: BTreeSet<ServiceType> = service_types.iter().copied().collect();
        types.insert(ServiceType::ClusterIP);
        Self {
            pod_security,
            service_types: types,
            storage_classes: None,
            ingress_classes: None,
            priority_classes: None,
            runtime_classes: None,
            registries: None,
            node_selector: BTreeMap::new(),
            network: NetworkRules::default(),
            tenant_api: None,
            platform_apis: None,
        }
    }

    /// `document` over `base`: every field checked, every broken rule named.
    pub fn parse(document: &PolicyDocument, base: &TenantPolicy) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut policy = base.clone();
        if let Some(level) = &document.pod_security {
            match level.parse() {
                Ok(level) => policy.pod_security = level,
                Err(rule) => errors.push(FieldError::new("pod_security", rule)),
            }
        }
        if let Some(types) = &document.service_types {
            policy.service_types = BTreeSet::from([ServiceType::ClusterIP]);
            for (i, t) in types.iter().enumerate() {
                match t.parse() {
                    Ok(t) => {
                        policy.service_types.insert(t);
                    }
                    Err(rule) => errors.push(FieldError::new(format!("service_types[{i}]"), rule)),
                }
            }
        }
        for (field, given, target) in [
            (
                "storage_classes",
                &document.storage_classes,
                &mut policy.storage_classes,
            ),
            (
                "ingress_classes",
                &document.ingress_classes,
                &mut policy.ingress_classes,
            ),
            (
                "priority_classes",
                &document.priority_classes,
                &mut policy.priority_classes,
            ),
            (
                "runtime_classes",
                &document.runtime_classes,
                &mut policy.runtime_classes,
            ),
        ] {
            if let Some(given) = given {
                *target = names(field, given.as_deref(), &mut errors, |name| {
                    is_dns_subdomain(name)
                        .then_some(())
                        .ok_or("must be a Kubernetes object name (lowercase DNS subdomain)")
                });
            }
        }
        if let Some(given) = &document.platform_apis {
            policy.platform_apis = names("platform_apis", given.as_deref(), &mut errors, |name| {
                super::PlatformApi::parse(name).map(|_| ())
            });
        }
        if let Some(given) = &document.registries {
            policy.registries = names("registries", given.as_deref(), &mut errors, registry_rule);
        }
        if let Some(selector) = &document.node_selector {
            for (key, value) in selector {
                if !is_qualified_name(key) {
                    errors.push(FieldError::new(
                        format!("node_selector.{key}"),
                        "the key must be a label key such as node-pool or example.com/pool",
                    ));
                }
                if !is_label_value(value) {
                    errors.push(FieldError::new(
                        format!("node_selector.{key}"),
                        "the value must be a label value: up to 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric",
                    ));
                }
            }
            policy.node_selector = selector.clone();
        }
        if let Some(network) = &document.network {
            if let Some(from) = &network.ingress_from_namespaces {
                for (i, ns) in from.iter().enumerate() {
                    if !is_dns_label(ns) {
                        errors.push(FieldError::new(
                            format!("network.ingress_from_namespaces[{i}]"),
                            "must be a namespace name (a DNS-1123 label)",
                        ));
                    }
                }
                let unique: BTreeSet<&String> = from.iter().collect();
                policy.network.ingress_from_namespaces = unique.into_iter().cloned().collect();
            }
            if let Some(cidrs) = &network.egress_cidrs {
                let mut parsed = BTreeSet::new();
                for (i, cidr) in cidrs.iter().enumerate() {
                    match cidr.parse::<Cidr>() {
                        Ok(c) => {
                            parsed.insert(c);
                        }
                        Err(rule) => {
                            errors.push(FieldError::new(format!("network.egress_cidrs[{i}]"), rule))
                        }
                    }
                }
                policy.network.egress_cidrs = parsed.into_iter().collect();
            }
        }
        match &document.tenant_api {
            Some(None) => policy.tenant_api = None,
            Some(Some(share)) => policy.tenant_api = share.parse(&mut errors),
            None => {}
        }
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }

    /// Reads a stored policy, checking every rule again: a stored value that
    /// no longer parses must stop the tenant's reconcile, never widen it.
    pub fn from_stored(value: &serde_json::Value) -> Result<Self, String> {
        let policy: TenantPolicy = serde_json::from_value(value.clone())
            .map_err(|e| format!("the stored tenant policy does not parse: {e}"))?;
        let document: PolicyDocument = serde_json::from_value(value.clone())
            .map_err(|e| format!("the stored tenant policy does not parse: {e}"))?;
        TenantPolicy::parse(&document, &policy).map_err(|errors| {
            let rules: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!(
                "the stored tenant policy breaks its rules: {}",
                rules.join("; ")
            )
        })
    }
}

fn names<M: Into<String>>(
    field: &str,
    given: Option<&[String]>,
    errors: &mut Vec<FieldError>,
    rule: impl Fn(&str) -> Result<(), M>,
) -> Option<BTreeSet<String>> {
    let given = given?;
    for (i, name) in given.iter().enumerate() {
        if let Err(message) = rule(name) {
            errors.push(FieldError::new(format!("{field}[{i}]"), message));
        }
    }
    Some(given.iter().cloned().collect())
}

/// A registry prefix ends with `/`, so `registry.example.com/` cannot be
/// matched by `registry.example.com.evil.io/...`.
fn registry_rule(prefix: &str) -> Result<(), &'static str> {
    let ok = prefix.len() > 1
        && prefix.len() <= 255
        && prefix.ends_with('/')
        && !prefix.starts_with('/')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b':'));
    if ok {
        Ok(())
    } else {
        Err("must be an image prefix ending in '/', such as registry.example.com/ or ghcr.io/acme/")
    }
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || super::is_qualified_name_part(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TenantPolicy {
        TenantPolicy::defaults(PodSecurityLevel::Baseline, &[])
    }

    fn parse(json: serde_json::Value) -> Result<TenantPolicy, Vec<FieldError>> {
        TenantPolicy::parse(&serde_json::from_value(json).unwrap(), &defaults())
    }

    #[test]
    fn defaults_allow_cluster_ip_only_and_any_class_or_registry() {
        let policy = defaults();
        assert_eq!(
            policy.service_types,
            BTreeSet::from([ServiceType::ClusterIP])
        );
        assert_eq!(policy.storage_classes, None);
        assert_eq!(policy.registries, None);
    }

    #[test]
    fn absent_fields_keep_the_base_and_null_widens_a_list_to_any() {
        let narrowed = parse(serde_json::json!({"storage_classes": ["fast"]})).unwrap();
        assert_eq!(
            narrowed.storage_classes,
            Some(BTreeSet::from(["fast".to_string()]))
        );
        let document =
            serde_json::from_value(serde_json::json!({"storage_classes": null})).unwrap();
        let widened = TenantPolicy::parse(&document, &narrowed).unwrap();
        assert_eq!(widened.storage_classes, None);
        let kept = TenantPolicy::parse(&PolicyDocument::default(), &narrowed).unwrap();
        assert_eq!(kept, narrowed);
    }

    #[test]
    fn every_broken_rule_names_its_field() {
        let errors = parse(serde_json::json!({
            "pod_security": "root",
            "service_types": ["NodePort", "Ingress"],
            "storage_classes": ["Fast!"],
            "registries": ["docker.io"],
            "node_selector": {"pool": "a,b"},
            "network": {"egress_cidrs": ["10.0.0.1/8"], "ingress_from_namespaces": ["Ingress"]}
        }))
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "pod_security",
                "service_types[1]",
                "storage_classes[0]",
                "registries[0]",
                "node_selector.pool",
                "network.ingress_from_namespaces[0]",
                "network.egress_cidrs[0]"
            ]
        );
    }

    #[test]
    fn cluster_ip_stays_allowed_whatever_the_list_says() {
        let policy = parse(serde_json::json!({"service_types": ["NodePort"]})).unwrap();
        assert_eq!(
            policy.service_types,
            BTreeSet::from([ServiceType::ClusterIP, ServiceType::NodePort])
        );
    }

    #[test]
    fn cidrs_need_a_network_address() {
        assert!("10.0.0.0/8".parse::<Cidr>().is_ok());
        assert!("169.254.169.254/32".parse::<Cidr>().is_ok());
        assert!("fd00:ec2::254/128".parse::<Cidr>().is_ok());
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "10.0.0.0", "::1/129", "x/8"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stored_policy_round_trips_and_a_corrupt_one_is_refused() {
        let policy = parse(serde_json::json!({
            "registries": ["ghcr.io/acme/"],
            "network": {"egress_cidrs": ["10.1.0.0/16"]}
        }))
        .unwrap();
        let stored = serde_json::to_value(&policy).unwrap();
        assert_eq!(TenantPolicy::from_stored(&stored).unwrap(), policy);
        let mut corrupt = stored.clone();
        corrupt["registries"] = serde_json::json!(["evil.io"]);
        assert!(TenantPolicy::from_stored(&corrupt).is_err());
        assert!(TenantPolicy::from_stored(&serde_json::json!({})).is_err());
    }
}
