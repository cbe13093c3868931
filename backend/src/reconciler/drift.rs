//! What the reconciler last wanted each object to be, so a watch event can
//! tell drift (someone else's edit or delete) from the echo of its own apply.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::cluster::LiveObject;
use crate::cluster::live::{Digest, Fingerprint, Keys, Wanted, intern, key_digest};
use crate::cluster::objects::{Desired, ObjectKey};

/// Objects are held by the digest of their key ([`key_digest`]), not the
/// key: 16 bytes instead of 40 in the index and in each tenant's list, for
/// every object of the fleet.
#[derive(Default)]
struct ClusterIndex {
    /// Each wanted object's fingerprint, not its body; `None`: it sets
    /// something the cache does not keep, so it is never taken as in place.
    desired: HashMap<Digest, Option<Fingerprint>>,
    by_tenant: HashMap<Arc<str>, Box<[Digest]>>,
    /// The key lists of the fingerprints, one copy of each (a handful).
    keys: HashSet<Arc<Keys>>,
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
        for old in index.by_tenant.remove(slug).unwrap_or_default().iter() {
            index.desired.remove(old);
        }
        let mut held = Vec::with_capacity(objects.len());
        for object in objects {
            let fingerprint = Wanted::of(object.key.kind, &object.body).map(|wanted| {
                wanted.fingerprint(|keys| match index.keys.get(&keys) {
                    Some(shared) => shared.clone(),
                    None => {
                        let shared = Arc::new(keys);
                        index.keys.insert(shared.clone());
                        shared
                    }
                })
            });
            let key = key_digest(&object.key);
            index.desired.insert(key, fingerprint);
            held.push(key);
        }
        index
            .by_tenant
            .insert(intern(slug), held.into_boxed_slice());
    }

    /// Judges a live object (`None`: it was deleted).
    pub fn judge(&self, cluster: &str, key: &ObjectKey, live: Option<&LiveObject>) -> Verdict {
        let key = key_digest(key);
        let Ok(all) = self.0.lock() else {
            return Verdict::Check;
        };
        let desired = all.get(cluster).and_then(|index| index.desired.get(&key));
        match (desired, live) {
            (Some(Some(want)), Some(have)) if want.met_by(have) => Verdict::AsDesired,
            // Pruned by the portal itself.
            (None, None) => Verdict::AsDesired,
            _ => Verdict::Check,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::cluster::objects::Kind;

    fn live(body: &Value) -> LiveObject {
        LiveObject::of(
            Kind::ResourceQuota,
            serde_json::from_value(body.clone()).unwrap(),
        )
    }

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
        let body = json!({"metadata": {"name": "tenant-quota"}, "spec": {"hard": {"pods": "10"}}});
        index.remember(
            "local",
            "acme",
            &[Desired {
                key: key("tenant-quota"),
                body: body.clone(),
            }],
        );
        assert_eq!(
            index.judge("local", &key("tenant-quota"), Some(&live(&body))),
            Verdict::AsDesired
        );
        let edited =
            json!({"metadata": {"name": "tenant-quota"}, "spec": {"hard": {"pods": "99"}}});
        assert_eq!(
            index.judge("local", &key("tenant-quota"), Some(&live(&edited))),
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
