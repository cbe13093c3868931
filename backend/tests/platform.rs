//! For internal platforms: short-lived tenants, waiting for Ready and the
//! change stream, against the real control plane of `deploy/dev/up`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{
    Outage, eventually, kube, kubeconfig_path, spawn_portal, spawn_reconciler, unique,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

/// A finalizer only these tests set and remove.
const HOLD: &str = "tenant-portal.dev/test-hold";

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

async fn actions(db: &PgPool, slug: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT actor, action FROM audit_events WHERE tenant_slug = $1 ORDER BY id")
        .bind(slug)
        .fetch_all(db)
        .await
        .unwrap()
}

async fn namespace_gone(name: &str) -> bool {
    let namespaces: Api<Namespace> = Api::all(kube().await);
    matches!(namespaces.get(name).await, Err(kube::Error::Api(s)) if s.code == 404)
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_tenant_with_a_ttl_is_deleted_and_tombstoned_within_a_minute(db: PgPool) {
    let portal = spawn_portal(db.clone(), &kubeconfig_path()).await;
    let slug = unique("ttl");
    let created = portal
        .app
        .create_tenant(json!({"slug": slug, "ttl": "5s", "namespaces": [{"name": "ci"}]}))
        .await;
    assert!(created["expires_in_seconds"].as_i64().unwrap() <= 5);
    portal.app.wait_ready(&slug, Duration::from_secs(30)).await;

    eventually(
        "the tenant becomes a tombstone",
        Duration::from_secs(60),
        || async {
            let tenant: Value = portal
                .app
                .get(&format!("/api/v1/tenants/{slug}"))
                .await
                .json()
                .await
                .unwrap();
            tenant["state"] == "deleted"
        },
    )
    .await;
    assert!(
        namespace_gone(&format!("{slug}-ci")).await,
        "its namespace is gone from the cluster"
    );
    let trail = actions(&db, &slug).await;
    assert!(
        trail.contains(&("system:expiry".into(), "tenant.expired".into())),
        "{trail:?}"
    );
    assert_eq!(trail.last().unwrap().1, "tenant.deleted");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_expiry_interrupted_between_deleting_namespaces_and_the_tombstone_completes_after_restart(
    db: PgPool,
) {
    let mut portal = spawn_portal(db.clone(), &kubeconfig_path()).await;
    let slug = unique("crashx");
    portal
        .app
        .create_tenant(json!({"slug": slug, "ttl": "6s", "namespaces": [{"name": "a"}]}))
        .await;
    portal.app.wait_ready(&slug, Duration::from_secs(30)).await;
    let namespaces: Api<Namespace> = Api::all(kube().await);
    let name = format!("{slug}-a");
    // A finalizer of the test's holds the namespace in Terminating, so the
    // portal is surely killed between the deletion and the tombstone.
    let hold = json!({"metadata": {"finalizers": [HOLD]}});
    namespaces
        .patch(&name, &PatchParams::default(), &Patch::Merge(&hold))
        .await
        .unwrap();
    eventually(
        "namespace deletion under way",
        Duration::from_secs(30),
        || async {
            namespaces
                .get(&name)
                .await
                .is_ok_and(|ns| ns.metadata.deletion_timestamp.is_some())
        },
    )
    .await;
    portal.kill();
    let tenant: Value = portal
        .app
        .get(&format!("/api/v1/tenants/{slug}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        tenant["state"], "deleting",
        "killed between the namespace deletion and the tombstone"
    );
    let release = json!({"metadata": {"finalizers": null}});
    namespaces
        .patch(&name, &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();

    let (_restarted, _stop) = spawn_reconciler(db.clone(), &kubeconfig_path()).await;
    eventually("the expiry completes", Duration::from_secs(60), || async {
        let tenant: Value = portal
            .app
            .get(&format!("/api/v1/tenants/{slug}"))
            .await
            .json()
            .await
            .unwrap();
        tenant["state"] == "deleted"
    })
    .await;
    assert!(namespace_gone(&name).await);
    let trail = actions(&db, &slug).await;
    assert_eq!(
        trail.iter().filter(|(_, a)| a == "tenant.deleted").count(),
        1,
        "{trail:?}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn wait_for_ready_answers_as_soon_as_the_tenant_is_ready(db: PgPool) {
    let portal = spawn_portal(db.clone(), &kubeconfig_path()).await;
    let slug = unique("wait");
    let response = portal
        .app
        .request(Method::POST, "/api/v1/tenants?wait_for=Ready&timeout=20s")
        .json(&json!({"slug": slug, "namespaces": [{"name": "a"}, {"name": "b"}]}))
        .send()
        .await
        .unwrap();
    let answered = chrono::Utc::now();
    assert_eq!(response.status(), 201);
    let tenant: Value = response.json().await.unwrap();
    assert_eq!(tenant["sync"]["status"], "Ready", "{tenant}");
    let ready_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(tenant["sync"]["last_synced_at"].clone()).unwrap();
    let lag = answered - ready_at;
    eprintln!("answered {} ms after Ready", lag.num_milliseconds());
    assert!(
        lag < chrono::Duration::milliseconds(500),
        "answered {lag} after the tenant became Ready"
    );

    let started = Instant::now();
    let again: Value = portal
        .app
        .get(&format!("/api/v1/tenants/{slug}?wait_for=Ready&timeout=5s"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["sync"]["status"], "Ready");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a Ready tenant answers at once"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn wait_for_ready_answers_the_current_state_at_the_timeout_when_the_cluster_is_down(
    db: PgPool,
) {
    let outage = Outage::start().await;
    let portal = spawn_portal(db, &outage.kubeconfig).await;
    outage.cut();
    let slug = unique("down");
    portal
        .app
        .create_tenant(json!({"slug": slug, "namespaces": [{"name": "a"}]}))
        .await;
    let started = Instant::now();
    let response = portal
        .app
        .get(&format!("/api/v1/tenants/{slug}?wait_for=Ready&timeout=2s"))
        .await;
    let waited = started.elapsed();
    assert_eq!(response.status(), 200);
    let tenant: Value = response.json().await.unwrap();
    assert_ne!(tenant["sync"]["status"], "Ready");
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(5),
        "waited {waited:?}"
    );
    outage.restore();
}

/// Reads server-sent events until `count` arrived or `timeout` passed.
async fn read_events(
    response: &mut reqwest::Response,
    count: usize,
    timeout: Duration,
) -> Vec<(i64, String)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let deadline = Instant::now() + timeout;
    while events.len() < count && Instant::now() < deadline {
        let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline.into(), response.chunk()).await
        else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            if let (Some(id), Some(kind)) = (field("id:"), field("event:")) {
                events.push((id.parse().unwrap(), kind));
            }
        }
    }
    events
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_reader_that_reconnects_with_last_event_id_gets_every_event_exactly_once(db: PgPool) {
    let portal = spawn_portal(db.clone(), &kubeconfig_path()).await;
    let slug = unique("sse");
    let stream = |last: Option<i64>| {
        let mut request = portal.app.request(
            Method::GET,
            &format!("/api/v1/events?tenant={slug}&after=0"),
        );
        if let Some(id) = last {
            request = request.header("last-event-id", id.to_string());
        }
        request.send()
    };
    portal
        .app
        .create_tenant(json!({"slug": slug, "namespaces": [{"name": "a"}]}))
        .await;
    let mut first = stream(None).await.unwrap();
    assert_eq!(first.headers()["content-type"], "text/event-stream");
    let seen = read_events(&mut first, 2, Duration::from_secs(30)).await;
    assert_eq!(
        seen.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>(),
        ["tenant.created", "tenant.ready"]
    );
    drop(first);

    // Changes while the reader is away.
    let patch = portal
        .app
        .request(Method::PATCH, &format!("/api/v1/tenants/{slug}"))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"description": "while away"}"#);
    assert_eq!(patch.send().await.unwrap().status(), 200);
    portal
        .app
        .request(Method::POST, &format!("/api/v1/tenants/{slug}:suspend"))
        .send()
        .await
        .unwrap();
    portal.app.wait_ready(&slug, Duration::from_secs(30)).await;

    let stored: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, type FROM events WHERE tenant_slug = $1 ORDER BY id")
            .bind(&slug)
            .fetch_all(&db)
            .await
            .unwrap();
    let mut again = stream(Some(seen.last().unwrap().0)).await.unwrap();
    let rest = read_events(
        &mut again,
        stored.len() - seen.len(),
        Duration::from_secs(30),
    )
    .await;
    let all: Vec<(i64, String)> = seen.iter().chain(rest.iter()).cloned().collect();
    assert_eq!(all, stored, "every event once, in order");
    let unique_ids: BTreeSet<i64> = all.iter().map(|(id, _)| *id).collect();
    assert_eq!(unique_ids.len(), all.len());
    assert!(all.iter().any(|(_, k)| k == "tenant.suspended"));
}
