//! `kubectl get pods -A` through the tenant API: one list or watch per
//! tenant namespace, merged into one answer.

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

use super::proxy::Context;
use super::request::{GroupVersion, is_watch};
use super::status::KubeStatus;
use super::wire::{convert_query, events, json_response, watch_response};

impl Context<'_> {
    /// `kubectl get pods -A`: one list (or watch) per tenant namespace,
    /// merged. A list is one snapshot: the namespaces after the first are
    /// read at exactly the first one's resourceVersion.
    pub(super) async fn fan_out(
        &self,
        api: &GroupVersion,
        resource: &str,
        request: Request<Body>,
    ) -> Result<Response, KubeStatus> {
        let (parts, _) = request.into_parts();
        let query = parts.uri.query().unwrap_or("");
        let namespaces: Vec<String> = self
            .caller
            .names
            .cluster_names()
            .map(str::to_string)
            .collect();
        let per_namespace = |ns: &str, extra: &[(&str, &str)]| {
            let query = convert_query(query, &self.caller.names, extra, true);
            format!("{}/namespaces/{ns}/{resource}{query}", api.path)
        };
        if is_watch(parts.uri.query()) {
            let mut streams = Vec::new();
            for ns in &namespaces {
                let upstream = self
                    .send_as_role(
                        Method::GET,
                        &per_namespace(ns, &[]),
                        &parts.headers,
                        Bytes::new(),
                    )
                    .await?;
                if upstream.status() == StatusCode::NOT_FOUND {
                    continue;
                }
                if !upstream.status().is_success() {
                    return self.converted(upstream).await;
                }
                streams.push(events(upstream.bytes_stream()).boxed());
            }
            let names = self.caller.names.clone();
            let merged = futures::stream::select_all(streams)
                // Each namespace's bookmark speaks for that namespace only.
                .filter(|event| futures::future::ready(event["type"] != "BOOKMARK"))
                .map(move |mut event| {
                    names.body_outward(&mut event);
                    event
                });
            return Ok(watch_response(merged));
        }
        let client_pinned =
            form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "resourceVersion");
        let mut merged: Option<Value> = None;
        let mut snapshot: Option<String> = None;
        for ns in &namespaces {
            let exact;
            let extra: Vec<(&str, &str)> = match &snapshot {
                Some(rv) if !client_pinned => {
                    exact = rv.clone();
                    vec![
                        ("resourceVersion", exact.as_str()),
                        ("resourceVersionMatch", "Exact"),
                    ]
                }
                _ => Vec::new(),
            };
            let upstream = self
                .send_as_role(
                    Method::GET,
                    &per_namespace(ns, &extra),
                    &parts.headers,
                    Bytes::new(),
                )
                .await?;
            if upstream.status() == StatusCode::NOT_FOUND {
                continue;
            }
            if !upstream.status().is_success() {
                return self.converted(upstream).await;
            }
            let list: Value = upstream.json().await.map_err(|e| {
                KubeStatus::unavailable(format!(
                    "the tenant's cluster answered a list that is not JSON: {e}"
                ))
            })?;
            if snapshot.is_none() {
                snapshot = list["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string);
            }
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
        }
        let mut merged = merged.unwrap_or_else(|| {
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": []})
        });
        if let Some(metadata) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("continue");
            metadata.remove("remainingItemCount");
        }
        self.caller.names.body_outward(&mut merged);
        Ok(json_response(StatusCode::OK, &merged))
    }
}
