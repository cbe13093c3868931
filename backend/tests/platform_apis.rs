//! Platform APIs: a custom resource the cluster's admin installs (the
//! project's example, `widgets.examples.tenant-portal.dev`), published in
//! the portal to one tenant and not another, used through the tenant API
//! and directly, counted by the tenant's budget, and withdrawn, against the
//! real API server, its admission policies and quota.

mod common;

use std::time::Duration;

use common::cluster::{kube, unique};
use common::tenant_api::{
    Kubeconfig, kubectl, kubectl_with, lines, member_kubeconfig, portal, stack_kubectl,
};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use kube::api::Api;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::config::TenantApiConfig;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
const READY: Duration = Duration::from_secs(30);
const WIDGETS: &str = "widgets.examples.tenant-portal.dev";
const EXAMPLE: &str = "../deploy/kubernetes/examples/platform-api-widgets.yaml";

/// Installs the example CRD and its roles (as the platform team does) and
/// waits until the API server serves it.
async fn install_widgets() {
    let applied = std::process::Command::new(stack_kubectl())
        .args(["apply", "--server-side", "--force-conflicts", "-f", EXAMPLE])
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    // The quota controller takes up a new custom resource on its next
    // discovery (every 30 s); a quota synced before then never counts it
    // until the controller's full resync (5 min). A quota of a namespace of
    // its own shows when it does.
    let probe = unique("widgets-probe-");
    let namespaces: Api<Namespace> = Api::all(kube().await);
    namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": probe}})).unwrap(),
        )
        .await
        .unwrap();
    // A quota is computed with the resources the controller knew when it
    // synced the quota, so a probe made too early is made again.
    let quotas: Api<ResourceQuota> = Api::namespaced(kube().await, &probe);
    let key = format!("count/{WIDGETS}");
    let mut counted = false;
    for attempt in 0..12 {
        let name = format!("probe-{attempt}");
        quotas
            .create(
                &Default::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"hard": {key.clone(): "1"}},
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        for _ in 0..20 {
            let used = quotas
                .get(&name)
                .await
                .ok()
                .and_then(|q| q.status)
                .and_then(|s| s.used);
            if used.is_some_and(|used| used.contains_key(&key)) {
                counted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if counted {
            break;
        }
    }
    assert!(counted, "the quota controller never counted {WIDGETS}");
    namespaces
        .delete(&probe, &Default::default())
        .await
        .unwrap();
}

/// Waits until every namespace of the tenant carries `expected` as its
/// platform APIs (what the admission policy reads).
async fn published_in_cluster(slug: &str, expected: &str) {
    let namespaces: Api<Namespace> = Api::all(kube().await);
    let mut last = String::new();
    for _ in 0..150 {
        let mut all_match = true;
        for name in ["dev", "prod"] {
            let found = namespaces
                .get_opt(&format!("{slug}-{name}"))
                .await
                .unwrap()
                .and_then(|n| n.metadata.annotations)
                .and_then(|a| a.get("tenant-portal.dev/platform-apis").cloned())
                .unwrap_or_else(|| "(none)".into());
            if found != expected {
                all_match = false;
                last = found;
            }
        }
        if all_match {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{slug}'s namespaces carry platform APIs {last:?}, not {expected:?}");
}

fn widget(name: &str, namespace: &str) -> String {
    json!({
        "apiVersion": "examples.tenant-portal.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"size": "small"},
    })
    .to_string()
}

/// Applies a widget in `namespace` (`dev` through the tenant API, the
/// full name directly).
async fn apply_widget(config: &Kubeconfig, name: &str, namespace: &str) -> common::tenant_api::Run {
    kubectl_with(
        &config.path(),
        &["apply", "-f", "-"],
        Some(widget(name, namespace)),
    )
    .await
}

/// The tenant's cluster kubeconfig (its automation account, an editor), as
/// a file: the direct way in, without the tenant API.
async fn direct_kubeconfig(app: &common::TestApp, slug: &str) -> Kubeconfig {
    Kubeconfig::written(common::automation_kubeconfig(app, slug).await)
}

async fn tenant(app: &common::TestApp, prefix: &str, widgets: &str) -> String {
    let slug = unique(prefix);
    app.create_tenant(json!({
        "slug": slug,
        "budget": {"requests.cpu": "2", "requests.memory": "4Gi", "pods": "10",
                   format!("count/{WIDGETS}"): widgets},
        "namespaces": [
            {"name": "dev", "allocations": {format!("count/{WIDGETS}"): widgets}},
            {"name": "prod"}
        ],
        "members": [
            {"kind": "user", "subject": "alice@example.com", "role": "owner"},
            {"kind": "user", "subject": "bob@example.com", "role": "viewer"}
        ]
    }))
    .await;
    app.wait_ready(&slug, READY).await;
    widgets_counted(&format!("{slug}-dev")).await;
    slug
}

/// Waits until the quota controller counts widgets in the namespace: until
/// it does, quota admission refuses every widget ("status unknown").
async fn widgets_counted(namespace: &str) {
    let quotas: Api<ResourceQuota> = Api::namespaced(kube().await, namespace);
    let key = format!("count/{WIDGETS}");
    common::cluster::eventually("widgets counted", Duration::from_secs(90), || async {
        quotas.get("tenant-quota").await.is_ok_and(|q| {
            q.status
                .and_then(|s| s.used)
                .is_some_and(|used| used.contains_key(&key))
        })
    })
    .await;
}

async fn publish(app: &common::TestApp, body: Value) -> (u16, Value) {
    let response = app
        .request(Method::PUT, &format!("/api/v1/platform-apis/{WIDGETS}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_published_api_is_usable_and_counted_by_its_tenant_and_invisible_to_another(db: PgPool) {
    install_widgets().await;
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let acme = tenant(app, "pubacme", "2").await;
    let other = tenant(app, "pubother", "2").await;

    // Publishing checks its words and the cluster.
    for (name, says) in [
        ("deployments.apps", "Kubernetes' own"),
        ("clusterroles.rbac.authorization.k8s.io", "Kubernetes' own"),
        (
            "nothings.examples.tenant-portal.dev",
            "no connected cluster serves",
        ),
    ] {
        let response = app
            .request(Method::PUT, &format!("/api/v1/platform-apis/{name}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let (status, problem) = common::problem(response).await;
        assert_eq!(status, 422, "{name}: {problem}");
        assert!(problem.to_string().contains(says), "{name}: {problem}");
    }
    let (status, problem) = publish(app, json!({"tenants": ["no-such-tenant"]})).await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem.to_string().contains("tenants[0]"), "{problem}");

    let (status, published) = publish(
        app,
        json!({"description": "Widgets for the examples", "tenants": [acme]}),
    )
    .await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["name"], WIDGETS);
    assert_eq!(published["tenants"], json!([acme]));
    assert_eq!(published["clusters"]["local"], Value::Null, "{published}");
    let listed: Value = app.get("/api/v1/platform-apis").await.json().await.unwrap();
    assert_eq!(listed["platform_apis"][0]["name"], WIDGETS, "{listed}");
    published_in_cluster(&acme, WIDGETS).await;
    published_in_cluster(&other, "").await;

    // acme: discovery lists it, without warnings; kubectl works with it,
    // converted like any namespaced resource.
    let alice = member_kubeconfig(&setup, "ALICE", &acme).await;
    let resources = kubectl(&alice, &["api-resources", "-o", "name"]).await;
    assert!(resources.ok, "{}", resources.stderr);
    assert!(resources.stderr.trim().is_empty(), "{}", resources.stderr);
    assert!(lines(&resources).contains(&WIDGETS), "{}", resources.stdout);
    let explained = kubectl(&alice, &["explain", "widgets.spec.size"]).await;
    assert!(explained.ok, "{}", explained.stderr);
    assert!(
        explained.stdout.contains("small, medium or large"),
        "{}",
        explained.stdout
    );
    let made = apply_widget(&alice, "first", "dev").await;
    assert!(made.ok, "{}", made.stderr);
    let read = kubectl(
        &alice,
        &["get", "widget", "first", "-n", "dev", "-o", "json"],
    )
    .await;
    assert!(read.ok, "{}", read.stderr);
    let read: Value = serde_json::from_str(&read.stdout).unwrap();
    assert_eq!(read["metadata"]["namespace"], "dev");
    let all = kubectl(&alice, &["get", "widgets", "-A"]).await;
    assert!(all.ok && all.stdout.contains("first"), "{}", all.stderr);

    // Its viewer reads and may not write (RBAC).
    let bob = member_kubeconfig(&setup, "BOB", &acme).await;
    let viewed = kubectl(&bob, &["get", "widgets", "-n", "dev"]).await;
    assert!(
        viewed.ok && viewed.stdout.contains("first"),
        "{}",
        viewed.stderr
    );
    let refused = apply_widget(&bob, "by-viewer", "dev").await;
    assert!(
        !refused.ok && refused.stderr.contains("forbidden"),
        "{}",
        refused.stderr
    );

    // The budget counts them: the third is refused by the API server's quota.
    let second = apply_widget(&alice, "second", "dev").await;
    assert!(second.ok, "{}", second.stderr);
    let third = apply_widget(&alice, "third", "dev").await;
    assert!(
        !third.ok && third.stderr.contains("exceeded quota"),
        "{}",
        third.stderr
    );

    // The other tenant: not in discovery, not served by the tenant API,
    // and refused by the admission policy when it goes to the cluster directly.
    let carol = member_kubeconfig(&setup, "ALICE", &other).await;
    let theirs = kubectl(&carol, &["api-resources", "-o", "name"]).await;
    assert!(!lines(&theirs).contains(&WIDGETS), "{}", theirs.stdout);
    let unknown = kubectl(&carol, &["get", "widgets", "-n", "dev"]).await;
    assert!(
        !unknown.ok && unknown.stderr.contains("doesn't have a resource type"),
        "{}",
        unknown.stderr
    );
    let by_path = kubectl(
        &carol,
        &[
            "get",
            "--raw",
            "/apis/examples.tenant-portal.dev/v1/namespaces/dev/widgets",
        ],
    )
    .await;
    assert!(
        !by_path.ok && by_path.stderr.contains("NotFound"),
        "{}",
        by_path.stderr
    );
    let direct = direct_kubeconfig(app, &other).await;
    let refused = apply_widget(&direct, "sneaky", &format!("{other}-dev")).await;
    assert!(
        !refused.ok
            && refused.stderr.contains("tenant-portal-platform-apis")
            && refused
                .stderr
                .contains("not a platform API published to the tenant"),
        "{}",
        refused.stderr
    );

    // A tenant's policy narrows what is published to it.
    let response = app
        .request(Method::PUT, &format!("/api/v1/tenants/{acme}/policy"))
        .json(&json!({"platform_apis": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    published_in_cluster(&acme, "").await;
    let response = app
        .request(Method::DELETE, &format!("/api/v1/tenants/{acme}/policy"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    published_in_cluster(&acme, WIDGETS).await;

    // Withdrawn: no more writes, directly or through the tenant API; its
    // objects may still be deleted.
    let response = app
        .request(Method::DELETE, &format!("/api/v1/platform-apis/{WIDGETS}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    published_in_cluster(&acme, "").await;
    let direct = direct_kubeconfig(app, &acme).await;
    let refused = apply_widget(&direct, "after", &format!("{acme}-dev")).await;
    assert!(
        !refused.ok && refused.stderr.contains("not a platform API published"),
        "{}",
        refused.stderr
    );
    let cleaned = kubectl_with(
        &direct.path(),
        &["delete", "widget", "first", "-n", &format!("{acme}-dev")],
        None,
    )
    .await;
    assert!(cleaned.ok, "{}", cleaned.stderr);
    let audit: Value = app
        .get("/api/v1/audit-events?action=platform_api.withdrawn")
        .await
        .json()
        .await
        .unwrap();
    assert!(audit.to_string().contains(WIDGETS), "{audit}");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn only_platform_admins_publish(db: PgPool) {
    let app = common::spawn_app(db.clone()).await;
    let token = common::create_token(
        &db,
        "not-an-admin",
        &[
            tenant_portal::auth::Scope::TenantsRead,
            tenant_portal::auth::Scope::TenantsWrite,
        ],
        None,
    )
    .await;
    let response = app
        .client
        .put(format!("{}/api/v1/platform-apis/{WIDGETS}", app.base))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (status, problem) = common::problem(response).await;
    assert_eq!(status, 403, "{problem}");
    assert!(
        problem.to_string().contains("publish platform APIs"),
        "{problem}"
    );
    let response = app
        .client
        .get(format!("{}/api/v1/platform-apis", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn platform_admins_publish_and_withdraw_on_the_dashboard(db: PgPool) {
    install_widgets().await;
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let admin = common::idp::login_as(app, "ADMIN").await;
    let carol = common::idp::login_as(app, "CAROL").await;

    let refused = carol.get("/admin/platform-apis").await;
    assert_eq!(
        refused.status(),
        403,
        "only platform admins see the catalog"
    );
    let page = admin.get("/admin/platform-apis").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Nothing is published yet.")
    );

    let post = |fields: Vec<(&'static str, String)>| {
        admin
            .change(Method::POST, "/admin/platform-apis")
            .form(&fields)
            .send()
    };
    let forged = post(vec![("name", WIDGETS.to_string())]).await.unwrap();
    assert_eq!(
        forged.status(),
        403,
        "a form without its CSRF token field is refused, whatever its headers"
    );
    let bad = post(vec![
        ("_csrf", admin.csrf_token.clone()),
        ("name", "deployments.apps".to_string()),
    ])
    .await
    .unwrap();
    let status = bad.status();
    let html = bad.text().await.unwrap();
    assert_eq!(status, 422, "{html}");
    assert!(
        html.contains("Kubernetes&#39; own") || html.contains("Kubernetes' own"),
        "{html}"
    );
    assert!(html.contains(r#"aria-invalid="true""#), "{html}");
    let published = post(vec![
        ("_csrf", admin.csrf_token.clone()),
        ("name", WIDGETS.to_string()),
        ("description", "Widgets for everyone".to_string()),
        ("tenants", String::new()),
    ])
    .await
    .unwrap();
    assert!(published.status().is_success() || published.status().is_redirection());
    let html = admin
        .get("/admin/platform-apis")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(WIDGETS) && html.contains("every tenant"),
        "{html}"
    );

    let withdrawn = admin
        .change(
            Method::POST,
            &format!("/admin/platform-apis/{WIDGETS}/withdraw"),
        )
        .form(&[("_csrf", admin.csrf_token.as_str())])
        .send()
        .await
        .unwrap();
    let status = withdrawn.status();
    assert!(
        status.is_success() || status.is_redirection(),
        "{status}: {}",
        withdrawn.text().await.unwrap()
    );
    let html = admin
        .get("/admin/platform-apis")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Nothing is published yet."), "{html}");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_tenant_s_status_says_when_its_cluster_stops_serving_a_published_api(db: PgPool) {
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let group = format!("{}.examples.tenant-portal.dev", unique("g"));
    let name = format!("gadgets.{group}");
    let definitions: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(kube().await);
    definitions
        .create(
            &Default::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {
                    "group": group,
                    "scope": "Namespaced",
                    "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object"}}}],
                },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let slug = unique("pubstatus");
    app.create_tenant(json!({"slug": slug, "namespaces": [{"name": "dev"}]}))
        .await;
    let status = |slug: String| async move {
        let status: Value = app
            .get(&format!("/api/v1/tenants/{slug}/status"))
            .await
            .json()
            .await
            .unwrap();
        status["platform_apis"].clone()
    };
    assert_eq!(
        status(slug.clone()).await,
        json!([]),
        "nothing published yet"
    );
    let mut published = (0, Value::Null);
    for _ in 0..50 {
        published = {
            let response = app
                .request(Method::PUT, &format!("/api/v1/platform-apis/{name}"))
                .json(&json!({"tenants": [slug]}))
                .send()
                .await
                .unwrap();
            let code = response.status().as_u16();
            (code, response.json().await.unwrap_or(Value::Null))
        };
        if published.0 == 200 {
            break;
        }
        // The API server serves a new CRD a moment after it is made.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(published.0, 200, "{}", published.1);
    assert_eq!(
        status(slug.clone()).await,
        json!([{"name": name, "served": true, "message": null}])
    );

    definitions
        .delete(&name, &Default::default())
        .await
        .unwrap();
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = status(slug.clone()).await;
        if seen[0]["served"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen[0]["served"], false, "{seen}");
    let message = seen[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("does not serve") && message.contains(&name),
        "{message}"
    );
}
