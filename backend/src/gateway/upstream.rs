//! The tenant's cluster as the gateway reaches it: plain HTTPS clients that
//! carry no credentials of the portal's (only the role account's token is
//! sent, so the API server's RBAC decides as it would for that account),
//! short-lived tokens of the role accounts, and which resources are namespaced.
//!
//! Two clients: ordinary requests share HTTP/2 connections (one TLS session
//! carries many requests at once; no connection opened per burst), while
//! watches, `logs -f` and upgraded sessions each get an HTTP/1.1 connection
//! of their own: an upgrade needs HTTP/1.1, and a request that lasts as long
//! as its caller wants must not take one of the API server's streams per
//! connection (250 by default) from the ordinary ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

use crate::cluster::Cluster;

/// How long a role account's token is asked for, and used for half of.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// A resource the cluster did not list is looked up again at most this often.
const DISCOVERY_RETRY: Duration = Duration::from_secs(10);

/// (namespace, account) to its token and when to ask for a new one.
type Tokens = HashMap<(String, &'static str), (Arc<str>, Instant)>;
/// API path (`/api/v1`, `/apis/apps/v1`) to resource to "is namespaced",
/// and when it was read.
type Discovery = HashMap<String, (Instant, HashMap<String, bool>)>;

pub struct Upstream {
    pub cluster: Arc<Cluster>,
    /// Ordinary requests: HTTP/2 when the API server offers it (ALPN).
    pub http: reqwest::Client,
    /// Requests that last (watches, `follow`) and upgrades: HTTP/1.1, a
    /// connection each.
    pub http1: reqwest::Client,
    tokens: Mutex<Tokens>,
    discovery: Mutex<Discovery>,
}

/// Whether the query asks to follow a log (`follow=true`, `follow=1`).
fn is_follow(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "follow" && matches!(v.as_ref(), "true" | "1"))
    })
}

/// Why the cluster could not be asked.
#[derive(Debug)]
pub enum UpstreamError {
    /// The role account is not in the cluster yet (the tenant is new).
    AccountMissing(String),
    Unavailable(String),
}

impl Upstream {
    pub fn new(cluster: Arc<Cluster>) -> Result<Self, String> {
        let build = |http1_only: bool| {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(64)
                .tcp_nodelay(true);
            if http1_only {
                builder = builder.http1_only();
            } else {
                // Large windows: a list of a few MB is not held up by
                // WINDOW_UPDATE round trips.
                builder = builder
                    .http2_initial_stream_window_size(Some(4 << 20))
                    .http2_initial_connection_window_size(Some(16 << 20))
                    .http2_keep_alive_interval(Some(Duration::from_secs(30)))
                    .http2_keep_alive_timeout(Duration::from_secs(10));
            }
            if let Some(pem) = &cluster.ca_pem {
                let ca = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| {
                    format!("the CA of cluster \"{}\" is not usable: {e}", cluster.name)
                })?;
                builder = builder.tls_certs_only([ca]);
            }
            builder.build().map_err(|e| {
                format!(
                    "failed to build the tenant API client for cluster \"{}\": {e}",
                    cluster.name
                )
            })
        };
        let http = build(false)?;
        let http1 = build(true)?;
        Ok(Self {
            cluster,
            http,
            http1,
            tokens: Mutex::default(),
            discovery: Mutex::default(),
        })
    }

    /// The client for a request: [`Self::http1`] for a watch, a followed
    /// log (anything that lasts), [`Self::http`] for the rest.
    pub fn client_for(&self, path_and_query: &str) -> &reqwest::Client {
        let query = path_and_query.split_once('?').map(|(_, q)| q);
        if super::request::is_watch(query) || is_follow(query) {
            &self.http1
        } else {
            &self.http
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.cluster.server_url)
    }

    /// A token of `account` in `namespace`, from the TokenRequest API,
    /// reused for half its lifetime.
    pub async fn token(
        &self,
        namespace: &str,
        account: &'static str,
    ) -> Result<Arc<str>, UpstreamError> {
        let key = (namespace.to_string(), account);
        if let Some((token, refresh_at)) = self.lock_tokens().get(&key)
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let accounts: Api<ServiceAccount> = Api::namespaced(self.cluster.client.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(TOKEN_LIFETIME.as_secs() as i64),
                ..Default::default()
            },
            ..Default::default()
        };
        let issued = accounts
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .map_err(|e| match &e {
                kube::Error::Api(status) if status.code == 404 => UpstreamError::AccountMissing(format!(
                    "the tenant's account {namespace}/{account} is not in the cluster yet; the portal is still setting the tenant up, retry in a moment"
                )),
                _ => UpstreamError::Unavailable(format!(
                    "the cluster \"{}\" refused a token for {namespace}/{account}: {}",
                    self.cluster.name,
                    crate::cluster::describe(&e)
                )),
            })?;
        let token: Arc<str> = issued
            .status
            .map(|s| s.token)
            .ok_or_else(|| {
                UpstreamError::Unavailable(
                    "the cluster answered the TokenRequest without a token".into(),
                )
            })?
            .into();
        self.lock_tokens()
            .insert(key, (token.clone(), Instant::now() + TOKEN_LIFETIME / 2));
        Ok(token)
    }

    /// Whether `resource` under `api` (`/api/v1`, `/apis/apps/v1`) is
    /// namespaced; `None` when the cluster does not serve it.
    pub async fn is_namespaced(
        &self,
        api: &str,
        resource: &str,
    ) -> Result<Option<bool>, UpstreamError> {
        let known = self.lock_discovery().get(api).map(|(read_at, resources)| {
            (
                resources.get(resource).copied(),
                read_at.elapsed() < DISCOVERY_RETRY,
            )
        });
        match known {
            Some((Some(namespaced), _)) => return Ok(Some(namespaced)),
            Some((None, true)) => return Ok(None),
            _ => {}
        }
        let request = axum::http::Request::get(api)
            .body(Vec::new())
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
        let resources = match self
            .cluster
            .client
            .request::<serde_json::Value>(request)
            .await
        {
            Ok(list) => list["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| Some((r["name"].as_str()?.to_string(), r["namespaced"].as_bool()?)))
                .collect(),
            Err(kube::Error::Api(status)) if status.code == 404 => HashMap::new(),
            Err(e) => {
                return Err(UpstreamError::Unavailable(format!(
                    "the cluster \"{}\" did not answer discovery of {api}: {}",
                    self.cluster.name,
                    crate::cluster::describe(&e)
                )));
            }
        };
        let answer = resources.get(resource).copied();
        self.lock_discovery()
            .insert(api.to_string(), (Instant::now(), resources));
        Ok(answer)
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_discovery(&self) -> std::sync::MutexGuard<'_, Discovery> {
        self.discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
