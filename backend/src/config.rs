//! All configuration, from flags and environment, checked once at start.
//! `tenant-portal serve --help` is the reference for every setting.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub use crate::domain::parse_duration;
use crate::domain::tenant_policy::{Cidr, PodSecurityLevel, ServiceType, TenantPolicy};
use crate::domain::{Currency, ResourceList};

/// A value that must never be printed: its `Debug` and `Display` hide it.
#[derive(Clone)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `requests.cpu=2,requests.memory=4Gi,pods=20`: a budget, checked as one.
pub fn parse_budget(s: &str) -> Result<ResourceList, String> {
    let mut raw = std::collections::BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("\"{pair}\" is not RESOURCE=AMOUNT"))?;
        if raw
            .insert(key.trim().to_string(), value.trim().to_string())
            .is_some()
        {
            return Err(format!("names {} twice", key.trim()));
        }
    }
    ResourceList::parse(&raw, "budget").map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.rule))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn parse_database_url(s: &str) -> Result<Secret<String>, String> {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(Secret::new(s.to_string()))
    } else {
        Err(
            "must be a PostgreSQL URL such as postgres://user:password@host:5432/tenant_portal"
                .into(),
        )
    }
}

/// A cluster tenants can be placed on: `NAME`, `NAME=KUBECONFIG` or
/// `NAME=KUBECONFIG#CONTEXT`. Without a kubeconfig the environment's is used
/// (`KUBECONFIG`, `~/.kube/config` or the in-cluster account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub name: String,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

impl ClusterSpec {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            kubeconfig: None,
            context: None,
        }
    }
}

fn parse_cluster(s: &str) -> Result<ClusterSpec, String> {
    let (name, source) = match s.split_once('=') {
        Some((name, source)) => (name, Some(source)),
        None => (s, None),
    };
    if !crate::domain::is_dns_label(name) {
        return Err(format!(
            "cluster name \"{name}\" must be a DNS-1123 label (lowercase letters, digits, '-'); write NAME, NAME=KUBECONFIG or NAME=KUBECONFIG#CONTEXT"
        ));
    }
    let (kubeconfig, context) = match source
        .map(|s| s.split_once('#').map_or((s, None), |(p, c)| (p, Some(c))))
    {
        Some(("", _)) => return Err(format!("cluster \"{name}\" names an empty kubeconfig path")),
        Some((path, context)) => (Some(PathBuf::from(path)), context.map(str::to_string)),
        None => (None, None),
    };
    Ok(ClusterSpec {
        name: name.to_string(),
        kubeconfig,
        context,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL.
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true, value_parser = parse_database_url)]
    pub url: Secret<String>,

    /// Largest number of pooled database connections.
    #[arg(long = "database-max-connections", env = "TP_DATABASE_MAX_CONNECTIONS", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_connections: u32,
}

/// A machine client allowed to call the API with a client-credentials token
/// of the identity provider: `CLIENT_ID=SCOPE[+SCOPE...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineClient {
    pub client_id: String,
    pub scopes: Vec<crate::auth::Scope>,
    /// Reaches every tenant (`+all-tenants`), not only those it created.
    pub all_tenants: bool,
}

/// The marker that lets a machine client reach every tenant, among its scopes.
pub const ALL_TENANTS: &str = "all-tenants";

fn parse_machine_client(s: &str) -> Result<MachineClient, String> {
    let (client_id, scopes) = s
        .split_once('=')
        .ok_or_else(|| format!("\"{s}\" must be CLIENT_ID=SCOPE[+SCOPE...], e.g. ci-platform=tenants:read+tenants:write"))?;
    if client_id.is_empty() {
        return Err("the client id before '=' is empty".into());
    }
    let all_tenants = scopes.split('+').any(|s| s == ALL_TENANTS);
    let scopes = scopes
        .split('+')
        .filter(|s| *s != ALL_TENANTS)
        .map(str::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if scopes.is_empty() {
        return Err(format!("\"{s}\" names no scope"));
    }
    Ok(MachineClient {
        client_id: client_id.to_string(),
        scopes,
        all_tenants,
    })
}

fn parse_public_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['?', '#']) => {
            Ok(s.trim_end_matches('/').to_string())
        }
        _ => Err(
            "must be an http(s) URL such as https://tenants.example.com, without query or fragment"
                .into(),
        ),
    }
}

/// Employee login through an OpenID Connect identity provider. Without an
/// issuer, login is off and only tokens reach the API.
#[derive(Debug, Clone, Args)]
pub struct LoginConfig {
    /// The portal's address as browsers reach it; register
    /// <public-url>/auth/callback as the redirect URI at the identity provider.
    #[arg(long, env = "TP_PUBLIC_URL", default_value = "http://127.0.0.1:8080", value_parser = parse_public_url)]
    pub public_url: String,

    /// The identity provider's issuer URL (discovery at <issuer>/.well-known/openid-configuration).
    #[arg(long, env = "TP_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// The portal's client id at the identity provider.
    #[arg(long, env = "TP_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// A public client at the identity provider for `kubectl oidc-login`:
    /// tenant-view kubeconfigs that sign in with the identity provider use
    /// it, and the tenant API accepts ID tokens for it as for the portal's.
    #[arg(long, env = "TP_OIDC_KUBECTL_CLIENT_ID")]
    pub oidc_kubectl_client_id: Option<String>,

    /// The portal's client secret at the identity provider.
    #[arg(long, env = "TP_OIDC_CLIENT_SECRET", hide_env_values = true, value_parser = |s: &str| Ok::<_, String>(Secret::new(s.to_string())))]
    pub oidc_client_secret: Option<Secret<String>>,

    /// Scopes asked for at login, space-separated.
    #[arg(
        long,
        env = "TP_OIDC_SCOPES",
        value_delimiter = ' ',
        default_value = "openid email profile groups"
    )]
    pub oidc_scopes: Vec<String>,

    /// The ID token claim listing the user's groups.
    #[arg(long, env = "TP_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,

    /// IdP groups whose members are platform admins, comma-separated.
    #[arg(
        long,
        env = "TP_ADMIN_GROUPS",
        value_delimiter = ',',
        default_value = "platform-admins"
    )]
    pub admin_groups: Vec<String>,

    /// Machine clients allowed with client-credentials tokens, as
    /// CLIENT_ID=SCOPE[+SCOPE...][+all-tenants], comma-separated. A client
    /// reaches only the tenants it created, unless `+all-tenants` is given.
    #[arg(long = "machine-client", env = "TP_MACHINE_CLIENTS", value_delimiter = ',', value_parser = parse_machine_client)]
    pub machine_clients: Vec<MachineClient>,

    /// A session unused for this long ends.
    #[arg(long, env = "TP_SESSION_IDLE_TIMEOUT", default_value = "2h", value_parser = parse_duration)]
    pub session_idle_timeout: Duration,

    /// A session ends this long after sign-in, used or not.
    #[arg(long, env = "TP_SESSION_LIFETIME", default_value = "12h", value_parser = parse_duration)]
    pub session_lifetime: Duration,

    /// Accept the email of an ID token that does not say `email_verified:
    /// true`. Memberships name people by email, so leave this off unless the
    /// identity provider verifies every address and omits the claim.
    #[arg(long, env = "TP_OIDC_TRUST_UNVERIFIED_EMAIL", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub oidc_trust_unverified_email: bool,

    /// The audience a machine client's access token must name: the portal's
    /// identity at the identity provider. Defaults to --oidc-client-id.
    #[arg(long, env = "TP_MACHINE_AUDIENCE")]
    pub machine_audience: Option<String>,

    /// Change streams (GET /api/v1/events) one principal may hold open at once;
    /// more are answered 429.
    #[arg(long, env = "TP_MAX_EVENT_STREAMS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_event_streams: u32,
}

impl LoginConfig {
    /// `scheme://host[:port]` of the public URL, as browsers send it in `Origin`.
    pub fn public_origin(&self) -> &str {
        let after_scheme = self.public_url.find("://").map_or(0, |i| i + 3);
        match self.public_url[after_scheme..].find('/') {
            Some(path) => &self.public_url[..after_scheme + path],
            None => &self.public_url,
        }
    }

    /// Cookies may go without `Secure` only on plain http to this machine.
    pub fn cookies_secure(&self) -> bool {
        let origin = self.public_origin();
        !(origin.starts_with("http://127.")
            || origin.starts_with("http://localhost")
            || origin.starts_with("http://[::1]"))
    }

    pub fn redirect_uri(&self) -> String {
        format!("{}/auth/callback", self.public_url)
    }

    pub fn enabled(&self) -> bool {
        self.oidc_issuer.is_some()
    }

    /// The audience machine-client tokens must carry.
    pub fn machine_audience(&self) -> Option<&str> {
        self.machine_audience
            .as_deref()
            .or(self.oidc_client_id.as_deref())
    }
}

fn parse_default_pod_security(s: &str) -> Result<PodSecurityLevel, String> {
    match s.parse()? {
        PodSecurityLevel::Privileged => Err(
            "the default must be baseline or restricted; only a platform admin may make one tenant privileged"
                .into(),
        ),
        level => Ok(level),
    }
}

/// What tenants may do in their namespaces unless an admin sets a tenant's
/// policy, and the cluster-wide rules every tenant gets.
#[derive(Debug, Clone, Args)]
pub struct GuardrailConfig {
    /// Pod Security level of tenant namespaces without a policy of their own:
    /// baseline or restricted.
    #[arg(long = "pod-security", env = "TP_POD_SECURITY", default_value = "baseline",
          value_parser = parse_default_pod_security)]
    pub pod_security: PodSecurityLevel,

    /// Service types tenants may create besides ClusterIP (NodePort,
    /// LoadBalancer, ExternalName), comma-separated; none by default.
    #[arg(long = "allowed-service-types", env = "TP_ALLOWED_SERVICE_TYPES", value_delimiter = ',',
          value_parser = |s: &str| s.parse::<ServiceType>())]
    pub service_types: Vec<ServiceType>,

    /// Longest token a tenant may request for its ServiceAccounts; at most
    /// --kubeconfig-ttl is used.
    #[arg(long = "tenant-token-max-ttl", env = "TP_TENANT_TOKEN_MAX_TTL", default_value = "1h",
          value_parser = parse_duration)]
    pub token_max_ttl: Duration,

    /// Namespaces whose pods may connect to every tenant's (an ingress
    /// controller's, monitoring), comma-separated.
    #[arg(
        long = "network-ingress-from",
        env = "TP_NETWORK_INGRESS_FROM",
        value_delimiter = ','
    )]
    pub ingress_from_namespaces: Vec<String>,

    /// Networks tenant pods may not reach (the nodes', the database's),
    /// comma-separated CIDRs; the cloud metadata address is always denied.
    #[arg(long = "egress-deny", env = "TP_EGRESS_DENY", value_delimiter = ',',
          value_parser = |s: &str| s.parse::<Cidr>())]
    pub egress_deny: Vec<Cidr>,
}

impl GuardrailConfig {
    /// The policy of a tenant no admin has set one for.
    pub fn default_policy(&self) -> TenantPolicy {
        TenantPolicy::defaults(self.pod_security, &self.service_types)
    }
}

impl Default for GuardrailConfig {
    fn default() -> Self {
        Self {
            pod_security: PodSecurityLevel::Baseline,
            service_types: Vec::new(),
            token_max_ttl: Duration::from_secs(3600),
            ingress_from_namespaces: Vec::new(),
            egress_deny: Vec::new(),
        }
    }
}

/// Each tenant's fair share of the tenant API (`/k8s/tenants/<slug>`).
#[derive(Debug, Clone, Args)]
pub struct TenantApiConfig {
    /// Requests per second each tenant may send to its tenant API, sustained.
    #[arg(long = "tenant-api-rate", env = "TP_TENANT_API_RATE", default_value_t = 50.0,
          value_parser = parse_rate)]
    pub rate: f64,

    /// Requests a tenant may send at once above its rate.
    #[arg(long = "tenant-api-burst", env = "TP_TENANT_API_BURST", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: u32,

    /// Requests of one tenant the tenant API handles at the same time.
    #[arg(long = "tenant-api-max-in-flight", env = "TP_TENANT_API_MAX_IN_FLIGHT", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// Watches one tenant may keep open at the tenant API.
    #[arg(long = "tenant-api-max-watches", env = "TP_TENANT_API_MAX_WATCHES", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_watches: u32,

    /// exec, attach and port-forward sessions one tenant may keep open at
    /// the tenant API.
    #[arg(long = "tenant-api-max-sessions", env = "TP_TENANT_API_MAX_SESSIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: u32,
}

/// Where the portal keeps tenants' GitOps credentials (Argo CD cluster
/// Secrets, Flux kubeconfig Secrets) when their owners ask for them.
#[derive(Debug, Clone, Args)]
pub struct GitopsConfig {
    /// The cluster (one of --cluster) that runs Argo CD or Flux, where the
    /// Secrets are kept. Unset: the portal keeps no GitOps credentials.
    #[arg(long = "gitops-cluster", env = "TP_GITOPS_CLUSTER")]
    pub cluster: Option<String>,

    /// The namespace on --gitops-cluster the Secrets are kept in (Argo CD's
    /// own, such as argocd, or where Flux's Kustomizations live). It must
    /// exist, and the portal needs to create, read, replace and delete
    /// Secrets there.
    #[arg(
        long = "gitops-namespace",
        env = "TP_GITOPS_NAMESPACE",
        default_value = "tenant-portal-gitops"
    )]
    pub namespace: String,

    /// Lifetime of the token in each Secret (at least 10m); the portal
    /// writes a new one when a third of it is left.
    #[arg(long = "gitops-token-ttl", env = "TP_GITOPS_TOKEN_TTL", default_value = "1h", value_parser = parse_duration)]
    pub token_ttl: Duration,
}

impl Default for GitopsConfig {
    fn default() -> Self {
        Self {
            cluster: None,
            namespace: "tenant-portal-gitops".into(),
            token_ttl: Duration::from_secs(3600),
        }
    }
}

/// HTTPS served by the portal itself.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsConfig {
    /// Certificate chain (PEM) to serve HTTPS with, beside --tls-key; read
    /// again whenever the file changes (as cert-manager renews it). Without
    /// both the portal serves plain HTTP, for an ingress that terminates TLS.
    #[arg(long, env = "TP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "TP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA certificate (PEM) that signed the certificate clients see at
    /// --public-url, whether the portal or an ingress serves it; tenant-API
    /// kubeconfigs carry it as certificate-authority-data. Leave unset for a
    /// certificate from a CA that clients already trust.
    #[arg(long, env = "TP_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// The files to serve HTTPS with, when both are given.
    pub fn key_pair(&self) -> Option<crate::tls::KeyPair> {
        Some(crate::tls::KeyPair {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        })
    }

    /// The kubeconfig's certificate-authority-data, when a CA is named.
    pub fn ca_data(&self) -> anyhow::Result<Option<String>> {
        self.tls_ca.as_deref().map(crate::tls::ca_data).transpose()
    }
}

impl Default for TenantApiConfig {
    fn default() -> Self {
        Self {
            rate: 50.0,
            burst: 100,
            max_in_flight: 20,
            max_watches: 20,
            max_sessions: 10,
        }
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "\"{s}\" is not a rate; write requests per second above 0, such as 50 or 0.5"
        )),
    }
}

/// Settings of `tenant-portal serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub login: LoginConfig,

    #[command(flatten)]
    pub guardrails: GuardrailConfig,

    #[command(flatten)]
    pub tenant_api: TenantApiConfig,

    #[command(flatten)]
    pub tls: TlsConfig,

    #[command(flatten)]
    pub gitops: GitopsConfig,

    /// Address and port the HTTP server listens on.
    #[arg(long, env = "TP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Log format.
    #[arg(long, env = "TP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Clusters tenants may be placed on, as NAME[=KUBECONFIG[#CONTEXT]],
    /// comma-separated or repeated. New tenants go to the one named in the
    /// request, else to the one with the fewest tenants.
    #[arg(long = "cluster", env = "TP_CLUSTERS", value_delimiter = ',', default_value = "local",
          value_parser = parse_cluster)]
    pub clusters: Vec<ClusterSpec>,

    /// Run the reconciler that pushes changes into the clusters.
    #[arg(long, env = "TP_RECONCILER", default_value_t = true, action = clap::ArgAction::Set)]
    pub reconciler: bool,

    /// Reconcile workers per cluster.
    #[arg(long, env = "TP_RECONCILE_WORKERS", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub reconcile_workers: u16,

    /// How often every tenant is checked against its cluster, even without changes.
    #[arg(long, env = "TP_RESYNC_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub resync_interval: Duration,

    /// How often quota usage is added to the usage history.
    #[arg(long, env = "TP_USAGE_SAMPLE_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub usage_sample_interval: Duration,

    /// How long usage history is kept; showback reports only what is kept,
    /// and a report covers at most 366 days.
    #[arg(long, env = "TP_USAGE_RETENTION", default_value = "400d", value_parser = parse_duration)]
    pub usage_retention: Duration,

    /// The currency of every price and cost, as an ISO 4217 code (EUR, USD,
    /// JPY…). Prices are set and reports computed in it; the API states it
    /// beside every amount and keeps amounts exact (six decimals), while
    /// pages and CSV totals round costs to its minor unit (two decimals for
    /// EUR and USD, none for JPY). Changing it relabels the prices already
    /// set; it does not convert them.
    #[arg(long, env = "TP_CURRENCY", default_value = "USD", value_parser = Currency::parse)]
    pub currency: Currency,

    /// Lifetime of the token in a downloaded kubeconfig (at least 10m).
    #[arg(long, env = "TP_KUBECONFIG_TTL", default_value = "1h", value_parser = parse_duration)]
    pub kubeconfig_ttl: Duration,

    /// How many namespaces a tenant may have when its budget does not say.
    #[arg(long, env = "TP_DEFAULT_NAMESPACE_LIMIT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub default_namespace_limit: u32,

    /// The budget a tenant gets when its creator may not change budgets
    /// (employees who are not platform admins, tokens without quota:write),
    /// as RESOURCE=AMOUNT pairs, comma-separated. They may ask for less, never
    /// for more; more comes with a quota request. The namespace count, unless
    /// named here, is --default-namespace-limit.
    #[arg(long, env = "TP_DEFAULT_BUDGET",
          default_value = "requests.cpu=2,requests.memory=4Gi,pods=20",
          value_parser = parse_budget)]
    pub default_budget: ResourceList,

    /// How many tenants (not yet deleted) one creator without the right to
    /// change budgets may have made; platform admins and tokens with
    /// quota:write are exempt.
    #[arg(long, env = "TP_MAX_TENANTS_PER_OWNER", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_tenants_per_owner: u32,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "TP_MAX_BODY_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    pub max_body_bytes: u64,

    /// Longest time one request may take before it is answered with 503.
    #[arg(long, env = "TP_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long change-stream events are kept for clients that reconnect.
    #[arg(long, env = "TP_EVENT_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub event_retention: Duration,

    /// How long an Idempotency-Key's first answer is kept for replay.
    #[arg(long, env = "TP_IDEMPOTENCY_TTL", default_value = "24h", value_parser = parse_duration)]
    pub idempotency_ttl: Duration,
}

impl ServeConfig {
    /// Rules that span flags or that clap cannot say; each names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.kubeconfig_ttl < Duration::from_secs(600) {
            return Err(
                "--kubeconfig-ttl must be at least 10m: the API server issues no shorter tokens"
                    .into(),
            );
        }
        if self.guardrails.token_max_ttl < Duration::from_secs(600) {
            return Err(
                "--tenant-token-max-ttl must be at least 10m: the API server issues no shorter tokens"
                    .into(),
            );
        }
        for (flag, interval) in [
            ("--resync-interval", self.resync_interval),
            ("--usage-sample-interval", self.usage_sample_interval),
        ] {
            if interval < Duration::from_secs(1) {
                return Err(format!("{flag} must be at least 1s"));
            }
        }
        let login = &self.login;
        if login.oidc_issuer.is_some()
            && (login.oidc_client_id.is_none() || login.oidc_client_secret.is_none())
        {
            return Err("--oidc-issuer needs --oidc-client-id and --oidc-client-secret".into());
        }
        if login.public_url.starts_with("http://") && login.cookies_secure() && login.enabled() {
            return Err(format!(
                "--public-url {} is plain http on another host: session cookies would travel unencrypted; use https",
                login.public_url
            ));
        }
        if self.tls.key_pair().is_some() && login.public_url.starts_with("http://") {
            return Err(format!(
                "--tls-cert makes the portal serve HTTPS, but --public-url {} is plain http: kubeconfigs and sign-in redirects would point at it; set --public-url to the https:// address",
                login.public_url
            ));
        }
        if let Err(e) = self.tls.ca_data() {
            return Err(format!("--tls-ca: {e:#}"));
        }
        if login.session_idle_timeout > login.session_lifetime {
            return Err("--session-idle-timeout must not exceed --session-lifetime".into());
        }
        for ns in &self.guardrails.ingress_from_namespaces {
            if !crate::domain::is_dns_label(ns) {
                return Err(format!(
                    "--network-ingress-from names \"{ns}\", which is not a namespace name (a DNS-1123 label)"
                ));
            }
        }
        if let Some(cluster) = &self.gitops.cluster
            && !self.cluster_names().contains(&cluster.as_str())
        {
            return Err(format!(
                "--gitops-cluster names \"{cluster}\", which is not one of --cluster ({}); name the cluster that runs Argo CD or Flux",
                self.cluster_names().join(", ")
            ));
        }
        if !crate::domain::is_dns_label(&self.gitops.namespace) {
            return Err(format!(
                "--gitops-namespace \"{}\" is not a namespace name (a DNS-1123 label)",
                self.gitops.namespace
            ));
        }
        if self.gitops.token_ttl < Duration::from_secs(600) {
            return Err("--gitops-token-ttl must be at least 10m: a GitOps tool reads its Secret every few minutes and must always find a valid token".into());
        }
        let mut names = self.cluster_names();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("--cluster names a cluster twice; each needs its own name".into());
        }
        Ok(())
    }

    /// The longest token tenants may request: the flag, capped by the
    /// lifetime of downloaded kubeconfigs.
    pub fn tenant_token_max_ttl(&self) -> Duration {
        self.guardrails.token_max_ttl.min(self.kubeconfig_ttl)
    }

    pub fn cluster_names(&self) -> Vec<&str> {
        self.clusters.iter().map(|c| c.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_number_and_a_unit() {
        assert_eq!(
            parse_duration("90d").unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        for bad in ["", "10", "d", "1.5h", "-1s", "10w", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clusters_name_a_kubeconfig_and_a_context() {
        assert_eq!(parse_cluster("local").unwrap(), ClusterSpec::named("local"));
        let spec = parse_cluster("edge=/etc/edge.kubeconfig#admin@edge").unwrap();
        assert_eq!(spec.kubeconfig, Some(PathBuf::from("/etc/edge.kubeconfig")));
        assert_eq!(spec.context.as_deref(), Some("admin@edge"));
        assert!(parse_cluster("Edge=/x").is_err());
        assert!(parse_cluster("edge=").is_err());
    }

    #[test]
    fn machine_clients_map_an_id_to_scopes() {
        let client = parse_machine_client("ci-platform=tenants:read+tenants:write").unwrap();
        assert_eq!(client.client_id, "ci-platform");
        assert_eq!(client.scopes.len(), 2);
        assert!(!client.all_tenants, "only the tenants it created");
        let everywhere = parse_machine_client("audit=tenants:read+all-tenants").unwrap();
        assert!(everywhere.all_tenants);
        assert_eq!(everywhere.scopes, [crate::auth::Scope::TenantsRead]);
        assert!(parse_machine_client("audit=all-tenants").is_err());
        assert!(parse_machine_client("ci-platform").is_err());
        assert!(parse_machine_client("ci=root").is_err());
    }

    #[test]
    fn the_public_origin_drops_the_path() {
        let login = |url: &str| LoginConfig {
            public_url: parse_public_url(url).unwrap(),
            oidc_issuer: None,
            oidc_client_id: None,
            oidc_kubectl_client_id: None,
            oidc_client_secret: None,
            oidc_scopes: vec![],
            oidc_groups_claim: "groups".into(),
            admin_groups: vec![],
            machine_clients: vec![],
            session_idle_timeout: Duration::from_secs(60),
            session_lifetime: Duration::from_secs(60),
            oidc_trust_unverified_email: false,
            machine_audience: None,
            max_event_streams: 5,
        };
        assert_eq!(
            login("https://portal.example.com/tenants/").public_origin(),
            "https://portal.example.com"
        );
        assert!(login("https://portal.example.com").cookies_secure());
        assert!(!login("http://127.0.0.1:8080").cookies_secure());
        assert!(parse_public_url("ftp://x").is_err());
    }

    #[test]
    fn sign_in_hardening_flags_default_to_the_strict_side() {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            login: LoginConfig,
        }
        let parse = |args: &[&str]| {
            <Flags as clap::Parser>::try_parse_from(["serve"].iter().chain(args)).map(|f| f.login)
        };
        let defaults = parse(&["--oidc-client-id", "portal"]).unwrap();
        assert!(!defaults.oidc_trust_unverified_email);
        assert_eq!(defaults.machine_audience(), Some("portal"), "the client id");
        assert_eq!(defaults.max_event_streams, 5);

        let set = parse(&[
            "--oidc-trust-unverified-email",
            "--machine-audience",
            "portal-api",
            "--max-event-streams",
            "2",
        ])
        .unwrap();
        assert!(set.oidc_trust_unverified_email);
        assert_eq!(set.machine_audience(), Some("portal-api"));
        assert_eq!(set.max_event_streams, 2);
        assert!(parse(&["--max-event-streams", "0"]).is_err());
    }

    #[test]
    fn the_default_budget_is_resource_amount_pairs() {
        let budget = parse_budget("requests.cpu=2, requests.memory=4Gi,pods=20").unwrap();
        assert_eq!(
            budget.to_strings().into_iter().collect::<Vec<_>>(),
            [
                ("pods", "20"),
                ("requests.cpu", "2"),
                ("requests.memory", "4Gi")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(parse_budget("requests.cpu").is_err());
        assert!(parse_budget("cpus=2").is_err());
        assert!(parse_budget("pods=1,pods=2").is_err());
        assert!(parse_budget("").unwrap().is_empty());
    }

    #[test]
    fn secrets_do_not_print() {
        let url = parse_database_url("postgres://u:hunter2@h/db").unwrap();
        assert_eq!(format!("{url:?}"), "[redacted]");
    }
}
