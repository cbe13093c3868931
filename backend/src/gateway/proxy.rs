//! Forwarding to the tenant's cluster: as the caller's role account for
//! everything namespaced, with names converted in paths, queries, bodies and
//! answers; fanned out over the tenant's namespaces for all-namespaces lists
//! and watches; as the portal for discovery and the few cluster-scoped
//! reads a tenant is given.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use super::fair::Admission;
use super::request::{GroupVersion, Target, is_watch};
use super::status::KubeStatus;
use super::upstream::{Upstream, UpstreamError};
use super::{Caller, Gateway, MAX_BODY, namespaces};
use crate::app::AppState;
use crate::cluster::render::account_for;
use crate::service::gateway::Holder;

/// Cluster-scoped kinds a tenant may read: the classes its policy lets it name.
const READABLE: [(&str, &str); 4] = [
    ("storage.k8s.io", "storageclasses"),
    ("networking.k8s.io", "ingressclasses"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("node.k8s.io", "runtimeclasses"),
];

/// Reviews of the caller's own access (`kubectl auth can-i`, `auth whoami`).
const REVIEWS: [(&str, &str); 3] = [
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
];

/// Query parameters a fanned-out list cannot honour across namespaces.
const PER_NAMESPACE_ONLY: [&str; 2] = ["limit", "continue"];

pub struct Context<'a> {
    pub app: &'a AppState,
    pub gateway: &'a Arc<Gateway>,
    pub caller: &'a Caller,
    pub upstream: &'a Arc<Upstream>,
    pub slug: &'a str,
}

impl Context<'_> {
    pub async fn dispatch(
        &self,
        target: Target,
        request: Request<Body>,
    ) -> Result<Response, KubeStatus> {
        match target {
            Target::Discovery => self.discovery(request).await,
            Target::Namespaces => namespaces::collection(self, request).await,
            Target::Namespace { name, subresource } => {
                namespaces::one(self, &name, subresource.as_deref(), request).await
            }
            Target::Namespaced {
                api,
                namespace,
                tail,
            } => {
                let path = self.namespaced_path(&api, &namespace, &tail)?;
                self.forward(&path, request).await
            }
            Target::ClusterLevel { api, tail } => {
                let resource = tail[0].as_str();
                let namespaced = self
                    .upstream
                    .is_namespaced(&api.path, resource)
                    .await
                    .map_err(upstream_failed)?;
                match namespaced {
                    None => Err(KubeStatus::not_found()),
                    Some(true) if tail.len() == 1 && request.method() == Method::GET => {
                        self.fan_out(&api, resource, request).await
                    }
                    Some(true) => Err(KubeStatus::forbidden(format!(
                        "{resource} across all namespaces: the tenant API offers list and watch only; name a namespace (-n) for anything else"
                    ))),
                    Some(false) => self.cluster_scoped(&api, &tail, request).await,
                }
            }
        }
    }

    /// The cluster's path of a namespaced request: the tenant's namespace
    /// by its full name.
    pub fn namespaced_path(
        &self,
        api: &GroupVersion,
        namespace: &str,
        tail: &[String],
    ) -> Result<String, KubeStatus> {
        let full = self
            .caller
            .names
            .to_cluster(namespace)
            .ok_or_else(|| KubeStatus::namespace_not_found(namespace))?;
        Ok(format!("{}/namespaces/{full}/{}", api.path, tail.join("/")))
    }

    /// The role account's token.
    pub async fn role_token(&self) -> Result<Arc<str>, KubeStatus> {
        let home = self.caller.tenant.home.as_deref().ok_or_else(|| {
            KubeStatus::forbidden(format!(
                "the tenant \"{}\" has no namespaces yet; an owner can create one with kubectl create namespace",
                self.slug
            ))
        })?;
        self.upstream
            .token(home, account_for(self.caller.role))
            .await
            .map_err(upstream_failed)
    }

    /// Sends a request as the role account; the answer unconverted.
    async fn send_as_role(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, KubeStatus> {
        let token = self.role_token().await?;
        let mut builder = self
            .upstream
            .http
            .request(method, self.upstream.url(path_and_query))
            .bearer_auth(&*token)
            .header(header::ACCEPT, json_accept(headers))
            .header(header::USER_AGENT, user_agent(headers, self.slug));
        if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        if !body.is_empty() {
            builder = builder.body(body);
        }
        builder.send().await.map_err(|e| {
            KubeStatus::unavailable(format!(
                "the tenant's cluster \"{}\" did not answer: {e}",
                self.upstream.cluster.name
            ))
        })
    }

    /// Sends a GET as the portal (discovery, namespaces, classes).
    pub async fn send_as_portal(
        &self,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<axum::http::Response<kube::client::Body>, KubeStatus> {
        let request = axum::http::Request::get(path_and_query)
            .header(header::ACCEPT, json_accept(headers))
            .body(kube::client::Body::from(Vec::new()))
            .map_err(|e| KubeStatus::bad_request(e.to_string()))?;
        self.upstream
            .cluster
            .client
            .send(request)
            .await
            .map_err(|e| {
                KubeStatus::unavailable(format!(
                    "the tenant's cluster \"{}\" did not answer: {}",
                    self.upstream.cluster.name,
                    crate::cluster::describe(&e)
                ))
            })
    }

    async fn discovery(&self, request: Request<Body>) -> Result<Response, KubeStatus> {
        if request.method() != Method::GET {
            return Err(KubeStatus::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "discovery is read-only",
            ));
        }
        let path = tenant_path(request.uri());
        let answer = self.send_as_portal(&path, request.headers()).await?;
        Ok(raw(answer))
    }

    /// A namespaced request, converted both ways.
    async fn forward(&self, path: &str, request: Request<Body>) -> Result<Response, KubeStatus> {
        let (parts, body) = request.into_parts();
        let watch = is_watch(parts.uri.query());
        let query = parts
            .uri
            .query()
            .map(|q| convert_query(q, &self.caller.names, &[], false))
            .unwrap_or_default();
        let body = read_body(body).await?;
        let body = body_inward(
            &self.caller.names,
            &parts.headers,
            body,
            super::protobuf::METADATA_NAMESPACE,
        )?;
        let upstream = self
            .send_as_role(
                parts.method,
                &format!("{path}{query}"),
                &parts.headers,
                body,
            )
            .await?;
        if watch && upstream.status().is_success() {
            let names = self.caller.names.clone();
            let events = events(upstream.bytes_stream()).map(move |mut event| {
                names.body_outward(&mut event);
                event
            });
            return Ok(watch_response(events));
        }
        self.converted(upstream).await
    }

    /// An answer with the tenant's names: JSON converted whole, anything
    /// else (logs) streamed as it comes.
    pub async fn converted(&self, upstream: reqwest::Response) -> Result<Response, KubeStatus> {
        let status = upstream.status();
        let headers = kept_headers(upstream.headers());
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        if !is_json {
            let mut response = Response::new(Body::from_stream(upstream.bytes_stream()));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            return Ok(response);
        }
        let bytes = upstream.bytes().await.map_err(|e| {
            KubeStatus::unavailable(format!("the tenant's cluster broke off its answer: {e}"))
        })?;
        // One pass over the bytes where it can; the tree only for a Status.
        let body = match self.caller.names.bytes_outward(&bytes) {
            Some(renamed) => Bytes::from(renamed),
            None => match serde_json::from_slice::<Value>(&bytes) {
                Ok(mut value) => {
                    self.caller.names.body_outward(&mut value);
                    Bytes::from(value.to_string())
                }
                Err(_) => bytes,
            },
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }

    /// `kubectl get pods -A`: one list (or watch) per tenant namespace,
    /// merged. A list is one snapshot: the namespaces after the first are
    /// read at exactly the first one's resourceVersion.
    async fn fan_out(
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

    async fn cluster_scoped(
        &self,
        api: &GroupVersion,
        tail: &[String],
        request: Request<Body>,
    ) -> Result<Response, KubeStatus> {
        let resource = tail[0].as_str();
        let group = api.group.as_str();
        if READABLE.contains(&(group, resource)) && request.method() == Method::GET {
            let answer = self
                .send_as_portal(&tenant_path(request.uri()), request.headers())
                .await?;
            return Ok(raw(answer));
        }
        if (group, resource) == ("authentication.k8s.io", "selfsubjectreviews")
            && request.method() == Method::POST
        {
            return Ok(self.who_am_i(&api.path));
        }
        if REVIEWS.contains(&(group, resource)) && request.method() == Method::POST {
            let (parts, body) = request.into_parts();
            let body = read_body(body).await?;
            if let Some(answer) = namespaces::review(self, &body) {
                return Ok(answer);
            }
            let field = if resource == "selfsubjectrulesreviews" {
                super::protobuf::RULES_REVIEW_NAMESPACE
            } else {
                super::protobuf::ACCESS_REVIEW_NAMESPACE
            };
            let body = body_inward(&self.caller.names, &parts.headers, body, field)?;
            let path = format!("{}/{resource}", api.path);
            let upstream = self
                .send_as_role(Method::POST, &path, &parts.headers, body)
                .await?;
            return self.converted(upstream).await;
        }
        let qualified = if group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
        };
        Err(KubeStatus::forbidden(format!(
            "{qualified} is forbidden: the tenant API of \"{}\" does not offer the cluster-scoped resource \"{resource}\"; it offers reads of StorageClasses, IngressClasses, PriorityClasses and RuntimeClasses, and reviews of your own access",
            self.slug
        )))
    }
}

impl Context<'_> {
    /// `kubectl auth whoami`: the caller as the portal knows them (the
    /// API server would name the role account the request is sent as).
    fn who_am_i(&self, api_path: &str) -> Response {
        let (username, groups) = match &self.caller.holder {
            Holder::User { email, groups } => (email.clone(), groups.clone()),
            Holder::Automation => (self.caller.holder.describe(self.slug), Vec::new()),
        };
        let groups: Vec<String> = groups
            .into_iter()
            .chain(["system:authenticated".to_string()])
            .collect();
        let api_version = api_path.trim_start_matches("/apis/");
        json_response(
            StatusCode::CREATED,
            &json!({
                "apiVersion": api_version,
                "kind": "SelfSubjectReview",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": {
                    "username": username,
                    "groups": groups,
                    "extra": {
                        "tenant-portal.dev/tenant": [self.slug],
                        "tenant-portal.dev/role": [self.caller.role.to_string()],
                    },
                }},
            }),
        )
    }
}

pub fn upstream_failed(error: UpstreamError) -> KubeStatus {
    match error {
        UpstreamError::AccountMissing(message) | UpstreamError::Unavailable(message) => {
            KubeStatus::unavailable(message)
        }
    }
}

/// The path and query below `/k8s/tenants/<slug>`.
pub fn tenant_path(uri: &axum::http::Uri) -> String {
    let path = uri.path();
    let below = path
        .strip_prefix("/k8s/tenants/")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    match uri.query() {
        Some(query) => format!("{below}?{query}"),
        None => below.to_string(),
    }
}

/// The query with field selectors in cluster names, `extra` set, and for a
/// fanned-out list, no paging.
pub fn convert_query(
    query: &str,
    names: &super::NameMap,
    extra: &[(&str, &str)],
    fanned_out: bool,
) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if extra.iter().any(|(k, _)| *k == key)
            || (fanned_out && PER_NAMESPACE_ONLY.contains(&key.as_ref()))
        {
            continue;
        }
        if key == "fieldSelector" {
            out.append_pair(&key, &names.field_selector_inward(&value));
        } else {
            out.append_pair(&key, &value);
        }
    }
    for (key, value) in extra {
        out.append_pair(key, value);
    }
    let encoded = out.finish();
    if encoded.is_empty() {
        String::new()
    } else {
        format!("?{encoded}")
    }
}

pub async fn read_body(body: Body) -> Result<Bytes, KubeStatus> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        KubeStatus::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the request body is larger than the tenant API's limit of {MAX_BODY} bytes"),
        )
    })
}

/// A request body with the cluster's names. JSON in every patch flavour,
/// server-side apply's YAML, and in a protobuf object the namespace field
/// at `protobuf_namespace` (an object's metadata, or a review's).
pub fn body_inward(
    names: &super::NameMap,
    headers: &HeaderMap,
    body: Bytes,
    protobuf_namespace: &[u64],
) -> Result<Bytes, KubeStatus> {
    if body.is_empty() {
        return Ok(body);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.contains("protobuf") || super::protobuf::is_protobuf(&body) {
        let rename = |ns: &str| names.to_cluster(ns).map(str::to_string);
        // What cannot be read goes on as it is: the API server says what is wrong.
        return Ok(
            super::protobuf::rename_at(&body, protobuf_namespace, &rename)
                .map_or(body, Bytes::from),
        );
    }
    let parsed = serde_json::from_slice::<Value>(&body).ok().or_else(|| {
        content_type
            .contains("yaml")
            .then(|| {
                std::str::from_utf8(&body)
                    .ok()
                    .and_then(|s| serde_saphyr::from_str::<Value>(s).ok())
            })
            .flatten()
    });
    let Some(mut value) = parsed else {
        // The API server says what is wrong with it.
        return Ok(body);
    };
    names.body_inward(&mut value);
    Ok(Bytes::from(value.to_string()))
}

/// The Accept header without protobuf: answers must be JSON to be converted.
pub fn json_accept(headers: &HeaderMap) -> HeaderValue {
    let asked = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let kept: Vec<&str> = asked
        .split(',')
        .map(str::trim)
        .filter(|range| !range.contains("protobuf"))
        .collect();
    if kept.is_empty() {
        return HeaderValue::from_static("application/json");
    }
    HeaderValue::from_str(&kept.join(",")).unwrap_or(HeaderValue::from_static("application/json"))
}

pub fn user_agent(headers: &HeaderMap, slug: &str) -> String {
    let client = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    format!("{client} via tenant-portal tenant API ({slug})")
}

fn kept_headers(from: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::RETRY_AFTER, header::WARNING] {
        if let Some(value) = from.get(&name) {
            kept.insert(name, value.clone());
        }
    }
    kept
}

/// An answer of the portal's own request, streamed through unchanged.
fn raw(answer: axum::http::Response<kube::client::Body>) -> Response {
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = parts.status;
    *response.headers_mut() = kept_headers(&parts.headers);
    response
}

pub fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// Watch events, one JSON object per line as the API server streams them.
pub fn events<S, E>(bytes: S) -> impl Stream<Item = Value> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
{
    futures::stream::unfold(
        (Box::pin(bytes), Vec::<u8>::new(), false),
        |(mut bytes, mut buffer, mut ended)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    match serde_json::from_slice::<Value>(&line) {
                        Ok(event) => return Some((event, (bytes, buffer, ended))),
                        Err(_) => continue,
                    }
                }
                if ended {
                    let rest = std::mem::take(&mut buffer);
                    let event = serde_json::from_slice::<Value>(&rest).ok()?;
                    return Some((event, (bytes, buffer, ended)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "a watch of the tenant's cluster ended");
                        ended = true;
                    }
                    None => ended = true,
                }
            }
        },
    )
}

/// A watch answer: the events as the API server writes them, one per line.
pub fn watch_response(events: impl Stream<Item = Value> + Send + 'static) -> Response {
    let lines = events.map(|event| {
        let mut line = event.to_string().into_bytes();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let mut response = Response::new(Body::from_stream(lines));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Keeps the tenant's in-flight (or watch) slot until the answer is sent:
/// at once for an answer already in memory, at its end for a stream.
pub fn hold_until_done(response: Response, admission: Admission) -> Response {
    use axum::body::HttpBody;
    if response.body().size_hint().exact().is_some() {
        drop(admission);
        return response;
    }
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _held = &admission;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}
