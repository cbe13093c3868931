//! The JSON of tenants as the list answers them, kept per replica by
//! `(id, view_version)`. The version changes with every write to any part
//! of a tenant's view (migration 0017), so a page reads only its tenants'
//! ids and versions and serializes only the tenants that changed since.
//! Views of tenants with an expiry are not kept: they hold the seconds left.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

/// About 1 KiB a tenant: some 1,000 tenants, twenty pages of 50. What pages
/// are read again (the first, the searched, a link followed) stay; a walk
/// through all of a large fleet starts over every twenty pages rather than
/// keeping the fleet (10 MiB at 10,000 tenants, BENCHMARKS.md §3).
const MAX_BYTES: usize = 1 << 20;

#[derive(Default)]
pub struct TenantJson {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_id: HashMap<i64, (i64, Bytes)>,
    bytes: usize,
}

impl TenantJson {
    /// The tenant's JSON at exactly this version.
    pub fn get(&self, id: i64, version: i64) -> Option<Bytes> {
        let entries = self.entries.lock().ok()?;
        entries
            .by_id
            .get(&id)
            .filter(|(held, _)| *held == version)
            .map(|(_, json)| json.clone())
    }

    pub fn put(&self, id: i64, version: i64, json: Bytes) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        // Starting over costs one load per tenant seen again; an eviction
        // order would cost bookkeeping on every hit.
        if entries.bytes + json.len() > MAX_BYTES {
            *entries = Entries::default();
        }
        entries.bytes += json.len();
        if let Some((_, replaced)) = entries.by_id.insert(id, (version, json)) {
            entries.bytes -= replaced.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_version_held_is_answered_and_the_size_is_bounded() {
        let cache = TenantJson::default();
        cache.put(1, 3, Bytes::from_static(b"{}"));
        assert_eq!(cache.get(1, 3).as_deref(), Some(&b"{}"[..]));
        assert_eq!(cache.get(1, 4), None, "a newer version is not answered");
        assert_eq!(cache.get(2, 3), None);
        let kib = Bytes::from(vec![b' '; 1024]);
        for id in 0..(MAX_BYTES / 1024) as i64 + 5 {
            cache.put(id + 10, 0, kib.clone());
        }
        cache.put(10, 1, kib.clone());
        let entries = cache.entries.lock().unwrap();
        let held: usize = entries.by_id.values().map(|(_, json)| json.len()).sum();
        assert_eq!(entries.bytes, held, "the count is of what is held");
        assert!(held <= MAX_BYTES);
    }
}
