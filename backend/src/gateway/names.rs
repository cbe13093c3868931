//! The tenant's names and the cluster's: `dev` in the tenant API is
//! `acme-dev` in the cluster. Requests are converted inward (paths, bodies,
//! field selectors), answers outward (objects, lists, tables, watch events,
//! `Status` messages). Only the tenant's own namespaces are converted; any
//! other name passes unchanged, so it stays foreign and the API server or
//! the gateway refuses it.

use std::collections::BTreeMap;

use serde_json::Value;

/// Keys whose values are the user's own data (or the server's field
/// bookkeeping), never references the gateway should rewrite.
const OPAQUE: [&str; 6] = [
    "data",
    "stringData",
    "binaryData",
    "annotations",
    "labels",
    "managedFields",
];

/// One tenant's namespaces, both ways.
#[derive(Debug, Clone, Default)]
pub struct NameMap {
    /// Short name (`dev`) to cluster name (`acme-dev`).
    inward: BTreeMap<String, String>,
    /// Cluster name to short name.
    outward: BTreeMap<String, String>,
    /// Upstream user names as they appear in refusals, and the caller's name.
    identities: Vec<(String, String)>,
}

impl NameMap {
    /// `namespaces` holds (short, full) pairs.
    pub fn new(namespaces: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut map = Self::default();
        for (short, full) in namespaces {
            map.outward.insert(full.clone(), short.clone());
            map.inward.insert(short, full);
        }
        map
    }

    /// Refusals name `upstream` (the role's ServiceAccount); the tenant sees `caller`.
    pub fn with_identity(mut self, upstream: String, caller: String) -> Self {
        self.identities.push((upstream, caller));
        self
    }

    /// With one more namespace (just created).
    pub fn plus(mut self, short: &str, full: &str) -> Self {
        self.outward.insert(full.to_string(), short.to_string());
        self.inward.insert(short.to_string(), full.to_string());
        self
    }

    /// The cluster name of one of the tenant's namespaces.
    pub fn to_cluster(&self, short: &str) -> Option<&str> {
        self.inward.get(short).map(String::as_str)
    }

    /// The tenant's name for a cluster namespace that is the tenant's.
    pub fn to_tenant(&self, full: &str) -> Option<&str> {
        self.outward.get(full).map(String::as_str)
    }

    /// The tenant's namespaces as the cluster names them.
    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        self.outward.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.inward.is_empty()
    }

    /// Rewrites a request body: every `namespace` reference the tenant wrote
    /// becomes the cluster's name.
    pub fn body_inward(&self, value: &mut Value) {
        walk(value, &|s| self.to_cluster(s).map(str::to_string), None);
    }

    /// Rewrites an answer: namespace references, and `Status` messages.
    pub fn body_outward(&self, value: &mut Value) {
        walk(
            value,
            &|s| self.to_tenant(s).map(str::to_string),
            Some(&|message: &str| self.message_outward(message)),
        );
    }

    /// A message as the tenant should read it: `namespaces "acme-dev" not
    /// found` becomes `namespaces "dev" not found`.
    pub fn message_outward(&self, message: &str) -> String {
        let mut out = message.to_string();
        for (upstream, caller) in &self.identities {
            if out.contains(upstream.as_str()) {
                out = out.replace(upstream.as_str(), caller);
            }
        }
        for (full, short) in &self.outward {
            let quoted = format!("\"{full}\"");
            if out.contains(&quoted) {
                out = out.replace(&quoted, &format!("\"{short}\""));
            }
        }
        out
    }

    /// A field selector with the tenant's namespace names (`metadata.namespace=dev`).
    pub fn field_selector_inward(&self, selector: &str) -> String {
        selector
            .split(',')
            .map(|term| {
                for op in ["!=", "==", "="] {
                    if let Some((field, value)) = term.split_once(op) {
                        if field.trim().ends_with("namespace")
                            && let Some(full) = self.to_cluster(value.trim())
                        {
                            return format!("{field}{op}{full}");
                        }
                        return term.to_string();
                    }
                }
                term.to_string()
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl NameMap {
    /// Whether renaming could change this answer at all. `false` only when
    /// neither the byte scanner nor the tree walk would rename a thing: no
    /// cluster name of the tenant's namespaces and no upstream identity
    /// appears in the bytes, and no `\u` escape could spell one (the other
    /// escapes stand for `"`, `\`, `/` and control characters, none of which
    /// a namespace name or an identity holds). Such an answer (another
    /// tenant's namespace never has the tenant's names; a cluster-scoped
    /// object; a review) goes out as the cluster wrote it, without a scan.
    /// Bytes that are not UTF-8 are left to the scanner.
    pub fn may_rename(&self, json: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(json) else {
            return true;
        };
        self.outward.keys().any(|full| text.contains(full.as_str()))
            || self
                .identities
                .iter()
                .any(|(upstream, _)| text.contains(upstream.as_str()))
            || text.contains("\\u")
    }

    /// An answer's namespace references renamed in its bytes, without
    /// building a tree: the same fields as [`Self::body_outward`] (every
    /// `namespace` outside the user's data, labels and annotations), for
    /// answers that are not a `Status`. `None` when it is a `Status` or not
    /// JSON the scanner reads; the caller then converts the tree.
    pub fn bytes_outward(&self, json: &[u8]) -> Option<Vec<u8>> {
        if contains(json, br#""kind":"Status""#) {
            return None;
        }
        rewrite_namespaces(json, &|full| self.outward.get(full).map(String::as_str))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // std's substring search (SIMD on x86_64) where the text is UTF-8.
    match (std::str::from_utf8(haystack), std::str::from_utf8(needle)) {
        (Ok(haystack), Ok(needle)) => haystack.contains(needle),
        _ => haystack.windows(needle.len()).any(|w| w == needle),
    }
}

/// The index of the first `"` or `\` at or after `from`, looked for eight
/// bytes at a time (most of an answer's bytes are inside strings); `None`
/// when there is none, or `from` is past the end.
fn quote_or_backslash(json: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The lowest flagged byte of each is exact (a borrow only flags bytes
    // above a true zero), so the lowest of the two is the first match.
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let rest = json.get(from..)?;
    let mut words = rest.chunks_exact(8);
    let mut at = from;
    for word in words.by_ref() {
        let word = u64::from_le_bytes(word.try_into().ok()?);
        let found = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|b| matches!(b, b'"' | b'\\'))
        .map(|p| at + p)
}

/// Where the scanner is inside an object or an array.
struct Frame {
    is_object: bool,
    /// Inside the user's data, labels or annotations.
    opaque: bool,
    expect_key: bool,
    /// The current key's bytes (between the quotes).
    key: (usize, usize),
}

/// One pass over JSON text: every string value of a key `namespace`
/// outside [`OPAQUE`] subtrees that `rename` knows is replaced.
fn rewrite_namespaces<'m>(
    json: &[u8],
    rename: &dyn Fn(&str) -> Option<&'m str>,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(json.len());
    let mut copied = 0;
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'{' | b'[' => {
                let opaque = stack.last().is_some_and(|f| {
                    f.opaque
                        || (f.is_object
                            && OPAQUE
                                .iter()
                                .any(|k| k.as_bytes() == &json[f.key.0..f.key.1]))
                });
                stack.push(Frame {
                    is_object: json[i] == b'{',
                    opaque,
                    expect_key: json[i] == b'{',
                    key: (0, 0),
                });
                i += 1;
            }
            b'}' | b']' => {
                stack.pop()?;
                i += 1;
            }
            b':' => {
                stack.last_mut()?.expect_key = false;
                i += 1;
            }
            b',' => {
                let frame = stack.last_mut()?;
                frame.expect_key = frame.is_object;
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                let mut end = start;
                let mut escaped = false;
                loop {
                    end = quote_or_backslash(json, end)?;
                    if json[end] == b'"' {
                        break;
                    }
                    escaped = true;
                    end += 2;
                }
                let frame = stack.last_mut()?;
                if frame.is_object && frame.expect_key {
                    frame.key = (start, end);
                } else if frame.is_object
                    && !frame.opaque
                    && !escaped
                    && &json[frame.key.0..frame.key.1] == b"namespace"
                    && let Some(short) =
                        std::str::from_utf8(&json[start..end]).ok().and_then(rename)
                {
                    out.extend_from_slice(&json[copied..start]);
                    out.extend_from_slice(short.as_bytes());
                    copied = end;
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    if !stack.is_empty() {
        return None;
    }
    out.extend_from_slice(&json[copied..]);
    Some(out)
}

type Rename<'a> = &'a dyn Fn(&str) -> Option<String>;
type Reword<'a> = Option<&'a dyn Fn(&str) -> String>;

fn walk(value: &mut Value, rename: Rename, reword: Reword) {
    match value {
        Value::Object(map) => {
            let is_status = map.get("kind").and_then(Value::as_str) == Some("Status");
            for (key, child) in map.iter_mut() {
                match (key.as_str(), &mut *child) {
                    ("namespace", Value::String(s)) => {
                        if let Some(new) = rename(s) {
                            *s = new;
                        }
                    }
                    ("message", Value::String(s)) if is_status => {
                        if let Some(reword) = reword {
                            *s = reword(s);
                        }
                    }
                    // A Status names the missing namespace in its details.
                    ("details", Value::Object(details))
                        if is_status
                            && details.get("kind").and_then(Value::as_str)
                                == Some("namespaces") =>
                    {
                        if let Some(Value::String(name)) = details.get_mut("name")
                            && let Some(new) = rename(name)
                        {
                            *name = new;
                        }
                    }
                    (key, _) if OPAQUE.contains(&key) => {}
                    _ => walk(child, rename, reword),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, rename, reword);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn acme() -> NameMap {
        NameMap::new([
            ("dev".to_string(), "acme-dev".to_string()),
            ("prod".to_string(), "acme-prod".to_string()),
        ])
        .with_identity(
            "system:serviceaccount:acme-dev:tenant-owner".into(),
            "alice@example.com".into(),
        )
    }

    #[test]
    fn a_body_gets_the_cluster_s_namespace_and_the_answer_the_tenant_s() {
        let mut body = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "ci", "namespace": "dev"},
            "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "prod"},
                         {"kind": "ServiceAccount", "name": "x", "namespace": "kube-system"}],
        });
        acme().body_inward(&mut body);
        assert_eq!(body["metadata"]["namespace"], "acme-dev");
        assert_eq!(body["subjects"][0]["namespace"], "acme-prod");
        assert_eq!(
            body["subjects"][1]["namespace"], "kube-system",
            "a name that is not the tenant's stays as written"
        );
        acme().body_outward(&mut body);
        assert_eq!(body["metadata"]["namespace"], "dev");
        assert_eq!(body["subjects"][0]["namespace"], "prod");
    }

    #[test]
    fn lists_tables_and_watch_events_are_converted_at_any_depth() {
        let mut table = json!({"kind": "Table", "rows": [
            {"cells": ["web"], "object": {"kind": "PartialObjectMetadata", "metadata": {"name": "web", "namespace": "acme-prod"}}}
        ]});
        acme().body_outward(&mut table);
        assert_eq!(table["rows"][0]["object"]["metadata"]["namespace"], "prod");
        let mut event = json!({"type": "ADDED", "object": {"kind": "Event",
            "metadata": {"namespace": "acme-dev"}, "involvedObject": {"namespace": "acme-dev", "name": "web"}}});
        acme().body_outward(&mut event);
        assert_eq!(event["object"]["involvedObject"]["namespace"], "dev");
    }

    #[test]
    fn the_user_s_own_data_is_never_rewritten() {
        let mut config_map = json!({"kind": "ConfigMap", "metadata": {"namespace": "dev",
            "labels": {"namespace": "dev"}}, "data": {"namespace": "dev"}});
        acme().body_inward(&mut config_map);
        assert_eq!(config_map["metadata"]["namespace"], "acme-dev");
        assert_eq!(config_map["data"]["namespace"], "dev");
        assert_eq!(config_map["metadata"]["labels"]["namespace"], "dev");
    }

    #[test]
    fn status_messages_and_details_name_the_tenant_s_namespaces_and_caller() {
        let mut status = json!({"kind": "Status", "code": 403,
            "message": "pods is forbidden: User \"system:serviceaccount:acme-dev:tenant-owner\" cannot list resource \"pods\" in API group \"\" in the namespace \"acme-prod\"",
            "details": {"kind": "namespaces", "name": "acme-prod"}});
        acme().body_outward(&mut status);
        assert_eq!(
            status["message"],
            "pods is forbidden: User \"alice@example.com\" cannot list resource \"pods\" in API group \"\" in the namespace \"prod\""
        );
        assert_eq!(status["details"]["name"], "prod");
    }

    #[test]
    fn the_byte_scanner_renames_exactly_what_the_tree_walk_does() {
        let list = json!({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
        "items": [
            {"metadata": {"name": "a", "namespace": "acme-dev", "labels": {"namespace": "acme-dev"},
                          "managedFields": [{"fieldsV1": {"f:data": {"f:namespace": {}}}}]},
             "data": {"namespace": "acme-dev", "quoted": "\"namespace\":\"acme-dev\""}},
            {"metadata": {"name": "b", "namespace": "acme-prod"}, "subjects": [{"namespace": "acme-prod"}, {"namespace": "other"}]},
            {"metadata": {"name": "c", "namespace": "kube-system"}, "empty": [], "n": 1.5e3, "t": true}
        ]});
        let text = serde_json::to_vec(&list).unwrap();
        let scanned: Value = serde_json::from_slice(&acme().bytes_outward(&text).unwrap()).unwrap();
        let mut walked = list.clone();
        acme().body_outward(&mut walked);
        assert_eq!(scanned, walked);
        assert_eq!(scanned["items"][0]["data"]["namespace"], "acme-dev");
        assert_eq!(scanned["items"][1]["subjects"][0]["namespace"], "prod");
    }

    #[test]
    fn the_byte_scanner_leaves_statuses_and_broken_json_to_the_tree_walk() {
        let status = br#"{"kind":"Status","message":"namespaces \"acme-dev\" not found"}"#;
        assert!(acme().bytes_outward(status).is_none());
        assert!(
            acme()
                .bytes_outward(br#"{"metadata":{"namespace":"acme-dev""#)
                .is_none()
        );
    }

    #[test]
    fn only_answers_that_cannot_name_the_tenant_skip_the_renaming() {
        let map = acme();
        // Another tenant's objects, a cluster-scoped object: nothing to rename.
        let foreign = br#"{"kind":"ConfigMapList","items":[{"metadata":{"name":"a","namespace":"globex-dev"}}]}"#;
        assert!(!map.may_rename(foreign));
        let mut walked: Value = serde_json::from_slice(foreign).unwrap();
        map.body_outward(&mut walked);
        assert_eq!(walked, serde_json::from_slice::<Value>(foreign).unwrap());
        // A name of the tenant's anywhere, the identity, or an escape that
        // could spell one: the renaming runs.
        assert!(map.may_rename(br#"{"metadata":{"namespace":"acme-prod"}}"#));
        assert!(map.may_rename(br#"{"data":{"x":"acme-dev"}}"#));
        assert!(map.may_rename(
            br#"{"kind":"Status","message":"User \"system:serviceaccount:acme-dev:tenant-owner\" cannot"}"#
        ));
        let escaped = br#"{"kind":"Status","message":"namespaces \"acme\u002ddev\" not found","details":{"kind":"namespaces","name":"acme\u002ddev"}}"#;
        assert!(map.may_rename(escaped));
        let mut walked: Value = serde_json::from_slice(escaped).unwrap();
        map.body_outward(&mut walked);
        assert_eq!(walked["details"]["name"], "dev");
        // Whatever the skip lets through, the scanner and the walk leave alone.
        for text in [
            &foreign[..],
            br#"{"kind":"Namespace","metadata":{"name":"kube-system"}}"#,
        ] {
            assert!(!map.may_rename(text));
            assert_eq!(map.bytes_outward(text).unwrap(), text);
        }
    }

    #[test]
    fn the_string_end_is_found_as_a_byte_at_a_time_would() {
        let text: Vec<u8> = (0..300u32)
            .map(|i| match i % 37 {
                0 => b'"',
                11 => b'\\',
                n => b'a' + (n % 26) as u8,
            })
            .collect();
        for from in 0..=text.len() + 2 {
            let naive = text
                .get(from..)
                .and_then(|rest| rest.iter().position(|b| matches!(b, b'"' | b'\\')))
                .map(|p| from + p);
            assert_eq!(quote_or_backslash(&text, from), naive, "from {from}");
        }
        assert_eq!(quote_or_backslash(&[0xa2u8; 19], 0), None);
    }

    #[test]
    fn field_selectors_name_the_cluster_s_namespaces() {
        let map = acme();
        assert_eq!(
            map.field_selector_inward("metadata.namespace=dev,status.phase!=Running"),
            "metadata.namespace=acme-dev,status.phase!=Running"
        );
        assert_eq!(
            map.field_selector_inward("involvedObject.namespace==prod"),
            "involvedObject.namespace==acme-prod"
        );
        assert_eq!(
            map.field_selector_inward("metadata.namespace=other"),
            "metadata.namespace=other"
        );
    }
}
