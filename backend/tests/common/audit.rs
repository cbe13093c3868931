//! The API server's own record of what the portal wrote: the audit log the
//! local stack keeps (`deploy/dev/cluster`, writes only, one line each).
//! Tests that claim "applied once" or "shared between replicas" count here,
//! not in the portal's own audit table, which could not tell them apart.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;

/// One write request the API server completed.
#[derive(Debug, Clone)]
pub struct Write {
    pub verb: String,
    /// `resource/namespace/name`, the object written.
    pub object: String,
    /// Who sent it: the portal names its replica here.
    pub user_agent: String,
    pub code: u64,
}

/// Every write the portal's replicas sent for objects of tenants whose slugs
/// start with `prefix` (their namespaces, and the objects in them).
pub fn portal_writes(prefix: &str) -> Vec<Write> {
    let path = std::env::var("TP_KUBE_AUDIT_LOG")
        .expect("TP_KUBE_AUDIT_LOG is not set: source the stack.env that deploy/dev/up prints");
    let log = std::fs::read_to_string(&path).unwrap();
    log.lines()
        .filter(|line| line.contains(prefix))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["stage"] == "ResponseComplete")
        .filter_map(|event| {
            let user_agent = event["userAgent"].as_str()?.to_string();
            if !user_agent.starts_with("tenant-portal/") {
                return None;
            }
            let object = &event["objectRef"];
            let namespace = object["namespace"].as_str().unwrap_or("");
            let name = object["name"].as_str().unwrap_or("");
            if !namespace.starts_with(prefix) && !name.starts_with(prefix) {
                return None;
            }
            Some(Write {
                verb: event["verb"].as_str()?.to_string(),
                object: format!(
                    "{}/{namespace}/{name}",
                    object["resource"].as_str().unwrap_or("")
                ),
                user_agent,
                code: event["responseStatus"]["code"].as_u64().unwrap_or(0),
            })
        })
        .collect()
}

/// How many writes each object got.
pub fn writes_per_object(writes: &[Write]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for write in writes {
        *counts.entry(write.object.clone()).or_default() += 1;
    }
    counts
}

/// How many writes each replica (user agent) sent.
pub fn writes_per_replica(writes: &[Write]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for write in writes {
        *counts.entry(write.user_agent.clone()).or_default() += 1;
    }
    counts
}
