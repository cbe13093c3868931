use std::fmt;

use super::{FieldError, TenantSlug, is_dns_label};

/// Full namespace names no tenant may take, whatever its slug.
const RESERVED_NAMESPACES: &[&str] = &["default", "tenant-portal"];

/// A namespace's short name within its tenant (`dev`, `prod`). The namespace in
/// the cluster is `<slug>-<name>`, which must itself be a DNS-1123 label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceName(String);

impl NamespaceName {
    pub const RULE: &str = "must be 1 to 59 lowercase letters, digits or '-', starting and ending with a letter or digit";

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.len() <= 59 && is_dns_label(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(FieldError::new("name", Self::RULE))
        }
    }

    /// The namespace's name in the cluster, checked against the 63-character
    /// label limit and the namespaces Kubernetes and the portal keep.
    pub fn full_name(&self, tenant: &TenantSlug) -> Result<String, FieldError> {
        let full = format!("{tenant}-{}", self.0);
        if full.len() > 63 {
            return Err(FieldError::new(
                "name",
                format!(
                    "the namespace \"{full}\" would be longer than 63 characters; choose a shorter name"
                ),
            ));
        }
        if RESERVED_NAMESPACES.contains(&full.as_str()) {
            return Err(FieldError::new(
                "name",
                format!("the namespace \"{full}\" is reserved"),
            ));
        }
        Ok(full)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(s: &str) -> TenantSlug {
        TenantSlug::parse(s).unwrap()
    }

    #[test]
    fn full_name_is_slug_dash_name() {
        let ns = NamespaceName::parse("dev").unwrap();
        assert_eq!(ns.full_name(&slug("acme")).unwrap(), "acme-dev");
    }

    #[test]
    fn names_that_are_not_dns_labels_are_refused() {
        for bad in ["", "Dev", "-dev", "dev-", "d_v", "d.v", &"a".repeat(60)] {
            assert_eq!(
                NamespaceName::parse(bad).unwrap_err().rule,
                NamespaceName::RULE
            );
        }
    }

    #[test]
    fn full_names_over_63_characters_are_refused() {
        let ns = NamespaceName::parse(&"a".repeat(45)).unwrap();
        let err = ns.full_name(&slug(&"b".repeat(18))).unwrap_err();
        assert!(err.rule.contains("63"), "{}", err.rule);
        assert_eq!(ns.full_name(&slug(&"b".repeat(17))).unwrap().len(), 63);
    }

    #[test]
    fn the_portals_own_namespace_cannot_be_taken() {
        // "tenant" is a reserved slug too, but the rule on full names holds on its own.
        let full = NamespaceName::parse("portal")
            .unwrap()
            .full_name(&TenantSlug::trusted("tenant"));
        assert!(full.is_err());
    }
}
