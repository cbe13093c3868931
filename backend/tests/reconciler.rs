//! The reconciler against the real control plane of `deploy/dev/up`:
//! kube-apiserver, kube-controller-manager and etcd on loopback.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::audit::{self, writes_per_object, writes_per_replica};
use common::cluster::{
    Outage, eventually, fast_settings, kube, kubeconfig_path, outbox_drained, spawn_portal,
    spawn_reconciler, spawn_reconciler_with, unique,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
const READY: Duration = Duration::from_secs(30);

fn tenant(slug: &str) -> Value {
    json!({
        "slug": slug,
        "budget": {"requests.cpu": "2", "requests.memory": "2Gi", "pods": "10"},
        "namespaces": [
            {"name": "dev", "allocations": {"requests.cpu": "500m", "requests.memory": "512Mi", "pods": "4"}},
            {"name": "prod", "allocations": {"requests.cpu": "1500m", "requests.memory": "1Gi", "pods": "6"}}
        ],
        "members": [
            {"kind": "group", "subject": "team-acme", "role": "owner"},
            {"kind": "user", "subject": "bob@example.com", "role": "viewer"}
        ]
    })
}

fn pod(name: &str, cpu: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}, "limits": {"cpu": cpu, "memory": "64Mi"}}}]}
    }))
    .unwrap()
}

async fn applied_events(db: &PgPool, slug: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE tenant_slug = $1 AND action = 'tenant.applied'",
    )
    .bind(slug)
    .fetch_one(db)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_tenant_with_two_namespaces_becomes_ready_with_every_object(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = unique("obj");
    let started = Instant::now();
    portal.app.create_tenant(tenant(&slug)).await;
    portal.app.wait_ready(&slug, READY).await;
    eprintln!("{slug}: Ready {:?} after the API call", started.elapsed());

    let client = kube().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels = namespaces
        .get(&format!("{slug}-dev"))
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "tenant-portal");
    assert_eq!(labels["tenant-portal.dev/tenant"], slug);

    let quota: Api<ResourceQuota> = Api::namespaced(client.clone(), &format!("{slug}-prod"));
    let hard = quota
        .get("tenant-quota")
        .await
        .unwrap()
        .spec
        .unwrap()
        .hard
        .unwrap();
    assert_eq!(hard["requests.cpu"].0, "1500m");
    assert_eq!(hard["requests.memory"].0, "1Gi");
    assert_eq!(hard["pods"].0, "6");

    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &format!("{slug}-dev"));
    let owners = bindings.get("tenant-owners-admin").await.unwrap();
    assert_eq!(owners.role_ref.name, "admin");
    assert_eq!(owners.subjects.unwrap()[0].name, "team-acme");
    assert_eq!(
        bindings
            .get("tenant-viewers-view")
            .await
            .unwrap()
            .subjects
            .unwrap()[0]
            .name,
        "bob@example.com"
    );
    assert!(bindings.get("tenant-automation-edit").await.is_ok());

    let policy: Api<NetworkPolicy> = Api::namespaced(client.clone(), &format!("{slug}-prod"));
    let spec = policy.get("tenant-isolation").await.unwrap().spec.unwrap();
    let from = &spec.ingress.unwrap()[0].from.clone().unwrap()[0];
    assert_eq!(
        from.namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["tenant-portal.dev/tenant"],
        slug
    );

    let limits: Api<k8s_openapi::api::core::v1::LimitRange> =
        Api::namespaced(client.clone(), &format!("{slug}-dev"));
    assert!(limits.get("tenant-defaults").await.is_ok());
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client, &format!("{slug}-dev"));
    assert!(accounts.get("tenant-automation").await.is_ok());
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_pod_over_its_namespace_allocation_is_refused_by_the_api_server(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = unique("quota");
    portal.app.create_tenant(tenant(&slug)).await;
    portal.app.wait_ready(&slug, READY).await;
    let pods: Api<Pod> = Api::namespaced(kube().await, &format!("{slug}-dev"));
    // The quota controller must have filled in status before admission counts.
    common::cluster::quota_counted(&format!("{slug}-dev")).await;
    let error = pods
        .create(&PostParams::default(), &pod("greedy", "1"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("exceeded quota"), "{message}");
    pods.create(&PostParams::default(), &pod("modest", "200m"))
        .await
        .expect("a pod within the allocation is admitted");

    eventually("usage read back", Duration::from_secs(20), || async {
        let usage: Value = portal
            .app
            .get(&format!("/api/v1/tenants/{slug}/usage"))
            .await
            .json()
            .await
            .unwrap();
        usage["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|ns| ns["name"] == "dev" && ns["resources"]["requests.cpu"]["used"] == "200m")
    })
    .await;
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_downloaded_kubeconfig_reaches_its_tenant_and_nothing_else(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let (a, b) = (unique("kca"), unique("kcb"));
    portal.app.create_tenant(tenant(&a)).await;
    portal.app.create_tenant(tenant(&b)).await;
    portal.app.wait_ready(&a, READY).await;
    portal.app.wait_ready(&b, READY).await;

    let response = portal
        .app
        .request(Method::POST, &format!("/api/v1/tenants/{a}/kubeconfig"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/yaml");
    let yaml = response.text().await.unwrap();
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let as_tenant = kube::Client::try_from(config).unwrap();

    for ns in ["dev", "prod"] {
        let own: Api<Pod> = Api::namespaced(as_tenant.clone(), &format!("{a}-{ns}"));
        own.list(&ListParams::default())
            .await
            .expect("the tenant's own namespaces are reachable");
    }
    let other: Api<Pod> = Api::namespaced(as_tenant.clone(), &format!("{b}-dev"));
    match other.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("another tenant's namespace must be forbidden, got {other:?}"),
    }
    let everything: Api<Namespace> = Api::all(as_tenant);
    assert!(
        everything.list(&ListParams::default()).await.is_err(),
        "listing all namespaces is forbidden"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn hand_edits_and_deletes_are_repaired_within_seconds(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = unique("drift");
    portal.app.create_tenant(tenant(&slug)).await;
    portal.app.wait_ready(&slug, READY).await;
    let client = kube().await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &format!("{slug}-dev"));
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &format!("{slug}-prod"));

    quotas
        .delete("tenant-quota", &DeleteParams::default())
        .await
        .unwrap();
    let hijack = json!({"subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory@example.com"}]});
    bindings
        .patch(
            "tenant-owners-admin",
            &PatchParams::default(),
            &Patch::Merge(&hijack),
        )
        .await
        .unwrap();

    eventually(
        "the deleted quota is back",
        Duration::from_secs(30),
        || async { quotas.get("tenant-quota").await.is_ok() },
    )
    .await;
    eventually(
        "the edited binding is restored",
        Duration::from_secs(30),
        || async {
            bindings.get("tenant-owners-admin").await.is_ok_and(|b| {
                b.subjects
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    == ["team-acme", "tenant-owner"]
            })
        },
    )
    .await;
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn changes_accepted_while_the_cluster_is_down_are_applied_once_it_is_back(db: PgPool) {
    let outage = Outage::start().await;
    let portal = spawn_portal(db.clone(), &outage.kubeconfig).await;
    let warmup = unique("warm");
    portal
        .app
        .create_tenant(json!({"slug": warmup, "namespaces": [{"name": "a"}]}))
        .await;
    portal.app.wait_ready(&warmup, READY).await;

    outage.cut();
    let prefix = unique("down");
    let slugs: Vec<String> = (0..50).map(|i| format!("{prefix}{i}")).collect();
    for slug in &slugs {
        portal
            .app
            .create_tenant(json!({"slug": slug, "namespaces": [{"name": "a"}]}))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status: Value = portal
        .app
        .get(&format!("/api/v1/tenants/{}/status", slugs[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(
        status["status"], "Ready",
        "nothing reaches a cluster that is down: {status}"
    );

    outage.restore();
    for slug in &slugs {
        portal.app.wait_ready(slug, Duration::from_secs(90)).await;
    }
    for slug in &slugs {
        assert_eq!(
            applied_events(&db, slug).await,
            1,
            "{slug} applied exactly once"
        );
    }
    let clusters: Value = portal
        .app
        .get("/api/v1/clusters")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(clusters[0]["tenants"], 51);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_portal_killed_mid_apply_converges_after_restart(db: PgPool) {
    let mut first = spawn_portal(db.clone(), &kubeconfig_path()).await;
    let prefix = unique("crash");
    let slugs: Vec<String> = (0..20).map(|i| format!("{prefix}{i}")).collect();
    for slug in &slugs {
        first
            .app
            .create_tenant(json!({"slug": slug, "namespaces": [{"name": "a"}, {"name": "b"}]}))
            .await;
    }
    eventually(
        "some applies under way",
        Duration::from_secs(20),
        || async {
            let applied: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM audit_events WHERE action = 'tenant.applied'",
            )
            .fetch_one(&db)
            .await
            .unwrap();
            applied > 0
        },
    )
    .await;
    first.kill();

    let (_second, _stop) = spawn_reconciler(db.clone(), &kubeconfig_path()).await;
    for slug in &slugs {
        first.app.wait_ready(slug, Duration::from_secs(60)).await;
    }
    let namespaces: Api<Namespace> = Api::all(kube().await);
    for slug in &slugs {
        for ns in ["a", "b"] {
            assert!(namespaces.get(&format!("{slug}-{ns}")).await.is_ok());
        }
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn two_portals_on_one_database_apply_each_change_once(db: PgPool) {
    let portal = spawn_portal(db.clone(), &kubeconfig_path()).await;
    let (_other, _stop) = spawn_reconciler(db.clone(), &kubeconfig_path()).await;
    let prefix = unique("pair");
    let slugs: Vec<String> = (0..30).map(|i| format!("{prefix}{i}")).collect();
    for slug in &slugs {
        portal
            .app
            .create_tenant(json!({"slug": slug, "namespaces": [{"name": "a"}]}))
            .await;
    }
    for slug in &slugs {
        portal.app.wait_ready(slug, Duration::from_secs(60)).await;
    }
    // Each replica's watches see the other's applies as objects it has not
    // rendered and ask for one more (write-free) look; wait for those to end.
    outbox_drained(&db, Duration::from_secs(30)).await;
    let workers: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT leased_by FROM outbox WHERE leased_by IS NOT NULL")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(workers.is_empty(), "no lease is left behind: {workers:?}");
    for slug in &slugs {
        assert_eq!(
            applied_events(&db, slug).await,
            1,
            "{slug} recorded as applied by exactly one replica"
        );
    }
    // The API server's own count: every object written once, by one replica.
    let writes: Vec<_> = audit::portal_writes(&prefix)
        .into_iter()
        .filter(|w| w.code < 400)
        .collect();
    let per_object = writes_per_object(&writes);
    eprintln!(
        "API server audit log: {} writes to {} objects, by {:?}",
        writes.len(),
        per_object.len(),
        writes_per_replica(&writes)
    );
    // A replica re-checks a tenant when its watches see the other's applies;
    // one kind's cache can lag another's by a moment, so now and then it
    // re-sends one unchanged object (a no-op apply). Two replicas both
    // applying a change would write every object of it twice.
    let twice: Vec<_> = per_object.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.len() <= per_object.len() / 20 && per_object.values().all(|n| *n <= 2),
        "objects written more than once: {twice:?}"
    );
    assert_eq!(
        writes_per_replica(&writes).len(),
        2,
        "both replicas applied, each under its own name"
    );
    for slug in &slugs {
        assert!(
            per_object
                .keys()
                .any(|o| o.starts_with("namespaces/") && o.ends_with(&format!("/{slug}-a"))),
            "the API server saw {slug}-a created"
        );
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 0, "nothing is left in the outbox");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn deleting_a_tenant_removes_its_namespaces_and_nothing_else(db: PgPool) {
    let portal = spawn_portal(db.clone(), &kubeconfig_path()).await;
    let short = unique("ab");
    let long = format!("{short}c");
    portal
        .app
        .create_tenant(json!({"slug": short, "namespaces": [{"name": "dev"}]}))
        .await;
    portal
        .app
        .create_tenant(json!({"slug": long, "namespaces": [{"name": "dev"}]}))
        .await;
    portal.app.wait_ready(&short, READY).await;
    portal.app.wait_ready(&long, READY).await;
    let namespaces: Api<Namespace> = Api::all(kube().await);
    let manual: Namespace =
        serde_json::from_value(json!({"metadata": {"name": format!("{short}-manual")}})).unwrap();
    namespaces
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();

    let response = portal
        .app
        .request(Method::DELETE, &format!("/api/v1/tenants/{short}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    eventually(
        "the tenant becomes a tombstone",
        Duration::from_secs(60),
        || async {
            let tenant: Value = portal
                .app
                .get(&format!("/api/v1/tenants/{short}"))
                .await
                .json()
                .await
                .unwrap();
            tenant["state"] == "deleted"
        },
    )
    .await;
    assert!(
        matches!(namespaces.get(&format!("{short}-dev")).await, Err(kube::Error::Api(s)) if s.code == 404)
    );
    assert!(
        namespaces.get(&format!("{long}-dev")).await.is_ok(),
        "a tenant whose slug merely starts the same stays"
    );
    let untouched = namespaces.get(&format!("{short}-manual")).await.unwrap();
    assert!(
        untouched.metadata.deletion_timestamp.is_none(),
        "an unmanaged namespace stays"
    );
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_events WHERE tenant_slug = $1 ORDER BY id")
            .bind(&short)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        actions,
        [
            "tenant.created",
            "tenant.applied",
            "tenant.deletion_requested",
            "tenant.deleted"
        ]
        .map(String::from)
    );
    namespaces
        .delete(&format!("{short}-manual"), &DeleteParams::default())
        .await
        .unwrap();
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn suspension_allows_no_pods_and_downgrades_members_to_view(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = unique("susp");
    portal.app.create_tenant(tenant(&slug)).await;
    portal.app.wait_ready(&slug, READY).await;
    portal
        .app
        .request(Method::POST, &format!("/api/v1/tenants/{slug}:suspend"))
        .send()
        .await
        .unwrap();
    portal.app.wait_ready(&slug, READY).await;
    let client = kube().await;
    let quota: Api<ResourceQuota> = Api::namespaced(client.clone(), &format!("{slug}-dev"));
    assert_eq!(
        quota
            .get("tenant-quota")
            .await
            .unwrap()
            .spec
            .unwrap()
            .hard
            .unwrap()["pods"]
            .0,
        "0"
    );
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &format!("{slug}-dev"));
    let roles: BTreeMap<String, String> = bindings
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=tenant-portal"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|b| (b.metadata.name.unwrap(), b.role_ref.name))
        .collect();
    assert!(roles.values().all(|r| r == "view"), "{roles:?}");
    assert!(roles.contains_key("tenant-owners-view"));

    portal
        .app
        .request(Method::POST, &format!("/api/v1/tenants/{slug}:resume"))
        .send()
        .await
        .unwrap();
    portal.app.wait_ready(&slug, READY).await;
    assert_eq!(
        quota
            .get("tenant-quota")
            .await
            .unwrap()
            .spec
            .unwrap()
            .hard
            .unwrap()["pods"]
            .0,
        "4"
    );
    assert!(bindings.get("tenant-owners-admin").await.is_ok());
}

/// Write requests the portal sent for objects whose names start with `prefix`.
fn portal_writes(prefix: &str) -> usize {
    audit::portal_writes(prefix).len()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_idle_resync_of_200_tenants_sends_no_writes(db: PgPool) {
    let portal = spawn_portal(db.clone(), &kubeconfig_path()).await;
    let prefix = unique("idle");
    let slugs: Vec<String> = (0..200).map(|i| format!("{prefix}{i}")).collect();
    for slug in &slugs {
        portal
            .app
            .create_tenant(json!({"slug": slug, "namespaces": [{"name": "a"}]}))
            .await;
    }
    for slug in &slugs {
        portal.app.wait_ready(slug, Duration::from_secs(120)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = portal_writes(&prefix);
    assert!(
        before >= 200 * 6,
        "the audit log shows the initial applies ({before})"
    );
    assert_eq!(
        writes_in_a_resync(&db, &prefix, 200).await,
        0,
        "an unchanged fleet gets no writes"
    );
}

/// Queues every tenant of the test's database for a resync (there must be
/// `tenants`), waits for the reconciler to finish it, and returns the writes
/// it sent for tenants whose slugs start with `prefix`.
async fn writes_in_a_resync(db: &PgPool, prefix: &str, tenants: u64) -> usize {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = portal_writes(prefix);
    let mut conn = db.acquire().await.unwrap();
    let queued = tenant_portal::db::outbox::enqueue_all(&mut conn, "local")
        .await
        .unwrap();
    assert_eq!(queued, tenants);
    outbox_drained(db, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    portal_writes(prefix) - before
}

/// The value of the first sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn metrics_show_requests_reconciles_the_outbox_tenants_and_clusters(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slugs = [unique("metra"), unique("metrb")];
    for slug in &slugs {
        portal
            .app
            .create_tenant(json!({"slug": slug, "namespaces": [{"name": "a"}]}))
            .await;
    }
    for slug in &slugs {
        portal.app.wait_ready(slug, READY).await;
    }
    portal
        .app
        .request(
            Method::POST,
            &format!("/api/v1/tenants/{}:suspend", slugs[1]),
        )
        .send()
        .await
        .unwrap();
    portal.app.wait_ready(&slugs[1], READY).await;
    eventually(
        "the cluster's health is known",
        Duration::from_secs(15),
        || async {
            let text = reqwest::get(format!("{}/metrics", portal.app.base))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            sample(&text, "cluster_reachable{cluster=\"local\"}") == Some(1.0)
        },
    )
    .await;

    let response = reqwest::get(format!("{}/metrics", portal.app.base))
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    let created = sample(
        &text,
        "http_requests_total{method=\"POST\",route=\"/api/v1/tenants\",status=\"201\"}",
    );
    assert!(
        created.is_some_and(|n| n >= 2.0),
        "created tenants are counted by route template:\n{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "request durations are histograms"
    );
    assert!(
        !text.contains(&format!("route=\"/api/v1/tenants/{}", slugs[0])),
        "no raw paths as labels"
    );
    assert!(
        sample(
            &text,
            "reconcile_total{cluster=\"local\",outcome=\"ready\"}"
        )
        .is_some_and(|n| n >= 3.0)
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("reconcile_duration_seconds_bucket{")
                && l.contains("cluster=\"local\"")
                && l.contains("outcome=\"ready\""))
    );
    assert_eq!(sample(&text, "tenants{state=\"active\"}"), Some(1.0));
    assert_eq!(sample(&text, "tenants{state=\"suspended\"}"), Some(1.0));
    assert_eq!(
        sample(&text, "outbox_depth"),
        Some(0.0),
        "everything is applied"
    );
    assert_eq!(sample(&text, "outbox_oldest_age_seconds"), Some(0.0));
    assert!(
        sample(&text, "login_total{outcome=\"success\"}").is_some(),
        "sign-ins are counted:\n{text}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_unreachable_cluster_stalls_nothing_on_the_others(db: PgPool) {
    use tenant_portal::cluster::Clusters;
    use tenant_portal::config::ClusterSpec;

    let outage = Outage::start().await;
    let specs = vec![
        ClusterSpec {
            name: "local".into(),
            kubeconfig: Some(kubeconfig_path().into()),
            context: None,
        },
        ClusterSpec {
            name: "far".into(),
            kubeconfig: Some(outage.kubeconfig.clone().into()),
            context: None,
        },
    ];
    let clusters = Clusters::connect(&specs).await.unwrap();
    let app = common::spawn_app_with(db.clone(), specs, clusters.clone()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let _reconciler = tenant_portal::reconciler::start(
        db,
        &clusters,
        common::cluster::fast_settings(),
        stop.clone(),
    );
    outage.cut();

    let (near, far) = (unique("near"), unique("far"));
    app.create_tenant(json!({"slug": far, "cluster": "far", "namespaces": [{"name": "a"}]}))
        .await;
    app.create_tenant(json!({"slug": near, "cluster": "local", "namespaces": [{"name": "a"}]}))
        .await;
    app.wait_ready(&near, READY).await;
    let stuck: Value = app
        .get(&format!("/api/v1/tenants/{far}/status"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(stuck["status"], "Ready", "{stuck}");

    eventually(
        "the far cluster shows as unreachable",
        Duration::from_secs(20),
        || async {
            let clusters: Value = app.get("/api/v1/clusters").await.json().await.unwrap();
            let far = clusters
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "far")
                .cloned()
                .unwrap();
            far["reachable"] == false && far["tenants"] == 1
        },
    )
    .await;
    let placed: Value = app.create_tenant(json!({"slug": unique("auto")})).await;
    assert_eq!(
        placed["cluster"], "local",
        "the least loaded cluster, the first configured on a tie"
    );

    outage.restore();
    app.wait_ready(&far, Duration::from_secs(60)).await;
    stop.cancel();
}

/// A real `tenant-portal serve` process on this test's database.
struct PortalProcess {
    child: std::process::Child,
    base: String,
}

impl PortalProcess {
    async fn start(database_url: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-portal"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--reconcile-workers",
                "2",
            ])
            .env("DATABASE_URL", database_url)
            .env("TP_CLUSTERS", format!("local={}", kubeconfig_path()))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the tenant-portal binary starts");
        let base = format!("http://127.0.0.1:{port}");
        eventually(
            "the portal process is ready",
            Duration::from_secs(30),
            || async {
                reqwest::get(format!("{base}/readyz"))
                    .await
                    .is_ok_and(|r| r.status() == 200)
            },
        )
        .await;
        Self { child, base }
    }
}

impl Drop for PortalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn two_portal_processes_share_the_work_and_one_killed_mid_work_loses_nothing(db: PgPool) {
    let server =
        std::env::var("DATABASE_URL").expect("DATABASE_URL names the test PostgreSQL server");
    let name = db.connect_options().get_database().unwrap().to_string();
    let database_url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
    let token =
        common::create_token(&db, "processes", &[tenant_portal::auth::Scope::Admin], None).await;
    let mut first = PortalProcess::start(&database_url).await;
    let second = PortalProcess::start(&database_url).await;
    let client = reqwest::Client::new();

    let prefix = unique("proc");
    let slugs: Vec<String> = (0..20).map(|i| format!("{prefix}{i}")).collect();
    for slug in &slugs {
        let created = client
            .post(format!("{}/api/v1/tenants", first.base))
            .bearer_auth(&token)
            .json(&json!({"slug": slug, "namespaces": [{"name": "a"}, {"name": "b"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }
    eventually(
        "both replicas writing to the API server",
        Duration::from_secs(30),
        || async { writes_per_replica(&audit::portal_writes(&prefix)).len() == 2 },
    )
    .await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    for slug in &slugs {
        eventually(
            &format!("{slug} Ready"),
            Duration::from_secs(120),
            || async {
                let status: Value = client
                    .get(format!("{}/api/v1/tenants/{slug}/status", second.base))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                status["status"] == "Ready"
            },
        )
        .await;
        assert_eq!(
            applied_events(&db, slug).await,
            1,
            "{slug} recorded as applied once"
        );
    }
    // The API server names who wrote: each process under its own replica.
    let writes = audit::portal_writes(&prefix);
    let per_replica = writes_per_replica(&writes);
    eprintln!("API server audit log: writes per replica {per_replica:?}");
    assert_eq!(
        per_replica.len(),
        2,
        "both replicas wrote, each under its own name: {per_replica:?}"
    );
    assert!(per_replica.values().all(|n| *n > 0), "{per_replica:?}");
    let per_object = writes_per_object(&writes);
    for slug in &slugs {
        for ns in ["a", "b"] {
            let namespace = format!("/{slug}-{ns}");
            assert!(
                per_object
                    .keys()
                    .any(|o| o.starts_with("namespaces/") && o.ends_with(&namespace)),
                "{slug}-{ns} was written"
            );
        }
    }
}

/// The tenant's sync status and message as stored; read from the table, since
/// a tenant whose row does not parse cannot be read through the API.
async fn stored_sync(db: &PgPool, slug: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT sync_status, sync_message FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Asks the reconciler to look at the tenant again, as a committed change would.
async fn requeue(db: &PgPool, slug: &str) {
    let (id, generation): (i64, i64) =
        sqlx::query_as("SELECT id, generation FROM tenants WHERE slug = $1")
            .bind(slug)
            .fetch_one(db)
            .await
            .unwrap();
    let mut conn = db.acquire().await.unwrap();
    let trail = tenant_portal::db::trail::Trail {
        tenant: (id, slug),
        audit: None,
        enqueue: Some(generation),
        events: &[],
    };
    tenant_portal::db::trail::write(&mut conn, trail)
        .await
        .unwrap();
}

/// How long the stalled replica's apply hangs before it gives up: long
/// enough for the other replica to start, claim and apply on a busy machine.
const SLOW_APPLY_TIMEOUT: Duration = Duration::from_secs(15);

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_worker_slower_than_its_lease_is_overtaken_and_only_the_newer_outcome_is_kept(
    db: PgPool,
) {
    // Replica A reaches the cluster through a proxy that takes requests and
    // answers none: its apply hangs past its 1 s lease, which it does not
    // renew in time (a stalled process looks the same), until its own
    // timeout fails it. Replica B reaches the cluster directly.
    let hang = Outage::start().await;
    hang.stall();
    let slow = tenant_portal::reconciler::Settings {
        workers_per_cluster: 1,
        lease: Duration::from_secs(1),
        lease_renewal: Duration::from_secs(600),
        sync_timeout: SLOW_APPLY_TIMEOUT,
        ..fast_settings()
    };
    let (_a, _stop_a) = spawn_reconciler_with(db.clone(), &hang.kubeconfig, slow).await;
    let (spec, clusters) = common::cluster::local_cluster(&kubeconfig_path()).await;
    let app = common::spawn_app_with(db.clone(), vec![spec], clusters).await;
    let slug = unique("lease");
    app.create_tenant(json!({"slug": slug, "namespaces": [{"name": "a"}]}))
        .await;
    let holder = || async {
        let holder: Option<Option<String>> = sqlx::query_scalar("SELECT leased_by FROM outbox")
            .fetch_optional(&db)
            .await
            .unwrap();
        holder.flatten()
    };
    eventually("replica A claims the tenant", READY, || async {
        holder().await.is_some()
    })
    .await;
    let a_holder = holder().await.unwrap_or_default();
    let a_claimed = Instant::now();

    let (_b, _stop_b) = spawn_reconciler(db.clone(), &kubeconfig_path()).await;
    app.wait_ready(&slug, READY).await;
    assert!(
        a_claimed.elapsed() < SLOW_APPLY_TIMEOUT,
        "B finished after A's apply timed out; the test is too slow to show anything"
    );

    // A's apply times out and it comes back with a failure to record.
    tokio::time::sleep(
        SLOW_APPLY_TIMEOUT.saturating_sub(a_claimed.elapsed()) + Duration::from_secs(2),
    )
    .await;
    let (status, message) = stored_sync(&db, &slug).await;
    assert_eq!(
        status, "Ready",
        "B's outcome stands, A's failure is dropped: {message:?}"
    );
    assert_eq!(message, None);
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'tenant.failed'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(failed, 0, "no failure reached the change stream");
    let left: Vec<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT leased_by, last_error FROM outbox")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(left.is_empty(), "A left nothing in the outbox: {left:?}");
    assert_eq!(applied_events(&db, &slug).await, 1);
    let applied_by: Vec<String> = audit::portal_writes(&slug)
        .into_iter()
        .filter(|w| w.code < 400)
        .map(|w| w.user_agent)
        .collect();
    assert!(
        !applied_by.is_empty(),
        "B's writes are in the API server's log"
    );
    assert!(
        a_holder.contains('#'),
        "leases name their claim: {a_holder}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        sample(
            &metrics,
            "reconcile_total{cluster=\"local\",outcome=\"overtaken\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "the dropped outcome is counted"
    );
}

/// The status, observed generation and outbox row (generation, holder) of a tenant.
async fn recorded_state(db: &PgPool, id: i64) -> (String, i64, Option<(i64, Option<String>)>) {
    let (status, observed): (String, i64) =
        sqlx::query_as("SELECT sync_status, observed_generation FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_one(db)
            .await
            .unwrap();
    let outbox = sqlx::query_as("SELECT generation, leased_by FROM outbox WHERE tenant_id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
        .unwrap();
    (status, observed, outbox)
}

async fn count(db: &PgPool, query: &'static str, id: i64) -> i64 {
    sqlx::query_scalar(query)
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_change_committed_while_an_outcome_waits_for_its_locks_goes_to_the_next_worker(
    db: PgPool,
) {
    use tenant_portal::db::sync::{ReadyRecord, record_ready};
    use tenant_portal::db::{outbox, trail};
    let app = common::spawn_app(db.clone()).await;
    let slug = unique("waits");
    app.create_tenant(json!({"slug": slug, "namespaces": [{"name": "a"}]}))
        .await;
    let (id, cluster): (i64, String) =
        sqlx::query_as("SELECT id, cluster FROM tenants WHERE slug = $1")
            .bind(&slug)
            .fetch_one(&db)
            .await
            .unwrap();
    let mut conn = db.acquire().await.unwrap();
    let lease_a = outbox::claim(&mut conn, &cluster, "a#1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the create is due");
    assert_eq!(lease_a.generation, 1);

    // Worker A has applied generation 1; meanwhile an edit of the tenant is
    // committing and holds its rows, as every change does.
    let mut edit = db.begin().await.unwrap();
    sqlx::query("UPDATE tenants SET generation = 2, sync_status = 'Pending' WHERE id = $1")
        .bind(id)
        .execute(&mut *edit)
        .await
        .unwrap();
    let enqueue = trail::Trail {
        tenant: (id, &slug),
        audit: None,
        enqueue: Some(2),
        events: &[],
    };
    trail::write(&mut edit, enqueue).await.unwrap();
    let after = json!({"generation": 1, "applied": 9, "deleted": 0});
    let recording = tokio::spawn({
        let (db, lease, slug, after) = (db.clone(), lease_a.clone(), slug.clone(), after.clone());
        async move {
            let mut conn = db.acquire().await.unwrap();
            record_ready(&mut conn, &lease, 1, &slug, "system:reconciler", &after).await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !recording.is_finished(),
        "A's outcome waits for the edit's locks"
    );
    edit.commit().await.unwrap();
    let recorded = recording.await.unwrap().unwrap();
    assert_eq!(recorded, ReadyRecord::Kept);
    assert_eq!(
        recorded_state(&db, id).await,
        ("Pending".to_string(), 1, Some((2, None))),
        "generation 1 is recorded, and the outbox row is released for generation 2, not removed or left leased"
    );
    let applied =
        "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'tenant.applied'";
    let ready = "SELECT count(*) FROM events WHERE tenant_id = $1 AND type = 'tenant.ready'";
    assert_eq!(count(&db, applied, id).await, 1);
    assert_eq!(count(&db, ready, id).await, 0, "not Ready at generation 2");

    // The next worker may take generation 2 at once; A's lease is over.
    let lease_b = outbox::claim(&mut conn, &cluster, "b#1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the edit is due at once");
    assert_eq!(lease_b.generation, 2);
    assert_eq!(
        record_ready(&mut conn, &lease_a, 1, &slug, "system:reconciler", &after)
            .await
            .unwrap(),
        ReadyRecord::Dropped {
            holder: Some("b#1".to_string())
        },
        "a second outcome of A writes nothing"
    );
    let after = json!({"generation": 2, "applied": 1, "deleted": 0});
    assert_eq!(
        record_ready(&mut conn, &lease_b, 2, &slug, "system:reconciler", &after)
            .await
            .unwrap(),
        ReadyRecord::Kept
    );
    assert_eq!(
        recorded_state(&db, id).await,
        ("Ready".to_string(), 2, None)
    );
    assert_eq!(count(&db, applied, id).await, 2);
    assert_eq!(count(&db, ready, id).await, 1);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_stored_row_that_does_not_parse_fails_its_tenant_and_never_unlimits_its_quota(
    db: PgPool,
) {
    let portal = spawn_portal(db.clone(), &kubeconfig_path()).await;
    let slug = unique("rot");
    portal.app.create_tenant(tenant(&slug)).await;
    portal.app.wait_ready(&slug, READY).await;
    let quotas: Api<ResourceQuota> = Api::namespaced(kube().await, &format!("{slug}-dev"));
    let hard = |q: ResourceQuota| q.spec.and_then(|s| s.hard).unwrap_or_default();
    let before = hard(quotas.get("tenant-quota").await.unwrap());
    assert_eq!(before["requests.cpu"].0, "500m");

    // The CHECK constraints would refuse the bad enums; a row can still rot
    // (a hand edit, a restore from an older schema), so they are dropped here.
    for constraint in [
        "ALTER TABLE tenants DROP CONSTRAINT tenants_state_check",
        "ALTER TABLE members DROP CONSTRAINT members_role_check",
        "ALTER TABLE members DROP CONSTRAINT members_kind_check",
    ] {
        sqlx::query(constraint).execute(&db).await.unwrap();
    }
    let cases = [
        (
            "UPDATE tenants SET budget = '{\"requests.cpu\": \"lots\"}' WHERE slug = $1",
            "UPDATE tenants SET budget = '{\"requests.cpu\": \"2\", \"requests.memory\": \"2Gi\", \"pods\": \"10\"}' WHERE slug = $1",
            "tenants (id",
        ),
        (
            "UPDATE namespaces SET allocations = '{\"requests.cpu\": \"-1\"}' WHERE full_name = $1 || '-dev'",
            "UPDATE namespaces SET allocations = '{\"requests.cpu\": \"500m\", \"requests.memory\": \"512Mi\", \"pods\": \"4\"}' WHERE full_name = $1 || '-dev'",
            "namespaces or members",
        ),
        (
            "UPDATE tenants SET state = 'frozen' WHERE slug = $1",
            "UPDATE tenants SET state = 'active' WHERE slug = $1",
            "frozen",
        ),
        (
            "UPDATE members SET role = 'superuser' FROM tenants t WHERE t.id = members.tenant_id AND t.slug = $1 AND members.role = 'viewer'",
            "UPDATE members SET role = 'viewer' FROM tenants t WHERE t.id = members.tenant_id AND t.slug = $1 AND members.role = 'superuser'",
            "superuser",
        ),
        (
            "UPDATE members SET kind = 'robot' FROM tenants t WHERE t.id = members.tenant_id AND t.slug = $1 AND members.kind = 'user'",
            "UPDATE members SET kind = 'user' FROM tenants t WHERE t.id = members.tenant_id AND t.slug = $1 AND members.kind = 'robot'",
            "robot",
        ),
    ];
    for (corrupt, repair, named) in cases {
        let done = sqlx::query(corrupt).bind(&slug).execute(&db).await.unwrap();
        assert_eq!(done.rows_affected(), 1, "{corrupt}");
        requeue(&db, &slug).await;
        eventually(&format!("Failed after: {corrupt}"), READY, || async {
            stored_sync(&db, &slug).await.0 == "Failed"
        })
        .await;
        let (_, message) = stored_sync(&db, &slug).await;
        let message = message.unwrap_or_default();
        assert!(
            message.contains("does not parse") && message.contains(named),
            "the message says what does not parse ({named}): {message}"
        );
        let (status, problem) =
            common::problem(portal.app.get(&format!("/api/v1/tenants/{slug}")).await).await;
        assert_eq!(
            status, 500,
            "a rotten row is not served as if it were fine: {problem}"
        );
        assert_eq!(
            hard(quotas.get("tenant-quota").await.unwrap()),
            before,
            "the quota in the cluster is untouched after: {corrupt}"
        );

        sqlx::query(repair).bind(&slug).execute(&db).await.unwrap();
        requeue(&db, &slug).await;
        portal.app.wait_ready(&slug, READY).await;
    }
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE type = 'tenant.failed' AND tenant_slug = $1",
    )
    .bind(&slug)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        failed,
        cases.len() as i64,
        "each failure is on the change stream"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_slow_worker_that_renews_its_lease_keeps_the_tenant_until_its_apply_times_out(
    db: PgPool,
) {
    // A's cluster hangs; A renews its 1 s lease every 300 ms for the 4 s its
    // apply may take. B, on the same database, must leave the tenant alone
    // meanwhile, and A's timeout is then recorded as the failure it is.
    let hang = Outage::start().await;
    hang.stall();
    let slow = tenant_portal::reconciler::Settings {
        workers_per_cluster: 1,
        lease: Duration::from_secs(1),
        lease_renewal: Duration::from_millis(300),
        sync_timeout: Duration::from_secs(4),
        ..fast_settings()
    };
    let (_a, stop_a) = spawn_reconciler_with(db.clone(), &hang.kubeconfig, slow).await;
    let (spec, clusters) = common::cluster::local_cluster(&kubeconfig_path()).await;
    let app = common::spawn_app_with(db.clone(), vec![spec], clusters).await;
    let slug = unique("renew");
    app.create_tenant(json!({"slug": slug, "namespaces": [{"name": "a"}]}))
        .await;
    let holder = || async {
        let holder: Option<Option<String>> = sqlx::query_scalar("SELECT leased_by FROM outbox")
            .fetch_optional(&db)
            .await
            .unwrap();
        holder.flatten()
    };
    eventually("replica A claims the tenant", READY, || async {
        holder().await.is_some()
    })
    .await;
    let a_holder = holder().await.unwrap();
    let (_b, _stop_b) = spawn_reconciler(db.clone(), &kubeconfig_path()).await;

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        holder().await.as_deref(),
        Some(a_holder.as_str()),
        "A still holds its renewed lease"
    );
    assert!(
        audit::portal_writes(&slug).is_empty(),
        "B wrote nothing for a tenant A holds"
    );
    eventually("A's timeout recorded as Failed", READY, || async {
        stored_sync(&db, &slug).await.0 == "Failed"
    })
    .await;
    let (_, message) = stored_sync(&db, &slug).await;
    assert!(
        message
            .as_deref()
            .unwrap_or("")
            .contains("did not finish the apply"),
        "{message:?}"
    );
    // With A gone, the tenant is B's to apply.
    stop_a.cancel();
    requeue(&db, &slug).await;
    app.wait_ready(&slug, Duration::from_secs(30)).await;
}

/// The portal's entries in the object's `metadata.managedFields`: operation
/// and subresource of each.
fn portal_entries(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|e| e.manager.as_deref() == Some("tenant-portal"))
        .map(|e| {
            format!(
                "{}{}",
                e.operation.as_deref().unwrap_or("?"),
                e.subresource
                    .as_deref()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_field_the_portal_stops_setting_on_an_object_it_created_goes_and_the_object_rests(
    db: PgPool,
) {
    // What the cache does not hold is created, not applied: the portal then
    // holds its fields as an update, which an apply alone would never take
    // away. Dropping `pods` from the budget must still drop it from every
    // quota, in a quota only created (a) and in one the portal had also
    // applied to before its watch showed it (b, made here by hand), and the
    // next resync must find nothing left to write.
    let portal = spawn_portal(db.clone(), &kubeconfig_path()).await;
    let slug = unique("owned");
    portal
        .app
        .create_tenant(json!({
            "slug": slug,
            "budget": {"requests.cpu": "2", "pods": "10"},
            "namespaces": [
                {"name": "a", "allocations": {"requests.cpu": "1"}},
                {"name": "b", "allocations": {"requests.cpu": "1"}}
            ]
        }))
        .await;
    portal.app.wait_ready(&slug, READY).await;
    let client = kube().await;
    let quota = |namespace: &str| -> Api<ResourceQuota> {
        Api::namespaced(client.clone(), &format!("{slug}-{namespace}"))
    };
    for namespace in ["a", "b"] {
        let created = quota(namespace).get("tenant-quota").await.unwrap();
        assert_eq!(created.spec.unwrap().hard.unwrap()["pods"].0, "0");
        assert_eq!(
            portal_entries(&created.metadata),
            ["Update"],
            "the quota in {namespace} was created by the portal, not applied"
        );
    }
    let also_applied = json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "tenant-quota"},
        "spec": {"hard": {"requests.cpu": "1", "pods": "0"}}
    });
    quota("b")
        .patch(
            "tenant-quota",
            &PatchParams::apply("tenant-portal").force(),
            &Patch::Apply(&also_applied),
        )
        .await
        .unwrap();
    eventually(
        "the portal's watch shows both of b's entries",
        READY,
        || async {
            let meta = quota("b").get("tenant-quota").await.unwrap().metadata;
            portal_entries(&meta).len() == 2
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let response = portal
        .app
        .request(Method::PUT, &format!("/api/v1/tenants/{slug}/budget"))
        .json(&json!({"budget": {"requests.cpu": "2"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    for namespace in ["a", "b"] {
        eventually(
            &format!("pods leaves the quota in {namespace}"),
            READY,
            || async {
                let hard = quota(namespace).get("tenant-quota").await.unwrap();
                !hard.spec.unwrap().hard.unwrap().contains_key("pods")
            },
        )
        .await;
        let meta = quota(namespace).get("tenant-quota").await.unwrap().metadata;
        assert_eq!(
            portal_entries(&meta),
            ["Apply"],
            "the portal holds {namespace}'s quota as its applier alone"
        );
    }
    portal.app.wait_ready(&slug, READY).await;
    assert_eq!(
        writes_in_a_resync(&db, &slug, 1).await,
        0,
        "a resync after the change finds every object as desired"
    );
}
