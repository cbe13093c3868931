//! `kubectl get pods -A` through the tenant API: one list or watch per
//! tenant namespace, merged into one answer. A list is one snapshot and
//! pages with `limit` and `continue` across the namespaces; a watch merges
//! the namespaces' watches, sends bookmarks that hold for all of them, and
//! takes in namespaces the tenant creates while it runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::NameMap;
use super::proxy::Context;
use super::request::{GroupVersion, is_watch};
use super::status::KubeStatus;
use super::upstream::Upstream;
use super::wire::{convert_query, events, json_response, watch_response};
use crate::cluster::objects::{MANAGED_BY, MANAGER, TENANT_LABEL};

/// How long a namespace made after the watch began is tried before its
/// bindings are in place (the role account cannot watch it until then).
const NEW_NAMESPACE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Where a paged list across the tenant's namespaces goes on: the namespace
/// read next, the API server's own continue token within it, and the
/// snapshot every namespace is read at.
#[derive(Debug, Serialize, Deserialize)]
struct Continue {
    ns: String,
    token: Option<String>,
    rv: String,
}

impl Continue {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Result<Self, KubeStatus> {
        URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| {
                KubeStatus::bad_request(
                    "the continue token is not one this tenant API issued; list again without it",
                )
            })
    }
}

fn query_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

impl Context<'_> {
    pub(super) async fn fan_out(
        &self,
        api: &GroupVersion,
        resource: &str,
        request: Request<Body>,
    ) -> Result<Response, KubeStatus> {
        let (parts, _) = request.into_parts();
        if is_watch(parts.uri.query()) {
            return self.watch_all(api, resource, &parts).await;
        }
        self.list_all(api, resource, &parts).await
    }

    async fn list_one(&self, path: &str, headers: &HeaderMap) -> Result<Option<Value>, Response> {
        let upstream = self
            .send_as_role(Method::GET, path, headers, Bytes::new())
            .await
            .map_err(axum::response::IntoResponse::into_response)?;
        if upstream.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !upstream.status().is_success() {
            return Err(match self.converted(upstream).await {
                Ok(answer) => answer,
                Err(status) => axum::response::IntoResponse::into_response(status),
            });
        }
        upstream.json().await.map(Some).map_err(|e| {
            axum::response::IntoResponse::into_response(KubeStatus::unavailable(format!(
                "the tenant's cluster answered a list that is not JSON: {e}"
            )))
        })
    }

    /// One snapshot of every namespace, in the order of their cluster
    /// names; with `limit`, a page of it and a `continue` for the rest.
    async fn list_all(
        &self,
        api: &GroupVersion,
        resource: &str,
        parts: &axum::http::request::Parts,
    ) -> Result<Response, KubeStatus> {
        let query = parts.uri.query().unwrap_or("");
        // `limit=0`, as at the API server, is no limit.
        let limit = query_value(query, "limit")
            .and_then(|l| l.parse::<u64>().ok())
            .filter(|l| *l > 0);
        let resume = query_value(query, "continue")
            .map(|token| Continue::decode(&token))
            .transpose()?;
        let client_pinned = resume.is_none() && query_value(query, "resourceVersion").is_some();
        let mut snapshot = resume.as_ref().map(|c| c.rv.clone());
        let mut namespaces: Vec<&str> = self.caller.names.cluster_names().collect();
        namespaces.sort_unstable();
        if let Some(from) = &resume {
            namespaces.retain(|ns| *ns >= from.ns.as_str());
        }
        let mut merged: Option<Value> = None;
        let mut left = limit;
        let mut next: Option<Continue> = None;
        for (i, ns) in namespaces.iter().enumerate() {
            let mut extra: Vec<(&str, String)> = Vec::new();
            match (&resume, &snapshot) {
                (Some(from), _) if from.ns == *ns && from.token.is_some() => {
                    extra.push(("continue", from.token.clone().unwrap_or_default()));
                }
                (_, Some(rv)) if !client_pinned => {
                    extra.push(("resourceVersion", rv.clone()));
                    extra.push(("resourceVersionMatch", "Exact".into()));
                }
                _ => {}
            }
            if let Some(left) = left {
                extra.push(("limit", left.to_string()));
            }
            let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let path = namespace_path(api, resource, ns, query, &self.caller.names, &extra);
            let list = match self.list_one(&path, &parts.headers).await {
                Ok(Some(list)) => list,
                Ok(None) => continue,
                Err(answer) => return Ok(answer),
            };
            if snapshot.is_none() {
                snapshot = list["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string);
            }
            let upstream_continue = list["metadata"]["continue"]
                .as_str()
                .filter(|c| !c.is_empty())
                .map(str::to_string);
            let count = ["items", "rows"]
                .iter()
                .filter_map(|key| list.get(*key).and_then(Value::as_array))
                .map(|items| items.len() as u64)
                .max()
                .unwrap_or(0);
            match &mut merged {
                None => merged = Some(list),
                Some(all) => {
                    for key in ["items", "rows"] {
                        if let (Some(into), Some(from)) = (
                            all.get_mut(key).and_then(Value::as_array_mut),
                            list.get(key).and_then(Value::as_array),
                        ) {
                            into.extend(from.iter().cloned());
                        }
                    }
                }
            }
            let rv = snapshot.clone().unwrap_or_default();
            if let Some(token) = upstream_continue.filter(|_| limit.is_some()) {
                next = Some(Continue {
                    ns: ns.to_string(),
                    token: Some(token),
                    rv,
                });
                break;
            }
            left = left.map(|l| l.saturating_sub(count));
            if left == Some(0) {
                next = namespaces.get(i + 1).map(|after| Continue {
                    ns: after.to_string(),
                    token: None,
                    rv,
                });
                break;
            }
        }
        let mut merged = merged.unwrap_or_else(|| {
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": []})
        });
        if let Some(metadata) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("remainingItemCount");
            match &next {
                Some(next) => metadata.insert("continue".into(), next.encode().into()),
                None => metadata.remove("continue"),
            };
            if let Some(rv) = &snapshot {
                metadata.insert("resourceVersion".into(), rv.clone().into());
            }
        }
        self.caller.names.body_outward(&mut merged);
        Ok(json_response(StatusCode::OK, &merged))
    }

    /// The tenant's watches merged. A refusal by any namespace is the
    /// answer; once open, the merged watch ends when one of them ends, so
    /// the client watches again from its last resourceVersion.
    async fn watch_all(
        &self,
        api: &GroupVersion,
        resource: &str,
        parts: &axum::http::request::Parts,
    ) -> Result<Response, KubeStatus> {
        let query = parts.uri.query().unwrap_or("").to_string();
        let (sender, receiver) = mpsc::channel::<Merged>(256);
        let mut watched = Vec::new();
        for ns in self.caller.names.cluster_names() {
            let path = namespace_path(api, resource, ns, &query, &self.caller.names, &[]);
            let upstream = self
                .send_as_role(Method::GET, &path, &parts.headers, Bytes::new())
                .await?;
            if upstream.status() == StatusCode::NOT_FOUND {
                continue;
            }
            if !upstream.status().is_success() {
                return self.converted(upstream).await;
            }
            watched.push(ns.to_string());
            tokio::spawn(pump(
                ns.to_string(),
                events(upstream.bytes_stream()).boxed(),
                self.caller.names.clone(),
                sender.clone(),
            ));
        }
        tokio::spawn(take_in_new_namespaces(NewNamespaces {
            upstream: self.upstream.clone(),
            token: self.role_token().await?,
            slug: self.slug.to_string(),
            names: self.caller.names.clone(),
            known: watched.clone(),
            path: (api.clone(), resource.to_string(), query.clone()),
            sender,
        }));
        let bookmarks = query_value(&query, "allowWatchBookmarks").as_deref() == Some("true");
        Ok(watch_response(merge(receiver, watched, bookmarks)))
    }
}

/// One tenant namespace's path for a fanned-out request: the tenant's
/// query in cluster names, without its paging, with `extra` set.
fn namespace_path(
    api: &GroupVersion,
    resource: &str,
    ns: &str,
    query: &str,
    names: &NameMap,
    extra: &[(&str, &str)],
) -> String {
    format!(
        "{}/namespaces/{ns}/{resource}{}",
        api.path,
        convert_query(query, names, extra, true)
    )
}

/// What the namespaces' watches send to the merged one.
enum Merged {
    Event {
        ns: String,
        event: Value,
    },
    /// A namespace made after the watch began is being joined: until it
    /// reports, no bookmark may pass it.
    Joining {
        ns: String,
    },
    Ended,
}

/// Forwards one namespace's events, in the tenant's names, until either
/// side stops.
async fn pump(
    ns: String,
    mut events: futures::stream::BoxStream<'static, Value>,
    names: NameMap,
    sender: mpsc::Sender<Merged>,
) {
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            () = sender.closed() => return,
        };
        let Some(mut event) = next else {
            let _ = sender.send(Merged::Ended).await;
            return;
        };
        names.body_outward(&mut event);
        if sender
            .send(Merged::Event {
                ns: ns.clone(),
                event,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Where the merged stream stands.
struct Merging {
    receiver: mpsc::Receiver<Merged>,
    /// The last resourceVersion each namespace reported.
    seen: BTreeMap<String, u64>,
    /// The last merged bookmark sent.
    bookmarked: u64,
    /// The highest resourceVersion the client was sent: where it resumes.
    delivered: u64,
    ended: bool,
}

/// The merged stream: events as they come, and a bookmark whenever every
/// namespace has passed a resourceVersion (they share the cluster's
/// revisions, so the smallest of them holds for all). Events of different
/// namespaces arrive out of order, so when the watch ends while some
/// namespace is behind what the client was sent, resuming would skip that
/// namespace's events: the client is told `Expired` and lists again.
fn merge(
    receiver: mpsc::Receiver<Merged>,
    watched: Vec<String>,
    bookmarks: bool,
) -> impl Stream<Item = Value> + Send + 'static {
    let state = Merging {
        receiver,
        seen: watched.into_iter().map(|ns| (ns, 0)).collect(),
        bookmarked: 0,
        delivered: 0,
        ended: false,
    };
    futures::stream::unfold(state, move |mut state| async move {
        if state.ended {
            return None;
        }
        loop {
            match state.receiver.recv().await? {
                Merged::Ended => {
                    if !state.seen.values().any(|rv| *rv < state.delivered) {
                        return None;
                    }
                    state.ended = true;
                    return Some((expired(), state));
                }
                Merged::Joining { ns } => {
                    state.seen.entry(ns).or_insert(0);
                }
                Merged::Event { ns, event } => {
                    let rv = event["object"]["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|rv| rv.parse::<u64>().ok());
                    if let Some(rv) = rv {
                        state.seen.insert(ns, rv);
                    }
                    if event["type"] != "BOOKMARK" {
                        state.delivered = state.delivered.max(rv.unwrap_or(0));
                        return Some((event, state));
                    }
                    let all = state.seen.values().copied().min().unwrap_or(0);
                    if bookmarks && all > state.bookmarked {
                        state.bookmarked = all;
                        state.delivered = state.delivered.max(all);
                        let mut bookmark = event;
                        bookmark["object"]["metadata"]["resourceVersion"] =
                            Value::String(all.to_string());
                        return Some((bookmark, state));
                    }
                }
            }
        }
    })
}

/// The watch event that makes a client list again, as the API server sends it.
fn expired() -> Value {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "reason": "Expired", "code": 410,
        "message": "the all-namespaces watch ended with a namespace behind the others; list again"}})
}

struct NewNamespaces {
    upstream: Arc<Upstream>,
    token: Arc<str>,
    slug: String,
    names: NameMap,
    known: Vec<String>,
    path: (GroupVersion, String, String),
    sender: mpsc::Sender<Merged>,
}

/// Watches the tenant's namespaces as the portal and, for each one made
/// after the merged watch began, joins its watch from the namespace's own
/// resourceVersion, so nothing made in it is missed.
async fn take_in_new_namespaces(mut new: NewNamespaces) {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::runtime::{WatchStreamExt, watcher};
    let api: kube::Api<Namespace> = kube::Api::all(new.upstream.cluster.client.clone());
    let selector = format!("{TENANT_LABEL}={},{MANAGED_BY}={MANAGER}", new.slug);
    let mut namespaces = watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    loop {
        let event = tokio::select! {
            event = namespaces.next() => event,
            () = new.sender.closed() => return,
        };
        let Some(Ok(watcher::Event::Apply(namespace) | watcher::Event::InitApply(namespace))) =
            event
        else {
            if event.is_none() {
                return;
            }
            continue;
        };
        let Some(full) = namespace.metadata.name.clone() else {
            continue;
        };
        let Some(short) = full.strip_prefix(&format!("{}-", new.slug)) else {
            continue;
        };
        if new.known.contains(&full) || namespace.metadata.deletion_timestamp.is_some() {
            continue;
        }
        new.known.push(full.clone());
        if new
            .sender
            .send(Merged::Joining { ns: full.clone() })
            .await
            .is_err()
        {
            return;
        }
        let names = new.names.clone().plus(short, &full);
        let (api, resource, query) = &new.path;
        let from: Vec<(&str, &str)> = namespace
            .metadata
            .resource_version
            .as_deref()
            .map(|rv| ("resourceVersion", rv))
            .into_iter()
            .collect();
        let path = namespace_path(api, resource, &full, query, &names, &from);
        tokio::spawn(join_when_allowed(
            new.upstream.clone(),
            new.token.clone(),
            full,
            path,
            names,
            new.sender.clone(),
        ));
    }
}

/// Opens a new namespace's watch once the role account may (its binding
/// follows the namespace by moments), then pumps it.
async fn join_when_allowed(
    upstream: Arc<Upstream>,
    token: Arc<str>,
    ns: String,
    path: String,
    names: NameMap,
    sender: mpsc::Sender<Merged>,
) {
    let deadline = tokio::time::Instant::now() + NEW_NAMESPACE_PATIENCE;
    loop {
        let answer = upstream
            .http1
            .get(upstream.url(&path))
            .bearer_auth(&*token)
            .header(axum::http::header::ACCEPT, "application/json")
            .send()
            .await;
        match answer {
            Ok(answer) if answer.status().is_success() => {
                pump(ns, events(answer.bytes_stream()).boxed(), names, sender).await;
                return;
            }
            _ if tokio::time::Instant::now() < deadline && !sender.is_closed() => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            _ => {
                tracing::warn!(namespace = %ns, "a namespace made during an all-namespaces watch could not be watched; the watch ends so the client watches again");
                let _ = sender.send(Merged::Ended).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, rv: u64) -> Value {
        json!({"type": kind, "object": {"kind": "ConfigMap", "metadata": {"resourceVersion": rv.to_string()}}})
    }

    #[tokio::test]
    async fn a_merged_bookmark_is_sent_only_once_every_namespace_has_passed_it() {
        let (sender, receiver) = mpsc::channel(16);
        let watched = vec!["acme-dev".to_string(), "acme-prod".to_string()];
        let merged = merge(receiver, watched, true);
        for (ns, kind, rv) in [
            ("acme-dev", "BOOKMARK", 10),
            ("acme-prod", "ADDED", 12),
            ("acme-prod", "BOOKMARK", 15),
            ("acme-dev", "BOOKMARK", 20),
            ("acme-dev", "BOOKMARK", 21),
        ] {
            sender
                .send(Merged::Event {
                    ns: ns.into(),
                    event: event(kind, rv),
                })
                .await
                .unwrap();
        }
        sender.send(Merged::Ended).await.unwrap();
        let seen: Vec<(String, String)> = merged
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["object"]["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect()
            .await;
        let expected = [("ADDED", "12"), ("BOOKMARK", "10"), ("BOOKMARK", "15")];
        assert_eq!(
            seen,
            expected.map(|(k, rv)| (k.to_string(), rv.to_string()))
        );
    }

    #[tokio::test]
    async fn a_watch_ending_with_a_namespace_behind_tells_the_client_to_list_again() {
        let (sender, receiver) = mpsc::channel(16);
        let watched = vec!["acme-dev".to_string(), "acme-prod".to_string()];
        let merged = merge(receiver, watched, true);
        for (ns, rv) in [("acme-dev", 120), ("acme-prod", 118), ("acme-dev", 130)] {
            sender
                .send(Merged::Event {
                    ns: ns.into(),
                    event: event("ADDED", rv),
                })
                .await
                .unwrap();
        }
        sender.send(Merged::Ended).await.unwrap();
        let types: Vec<String> = merged
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
            .await;
        assert_eq!(types, ["ADDED", "ADDED", "ADDED", "ERROR"]);
    }

    #[test]
    fn a_continue_token_round_trips_and_a_forged_one_is_refused() {
        let token = Continue {
            ns: "acme-dev".into(),
            token: Some("upstream".into()),
            rv: "42".into(),
        }
        .encode();
        let back = Continue::decode(&token).unwrap();
        assert_eq!(
            (back.ns.as_str(), back.token.as_deref(), back.rv.as_str()),
            ("acme-dev", Some("upstream"), "42")
        );
        assert_eq!(Continue::decode("not-a-token").unwrap_err().code, 400);
    }
}
