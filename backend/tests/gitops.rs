//! GitOps credentials per tenant, against the real API server: the Argo CD
//! cluster Secret and the Flux kubeconfig Secret an owner asks for, their
//! shape, their token at the tenant API (kubectl with the Secret's own
//! kubeconfig), its rotation before expiry, repair of a removed Secret,
//! and their removal when the owner says so or the tenant goes; plus what
//! a stranger, a viewer, another tenant and another portal can do with it.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::cluster::{
    eventually, fast_settings, kube, kubeconfig_path, spawn_portal_config, spawn_reconciler_with,
    unique,
};
use common::idp::{login_as, login_config};
use common::tenant_api::{Kubeconfig, kubectl, lines};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::config::{GitopsConfig, ServeConfig};
use tenant_portal::reconciler::Settings;
use tenant_portal::service::gitops::Keeper;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
const SOON: Duration = Duration::from_secs(20);
/// Short, so a rotation happens within the test: a new token when 4 s are left.
const TOKEN_TTL: Duration = Duration::from_secs(12);

struct Setup {
    portal: common::cluster::Portal,
    front: common::tls::TlsFront,
    secrets: Api<Secret>,
    namespace: String,
    _keeper: tokio_util::sync::CancellationToken,
}

/// A portal whose GitOps Secrets go to a namespace of this test's own on
/// the stack's cluster, its tenant API behind a TLS front, and a second
/// replica that runs the keeper (as any replica may).
async fn setup(db: PgPool) -> Setup {
    let namespace = unique("gitops-");
    let namespaces: Api<Namespace> = Api::all(kube().await);
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .unwrap();
    let gitops = GitopsConfig {
        cluster: Some("local".into()),
        namespace: namespace.clone(),
        token_ttl: TOKEN_TTL,
    };
    let config = ServeConfig {
        login: login_config(),
        gitops: gitops.clone(),
        ..common::config()
    };
    let portal = spawn_portal_config(db.clone(), &kubeconfig_path(), config).await;
    let front = common::tls::start(portal.app.base.trim_start_matches("http://").to_string()).await;
    let keeper = Keeper {
        cluster: "local".into(),
        namespace: namespace.clone(),
        token_ttl: TOKEN_TTL,
        public_url: front.url.clone(),
        ca_data: Some(base64::engine::general_purpose::STANDARD.encode(&front.ca_pem)),
    };
    let (tasks, stop) = spawn_reconciler_with(
        db,
        &kubeconfig_path(),
        Settings {
            gitops: Some(Arc::new(keeper)),
            ..fast_settings()
        },
    )
    .await;
    // The keeper's tasks live as long as the test's runtime.
    std::mem::forget(tasks);
    Setup {
        secrets: Api::namespaced(kube().await, &namespace),
        namespace,
        portal,
        front,
        _keeper: stop,
    }
}

fn acme_like(slug: &str) -> Value {
    json!({
        "slug": slug,
        "namespaces": [{"name": "dev"}, {"name": "prod"}],
        "members": [
            {"kind": "group", "subject": "team-acme", "role": "owner"},
            {"kind": "user", "subject": "carol@example.com", "role": "viewer"}
        ]
    })
}

async fn put_gitops(setup: &Setup, slug: &str, body: Value) -> reqwest::Response {
    setup
        .portal
        .app
        .request(Method::PUT, &format!("/api/v1/tenants/{slug}/gitops"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn decoded(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8(v.0.clone()).unwrap()))
        .collect()
}

async fn secret(setup: &Setup, name: &str) -> Option<Secret> {
    setup.secrets.get_opt(name).await.unwrap()
}

/// The Argo CD Secret's cluster as a kubeconfig, written as Argo CD would
/// read it: server, bearer token and CA from the Secret alone.
fn argo_kubeconfig(data: &BTreeMap<String, String>) -> Kubeconfig {
    let config: Value = serde_json::from_str(&data["config"]).unwrap();
    let yaml = serde_saphyr::to_string(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "argo", "cluster": {
            "server": data["server"],
            "certificate-authority-data": config["tlsClientConfig"]["caData"],
        }}],
        "users": [{"name": "argo", "user": {"token": config["bearerToken"]}}],
        "contexts": [{"name": "argo", "context": {"cluster": "argo", "user": "argo", "namespace": "dev"}}],
        "current-context": "argo",
    }))
    .unwrap();
    Kubeconfig::written(yaml)
}

fn flux_token(data: &BTreeMap<String, String>) -> String {
    let config: Value = serde_saphyr::from_str(&data["value"]).unwrap();
    config["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_owner_s_gitops_secrets_reach_only_the_tenant_rotate_and_go_with_it(db: PgPool) {
    let setup = setup(db.clone()).await;
    let app = &setup.portal.app;
    let slug = unique("gito");
    app.create_tenant(acme_like(&slug)).await;
    app.wait_ready(&slug, SOON).await;

    // Who may ask: an owner; a viewer is told the role it needs; a
    // stranger learns nothing of the tenant.
    let carol = login_as(app, "CAROL").await;
    let refused = carol
        .change(Method::PUT, &format!("/api/v1/tenants/{slug}/gitops"))
        .json(&json!({"argocd": true, "flux": false}))
        .send()
        .await
        .unwrap();
    let (status, problem) = common::problem(refused).await;
    assert_eq!(status, 403, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("owner"),
        "{problem}"
    );
    let bob = login_as(app, "BOB").await;
    let hidden = bob
        .change(Method::PUT, &format!("/api/v1/tenants/{slug}/gitops"))
        .json(&json!({"argocd": true, "flux": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404);
    // A body that is not the document: the field and the rule are named.
    let (status, problem) = common::problem(
        put_gitops(
            &setup,
            &slug,
            json!({"argocd": true, "flux": true, "helm": true}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem.to_string().contains("helm"), "{problem}");

    // A viewer's page shows no form; the owner's does, and takes it only
    // with the session's CSRF token.
    let page = carol
        .get(&format!("/tenants/{slug}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("GitOps credentials") && !page.contains("Save GitOps credentials"));
    let alice = login_as(app, "ALICE").await;
    let page = alice
        .get(&format!("/tenants/{slug}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Save GitOps credentials"), "{page}");
    let post = |fields: Vec<(&'static str, String)>| {
        alice
            .change(Method::POST, &format!("/tenants/{slug}/gitops"))
            .form(&fields)
            .send()
    };
    let forged = post(vec![("argocd", "on".into()), ("flux", "on".into())])
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        403,
        "a form without its CSRF token is refused"
    );
    let saved = post(vec![
        ("_csrf", alice.csrf_token.clone()),
        ("argocd", "on".into()),
        ("flux", "on".into()),
    ])
    .await
    .unwrap();
    assert!(
        saved.status().is_redirection() || saved.status().is_success(),
        "{}",
        saved.status()
    );
    let answer: Value = app
        .get(&format!("/api/v1/tenants/{slug}/gitops"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["namespace"], setup.namespace);
    assert_eq!(
        answer["requested_by"]
            .as_str()
            .map(|r| r.starts_with("user:")),
        Some(true),
        "{answer}"
    );
    assert_eq!(
        answer["secrets"],
        json!([{"tool": "argocd", "name": format!("tenant-{slug}-argocd")},
               {"tool": "flux", "name": format!("tenant-{slug}-flux")}])
    );
    let argo_name = format!("tenant-{slug}-argocd");
    let flux_name = format!("tenant-{slug}-flux");
    eventually("both Secrets written", SOON, || async {
        secret(&setup, &argo_name).await.is_some() && secret(&setup, &flux_name).await.is_some()
    })
    .await;

    // The documented shape.
    let argo = secret(&setup, &argo_name).await.unwrap();
    let labels = argo.metadata.labels.clone().unwrap();
    assert_eq!(labels["argocd.argoproj.io/secret-type"], "cluster");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "tenant-portal");
    assert_eq!(labels["tenant-portal.dev/tenant"], slug);
    let data = decoded(&argo);
    assert_eq!(data["name"], slug);
    assert_eq!(
        data["server"],
        format!("{}/k8s/tenants/{slug}", setup.front.url)
    );
    assert_eq!(data["namespaces"], "dev,prod");
    assert_eq!(data["clusterResources"], "false");
    let flux = secret(&setup, &flux_name).await.unwrap();
    assert!(
        !flux
            .metadata
            .labels
            .clone()
            .unwrap()
            .contains_key("argocd.argoproj.io/secret-type")
    );
    let flux_data = decoded(&flux);
    assert_eq!(flux_token(&flux_data), {
        let config: Value = serde_json::from_str(&data["config"]).unwrap();
        config["bearerToken"].as_str().unwrap().to_string()
    });

    // The token works at the tenant API, as the tenant's automation
    // account, and sees only this tenant's namespaces, by its names.
    let flux_config = Kubeconfig::written(flux_data["value"].clone());
    let run = kubectl(&flux_config, &["get", "namespaces", "-o", "name"]).await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(lines(&run), ["namespace/dev", "namespace/prod"]);
    let argo_config = argo_kubeconfig(&data);
    let made = kubectl(
        &argo_config,
        &["create", "configmap", "from-argo", "--from-literal=a=b"],
    )
    .await;
    assert!(made.ok, "{}", made.stderr);
    let seen = kubectl(
        &flux_config,
        &["get", "configmap", "from-argo", "-n", "dev", "-o", "name"],
    )
    .await;
    assert!(seen.ok, "{}", seen.stderr);

    // Against another tenant's API, the token is refused.
    let other = unique("gito");
    app.create_tenant(acme_like(&other)).await;
    let token = flux_token(&flux_data);
    let stranger = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(setup.front.ca_pem.as_bytes()).unwrap(),
        )
        .build()
        .unwrap()
        .get(format!(
            "{}/k8s/tenants/{other}/api/v1/namespaces",
            setup.front.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        stranger.status(),
        401,
        "another tenant's API refuses the token"
    );

    // Rotation: before the token's last third, a new one in both Secrets;
    // the new one works.
    let expires_before =
        argo.metadata.annotations.clone().unwrap()["tenant-portal.dev/token-expires-at"].clone();
    eventually("the token rotated", SOON, || async {
        let now = secret(&setup, &flux_name).await.unwrap();
        flux_token(&decoded(&now)) != token
    })
    .await;
    eventually("both Secrets carry the new token", SOON, || async {
        let argo = decoded(&secret(&setup, &argo_name).await.unwrap());
        let flux = decoded(&secret(&setup, &flux_name).await.unwrap());
        let config: Value = serde_json::from_str(&argo["config"]).unwrap();
        config["bearerToken"].as_str() == Some(flux_token(&flux).as_str())
    })
    .await;
    let rotated = secret(&setup, &argo_name).await.unwrap();
    assert!(
        rotated.metadata.annotations.unwrap()["tenant-portal.dev/token-expires-at"]
            > expires_before,
        "the new token expires later"
    );
    let rotated_config =
        Kubeconfig::written(decoded(&secret(&setup, &flux_name).await.unwrap())["value"].clone());
    let run = kubectl(&rotated_config, &["get", "namespaces", "-o", "name"]).await;
    assert!(run.ok, "{}", run.stderr);
    let actions = common::audit_actions(&db, &slug).await;
    assert!(
        actions.contains(&"gitops.changed".to_string()),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .filter(|a| *a == "gitops.token_issued")
            .count()
            >= 2,
        "{actions:?}"
    );

    // A Secret removed by hand comes back.
    setup
        .secrets
        .delete(&argo_name, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the removed Secret written again", SOON, || async {
        secret(&setup, &argo_name).await.is_some()
    })
    .await;

    // The owner turns it off: both Secrets go and their token is revoked,
    // at once even where the tenant API checked it a moment ago and keeps
    // it among its checked tokens for 30 s.
    let run = kubectl(&rotated_config, &["get", "namespaces", "-o", "name"]).await;
    assert!(run.ok, "{}", run.stderr);
    let checked = std::time::Instant::now();
    let off = put_gitops(&setup, &slug, json!({"argocd": false, "flux": false})).await;
    assert_eq!(off.status(), 200);
    eventually("both Secrets removed", SOON, || async {
        secret(&setup, &argo_name).await.is_none() && secret(&setup, &flux_name).await.is_none()
    })
    .await;
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM gateway_tokens g JOIN tenants t ON t.id = g.tenant_id
         WHERE t.slug = $1 AND g.issued_by = 'gitops'",
    )
    .bind(&slug)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(left, 0, "no GitOps token of the tenant is left");
    eventually(
        "the revoked token refused",
        Duration::from_secs(5),
        || async {
            let run = kubectl(&rotated_config, &["get", "namespaces", "-o", "name"]).await;
            !run.ok
                && (run.stderr.contains("Unauthorized") || run.stderr.contains("must be logged in"))
        },
    )
    .await;
    assert!(
        checked.elapsed() < Duration::from_secs(25),
        "refused within the cache's 30 s, so not by its expiry: {:?}",
        checked.elapsed()
    );

    // A tenant that is deleted takes its Secrets with it.
    let answer = put_gitops(&setup, &other, json!({"argocd": true, "flux": false})).await;
    assert_eq!(answer.status(), 200);
    let other_argo = format!("tenant-{other}-argocd");
    eventually("the other tenant's Secret written", SOON, || async {
        secret(&setup, &other_argo).await.is_some()
    })
    .await;
    let deleted = app
        .request(Method::DELETE, &format!("/api/v1/tenants/{other}"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    eventually("the deleted tenant's Secret removed", SOON, || async {
        secret(&setup, &other_argo).await.is_none()
    })
    .await;
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_keeper_never_touches_a_secret_it_did_not_make(db: PgPool) {
    let setup = setup(db.clone()).await;
    let app = &setup.portal.app;
    let slug = unique("gitf");
    app.create_tenant(acme_like(&slug)).await;

    // Someone else's Secret with the name the portal would use, and another
    // portal's Secret in the same namespace.
    let taken = format!("tenant-{slug}-argocd");
    setup
        .secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": taken},
                "stringData": {"server": "https://elsewhere.example.com"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let foreign = "tenant-foreign-argocd";
    setup
        .secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": foreign, "labels": {
                    "app.kubernetes.io/managed-by": "tenant-portal",
                    "tenant-portal.dev/gitops": "argocd",
                    "tenant-portal.dev/tenant": "foreign",
                    "tenant-portal.dev/portal": "another-portal.example.com",
                }},
                "stringData": {"server": "https://another-portal.example.com/k8s/tenants/foreign"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let answer = put_gitops(&setup, &slug, json!({"argocd": true, "flux": true})).await;
    assert_eq!(answer.status(), 200);
    let flux_name = format!("tenant-{slug}-flux");
    eventually("the Flux Secret written", SOON, || async {
        secret(&setup, &flux_name).await.is_some()
    })
    .await;
    // The status names the Secret in the way.
    eventually("the status names the Secret in the way", SOON, || async {
        let status: Value = app
            .get(&format!("/api/v1/tenants/{slug}/gitops"))
            .await
            .json()
            .await
            .unwrap();
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains(&taken) && e.contains("not made by this portal"))
    })
    .await;
    let untouched = secret(&setup, &taken).await.unwrap();
    assert_eq!(
        decoded(&untouched)["server"],
        "https://elsewhere.example.com"
    );
    assert!(untouched.metadata.labels.is_none());

    // Turning it off removes only the portal's own Secrets.
    put_gitops(&setup, &slug, json!({"argocd": false, "flux": false})).await;
    eventually("the Flux Secret removed", SOON, || async {
        secret(&setup, &flux_name).await.is_none()
    })
    .await;
    let names: Vec<String> = setup
        .secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert!(names.contains(&taken), "{names:?}");
    assert!(names.contains(&foreign.to_string()), "{names:?}");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_portal_without_a_gitops_cluster_says_so(db: PgPool) {
    let app = common::spawn_app(db).await;
    app.create_tenant(common::acme()).await;
    let answer = app
        .request(Method::PUT, "/api/v1/tenants/acme/gitops")
        .json(&json!({"argocd": true, "flux": false}))
        .send()
        .await
        .unwrap();
    let (status, problem) = common::problem(answer).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("--gitops-cluster"),
        "{problem}"
    );
    let shown: Value = app
        .get("/api/v1/tenants/acme/gitops")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["argocd"], false);
    assert_eq!(shown["cluster"], Value::Null);
    // Turning nothing off is allowed, and changes nothing.
    let off = app
        .request(Method::PUT, "/api/v1/tenants/acme/gitops")
        .json(&json!({"argocd": false, "flux": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
}

/// The tenant document (tenants as code) carries the GitOps tools: a
/// document creates the tenant with them, reads them back, leaves them as
/// they are when it says nothing, plans their removal on a dry run without
/// touching the Secret, and removes them, each change audited as the
/// imperative call audits it.
#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_tenant_document_keeps_the_gitops_credentials_it_names(db: PgPool) {
    let setup = setup(db.clone()).await;
    let app = &setup.portal.app;
    let slug = unique("gitd");
    let put_document = |document: Value, query: &'static str| {
        app.request(Method::PUT, &format!("/api/v1/tenants/{slug}{query}"))
            .json(&document)
            .send()
    };
    let read_json =
        |path: String| async move { app.get(&path).await.json::<Value>().await.unwrap() };
    let mut document = acme_like(&slug);
    document["gitops"] = json!({"argocd": true});
    let created = put_document(document.clone(), "").await.unwrap();
    assert_eq!(created.status(), 201);
    let plan: Value = created.json().await.unwrap();
    assert!(
        common::plan_lines(&plan).contains(&"+ gitops argocd".to_string()),
        "{plan}"
    );
    let argo_name = format!("tenant-{slug}-argocd");
    eventually("the Argo CD Secret written", SOON, || async {
        secret(&setup, &argo_name).await.is_some()
    })
    .await;
    assert!(
        secret(&setup, &format!("tenant-{slug}-flux"))
            .await
            .is_none(),
        "a tool the document does not name is not kept"
    );

    // Read back as the document, which applied again changes nothing.
    let read = read_json(format!("/api/v1/tenants/{slug}/document")).await;
    assert_eq!(read["gitops"], json!({"argocd": true, "flux": false}));
    let again: Value = put_document(read, "").await.unwrap().json().await.unwrap();
    assert_eq!(again["outcome"], "unchanged", "{again}");
    // A document that leaves gitops out leaves the tools as they are.
    let silent: Value = put_document(acme_like(&slug), "")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(silent["outcome"], "unchanged", "{silent}");

    // A change through PUT /gitops is a new generation: a document read
    // before it cannot undo it unseen with If-Match.
    let seen = app
        .get(&format!("/api/v1/tenants/{slug}/document"))
        .await
        .headers()["etag"]
        .clone();
    let flux_on = put_gitops(&setup, &slug, json!({"argocd": true, "flux": true})).await;
    assert_eq!(flux_on.status(), 200);
    let stale = app
        .request(Method::PUT, &format!("/api/v1/tenants/{slug}"))
        .header("if-match", seen)
        .json(&document)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let flux_off = put_gitops(&setup, &slug, json!({"argocd": true, "flux": false})).await;
    assert_eq!(flux_off.status(), 200);

    // A dry run plans the removal and keeps the Secret.
    let mut none = acme_like(&slug);
    none["gitops"] = json!({});
    let planned: Value = put_document(none.clone(), "?dry_run=true")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(common::plan_lines(&planned), ["- gitops argocd"]);
    let status = read_json(format!("/api/v1/tenants/{slug}/gitops")).await;
    assert_eq!(status["argocd"], true, "a dry run changes nothing");

    let removed = put_document(none, "").await.unwrap();
    assert_eq!(removed.status(), 200);
    eventually("the Argo CD Secret removed", SOON, || async {
        secret(&setup, &argo_name).await.is_none()
    })
    .await;
    let read = read_json(format!("/api/v1/tenants/{slug}/document")).await;
    assert_eq!(read.get("gitops"), None, "{read}");
    let audit = read_json(format!(
        "/api/v1/audit-events?tenant={slug}&action=gitops.changed"
    ))
    .await;
    let changes: Vec<(Value, Value)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["before"]["argocd"].clone(), e["after"]["argocd"].clone()))
        .collect();
    assert_eq!(
        changes,
        [
            (json!(true), json!(false)),
            (json!(true), json!(true)),
            (json!(true), json!(true)),
            (json!(false), json!(true))
        ],
        "{audit}"
    );
}
