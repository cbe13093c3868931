//! Platform APIs: namespaced resources of a cluster's custom (or add-on)
//! API groups that platform admins publish to tenants, named as kubectl
//! names them: `certificates.cert-manager.io`.

use std::collections::BTreeSet;
use std::fmt;

use super::{is_dns_label, is_dns_subdomain};

/// The API groups Kubernetes itself serves; every other group comes from a
/// CustomResourceDefinition or an aggregated API server. Their namespaced
/// resources are every tenant's already; their cluster-scoped ones are the
/// cluster's.
pub const BUILT_IN_GROUPS: [&str; 23] = [
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

pub fn is_built_in(group: &str) -> bool {
    BUILT_IN_GROUPS.contains(&group)
}

/// A resource of an API group that is not Kubernetes' own: its plural name
/// and its group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlatformApi {
    pub resource: String,
    pub group: String,
}

impl PlatformApi {
    /// `widgets.example.com`: the plural resource name, a dot, the group.
    pub fn parse(name: &str) -> Result<Self, String> {
        let (resource, group) = name.split_once('.').ok_or_else(|| {
            format!("\"{name}\" is not a resource of an API group: write <resource>.<group>, as kubectl api-resources names it, such as certificates.cert-manager.io")
        })?;
        if !is_dns_label(resource) {
            return Err(format!(
                "\"{resource}\" is not a resource name: the plural name of a kind, a lowercase DNS label such as certificates"
            ));
        }
        if is_built_in(group) {
            return Err(format!(
                "{group} is one of Kubernetes' own API groups: its namespaced resources are every tenant's already, and its cluster-scoped ones are not offered"
            ));
        }
        if !is_dns_subdomain(group) || !group.contains('.') {
            return Err(format!(
                "\"{group}\" is not an API group: a lowercase DNS name with at least one dot, such as cert-manager.io"
            ));
        }
        Ok(Self {
            resource: resource.to_string(),
            group: group.to_string(),
        })
    }
}

/// The platform APIs a tenant may use: those published to it that its
/// policy keeps (`None`: all of them). A stored name that no longer parses
/// is left out: an API is usable only when it is certainly published.
pub fn in_force(published: &[String], kept: Option<&BTreeSet<String>>) -> BTreeSet<PlatformApi> {
    published
        .iter()
        .filter(|name| kept.is_none_or(|kept| kept.contains(*name)))
        .filter_map(|name| PlatformApi::parse(name).ok())
        .collect()
}

impl fmt::Display for PlatformApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.resource, self.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_kubectl_writes_them() {
        let api = PlatformApi::parse("certificates.cert-manager.io").unwrap();
        assert_eq!(
            (api.resource.as_str(), api.group.as_str()),
            ("certificates", "cert-manager.io")
        );
        assert_eq!(api.to_string(), "certificates.cert-manager.io");
        let gateway = PlatformApi::parse("httproutes.gateway.networking.k8s.io").unwrap();
        assert_eq!(gateway.group, "gateway.networking.k8s.io");
    }

    #[test]
    fn a_policy_narrows_what_is_published_and_never_widens_it() {
        let published = [
            "widgets.example.com".to_string(),
            "gadgets.example.com".to_string(),
        ];
        let all = in_force(&published, None);
        assert_eq!(all.len(), 2);
        let kept = BTreeSet::from([
            "widgets.example.com".to_string(),
            "other.example.com".to_string(),
        ]);
        let narrowed: Vec<String> = in_force(&published, Some(&kept))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(narrowed, ["widgets.example.com"]);
        assert!(in_force(&published, Some(&BTreeSet::new())).is_empty());
    }

    #[test]
    fn built_in_groups_and_bad_names_are_refused_with_the_rule() {
        for (name, says) in [
            ("deployments.apps", "Kubernetes' own"),
            ("clusterroles.rbac.authorization.k8s.io", "Kubernetes' own"),
            ("pods", "<resource>.<group>"),
            ("Widgets.example.com", "resource name"),
            ("widgets.Example.com", "API group"),
            ("widgets.example..com", "API group"),
        ] {
            let refused = PlatformApi::parse(name).expect_err(name);
            assert!(refused.contains(says), "{name}: {refused}");
        }
    }
}
