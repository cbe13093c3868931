//! `spawn_app()`: the real service on a loopback port, over a fresh database
//! that `#[sqlx::test]` created and migrated for this one test.

#![allow(dead_code)]

pub mod audit;
pub mod cluster;
pub mod idp;
pub mod postgres;
pub mod tenant_api;
pub mod tls;

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use sqlx::PgPool;
use tenant_portal::auth::Scope;
use tenant_portal::config::{
    ClusterSpec, DatabaseConfig, LogFormat, LoginConfig, Secret, ServeConfig,
};
use tenant_portal::service::tokens::{Issuer, TokenRequest};

pub struct TestApp {
    pub base: String,
    pub token: String,
    pub db: PgPool,
    pub client: reqwest::Client,
}

pub fn config() -> ServeConfig {
    ServeConfig {
        database: DatabaseConfig {
            url: Secret::new("postgres://unused".into()),
            max_connections: 20,
        },
        listen: "127.0.0.1:0".parse().unwrap(),
        log_format: LogFormat::Human,
        tls: Default::default(),
        gitops: Default::default(),
        clusters: vec![ClusterSpec::named("local"), ClusterSpec::named("edge")],
        reconciler: false,
        reconcile_workers: 2,
        resync_interval: Duration::from_secs(600),
        usage_sample_interval: Duration::from_secs(300),
        usage_retention: Duration::from_secs(400 * 86_400),
        currency: tenant_portal::domain::Currency::parse("EUR").unwrap(),
        kubeconfig_ttl: Duration::from_secs(3600),
        default_namespace_limit: 10,
        default_budget: tenant_portal::config::parse_budget(
            "requests.cpu=2,requests.memory=4Gi,pods=20",
        )
        .unwrap(),
        max_tenants_per_owner: 3,
        max_body_bytes: 65_536,
        request_timeout: Duration::from_secs(30),
        idempotency_ttl: Duration::from_secs(3600),
        event_retention: Duration::from_secs(3600),
        login: LoginConfig {
            public_url: "http://127.0.0.1:8080".into(),
            oidc_issuer: None,
            oidc_client_id: None,
            oidc_kubectl_client_id: None,
            oidc_client_secret: None,
            oidc_scopes: ["openid", "email", "profile", "groups"]
                .map(String::from)
                .to_vec(),
            oidc_groups_claim: "groups".into(),
            admin_groups: vec!["platform-admins".into()],
            machine_clients: vec![],
            session_idle_timeout: Duration::from_secs(3600),
            session_lifetime: Duration::from_secs(7200),
            oidc_trust_unverified_email: false,
            machine_audience: None,
            max_event_streams: 5,
        },
        guardrails: Default::default(),
        tenant_api: Default::default(),
    }
}

pub async fn spawn_app(db: PgPool) -> TestApp {
    spawn_app_config(db, config(), Default::default()).await
}

/// The API on its own port, knowing `specs` and connected to `clusters`.
pub async fn spawn_app_with(
    db: PgPool,
    specs: Vec<ClusterSpec>,
    clusters: tenant_portal::cluster::Clusters,
) -> TestApp {
    spawn_app_config(
        db,
        ServeConfig {
            clusters: specs,
            ..config()
        },
        clusters,
    )
    .await
}

pub async fn spawn_app_config(
    db: PgPool,
    config: ServeConfig,
    clusters: tenant_portal::cluster::Clusters,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = tenant_portal::app::router(db.clone(), config, clusters).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    // A second app on the same database gets a token of its own.
    let apps: i64 =
        sqlx::query_scalar("SELECT count(*) FROM service_tokens WHERE name LIKE 'test-admin%'")
            .fetch_one(&db)
            .await
            .unwrap();
    let name = if apps == 0 {
        "test-admin".to_string()
    } else {
        format!("test-admin-{apps}")
    };
    let token = create_token(&db, &name, &[Scope::Admin], None).await;
    TestApp {
        base,
        token,
        db,
        client: reqwest::Client::new(),
    }
}

/// A token reaching every tenant, made as `tenant-portal token create --all-tenants` makes it.
pub async fn create_token(
    db: &PgPool,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    issue_token(
        db,
        TokenRequest {
            name: name.into(),
            scopes: scopes.to_vec(),
            expires_at,
            tenants: vec![],
            all_tenants: true,
        },
    )
    .await
}

/// A token reaching the tenants it creates and `tenants`, made as
/// `tenant-portal token create --tenant SLUG...` makes it.
pub async fn create_token_reaching(
    db: &PgPool,
    name: &str,
    scopes: &[Scope],
    tenants: &[&str],
) -> String {
    issue_token(
        db,
        TokenRequest {
            name: name.into(),
            scopes: scopes.to_vec(),
            expires_at: None,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            all_tenants: false,
        },
    )
    .await
}

async fn issue_token(db: &PgPool, request: TokenRequest) -> String {
    let (_, secret) = tenant_portal::service::tokens::create(
        db,
        Issuer::Operator,
        &tenant_portal::service::Actor::system("operator:test"),
        request,
    )
    .await
    .unwrap();
    secret.reveal()
}

impl TestApp {
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    /// Creates a tenant and returns its representation; panics unless 201.
    pub async fn create_tenant(&self, body: Value) -> Value {
        let response = self.post_json("/api/v1/tenants", body).await;
        let status = response.status();
        let json: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{json}");
        json
    }

    /// Row counts of every table (found in the catalog, so a table added
    /// later is counted too) and the sum of generations, to prove a refused
    /// request wrote nothing.
    pub async fn table_counts(&self) -> Vec<(String, i64)> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
               AND table_name <> '_sqlx_migrations'
             ORDER BY table_name",
        )
        .fetch_all(&self.db)
        .await
        .unwrap();
        assert!(
            tables.iter().any(|t| t == "events") && tables.iter().any(|t| t == "quota_requests"),
            "the count covers every table: {tables:?}"
        );
        let mut counts = Vec::new();
        for table in tables {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM \"{table}\""
            )))
            .fetch_one(&self.db)
            .await
            .unwrap();
            counts.push((table, n));
        }
        let generations: Option<i64> =
            sqlx::query_scalar("SELECT sum(generation)::bigint FROM tenants")
                .fetch_one(&self.db)
                .await
                .unwrap();
        counts.push(("generations".into(), generations.unwrap_or(0)));
        counts
    }
}

/// Reads a problem answer, checking its media type.
pub async fn problem(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        content_type, "application/problem+json",
        "status {status}: {body}"
    );
    assert_eq!(body["status"].as_u64(), Some(u64::from(status)), "{body}");
    (status, body)
}

pub fn acme() -> Value {
    serde_json::json!({
        "slug": "acme",
        "display_name": "Acme Payments",
        "budget": {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20"},
        "namespaces": [
            {"name": "dev", "allocations": {"requests.cpu": "1500m", "requests.memory": "2Gi"}},
            {"name": "prod", "allocations": {"requests.cpu": "2", "requests.memory": "4Gi"}}
        ],
        "members": [{"kind": "group", "subject": "team-acme", "role": "owner"}]
    })
}

/// A plan's changes as the CLI prints them (`~ budget requests.cpu: 4 → 6`).
pub fn plan_lines(plan: &Value) -> Vec<String> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            serde_json::from_value::<tenant_portal::domain::tenant_document::Change>(c.clone())
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The audit trail's actions on a tenant, oldest first.
pub async fn audit_actions(db: &PgPool, slug: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_events WHERE tenant_slug = $1 ORDER BY id")
        .bind(slug)
        .fetch_all(db)
        .await
        .unwrap()
}

/// The tenant's downloaded cluster kubeconfig: its automation account
/// (bound to `edit`), at the cluster's API server.
pub async fn automation_kubeconfig(app: &TestApp, slug: &str) -> String {
    let response = app
        .request(Method::POST, &format!("/api/v1/tenants/{slug}/kubeconfig"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}
