//! The kinds of object the portal manages, and one desired object.

use std::sync::Arc;

use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "tenant-portal";
pub const TENANT_LABEL: &str = "tenant-portal.dev/tenant";
/// Selects every object the portal manages, in any tenant.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=tenant-portal";

/// A kind of object the portal creates for tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    ServiceAccount,
    ResourceQuota,
    LimitRange,
    RoleBinding,
    NetworkPolicy,
}

impl Kind {
    /// In apply order: namespaces first, since everything else lives in them.
    pub const ALL: [Kind; 6] = [
        Kind::Namespace,
        Kind::ServiceAccount,
        Kind::ResourceQuota,
        Kind::LimitRange,
        Kind::RoleBinding,
        Kind::NetworkPolicy,
    ];

    pub fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Kind::Namespace => ("", "v1", "Namespace", "namespaces"),
            Kind::ServiceAccount => ("", "v1", "ServiceAccount", "serviceaccounts"),
            Kind::ResourceQuota => ("", "v1", "ResourceQuota", "resourcequotas"),
            Kind::LimitRange => ("", "v1", "LimitRange", "limitranges"),
            Kind::RoleBinding => (
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
            ),
            Kind::NetworkPolicy => (
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                "networkpolicies",
            ),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    pub fn is_namespaced(self) -> bool {
        self != Kind::Namespace
    }

    /// Fields the portal owns whole: a live value with extra entries is drift,
    /// not a superset to accept.
    pub fn owned_exactly(self) -> &'static [&'static str] {
        match self {
            Kind::ResourceQuota => &["spec"],
            Kind::LimitRange => &["spec"],
            Kind::RoleBinding => &["subjects", "roleRef"],
            Kind::NetworkPolicy => &["spec"],
            Kind::Namespace | Kind::ServiceAccount => &[],
        }
    }

    pub fn from_api_kind(kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_resource().kind == kind)
    }
}

/// Identifies one object in a cluster. The names are shared strings: the
/// caches' per-tenant indexes hold the key of every managed object (the
/// caches and the drift index its digest, [`super::live::key_digest`]), and
/// a copy is a reference count, not an allocation (see
/// [`super::live::intern`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: Option<Arc<str>>,
    pub name: Arc<str>,
}

impl ObjectKey {
    /// A key whose names come from the interner, shared with every other
    /// key naming the same namespace or object name.
    pub fn interned(kind: Kind, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.map(super::live::intern),
            name: super::live::intern(name),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{:?} {ns}/{}", self.kind, self.name),
            None => write!(f, "{:?} {}", self.kind, self.name),
        }
    }
}

/// An object as the portal wants it to be, ready for server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub key: ObjectKey,
    pub body: Value,
}

/// Whether `live` already holds everything `desired` says: each desired field
/// is present with the same value (the server may add defaults beside them),
/// and the fields the portal owns whole are equal.
pub fn is_satisfied(kind: Kind, desired: &Value, live: &Value) -> bool {
    is_satisfied_value(desired, live, kind.owned_exactly())
}

/// [`is_satisfied`] for any object, naming the fields owned whole.
pub fn is_satisfied_value(desired: &Value, live: &Value, owned_exactly: &[&str]) -> bool {
    contains(desired, live)
        && owned_exactly
            .iter()
            .all(|field| without_nulls(&desired[*field]) == without_nulls(&live[*field]))
}

/// The API server omits empty fields (`omitempty`), so null, `{}` and `[]`
/// all mean "nothing here".
pub(crate) fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().all(is_empty),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn contains(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(k, v)| is_empty(v) || have.get(k).is_some_and(|h| contains(v, h))),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| contains(w, h))
        }
        (want, have) => want == have,
    }
}

/// The value with empty fields dropped; empty as a whole becomes null.
fn without_nulls(value: &Value) -> Value {
    match value {
        v if is_empty(v) => Value::Null,
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !is_empty(v))
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn server_defaults_beside_desired_fields_are_not_drift() {
        let desired = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"hard": {"pods": "10"}}});
        let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "uid": "x"}, "spec": {"hard": {"pods": "10"}}, "status": {}});
        assert!(is_satisfied(Kind::ServiceAccount, &desired, &live));
    }

    #[test]
    fn an_extra_entry_in_an_owned_field_is_drift() {
        let desired = json!({"spec": {"hard": {"pods": "10"}}});
        let live = json!({"spec": {"hard": {"pods": "10", "requests.cpu": "1"}}});
        assert!(!is_satisfied(Kind::ResourceQuota, &desired, &live));
        assert!(is_satisfied(Kind::ServiceAccount, &desired, &live));
    }

    #[test]
    fn an_empty_field_matches_its_omission() {
        let desired = json!({"spec": {"hard": {}}});
        assert!(is_satisfied(
            Kind::ResourceQuota,
            &desired,
            &json!({"spec": {}})
        ));
        assert!(is_satisfied(Kind::ResourceQuota, &desired, &json!({})));
    }

    #[test]
    fn a_changed_value_is_drift() {
        let desired =
            json!({"subjects": [{"kind": "User", "name": "a@x.io"}], "roleRef": {"name": "edit"}});
        let live = json!({"subjects": [{"kind": "User", "name": "mallory@x.io"}], "roleRef": {"name": "edit"}});
        assert!(!is_satisfied(Kind::RoleBinding, &desired, &live));
    }
}
