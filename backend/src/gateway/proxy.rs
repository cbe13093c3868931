//! Forwarding to the tenant's cluster: as the caller's role account for
//! everything namespaced, with names converted in paths, queries, bodies and
//! answers; fanned out over the tenant's namespaces for all-namespaces lists
//! and watches; as the portal for discovery and the cluster-scoped views
//! a tenant is given (`cluster_views`).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;

use super::cluster_views::{self, OFFERED, View};
use super::discovery::{self, Document};
use super::request::{GroupVersion, Target, is_watch};
use super::status::KubeStatus;
use super::upstream::{Upstream, UpstreamError};
use super::wire::{
    body_inward, convert_query, event_line_outward, event_lines, json_accept, json_body,
    kept_headers, raw, read_body, tenant_path, user_agent, watch_lines_response,
};
use super::{Caller, Gateway, namespaces};
use crate::cluster::render::account_for;
use crate::state::AppState;

/// Reviews of the caller's own access (`kubectl auth can-i`, `auth whoami`).
pub(super) const REVIEWS: [(&str, &str); 3] = [
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
];

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
            Target::Namespaced { api, tail, .. } | Target::ClusterLevel { api, tail }
                if !discovery::serves(&api.group, &tail[0], &self.caller.tenant.platform_apis) =>
            {
                Err(discovery::not_found())
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
    pub(super) async fn send_as_role(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, KubeStatus> {
        let token = self.role_token().await?;
        let mut builder = self
            .upstream
            .client_for(path_and_query)
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

    /// Discovery and OpenAPI, narrowed to what the tenant API serves
    /// (`discovery`).
    async fn discovery(&self, request: Request<Body>) -> Result<Response, KubeStatus> {
        if request.method() != Method::GET {
            return Err(KubeStatus::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "discovery is read-only",
            ));
        }
        let path = tenant_path(request.uri());
        let below = path.split('?').next().unwrap_or_default();
        let published = &self.caller.tenant.platform_apis;
        let document = discovery::document(below, published).ok_or_else(discovery::not_found)?;
        let answer = self.send_as_portal(&path, request.headers()).await?;
        if document == Document::AsIs || !answer.status().is_success() {
            return Ok(raw(answer));
        }
        let (parts, body) = answer.into_parts();
        let mut value = json_body(Body::new(body)).await?;
        if document == Document::OpenApiIndex {
            discovery::narrow_openapi_index(&mut value, &self.offered_groups().await?);
        } else if value["kind"] == "APIGroupList" {
            discovery::narrow_group_list(&mut value, &self.offered_groups().await?);
        } else {
            discovery::narrow(&mut value, published);
        }
        let mut response = Response::new(Body::from(value.to_string()));
        *response.status_mut() = parts.status;
        *response.headers_mut() = kept_headers(&parts.headers);
        Ok(response)
    }

    /// The API groups with something the tenant API serves.
    async fn offered_groups(&self) -> Result<BTreeSet<String>, KubeStatus> {
        let answer = self
            .send_as_portal("/apis", &discovery::aggregated_accept())
            .await?;
        let mut value = json_body(Body::new(answer.into_body())).await?;
        discovery::narrow(&mut value, &self.caller.tenant.platform_apis).ok_or_else(|| {
            KubeStatus::unavailable(format!(
                "the tenant's cluster \"{}\" did not answer /apis with its aggregated discovery document",
                self.upstream.cluster.name
            ))
        })
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
            // Line by line, each event renamed as an answer is (`converted`).
            let names = self.caller.names.clone();
            let lines = event_lines(upstream.bytes_stream())
                .filter_map(move |line| std::future::ready(event_line_outward(&names, line)));
            return Ok(watch_lines_response(lines));
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
        // Unread when it cannot name the tenant's namespaces; one pass over
        // the bytes where it can; the tree only for a Status.
        let names = &self.caller.names;
        let body = if !names.may_rename(&bytes) {
            bytes
        } else {
            match names.bytes_outward(&bytes) {
                Some(renamed) => Bytes::from(renamed),
                None => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(mut value) => {
                        names.body_outward(&mut value);
                        Bytes::from(value.to_string())
                    }
                    Err(_) => bytes,
                },
            }
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
    async fn cluster_scoped(
        &self,
        api: &GroupVersion,
        tail: &[String],
        request: Request<Body>,
    ) -> Result<Response, KubeStatus> {
        let resource = tail[0].as_str();
        let group = api.group.as_str();
        let (policy, _) =
            crate::service::policy::in_force(&self.caller.tenant.view, &self.app.config.guardrails);
        if let Some(view) = View::of(group, resource, &policy, &self.caller.names) {
            return cluster_views::read(self, view, api, tail, request).await;
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
        let qualified = api.qualified(resource);
        Err(KubeStatus::forbidden(format!(
            "{qualified} is forbidden: the tenant API of \"{}\" does not offer the cluster-scoped resource \"{resource}\"; it offers reads of the {OFFERED}, and reviews of your own access",
            self.slug
        )))
    }
}

pub fn upstream_failed(error: UpstreamError) -> KubeStatus {
    match error {
        UpstreamError::AccountMissing(message) | UpstreamError::Unavailable(message) => {
            KubeStatus::unavailable(message)
        }
    }
}
