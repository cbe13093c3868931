//! What the portal keeps of each live object it manages, instead of the
//! object: its resourceVersion, whether it is being deleted, its labels (whose
//! tenant it is, whether the portal made it), the portal's own annotations, a
//! digest of the fields the portal owns whole and which `managedFields`
//! entries the portal has. That is everything drift detection, pruning, the
//! namespace claim and the next write read, at a few hundred bytes an object
//! rather than a JSON tree of kilobytes.
//!
//! [`Wanted`] and [`Fingerprint`] are the desired side of the same comparison:
//! together they answer exactly what [`super::objects::is_satisfied`] answers
//! for the whole objects (each desired label and annotation present with the
//! same value, the owned fields equal once empty values are dropped).

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, LazyLock, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::DynamicObject;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::objects::{Kind, MANAGER, ObjectKey, is_empty};

/// Annotations the portal writes all start with this; no other annotation is kept.
pub const ANNOTATION_PREFIX: &str = "tenant-portal.dev/";

/// 128 bits of SHA-256: a changed field never passes for the desired one.
pub type Digest = [u8; 16];

/// A label or annotation: its key and value.
type Pair = (Arc<str>, Arc<str>);
/// Sorted pairs: an object's labels, or its portal annotations.
type Pairs = Arc<[Pair]>;

/// One shared copy of each value the caches hold many times over. Strings:
/// most are the same few in every tenant ("tenant-portal", "baseline", the
/// label keys, the object names), the rest one per tenant or namespace
/// instead of one per object and index. Label and annotation sets: every
/// object of a tenant but its namespaces carries the same labels, and every
/// namespace of a template the same annotations, so a set is held once per
/// tenant or template rather than once per object.
struct Interner<T: ?Sized> {
    held: HashSet<Arc<T>>,
    /// The size after the last sweep; the next sweep comes at twice as many.
    swept_at: usize,
}

impl<T: ?Sized + Eq + Hash> Interner<T>
where
    for<'a> Arc<T>: From<&'a T>,
{
    fn new() -> Mutex<Self> {
        Mutex::new(Self {
            held: HashSet::new(),
            swept_at: 1024,
        })
    }

    /// Values nobody holds any more are dropped in sweeps, each after the
    /// set has doubled, so the set stays within twice what the caches hold
    /// at a constant cost per call.
    fn share(interner: &Mutex<Self>, value: &T) -> Arc<T> {
        let Ok(mut interner) = interner.lock() else {
            return value.into();
        };
        if let Some(shared) = interner.held.get(value) {
            return shared.clone();
        }
        if interner.held.len() >= 2 * interner.swept_at {
            interner.held.retain(|held| Arc::strong_count(held) > 1);
            interner.swept_at = interner.held.len().max(1024);
        }
        let shared: Arc<T> = value.into();
        interner.held.insert(shared.clone());
        shared
    }
}

static STRINGS: LazyLock<Mutex<Interner<str>>> = LazyLock::new(Interner::new);
static PAIRS: LazyLock<Mutex<Interner<[Pair]>>> = LazyLock::new(Interner::new);

/// The shared copy of `s`.
pub fn intern(s: &str) -> Arc<str> {
    Interner::share(&STRINGS, s)
}

/// `metadata.resourceVersion`: a number in practice, kept as text otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceVersion {
    Number(u64),
    /// Boxed twice so the version takes 16 bytes, not 24: with it a cached
    /// object's allocation fits the allocator's 96-byte size class.
    #[allow(clippy::box_collection)]
    Text(Box<String>),
}

impl ResourceVersion {
    fn of(version: String) -> Self {
        match version.parse::<u64>() {
            Ok(n) if n.to_string() == version => Self::Number(n),
            _ => Self::Text(Box::new(version)),
        }
    }
}

impl std::fmt::Display for ResourceVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// A managed object as the watch last reported it, reduced to what the
/// portal reads. Its identity is the key it is cached under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveObject {
    pub resource_version: Option<ResourceVersion>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// Every label, sorted by key.
    labels: Pairs,
    /// The portal's own annotations ([`ANNOTATION_PREFIX`]), sorted by key.
    annotations: Pairs,
    /// The fields the kind's portal owns whole ([`Kind::owned_exactly`]).
    owned: Digest,
    /// How the portal holds the object's fields, from `metadata.managedFields`.
    pub ownership: Ownership,
}

/// The portal's entries in an object's `metadata.managedFields`. An object
/// the portal created holds its fields as an update (the entry a create
/// makes); only an apply entry lets a later apply remove the fields the
/// portal no longer sets, so that entry is turned into one before the
/// portal's first apply ([`super::apply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ownership {
    /// The position of the portal's update entry for the object itself (not
    /// a subresource) in `metadata.managedFields`, if it has one.
    pub update_entry: Option<u16>,
    /// The portal also has an apply entry.
    pub applies: bool,
}

impl Ownership {
    fn of(entries: &[ManagedFieldsEntry]) -> Self {
        let ours = |e: &ManagedFieldsEntry, operation: &str| {
            e.manager.as_deref() == Some(MANAGER)
                && e.operation.as_deref() == Some(operation)
                && e.subresource.as_deref().is_none_or(str::is_empty)
        };
        Self {
            update_entry: entries
                .iter()
                .position(|e| ours(e, "Update"))
                .and_then(|i| u16::try_from(i).ok()),
            applies: entries.iter().any(|e| ours(e, "Apply")),
        }
    }
}

fn sorted(pairs: impl Iterator<Item = (String, String)>) -> Pairs {
    let mut pairs: Vec<Pair> = pairs.map(|(k, v)| (intern(&k), intern(&v))).collect();
    pairs.sort();
    Interner::share(&PAIRS, &pairs[..])
}

fn lookup<'a>(pairs: &'a Pairs, key: &str) -> Option<&'a str> {
    pairs
        .binary_search_by(|(k, _)| k.as_ref().cmp(key))
        .ok()
        .map(|i| pairs[i].1.as_ref())
}

impl LiveObject {
    /// Takes what the portal needs from a watched object; the object itself
    /// can then go.
    pub fn of(kind: Kind, object: DynamicObject) -> Self {
        let metadata = object.metadata;
        Self {
            ownership: Ownership::of(metadata.managed_fields.as_deref().unwrap_or_default()),
            resource_version: metadata.resource_version.map(ResourceVersion::of),
            deleting: metadata.deletion_timestamp.is_some(),
            labels: sorted(metadata.labels.unwrap_or_default().into_iter()),
            annotations: sorted(
                metadata
                    .annotations
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX)),
            ),
            owned: owned_digest(kind, &object.data),
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        lookup(&self.labels, key)
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        lookup(&self.annotations, key)
    }

    /// Whether the object already holds everything `desired` says, as
    /// [`super::objects::is_satisfied`] would answer for the whole object.
    pub fn satisfies(&self, kind: Kind, desired: &Value) -> bool {
        Wanted::of(kind, desired).is_some_and(|wanted| wanted.met_by(self))
    }
}

/// The parts of a desired object the comparison reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    owned: Digest,
}

fn strings(value: &Value) -> Option<Vec<(String, String)>> {
    let Value::Object(map) = value else {
        return None;
    };
    let mut pairs = Vec::new();
    for (k, v) in map {
        match v {
            Value::String(s) => pairs.push((k.clone(), s.clone())),
            v if is_empty(v) => {}
            _ => return None,
        }
    }
    pairs.sort();
    Some(pairs)
}

impl Wanted {
    /// `None` when the desired object sets something no cached object keeps
    /// (a field outside the labels, the portal's annotations and the owned
    /// fields): such an object never counts as in place, and is applied.
    pub fn of(kind: Kind, desired: &Value) -> Option<Self> {
        let Value::Object(fields) = desired else {
            return None;
        };
        let resource = kind.api_resource();
        let owned = kind.owned_exactly();
        let mut wanted = Wanted {
            labels: Vec::new(),
            annotations: Vec::new(),
            owned: owned_digest(kind, desired),
        };
        for (field, value) in fields {
            if is_empty(value) || owned.contains(&field.as_str()) {
                continue;
            }
            match field.as_str() {
                // The cache holds one kind under its own name; these match.
                "apiVersion" if value.as_str() == Some(resource.api_version.as_str()) => {}
                "kind" if value.as_str() == Some(resource.kind.as_str()) => {}
                "metadata" => {
                    let Value::Object(metadata) = value else {
                        return None;
                    };
                    for (key, value) in metadata {
                        match key.as_str() {
                            _ if is_empty(value) => {}
                            // The cache key: the object is looked up by them.
                            "name" | "namespace" => {}
                            "labels" => wanted.labels = strings(value)?,
                            "annotations" => {
                                wanted.annotations = strings(value)?;
                                if !wanted
                                    .annotations
                                    .iter()
                                    .all(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
                                {
                                    return None;
                                }
                            }
                            _ => return None,
                        }
                    }
                }
                _ => return None,
            }
        }
        Some(wanted)
    }

    pub fn met_by(&self, live: &LiveObject) -> bool {
        self.owned == live.owned
            && self
                .labels
                .iter()
                .all(|(k, v)| live.label(k) == Some(v.as_str()))
            && self
                .annotations
                .iter()
                .all(|(k, v)| live.annotation(k) == Some(v.as_str()))
    }

    /// The same comparison in a fixed size: the keys (shared by every object
    /// rendered alike) and one digest of the owned fields and the values.
    pub fn fingerprint(&self, intern: impl FnOnce(Keys) -> Arc<Keys>) -> Fingerprint {
        let keys = Keys {
            labels: self.labels.iter().map(|(k, _)| k.as_str().into()).collect(),
            annotations: self
                .annotations
                .iter()
                .map(|(k, _)| k.as_str().into())
                .collect(),
        };
        let digest = values_digest(
            &self.owned,
            self.labels.iter().map(|(_, v)| Some(v.as_str())),
            self.annotations.iter().map(|(_, v)| Some(v.as_str())),
        );
        Fingerprint {
            keys: intern(keys),
            digest,
        }
    }
}

/// The label and annotation keys a desired object sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Keys {
    labels: Box<[Box<str>]>,
    annotations: Box<[Box<str>]>,
}

/// A desired object as the drift index keeps it: what [`Wanted`] compares,
/// in 24 bytes and a shared key list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    keys: Arc<Keys>,
    /// The owned fields' digest and the values at `keys`, in one.
    digest: Digest,
}

impl Fingerprint {
    pub fn met_by(&self, live: &LiveObject) -> bool {
        self.digest
            == values_digest(
                &live.owned,
                self.keys.labels.iter().map(|k| live.label(k)),
                self.keys.annotations.iter().map(|k| live.annotation(k)),
            )
    }
}

fn values_digest<'a>(
    owned: &Digest,
    labels: impl Iterator<Item = Option<&'a str>>,
    annotations: impl Iterator<Item = Option<&'a str>>,
) -> Digest {
    let mut hash = Sha256::new();
    hash.update(owned);
    for value in labels.chain([None]).chain(annotations) {
        match value {
            Some(v) => {
                hash.update([1]);
                text(&mut hash, v);
            }
            None => hash.update([0]),
        }
    }
    finish(hash)
}

/// An object's identity in 128 bits, for an index that keeps many of them.
pub fn key_digest(key: &ObjectKey) -> Digest {
    let mut hash = Sha256::new();
    hash.update([key.kind as u8]);
    match &key.namespace {
        Some(namespace) => {
            hash.update([1]);
            text(&mut hash, namespace);
        }
        None => hash.update([0]),
    }
    text(&mut hash, &key.name);
    finish(hash)
}

/// The fields the kind owns whole, with empty values dropped, in one digest.
pub fn owned_digest(kind: Kind, object: &Value) -> Digest {
    let mut hash = Sha256::new();
    for field in kind.owned_exactly() {
        text(&mut hash, field);
        feed(&mut hash, &object[*field], true);
    }
    finish(hash)
}

/// A digest of any value, exactly (empty values count), keys in any order.
pub fn digest(value: &Value) -> Digest {
    let mut hash = Sha256::new();
    feed(&mut hash, value, false);
    finish(hash)
}

fn finish(hash: Sha256) -> Digest {
    let mut digest = [0; 16];
    digest.copy_from_slice(&hash.finalize()[..16]);
    digest
}

fn text(hash: &mut Sha256, s: &str) {
    hash.update((s.len() as u64).to_le_bytes());
    hash.update(s.as_bytes());
}

/// Feeds a canonical form of `value`: object keys sorted, each part tagged
/// and length-prefixed. With `drop_empty`, as `without_nulls` sees it: an
/// empty value is null, and empty entries of an object are left out.
fn feed(hash: &mut Sha256, value: &Value, drop_empty: bool) {
    if drop_empty && is_empty(value) {
        hash.update([0]);
        return;
    }
    match value {
        Value::Null => hash.update([0]),
        Value::Bool(b) => hash.update([1, u8::from(*b)]),
        Value::Number(n) => {
            hash.update([2]);
            text(hash, &n.to_string());
        }
        Value::String(s) => {
            hash.update([3]);
            text(hash, s);
        }
        Value::Array(items) => {
            hash.update([4]);
            hash.update((items.len() as u64).to_le_bytes());
            for item in items {
                feed(hash, item, drop_empty);
            }
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map
                .iter()
                .filter(|(_, v)| !(drop_empty && is_empty(v)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            hash.update([5]);
            hash.update((entries.len() as u64).to_le_bytes());
            for (k, v) in entries {
                text(hash, k);
                feed(hash, v, drop_empty);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_cached_object_fits_in_72_bytes() {
        // 72 and the Arc's counts make 88 bytes, glibc's 96-byte chunk; at 80
        // it takes 112, for each of the fleet's objects.
        assert!(std::mem::size_of::<LiveObject>() <= 72);
    }

    use super::*;
    use crate::cluster::objects::is_satisfied;

    fn live(kind: Kind, value: Value) -> LiveObject {
        LiveObject::of(kind, serde_json::from_value(value).unwrap())
    }

    /// The cached form answers as the whole objects do, for both the
    /// comparison at apply time and the drift index's fingerprint.
    fn agrees(kind: Kind, desired: &Value, whole: Value) -> bool {
        let expected = is_satisfied(kind, desired, &whole);
        let cached = live(kind, whole);
        assert_eq!(cached.satisfies(kind, desired), expected, "{desired}");
        let fingerprint = Wanted::of(kind, desired)
            .map(|w| w.fingerprint(Arc::new))
            .is_some_and(|f| f.met_by(&cached));
        assert_eq!(fingerprint, expected, "{desired}");
        expected
    }

    fn quota(hard: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "tenant-quota", "namespace": "acme-dev",
                         "labels": {"app.kubernetes.io/managed-by": "tenant-portal", "tenant-portal.dev/tenant": "acme"}},
            "spec": {"hard": hard}
        })
    }

    #[test]
    fn a_rendered_tenant_is_in_place_once_applied_and_drifts_when_edited() {
        for file in ["acme-active.yaml", "acme-suspended.yaml"] {
            let path = format!(
                "{}/src/cluster/snapshots/{file}",
                env!("CARGO_MANIFEST_DIR")
            );
            let objects: Vec<Value> =
                serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            for desired in objects {
                let kind = Kind::from_api_kind(desired["kind"].as_str().unwrap()).unwrap();
                assert!(Wanted::of(kind, &desired).is_some(), "{desired}");
                // As the API server returns it: defaults, status, foreign labels beside.
                let mut applied = desired.clone();
                applied["metadata"]["uid"] = json!("0b7e");
                applied["metadata"]["resourceVersion"] = json!("42");
                applied["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!("x");
                applied["metadata"]["annotations"]["someone.else/note"] = json!("hi");
                applied["status"] = json!({"phase": "Active"});
                assert!(agrees(kind, &desired, applied.clone()), "{desired}");
                let mut relabelled = applied.clone();
                relabelled["metadata"]["labels"]["tenant-portal.dev/tenant"] = json!("mallory");
                assert!(!agrees(kind, &desired, relabelled));
                if let Some(field) = kind.owned_exactly().first() {
                    let mut edited = applied.clone();
                    edited[*field] = json!({"mallory": true});
                    assert!(!agrees(kind, &desired, edited));
                }
                if desired["metadata"]["annotations"].is_object() {
                    let mut edited = applied;
                    edited["metadata"]["annotations"]["tenant-portal.dev/registries"] =
                        json!("evil.io");
                    assert!(!agrees(kind, &desired, edited));
                }
            }
        }
    }

    #[test]
    fn owned_fields_compare_whole_and_ignore_empty_values() {
        let desired = quota(json!({"pods": "10", "requests.cpu": "1"}));
        assert!(agrees(
            Kind::ResourceQuota,
            &desired,
            quota(json!({"requests.cpu": "1", "pods": "10"}))
        ));
        assert!(!agrees(
            Kind::ResourceQuota,
            &desired,
            quota(json!({"pods": "10"}))
        ));
        assert!(!agrees(
            Kind::ResourceQuota,
            &desired,
            quota(json!({"pods": "10", "requests.cpu": "1", "secrets": "5"}))
        ));
        let empty = quota(json!({}));
        let mut bare = empty.clone();
        bare.as_object_mut().unwrap().remove("spec");
        assert!(agrees(Kind::ResourceQuota, &empty, bare));
        assert!(agrees(Kind::ResourceQuota, &empty, quota(json!({"x": {}}))));
    }

    #[test]
    fn a_label_the_portal_no_longer_sets_is_left_as_before() {
        let mut desired = quota(json!({}));
        let applied = {
            let mut v = desired.clone();
            v["metadata"]["labels"]["old"] = json!("1");
            v
        };
        desired["metadata"]["labels"]["old"] = Value::Null;
        assert!(agrees(Kind::ResourceQuota, &desired, applied.clone()));
        desired["metadata"]["labels"]["new"] = json!("1");
        // A label the portal now sets and the object lacks is drift.
        assert!(!live(Kind::ResourceQuota, applied).satisfies(Kind::ResourceQuota, &desired));
    }

    #[test]
    fn what_no_cache_keeps_is_always_applied() {
        let mut desired = quota(json!({}));
        desired["metadata"]["annotations"] = json!({"example.com/x": "1"});
        assert!(Wanted::of(Kind::ResourceQuota, &desired).is_none());
        let mut desired = quota(json!({}));
        desired["automount"] = json!(false);
        assert!(Wanted::of(Kind::ResourceQuota, &desired).is_none());
    }

    #[test]
    fn the_cache_keeps_identity_deletion_and_version() {
        let mut object = quota(json!({"pods": "1"}));
        object["metadata"]["resourceVersion"] = json!("7");
        object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let cached = live(Kind::ResourceQuota, object);
        assert!(cached.deleting);
        assert_eq!(cached.resource_version, Some(ResourceVersion::Number(7)));
        assert_eq!(
            ResourceVersion::of("007".into()).to_string(),
            "007",
            "kept as given"
        );
        assert!(Arc::ptr_eq(&intern("acme-dev"), &intern("acme-dev")));
        assert_eq!(cached.label("tenant-portal.dev/tenant"), Some("acme"));
        assert_eq!(
            digest(&json!({"a": 1, "b": 2})),
            digest(&json!({"b": 2, "a": 1}))
        );
        assert_ne!(digest(&json!({"a": {}})), digest(&json!({})));
    }
}
