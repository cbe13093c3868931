//! What the reconciler last wanted each object to be, so a watch event can
//! tell drift (someone else's edit or delete) from the echo of its own apply.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::cluster::objects::{Desired, ObjectKey, is_satisfied};

#[derive(Default)]
struct ClusterIndex {
    desired: HashMap<ObjectKey, Value>,
    by_tenant: HashMap<String, Vec<ObjectKey>>,
}

#[derive(Default)]
pub struct DriftIndex(Mutex<HashMap<String, ClusterIndex>>);

/// What a watch event means.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The object is as the portal wants it (or not wanted and gone).
    AsDesired,
    /// It differs, or is missing, or the portal has not rendered it yet.
    Check,
}

impl DriftIndex {
    /// Replaces what the tenant's objects should be.
    pub fn remember(&self, cluster: &str, slug: &str, objects: &[Desired]) {
        let Ok(mut all) = self.0.lock() else { return };
        let index = all.entry(cluster.to_string()).or_default();
        for old in index.by_tenant.remove(slug).unwrap_or_default() {
            index.desired.remove(&old);
        }
        for object in objects {
            index
                .desired
                .insert(object.key.clone(), object.body.clone());
        }
        index.by_tenant.insert(
            slug.to_string(),
            objects.iter().map(|o| o.key.clone()).collect(),
        );
    }

    /// Judges a live object (`None`: it was deleted).
    pub fn judge(&self, cluster: &str, key: &ObjectKey, live: Option<&Value>) -> Verdict {
        let Ok(all) = self.0.lock() else {
            return Verdict::Check;
        };
        let desired = all.get(cluster).and_then(|index| index.desired.get(key));
        match (desired, live) {
            (Some(want), Some(have)) if is_satisfied(key.kind, want, have) => Verdict::AsDesired,
            // Pruned by the portal itself.
            (None, None) => Verdict::AsDesired,
            _ => Verdict::Check,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::objects::Kind;

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            kind: Kind::ResourceQuota,
            namespace: Some("acme-dev".into()),
            name: name.into(),
        }
    }

    #[test]
    fn the_echo_of_an_apply_is_not_drift_but_an_edit_or_delete_is() {
        let index = DriftIndex::default();
        let body = json!({"spec": {"hard": {"pods": "10"}}});
        index.remember(
            "local",
            "acme",
            &[Desired {
                key: key("tenant-quota"),
                body: body.clone(),
            }],
        );
        assert_eq!(
            index.judge("local", &key("tenant-quota"), Some(&body)),
            Verdict::AsDesired
        );
        let edited = json!({"spec": {"hard": {"pods": "99"}}});
        assert_eq!(
            index.judge("local", &key("tenant-quota"), Some(&edited)),
            Verdict::Check
        );
        assert_eq!(
            index.judge("local", &key("tenant-quota"), None),
            Verdict::Check
        );
    }

    #[test]
    fn objects_no_longer_wanted_may_go() {
        let index = DriftIndex::default();
        index.remember(
            "local",
            "acme",
            &[Desired {
                key: key("old"),
                body: json!({}),
            }],
        );
        index.remember("local", "acme", &[]);
        assert_eq!(index.judge("local", &key("old"), None), Verdict::AsDesired);
    }
}
