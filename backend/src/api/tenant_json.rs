//! The JSON of tenants as the list answers them, kept per replica by
//! `(id, view_version)`. The version changes with every write to any part
//! of a tenant's view (migration 0017), so a page reads only its tenants'
//! ids and versions and serializes only the tenants that changed since.
//! Views of tenants with an expiry are not kept: they hold the seconds left.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

/// About 1 KiB a tenant: 10,000 of them are about 10 MiB.
const MAX_TENANTS: usize = 10_000;

#[derive(Default)]
pub struct TenantJson {
    entries: Mutex<HashMap<i64, (i64, Bytes)>>,
}

impl TenantJson {
    /// The tenant's JSON at exactly this version.
    pub fn get(&self, id: i64, version: i64) -> Option<Bytes> {
        let entries = self.entries.lock().ok()?;
        entries
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
        if entries.len() >= MAX_TENANTS && !entries.contains_key(&id) {
            entries.clear();
        }
        entries.insert(id, (version, json));
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
        for id in 0..MAX_TENANTS as i64 + 5 {
            cache.put(id + 10, 0, Bytes::new());
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_TENANTS);
    }
}
