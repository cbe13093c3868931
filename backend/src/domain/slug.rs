use std::fmt;

use super::{FieldError, is_dns_label};

/// Slugs that would collide with cluster namespaces or the portal's own names.
const RESERVED: &[&str] = &[
    "system",
    "default",
    "tenant-portal",
    "tenant",
    "admin",
    "api",
    "cluster",
    "node",
    "monitoring",
    "ingress",
    "istio",
    "linkerd",
    "cilium",
    "calico",
    "flux",
    "argocd",
    "cert-manager",
];
/// Prefixes Kubernetes distributions keep for themselves (`kube-system`, `openshift-*`).
const RESERVED_PREFIXES: &[&str] = &["kube", "openshift"];

/// A tenant's short name: a DNS-1123 label of 3 to 20 characters starting with
/// a letter. It prefixes every namespace of the tenant and never changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantSlug(String);

impl TenantSlug {
    pub const RULE: &str = "must be 3 to 20 lowercase letters, digits or '-', starting with a letter and ending with a letter or digit";

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let shaped = (3..=20).contains(&s.len())
            && is_dns_label(s)
            && s.starts_with(|c: char| c.is_ascii_lowercase());
        if !shaped {
            return Err(FieldError::new("slug", Self::RULE));
        }
        if RESERVED.contains(&s) || RESERVED_PREFIXES.iter().any(|p| s.starts_with(p)) {
            return Err(FieldError::new(
                "slug",
                format!("\"{s}\" is reserved: it would collide with cluster or portal namespaces"),
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// A slug read back from the database, where it was checked on the way in.
    pub(crate) fn trusted(s: &str) -> Self {
        Self(s.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_of_three_to_twenty_characters_are_slugs() {
        for ok in ["acme", "a-b", "team42", "abcdefghijklmnopqrst"] {
            assert!(TenantSlug::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_slugs_are_refused_with_the_rule() {
        for bad in [
            "",
            "ab",
            "Acme",
            "1acme",
            "acme-",
            "-acme",
            "ac_me",
            "ac.me",
            "acmé",
            "abcdefghijklmnopqrstu",
            "ac me",
        ] {
            let err = TenantSlug::parse(bad).unwrap_err();
            assert_eq!(err.field, "slug");
            assert_eq!(err.rule, TenantSlug::RULE, "{bad}");
        }
    }

    #[test]
    fn reserved_names_and_prefixes_are_refused() {
        for bad in [
            "kube",
            "kube-lab",
            "kubeflow",
            "system",
            "default",
            "openshift-x",
            "tenant-portal",
        ] {
            let err = TenantSlug::parse(bad).unwrap_err();
            assert!(err.rule.contains("reserved"), "{bad}: {}", err.rule);
        }
    }
}
