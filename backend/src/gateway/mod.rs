//! The tenant's own Kubernetes API at `/k8s/tenants/<slug>`: kubectl sees
//! one tenant, its namespaces without the prefix, and nothing else.
//!
//! A request is authenticated (a tenant-API token or an ID token of the
//! identity provider), matched to the holder's role in the tenant now,
//! admitted by the tenant's fair share, then either answered by the portal
//! (namespaces, which go through the same service calls as the API and the
//! dashboard) or forwarded to the tenant's cluster as the tenant's account
//! of that role, with names converted both ways. The API server's RBAC and
//! admission decide everything forwarded; the gateway never holds more
//! than the role account does.

mod cluster_views;
mod discovery;
mod fair;
mod fan_out;
mod names;
mod namespaces;
mod protobuf;
mod proxy;
mod request;
mod status;
mod stream;
mod upstream;
mod whoami;
mod wire;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use sha2::{Digest, Sha256};

pub use fair::Limits;
use fair::Slot;
pub use names::NameMap;
use status::KubeStatus;
use upstream::Upstream;

use crate::auth::tokens::TokenSecret;
use crate::cluster::render::account_for;
use crate::domain::{Role, TenantState};
use crate::events::Notice;
use crate::service::gateway::{Credential, Holder};
use crate::service::views::TenantView;
use crate::state::AppState;

/// How long a tenant's members and namespaces, and a token's holder, are
/// reused without asking PostgreSQL again. Changes to a tenant end its
/// entry at once through the change stream, and revoking a tenant's tokens
/// ends every token of it cached here (migration 0027).
const TENANT_TTL: Duration = Duration::from_secs(5);
const CREDENTIAL_TTL: Duration = Duration::from_secs(30);
/// Past this many cached tokens, the stale ones are dropped.
const MAX_CACHED_CREDENTIALS: usize = 10_000;

/// The gateway's shared state: clients per cluster, caches, fair shares.
pub struct Gateway {
    defaults: Limits,
    upstreams: Mutex<HashMap<String, Arc<Upstream>>>,
    tenants: Mutex<HashMap<String, (Instant, Arc<TenantEntry>)>>,
    credentials: Mutex<HashMap<[u8; 32], (Instant, Credential)>>,
    shares: fair::Shares,
}

/// What the gateway knows of one tenant.
pub struct TenantEntry {
    pub view: TenantView,
    pub names: NameMap,
    /// The cluster name of the namespace holding the role accounts.
    pub home: Option<String>,
    /// The platform APIs the tenant may use.
    pub platform_apis: BTreeSet<crate::domain::PlatformApi>,
}

/// The caller of one request, resolved.
pub struct Caller {
    pub holder: Holder,
    pub role: Role,
    pub tenant: Arc<TenantEntry>,
    /// The tenant's names, and the role account's name as the caller's.
    pub names: NameMap,
}

impl Gateway {
    pub fn new(defaults: Limits, events: &crate::events::EventHub) -> Arc<Self> {
        let gateway = Arc::new(Self {
            defaults,
            upstreams: Mutex::default(),
            tenants: Mutex::default(),
            credentials: Mutex::default(),
            shares: fair::Shares::default(),
        });
        let mut notices = events.subscribe();
        let weak = Arc::downgrade(&gateway);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let notice = notices.recv().await;
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                match notice {
                    Ok(Notice::Event { tenant, .. }) => {
                        gateway.lock_tenants().remove(&tenant);
                    }
                    Ok(Notice::TokensRevoked { tenant }) => gateway
                        .lock_credentials()
                        .retain(|_, (_, credential)| credential.slug != tenant),
                    Err(RecvError::Lagged(_)) => {
                        gateway.lock_tenants().clear();
                        gateway.lock_credentials().clear();
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        gateway
    }

    fn upstream(&self, app: &AppState, cluster: &str) -> Result<Arc<Upstream>, KubeStatus> {
        let mut upstreams = self
            .upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = upstreams.get(cluster) {
            return Ok(found.clone());
        }
        let connected = app.clusters.get(cluster).ok_or_else(|| {
            KubeStatus::unavailable(format!(
                "the tenant's cluster \"{cluster}\" is not connected to this portal"
            ))
        })?;
        let upstream = Arc::new(Upstream::new(connected.clone()).map_err(KubeStatus::unavailable)?);
        upstreams.insert(cluster.to_string(), upstream.clone());
        Ok(upstream)
    }

    async fn tenant(
        &self,
        app: &AppState,
        slug: &str,
    ) -> Result<Option<Arc<TenantEntry>>, KubeStatus> {
        if let Some((at, entry)) = self.lock_tenants().get(slug)
            && at.elapsed() < TENANT_TTL
        {
            return Ok(Some(entry.clone()));
        }
        let Some((view, platform_apis)) =
            crate::service::gateway::tenant(&app.db, &app.config.guardrails, slug).await?
        else {
            return Ok(None);
        };
        let names = NameMap::new(
            view.namespaces
                .iter()
                .map(|n| (n.name.clone(), n.full_name.clone())),
        );
        let home = view.namespaces.iter().map(|n| n.full_name.clone()).min();
        let entry = Arc::new(TenantEntry {
            view,
            names,
            home,
            platform_apis,
        });
        self.lock_tenants()
            .insert(slug.to_string(), (Instant::now(), entry.clone()));
        Ok(Some(entry))
    }

    /// Forgets a tenant at once, after this replica changed it.
    fn forget(&self, slug: &str) {
        self.lock_tenants().remove(slug);
    }

    async fn holder(
        &self,
        app: &AppState,
        slug: &str,
        headers: &HeaderMap,
    ) -> Result<Holder, KubeStatus> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| {
                KubeStatus::unauthorized(
                    "the tenant API needs Authorization: Bearer <token>: download a kubeconfig (view=tenant) from the portal",
                )
            })?;
        if let Some(secret) = TokenSecret::parse_gateway(presented) {
            let key: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            let cached = self
                .lock_credentials()
                .get(&key)
                .filter(|(at, _)| at.elapsed() < CREDENTIAL_TTL)
                .map(|(_, credential)| credential.clone());
            let credential = match cached {
                Some(credential) => credential,
                None => {
                    let credential =
                        crate::service::gateway::authenticate(&app.db, &secret).await?;
                    let mut credentials = self.lock_credentials();
                    // Tokens come and go; stale entries go before the map grows.
                    if credentials.len() >= MAX_CACHED_CREDENTIALS {
                        credentials.retain(|_, (at, _)| at.elapsed() < CREDENTIAL_TTL);
                    }
                    credentials.insert(key, (Instant::now(), credential.clone()));
                    credential
                }
            };
            if credential.expires_at <= chrono::Utc::now() {
                return Err(KubeStatus::unauthorized(
                    "the tenant API token expired; download a new kubeconfig from the portal",
                ));
            }
            if credential.slug != slug {
                return Err(KubeStatus::unauthorized(format!(
                    "this token is for the tenant API of another tenant, not \"{slug}\""
                )));
            }
            return Ok(credential.holder);
        }
        if presented.split('.').count() == 3
            && let Some(login) = &app.login
        {
            let user = login.id_token_user(presented).await?;
            return Ok(Holder::User {
                email: user.email,
                groups: user.groups,
            });
        }
        Err(KubeStatus::unauthorized(
            "the bearer token is neither a tenant API token of this portal nor an ID token of its identity provider",
        ))
    }

    async fn caller(
        &self,
        app: &AppState,
        slug: &str,
        headers: &HeaderMap,
    ) -> Result<Caller, KubeStatus> {
        let holder = self.holder(app, slug, headers).await?;
        let who = holder.describe(slug);
        let tenant = self
            .tenant(app, slug)
            .await?
            .filter(|t| t.view.state != TenantState::Deleted)
            .ok_or_else(|| {
                KubeStatus::forbidden(format!("{who} has no access to a tenant \"{slug}\""))
            })?;
        let role = holder
            .role(&app.config.login.admin_groups, &tenant.view)
            .ok_or_else(|| {
                KubeStatus::forbidden(format!(
                    "{who} is no longer a member of the tenant \"{slug}\"; ask one of its owners"
                ))
            })?;
        let mut names = tenant.names.clone();
        if let Some(home) = &tenant.home {
            let account = account_for(role);
            names = names.with_identity(format!("system:serviceaccount:{home}:{account}"), who);
        }
        Ok(Caller {
            holder,
            role,
            tenant,
            names,
        })
    }

    fn lock_tenants(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<TenantEntry>)>> {
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_credentials(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Instant, Credential)>> {
        self.credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The routes of the tenant API; mounted without the portal's request
/// timeout (watches stay open) and with the API server's body limit.
pub fn router(app: &AppState) -> Router<AppState> {
    // The tenant API's clients per cluster, caches and fair shares, with it.
    let gateway = Gateway::new(Limits::from(&app.config.tenant_api), &app.events);
    Router::new()
        .route("/k8s/tenants/{slug}", any(serve))
        .route("/k8s/tenants/{slug}/{*rest}", any(serve))
        .layer(axum::Extension(gateway))
}

/// The largest request body the gateway reads, as the API server's limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

async fn serve(
    State(app): State<AppState>,
    axum::Extension(gateway): axum::Extension<Arc<Gateway>>,
    request: Request<Body>,
) -> Response {
    let started = Instant::now();
    let path = request.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/k8s/tenants/") else {
        return KubeStatus::not_found().into_response();
    };
    let (slug, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let slug = slug.to_string();
    let rest = format!("/{rest}");
    let verb = request::verb(request.method(), &rest, request.uri().query());
    let response = match handle(&app, &gateway, &slug, &rest, request).await {
        Ok(response) => response,
        Err(status) => status.into_response(),
    };
    crate::metrics::global().tenant_api(&slug, verb, response.status().as_u16(), started.elapsed());
    response
}

async fn handle(
    app: &AppState,
    gateway: &Arc<Gateway>,
    slug: &str,
    rest: &str,
    request: Request<Body>,
) -> Result<Response, KubeStatus> {
    if let Some(name) = request
        .headers()
        .keys()
        .find(|name| name.as_str().starts_with("impersonate-"))
    {
        return Err(KubeStatus::forbidden(format!(
            "the tenant API does not offer impersonation ({name}); every request acts as its caller"
        )));
    }
    let caller = gateway.caller(app, slug, request.headers()).await?;
    let target = request::classify(rest)?;
    let stream = stream_of(&target);
    let slot = if stream.is_some() && stream::is_upgrade(request.headers()) {
        Slot::Session
    } else if request::is_watch(request.uri().query()) {
        Slot::Watch
    } else {
        Slot::Request
    };
    let limits = caller
        .tenant
        .view
        .policy
        .as_ref()
        .and_then(|p| p.tenant_api)
        .map_or(gateway.defaults, |share| {
            Limits::of(share, gateway.defaults)
        });
    let share = gateway.shares.of(slug, limits);
    let admission = share.admit(limits, slot).map_err(|throttled| {
        crate::metrics::global().tenant_api_throttled(slug, throttled.reason());
        KubeStatus {
            retry_after: Some(throttled.retry_after()),
            ..KubeStatus::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                throttled.message(slug),
            )
        }
    })?;
    let cluster = caller.tenant.view.cluster.clone();
    let upstream = gateway.upstream(app, &cluster)?;
    let context = proxy::Context {
        app,
        gateway,
        caller: &caller,
        upstream: &upstream,
        slug,
    };
    if let (
        Some(kind),
        request::Target::Namespaced {
            api,
            namespace,
            tail,
        },
    ) = (stream, &target)
    {
        let path = context.namespaced_path(api, namespace, tail)?;
        return stream::open(&context, kind, namespace, &path, request, admission).await;
    }
    let response = context.dispatch(target, request).await?;
    Ok(wire::hold_until_done(response, admission))
}

/// `pods/<name>/exec|attach|portforward` of the core group.
fn stream_of(target: &request::Target) -> Option<stream::Kind> {
    match target {
        request::Target::Namespaced { api, tail, .. } if api.group.is_empty() => {
            match tail.as_slice() {
                [resource, _, sub] if resource == "pods" => stream::Kind::of(sub),
                _ => None,
            }
        }
        _ => None,
    }
}
