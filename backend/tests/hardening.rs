//! What a caller cannot stretch: stored answers replayed only to the caller
//! that earned them, secrets never stored, a bounded number of change
//! streams that end with their credential, and metrics whose labels a
//! client cannot multiply. Real HTTP, real Postgres.

mod common;

use std::time::Duration;

use common::cluster::{kubeconfig_path, spawn_portal, unique};
use common::{TestApp, acme, config, create_token, problem, spawn_app, spawn_app_config};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::auth::Scope;
use tenant_portal::config::{LoginConfig, ServeConfig};

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[sqlx::test(migrator = "MIGRATIONS")]
async fn made_up_http_methods_are_counted_as_other(db: PgPool) {
    let app = spawn_app(db).await;
    let made_up: Vec<String> = (0..20).map(|i| format!("BREW{i}")).collect();

    for method in &made_up {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.request(method, "/api/v1/tenants").send().await.unwrap();
        assert_eq!(problem(response).await.0, 405);
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert!(
        made_up
            .iter()
            .all(|m| !metrics.contains(&format!("method=\"{m}\""))),
        "no series per made-up method"
    );
    let other: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("method=\"other\"")
                && l.contains("status=\"405\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(other >= 20.0, "counted as other: {other}\n{metrics}");
}

/// A tenant a token without quota:write may create: within the default budget.
fn within_default() -> Value {
    json!({"slug": "acme", "namespaces": [{"name": "dev", "allocations": {"requests.cpu": "1"}}]})
}

async fn post_with_key(app: &TestApp, token: &str, path: &str, key: &str, body: Value) -> Response {
    app.client
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_revoked_token_gets_401_and_never_its_stored_answer(db: PgPool) {
    let app = spawn_app(db).await;
    let writer = create_token(
        &app.db,
        "ci",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        None,
    )
    .await;
    let first = post_with_key(
        &app,
        &writer,
        "/api/v1/tenants",
        "create-acme",
        within_default(),
    )
    .await;
    assert_eq!(first.status(), 201);
    let again = post_with_key(
        &app,
        &writer,
        "/api/v1/tenants",
        "create-acme",
        within_default(),
    )
    .await;
    assert_eq!(
        again.headers()["idempotent-replayed"],
        "true",
        "valid credentials get the replay"
    );

    let mut conn = app.db.acquire().await.unwrap();
    assert!(
        tenant_portal::db::tokens::revoke(&mut conn, "ci")
            .await
            .unwrap()
    );
    let replayed = post_with_key(
        &app,
        &writer,
        "/api/v1/tenants",
        "create-acme",
        within_default(),
    )
    .await;

    assert!(replayed.headers().get("idempotent-replayed").is_none());
    let (status, body) = problem(replayed).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_stored_answer_is_replayed_only_to_the_principal_that_sent_it(db: PgPool) {
    let app = spawn_app(db).await;
    let first_token = create_token(
        &app.db,
        "ci-1",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        None,
    )
    .await;
    let other_token = create_token(
        &app.db,
        "ci-2",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        None,
    )
    .await;
    let first = post_with_key(
        &app,
        &first_token,
        "/api/v1/tenants",
        "create-acme",
        within_default(),
    )
    .await;
    assert_eq!(first.status(), 201);

    let other = post_with_key(
        &app,
        &other_token,
        "/api/v1/tenants",
        "create-acme",
        within_default(),
    )
    .await;

    assert!(
        other.headers().get("idempotent-replayed").is_none(),
        "another principal's key is its own"
    );
    let (status, _) = problem(other).await;
    assert_eq!(status, 409, "it ran, and found the slug taken");
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT principal FROM idempotency_keys ORDER BY principal")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(
        stored.iter().all(|p| p.starts_with("token:")),
        "kept under the principal, not the header: {stored:?}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_request_without_valid_credentials_stores_nothing(db: PgPool) {
    let app = spawn_app(db).await;

    let response = post_with_key(&app, "tpat_not-a-token", "/api/v1/tenants", "k", acme()).await;

    assert_eq!(problem(response).await.0, 401);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

/// Needs the local stack's cluster: the kubeconfig's token comes from its API server.
#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_retried_kubeconfig_download_mints_a_new_token_and_stores_none(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let app = &portal.app;
    let slug = unique("idem");
    app.create_tenant(json!({"slug": slug, "namespaces": [{"name": "dev"}]}))
        .await;
    app.wait_ready(&slug, Duration::from_secs(30)).await;
    let path = format!("/api/v1/tenants/{slug}/kubeconfig");

    let first = post_with_key(app, &app.token, &path, "download-1", json!({})).await;
    let second = post_with_key(app, &app.token, &path, "download-1", json!({})).await;

    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    assert!(second.headers().get("idempotent-replayed").is_none());
    let (first, second) = (first.text().await.unwrap(), second.text().await.unwrap());
    let token = |yaml: &str| {
        let config: Value = serde_saphyr::from_str(yaml).unwrap();
        config["users"][0]["user"]["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(token(&first), token(&second), "a retry mints a new token");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 0, "no answer holding a token is kept");
}

async fn open_stream(app: &TestApp, token: &str) -> Response {
    app.client
        .get(format!("{}/api/v1/events?after=0", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Reads the stream until the server ends it; `false` if it is still open after `timeout`.
async fn ends_within(response: &mut Response, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return false,
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None) | Err(_)) => return true,
        }
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_change_stream_ends_when_its_token_is_revoked(db: PgPool) {
    let app = spawn_app(db).await;
    let reader = create_token(&app.db, "watcher", &[Scope::TenantsRead], None).await;
    let mut stream = open_stream(&app, &reader).await;
    assert_eq!(stream.status(), 200);
    app.create_tenant(acme()).await;

    let mut conn = app.db.acquire().await.unwrap();
    tenant_portal::db::tokens::revoke(&mut conn, "watcher")
        .await
        .unwrap();

    assert!(
        ends_within(&mut stream, Duration::from_secs(10)).await,
        "the stream ends within seconds of the revocation"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_change_stream_ends_when_its_token_expires(db: PgPool) {
    let app = spawn_app(db).await;
    let expires = chrono::Utc::now() + chrono::Duration::seconds(2);
    let reader = create_token(&app.db, "short", &[Scope::TenantsRead], Some(expires)).await;

    let mut stream = open_stream(&app, &reader).await;

    assert_eq!(stream.status(), 200);
    assert!(
        !ends_within(&mut stream, Duration::from_secs(1)).await,
        "open while the token is valid"
    );
    assert!(
        ends_within(&mut stream, Duration::from_secs(10)).await,
        "ended soon after the token expired"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_principal_may_hold_only_so_many_change_streams_open(db: PgPool) {
    let app = spawn_app_config(
        db,
        ServeConfig {
            login: LoginConfig {
                max_event_streams: 2,
                ..config().login
            },
            ..config()
        },
        Default::default(),
    )
    .await;
    let reader = create_token(&app.db, "watcher", &[Scope::TenantsRead], None).await;
    let first = open_stream(&app, &reader).await;
    let second = open_stream(&app, &reader).await;
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);

    let (status, body) = problem(open_stream(&app, &reader).await).await;

    assert_eq!(status, 429);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--max-event-streams"),
        "{body}"
    );
    let other = create_token(&app.db, "other", &[Scope::TenantsRead], None).await;
    assert_eq!(
        open_stream(&app, &other).await.status(),
        200,
        "the limit is per principal"
    );
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let again = open_stream(&app, &reader).await;
        if again.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a closed stream frees its place"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
