//! The tenant's own Kubernetes API (`/k8s/tenants/<slug>`), driven by the
//! stack's real kubectl and by kube-rs, against the real API server, with
//! members signed in through the real Dex. Each role acts with exactly the
//! rights the tenant's bindings give it; another tenant does not exist.

mod common;

use std::path::Path;
use std::time::Duration;

use common::TestApp;
use common::cluster::{kube, unique};
use common::idp::{kubectl_client_id_token, login_as, password_grant_id_token};
use common::tenant_api::{
    Kubeconfig, kubectl, kubectl_env, kubectl_with, lines, member_kubeconfig, portal, stack_kubectl,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::config::TenantApiConfig;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
const READY: Duration = Duration::from_secs(30);

struct Tenant {
    slug: String,
}

/// A tenant with `dev` and `prod`: alice owns it, carol edits, bob views.
async fn tenant(app: &TestApp, prefix: &str) -> Tenant {
    let slug = unique(prefix);
    app.create_tenant(json!({
        "slug": slug,
        "display_name": "Gateway test",
        "budget": {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20", "namespaces": "3"},
        "namespaces": [
            {"name": "dev", "allocations": {"requests.cpu": "2", "requests.memory": "4Gi", "pods": "10"}},
            {"name": "prod"}
        ],
        "members": [
            {"kind": "user", "subject": "alice@example.com", "role": "owner"},
            {"kind": "user", "subject": "carol@example.com", "role": "editor"},
            {"kind": "user", "subject": "bob@example.com", "role": "viewer"}
        ]
    }))
    .await;
    app.wait_ready(&slug, READY).await;
    Tenant { slug }
}

/// A GET sent byte for byte, with no client normalising its path.
async fn raw_get(base: &str, path: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: portal\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_owner_s_kubectl_sees_its_tenant_without_prefixes(db: PgPool) {
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let acme = tenant(app, "gwacme").await;
    let other = tenant(app, "gwother").await;
    let alice = member_kubeconfig(&setup, "ALICE", &acme.slug).await;

    let namespaces = kubectl(&alice, &["get", "namespaces", "-o", "name"]).await;
    assert!(namespaces.ok, "{}", namespaces.stderr);
    assert_eq!(
        lines(&namespaces),
        ["namespace/dev", "namespace/prod"],
        "exactly the tenant's, unprefixed"
    );
    let table = kubectl(&alice, &["get", "ns"]).await;
    assert!(
        table.ok && table.stdout.contains("dev") && !table.stdout.contains(&acme.slug),
        "{}{}",
        table.stdout,
        table.stderr
    );

    // Objects are created in the prefixed namespace and answered unprefixed.
    let created = kubectl(
        &alice,
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "dev",
            "--from-literal=mode=fast",
        ],
    )
    .await;
    assert!(created.ok, "{}", created.stderr);
    let direct: Api<ConfigMap> = Api::namespaced(kube().await, &format!("{}-dev", acme.slug));
    assert_eq!(
        direct.get("settings").await.unwrap().data.unwrap()["mode"],
        "fast"
    );
    let read = kubectl(
        &alice,
        &["get", "configmap", "settings", "-n", "dev", "-o", "json"],
    )
    .await;
    let read: Value = serde_json::from_str(&read.stdout).unwrap();
    assert_eq!(read["metadata"]["namespace"], "dev");
    let deployment = kubectl(
        &alice,
        &[
            "create",
            "deployment",
            "web",
            "-n",
            "prod",
            "--image=registry.example.com/web:1",
        ],
    )
    .await;
    assert!(deployment.ok, "{}", deployment.stderr);

    // A multi-document apply naming namespaces, and a server-side apply.
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one, namespace: dev}\ndata: {a: '1'}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: two, namespace: prod}\ndata: {b: '2'}\n";
    let applied = kubectl_with(&alice.path(), &["apply", "-f", "-"], Some(manifest.into())).await;
    assert!(applied.ok, "{}", applied.stderr);
    let server_side = kubectl_with(
        &alice.path(),
        &["apply", "--server-side", "-f", "-"],
        Some(manifest.replace("'1'", "'3'")),
    )
    .await;
    assert!(server_side.ok, "{}", server_side.stderr);
    assert_eq!(direct.get("one").await.unwrap().data.unwrap()["a"], "3");

    // All namespaces: the tenant's only, and the tenant's names.
    let everything = kubectl(&alice, &["get", "configmaps", "-A", "-o", "json"]).await;
    assert!(everything.ok, "{}", everything.stderr);
    let everything: Value = serde_json::from_str(&everything.stdout).unwrap();
    let found: Vec<(String, String)> = everything["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["metadata"]["namespace"].as_str().unwrap().to_string(),
                i["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        found.iter().all(|(ns, _)| ns == "dev" || ns == "prod"),
        "{found:?}"
    );
    for want in [("dev", "settings"), ("dev", "one"), ("prod", "two")] {
        assert!(
            found.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {found:?}"
        );
    }
    let pods = kubectl(&alice, &["get", "pods", "-A"]).await;
    assert!(pods.ok, "{}", pods.stderr);
    assert!(!pods.stdout.contains(&other.slug), "{}", pods.stdout);

    // Another tenant's namespace does not exist here, by either name.
    for name in [format!("{}-dev", other.slug), "kube-system".to_string()] {
        let refused = kubectl(&alice, &["get", "configmaps", "-n", &name]).await;
        assert!(!refused.ok);
        assert!(
            refused
                .stderr
                .contains(&format!("namespaces \"{name}\" not found")),
            "{}",
            refused.stderr
        );
    }
    // No impersonation, no cluster-scoped kinds beyond the views.
    let forged = kubectl(&alice, &["--as=admin", "get", "configmaps", "-n", "dev"]).await;
    assert!(
        !forged.ok && forged.stderr.contains("impersonation"),
        "{}",
        forged.stderr
    );
    // Discovery does not list other cluster-scoped kinds, and their paths are refused.
    let roles = kubectl(&alice, &["get", "clusterroles"]).await;
    assert!(
        !roles.ok && roles.stderr.contains("doesn't have a resource type"),
        "{}",
        roles.stderr
    );
    let roles = kubectl(
        &alice,
        &[
            "get",
            "--raw",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        ],
    )
    .await;
    assert!(
        !roles.ok && roles.stderr.contains("cluster-scoped"),
        "{}",
        roles.stderr
    );
    let classes = kubectl(&alice, &["get", "storageclasses"]).await;
    assert!(classes.ok, "{}", classes.stderr);
    let exec = kubectl(&alice, &["exec", "-n", "dev", "web", "--", "true"]).await;
    assert!(!exec.ok, "exec is refused");
    // No path climbs out of the tenant to what the portal itself may read:
    // kubectl resolves dot segments itself, and the gateway refuses any it is sent.
    for raw in [
        "/openapi/../api/v1/namespaces",
        "/openapi/%2e%2e/api/v1/namespaces",
    ] {
        let climbed = kubectl(&alice, &["get", "--raw", raw]).await;
        let seen = format!("{}{}", climbed.stdout, climbed.stderr);
        assert!(
            !seen.contains("kube-system") && !seen.contains(&other.slug),
            "{raw}: {seen}"
        );
        let sent = raw_get(
            &app.base,
            &format!("/k8s/tenants/{}{raw}", acme.slug),
            &alice.token(),
        )
        .await;
        assert!(
            sent.starts_with("HTTP/1.1 400"),
            "{raw} sent as it is: {sent}"
        );
    }

    // Namespaces are self-service for owners, through the portal.
    let can = kubectl(&alice, &["auth", "can-i", "create", "namespaces"]).await;
    assert_eq!(can.stdout.trim(), "yes", "{}", can.stderr);
    let can = kubectl(
        &alice,
        &["auth", "can-i", "create", "rolebindings", "-n", "dev"],
    )
    .await;
    assert_eq!(can.stdout.trim(), "yes", "{}", can.stderr);
    let staging = kubectl(&alice, &["create", "namespace", "staging"]).await;
    assert!(
        staging.ok && staging.stdout.contains("namespace/staging created"),
        "{}{}",
        staging.stdout,
        staging.stderr
    );
    let tenant: Value = app
        .get(&format!("/api/v1/tenants/{}", acme.slug))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = tenant["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["dev", "prod", "staging"],
        "created through the portal"
    );
    let audit: Value = app
        .get(&format!("/api/v1/audit-events?tenant={}", acme.slug))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        audit.to_string().contains("user:alice@example.com"),
        "audited as alice: {audit}"
    );
    let usable = kubectl(&alice, &["create", "configmap", "x", "-n", "staging"]).await;
    assert!(
        usable.ok,
        "the new namespace is usable at once: {}",
        usable.stderr
    );
    let over = kubectl(&alice, &["create", "namespace", "fourth"]).await;
    assert!(
        !over.ok && over.stderr.contains("namespace limit"),
        "the budget allows 3: {}",
        over.stderr
    );
    let deleted = kubectl(&alice, &["delete", "namespace", "staging", "--wait=false"]).await;
    assert!(deleted.ok, "{}", deleted.stderr);
    let after = kubectl(&alice, &["get", "namespaces", "-o", "name"]).await;
    assert_eq!(lines(&after), ["namespace/dev", "namespace/prod"]);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn editors_and_viewers_act_with_their_own_rights_only(db: PgPool) {
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let acme = tenant(app, "gwroles").await;
    let carol = member_kubeconfig(&setup, "CAROL", &acme.slug).await;
    let bob = member_kubeconfig(&setup, "BOB", &acme.slug).await;

    let refused = kubectl(&carol, &["create", "namespace", "mine"]).await;
    assert!(
        !refused.ok && refused.stderr.contains("forbidden"),
        "an editor creates no namespace: {}",
        refused.stderr
    );
    let can = kubectl(&carol, &["auth", "can-i", "create", "namespaces"]).await;
    assert!(can.stdout.starts_with("no"), "{}", can.stdout);
    let can = kubectl(
        &carol,
        &["auth", "can-i", "create", "configmaps", "-n", "dev"],
    )
    .await;
    assert_eq!(
        can.stdout.trim(),
        "yes",
        "an editor writes in the tenant's namespaces: {}",
        can.stderr
    );
    assert!(
        kubectl(&carol, &["create", "configmap", "c", "-n", "dev"])
            .await
            .ok
    );
    let binding = kubectl(
        &carol,
        &[
            "create",
            "rolebinding",
            "mine",
            "-n",
            "dev",
            "--clusterrole=admin",
            "--user=carol@example.com",
        ],
    )
    .await;
    assert!(
        !binding.ok && binding.stderr.contains("forbidden"),
        "edit cannot bind roles: {}",
        binding.stderr
    );
    assert!(
        !binding.stderr.contains(&acme.slug),
        "the refusal names no prefixed namespace: {}",
        binding.stderr
    );

    let write = kubectl(&bob, &["create", "configmap", "b", "-n", "dev"]).await;
    assert!(
        !write.ok && write.stderr.contains("forbidden"),
        "a viewer writes nothing: {}",
        write.stderr
    );
    assert!(kubectl(&bob, &["get", "configmaps", "-n", "dev"]).await.ok);
    let can = kubectl(
        &bob,
        &["auth", "can-i", "create", "configmaps", "-n", "dev"],
    )
    .await;
    assert!(can.stdout.starts_with("no"), "{}", can.stdout);
    let can = kubectl(&bob, &["auth", "can-i", "list", "configmaps", "-n", "dev"]).await;
    assert_eq!(can.stdout.trim(), "yes", "{}", can.stderr);
    let secrets = kubectl(&bob, &["get", "secrets", "-n", "dev"]).await;
    assert!(!secrets.ok, "view does not read secrets");

    // A kubeconfig that signs in with the identity provider holds no secret.
    let browser = login_as(app, "BOB").await;
    let idp_path = format!(
        "/api/v1/tenants/{}/kubeconfig?view=tenant&credentials=idp",
        acme.slug
    );
    let idp = browser
        .change(reqwest::Method::POST, &idp_path)
        .send()
        .await
        .unwrap();
    assert_eq!(idp.status(), 200);
    let idp: Value = serde_saphyr::from_str(&idp.text().await.unwrap()).unwrap();
    let exec = &idp["users"][0]["user"]["exec"];
    assert_eq!(exec["args"][0], "oidc-login");
    assert!(
        exec["args"]
            .to_string()
            .contains("--oidc-client-id=kubectl"),
        "{exec}"
    );
    assert!(idp["users"][0]["user"].get("token").is_none());
    let refused = app
        .request(reqwest::Method::POST, &idp_path)
        .send()
        .await
        .unwrap();
    let (status, problem) = common::problem(refused).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("credentials")),
        "{problem}"
    );

    // A token is for its own tenant only, and ends with the membership.
    let other = tenant(app, "gwelse").await;
    let elsewhere = reqwest::Client::new()
        .get(format!(
            "{}/k8s/tenants/{}/api/v1/namespaces",
            app.base, other.slug
        ))
        .bearer_auth(bob.token())
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 401);
    let members: Value = app
        .get(&format!("/api/v1/tenants/{}/members", acme.slug))
        .await
        .json()
        .await
        .unwrap();
    let bob_id = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"] == "bob@example.com")
        .unwrap()["id"]
        .clone();
    let removed = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/tenants/{}/members/{bob_id}", acme.slug),
        )
        .send()
        .await
        .unwrap();
    assert!(
        removed.status().is_success(),
        "{}",
        removed.text().await.unwrap()
    );
    common::cluster::eventually(
        "bob's token stops working",
        Duration::from_secs(10),
        || async { !kubectl(&bob, &["get", "configmaps", "-n", "dev"]).await.ok },
    )
    .await;
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn kube_rs_lists_watches_and_applies_through_the_gateway(db: PgPool) {
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let acme = tenant(app, "gwkube").await;
    let other = tenant(app, "gwnoise").await;
    let alice = member_kubeconfig(&setup, "ALICE", &acme.slug).await;
    let document = kube::config::Kubeconfig::from_yaml(&alice.yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(document, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();

    let dev: Api<ConfigMap> = Api::namespaced(client.clone(), "dev");
    let applied = dev
        .patch(
            "applied",
            &PatchParams::apply("gateway-test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "namespace": "dev"}, "data": {"k": "v"}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.namespace.as_deref(), Some("dev"));

    let all: Api<ConfigMap> = Api::all(client.clone());
    let listed = all.list(&ListParams::default()).await.unwrap();
    assert!(
        listed
            .items
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some("applied"))
    );
    assert!(
        listed
            .items
            .iter()
            .all(|c| matches!(c.metadata.namespace.as_deref(), Some("dev" | "prod")))
    );
    let version = listed.metadata.resource_version.clone().unwrap();

    // A watch across the tenant's namespaces sees its change, and nothing of the other tenant's.
    let mut events = all
        .watch(&WatchParams::default().timeout(20), &version)
        .await
        .unwrap()
        .boxed();
    let noise: Api<ConfigMap> = Api::namespaced(kube().await, &format!("{}-dev", other.slug));
    noise
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "noise"}})).unwrap(),
        )
        .await
        .unwrap();
    let prod: Api<ConfigMap> = Api::namespaced(client.clone(), "prod");
    prod.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "seen"}})).unwrap(),
    )
    .await
    .unwrap();
    let mut saw = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .unwrap()
    {
        match event.unwrap() {
            WatchEvent::Added(c) | WatchEvent::Modified(c) => {
                assert_ne!(
                    c.metadata.name.as_deref(),
                    Some("noise"),
                    "another tenant's object"
                );
                if c.metadata.name.as_deref() == Some("seen") {
                    saw = c.metadata.namespace;
                    break;
                }
            }
            _ => {}
        }
    }
    assert_eq!(saw.as_deref(), Some("prod"));

    // `kubectl get ns -w`: the tenant's new namespace, by its own name; not another tenant's.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let version = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut changes = namespaces
        .watch(&WatchParams::default().timeout(20), &version)
        .await
        .unwrap()
        .boxed();
    for (slug, name) in [(&other.slug, "extra"), (&acme.slug, "qa")] {
        let added = app
            .post_json(
                &format!("/api/v1/tenants/{slug}/namespaces"),
                json!({"name": name}),
            )
            .await;
        assert!(
            added.status().is_success(),
            "{}",
            added.text().await.unwrap()
        );
    }
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), changes.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let WatchEvent::Added(ns) | WatchEvent::Modified(ns) = event {
            let name = ns.metadata.name.unwrap();
            assert!(
                ["dev", "prod", "qa"].contains(&name.as_str()),
                "only the tenant's namespaces, unprefixed: {name}"
            );
            if name == "qa" {
                break;
            }
        }
    }

    // ID tokens of the identity provider, for the portal's client or the
    // public kubectl client, are accepted as the member; a machine's is not.
    let http = reqwest::Client::new();
    let namespaces_url = format!("{}/k8s/tenants/{}/api/v1/namespaces", app.base, acme.slug);
    for id_token in [
        password_grant_id_token("ALICE").await,
        kubectl_client_id_token("ALICE").await,
    ] {
        let namespaces: Value = http
            .get(&namespaces_url)
            .bearer_auth(id_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = namespaces["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["dev", "prod", "qa"]);
    }
    let machine = http
        .get(&namespaces_url)
        .bearer_auth(common::idp::machine_token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(
        machine.status(),
        401,
        "a client-credentials token is no member"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_tenant_past_its_share_gets_429_while_another_is_served(db: PgPool) {
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let noisy = tenant(app, "gwnoisy").await;
    let quiet = tenant(app, "gwquiet").await;
    // A platform admin gives the noisy tenant a small share; the quiet one keeps the default.
    let share = json!({"tenant_api": {"requests_per_second": 1, "burst": 5, "max_in_flight": 5, "max_watches": 1}});
    let set = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/tenants/{}/policy", noisy.slug),
        )
        .json(&share)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200, "{}", set.text().await.unwrap());
    let broken = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/tenants/{}/policy", noisy.slug),
        )
        .json(&json!({"tenant_api": {"requests_per_second": 0, "burst": 5, "max_in_flight": 5}}))
        .send()
        .await
        .unwrap();
    let (status, problem) = common::problem(broken).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["tenant_api.requests_per_second", "tenant_api.max_watches"],
        "{problem}"
    );
    let noisy_token = member_kubeconfig(&setup, "ALICE", &noisy.slug)
        .await
        .token();
    let quiet_token = member_kubeconfig(&setup, "ALICE", &quiet.slug)
        .await
        .token();
    let client = reqwest::Client::new();
    let get = |slug: &str, token: &str| {
        client
            .get(format!(
                "{}/k8s/tenants/{slug}/api/v1/namespaces/dev/configmaps",
                app.base
            ))
            .bearer_auth(token.to_string())
            .send()
    };
    let mut throttled = None;
    for _ in 0..20 {
        let response = get(&noisy.slug, &noisy_token).await.unwrap();
        if response.status() == 429 {
            throttled = Some(response);
            break;
        }
    }
    let throttled = throttled.expect("the noisy tenant is throttled past its burst");
    assert!(throttled.headers().contains_key("retry-after"));
    let status: Value = throttled.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "TooManyRequests");
    assert!(status["message"].as_str().unwrap().contains(&noisy.slug));
    for _ in 0..5 {
        assert_eq!(
            get(&quiet.slug, &quiet_token).await.unwrap().status(),
            200,
            "the quiet tenant is served"
        );
    }
    let metrics = client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tenant_api_throttled_total{") && l.contains(&noisy.slug)),
        "throttling is counted per tenant"
    );
}

/// kubectl's transports for exec, attach and port-forward: WebSocket by
/// default since 1.31; SPDY when switched off, as older clients use.
const WEBSOCKET: &[(&str, &str)] = &[];
const SPDY: &[(&str, &str)] = &[
    ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"),
    ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false"),
];

/// A pod the stack's simulated nodes run, made and awaited through the tenant API.
async fn running_pod(member: &Kubeconfig, namespace: &str, name: &str) {
    let created = kubectl(
        member,
        &[
            "run",
            name,
            "-n",
            namespace,
            "--image=registry.example.com/app:1",
            "--restart=Never",
        ],
    )
    .await;
    assert!(created.ok, "kubectl run: {}", created.stderr);
    let ready = kubectl(
        member,
        &[
            "wait",
            "-n",
            namespace,
            &format!("pod/{name}"),
            "--for=condition=Ready",
            "--timeout=15s",
        ],
    )
    .await;
    assert!(
        ready.ok,
        "the pod runs on the stack's kwok nodes: {}",
        ready.stderr
    );
}

/// A long-running kubectl (port-forward, attach) whose output is read line
/// by line; killed on drop.
struct Background {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// Held open: a session fed from stdin lasts as long as this does.
    _stdin: Option<tokio::process::ChildStdin>,
}

impl Background {
    async fn start(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = tokio::process::Command::new(stack_kubectl())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl starts");
        use tokio::io::AsyncBufReadExt;
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let _stdin = child.stdin.take();
        Self {
            child,
            lines,
            _stdin,
        }
    }

    /// The first line of output that contains `words`.
    async fn line_with(&mut self, words: &str) -> String {
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                if line.contains(words) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        if let Ok(Some(line)) = found {
            return line;
        }
        let _ = self.child.start_kill();
        let mut stderr = String::new();
        use tokio::io::AsyncReadExt;
        if let Some(mut err) = self.child.stderr.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), err.read_to_string(&mut stderr)).await;
        }
        panic!("kubectl never printed \"{words}\": {stderr}");
    }
}

/// A TCP server on `address` that answers each line with `echo: <line>`.
async fn echo_server(address: &str) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .unwrap_or_else(|e| panic!("the port-forward target {address} is taken: {e}"));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
                let (read, mut write) = socket.into_split();
                let mut lines = tokio::io::BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write
                        .write_all(format!("echo: {line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    })
}

/// Sends a line through a local forwarded port and reads the answer.
async fn through_forward(port: u16, line: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::BufReader::new(read).read_line(&mut answer),
    )
    .await
    .expect("an answer through the forwarded port")
    .unwrap();
    answer.trim().to_string()
}

async fn session_events(app: &TestApp, slug: &str, action: &str) -> Vec<Value> {
    let page: Value = app
        .get(&format!(
            "/api/v1/audit-events?tenant={slug}&action={action}&page_size=500"
        ))
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().clone()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_owner_execs_copies_attaches_and_forwards_over_both_transports_and_each_session_is_audited(
    db: PgPool,
) {
    let target = std::env::var("TP_KWOK_PORTFORWARD_TARGET").expect(
        "TP_KWOK_PORTFORWARD_TARGET is not set: start the local stack with deploy/dev/up and source its stack.env",
    );
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let acme = tenant(app, "gwexec").await;
    let alice = member_kubeconfig(&setup, "ALICE", &acme.slug).await;
    running_pod(&alice, "dev", "web").await;

    for (transport, env) in [("websocket", WEBSOCKET), ("spdy", SPDY)] {
        let said = kubectl_env(
            &alice.path(),
            &["exec", "-n", "dev", "web", "--", "echo", "hello", transport],
            None,
            env,
        )
        .await;
        assert!(said.ok, "exec over {transport}: {}", said.stderr);
        assert_eq!(said.stdout.trim(), format!("hello {transport}"));
        let failed = kubectl_env(
            &alice.path(),
            &["exec", "-n", "dev", "web", "--", "sh", "-c", "exit 3"],
            None,
            env,
        )
        .await;
        assert_eq!(
            failed.code,
            Some(3),
            "the command's exit code over {transport}: {}",
            failed.stderr
        );
        let fed = kubectl_env(
            &alice.path(),
            &["exec", "-i", "-n", "dev", "web", "--", "cat"],
            Some(format!("stdin over {transport}")),
            env,
        )
        .await;
        assert_eq!(
            fed.stdout,
            format!("stdin over {transport}"),
            "{}",
            fed.stderr
        );
    }

    let dir = std::env::temp_dir().join(unique("cp-"));
    std::fs::create_dir_all(&dir).unwrap();
    let sent = dir.join("sent.txt");
    let content = format!("copied through the tenant API {}\n", unique("c"));
    std::fs::write(&sent, &content).unwrap();
    let remote = format!("dev/web:{}.txt", unique("copied-"));
    let up = kubectl(&alice, &["cp", sent.to_str().unwrap(), &remote]).await;
    assert!(up.ok, "kubectl cp into the pod: {}", up.stderr);
    let back = dir.join("back.txt");
    let down = kubectl(&alice, &["cp", &remote, back.to_str().unwrap()]).await;
    assert!(down.ok, "kubectl cp out of the pod: {}", down.stderr);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), content);
    let _ = std::fs::remove_dir_all(&dir);

    let logs = kubectl(&alice, &["logs", "-n", "dev", "web"]).await;
    assert!(
        logs.ok && !logs.stdout.trim().is_empty(),
        "kubectl logs: {}",
        logs.stderr
    );
    // kwok's attach follows its file: what is written there while attached is the output.
    let attach_file = std::env::var("TP_KWOK_ATTACH_FILE").expect(
        "TP_KWOK_ATTACH_FILE is not set: start the local stack with deploy/dev/up and source its stack.env",
    );
    let said = unique("attached-");
    let writer = {
        let said = said.clone();
        tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let line = format!(
                    "{} stdout F {said}\n",
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                );
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&attach_file)
                    .unwrap();
                file.write_all(line.as_bytes()).unwrap();
            }
        })
    };
    let mut attached = Background::start(&alice.path(), &["attach", "-n", "dev", "web"], &[]).await;
    attached.line_with(&said).await;
    writer.abort();
    drop(attached);

    let server = echo_server(&target).await;
    for (transport, env) in [("websocket", WEBSOCKET), ("spdy", SPDY)] {
        let local = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut forward = Background::start(
            &alice.path(),
            &[
                "port-forward",
                "-n",
                "dev",
                "pod/web",
                &format!("{local}:8080"),
            ],
            env,
        )
        .await;
        forward.line_with("Forwarding from").await;
        assert_eq!(
            through_forward(local, &format!("ping over {transport}")).await,
            format!("echo: ping over {transport}")
        );
        drop(forward);
    }
    server.abort();

    let started = session_events(app, &acme.slug, "tenant_api.session.started").await;
    let echo = started
        .iter()
        .find(|e| e["after"]["command"] == json!(["echo", "hello", "websocket"]))
        .unwrap_or_else(|| panic!("the exec is in the audit trail: {started:?}"));
    assert_eq!(echo["actor"], "user:alice@example.com");
    assert_eq!(echo["after"]["kind"], "exec");
    assert_eq!(echo["after"]["namespace"], "dev");
    assert_eq!(echo["after"]["pod"], "web");
    for kind in ["exec", "attach", "portforward"] {
        assert!(
            started.iter().any(|e| e["after"]["kind"] == kind),
            "a {kind} session is audited: {started:?}"
        );
    }
    common::cluster::eventually(
        "every session's end is audited",
        Duration::from_secs(20),
        || async {
            session_events(app, &acme.slug, "tenant_api.session.ended")
                .await
                .len()
                >= started.len()
        },
    )
    .await;
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn viewers_may_not_exec_and_no_one_reaches_another_tenant_s_pods(db: PgPool) {
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let acme = tenant(app, "gwown").await;
    let alice = member_kubeconfig(&setup, "ALICE", &acme.slug).await;
    let bob = member_kubeconfig(&setup, "BOB", &acme.slug).await;
    running_pod(&alice, "dev", "web").await;
    let other = unique("gwother");
    app.create_tenant(json!({
        "slug": other,
        "namespaces": [{"name": "dev"}],
        "members": [{"kind": "user", "subject": "dave@example.com", "role": "owner"}]
    }))
    .await;
    app.wait_ready(&other, READY).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(kube().await, &format!("{other}-dev"));
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "secret"},
            "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}}))
        .unwrap(),
    )
    .await
    .unwrap();

    for env in [WEBSOCKET, SPDY] {
        let viewer = kubectl_env(
            &bob.path(),
            &["exec", "-n", "dev", "web", "--", "true"],
            None,
            env,
        )
        .await;
        assert!(!viewer.ok);
        assert!(viewer.stderr.contains("forbidden"), "{}", viewer.stderr);
        let full = format!("{other}-dev");
        for namespace in ["dev", full.as_str()] {
            let foreign = kubectl_env(
                &alice.path(),
                &["exec", "-n", namespace, "secret", "--", "true"],
                None,
                env,
            )
            .await;
            assert!(!foreign.ok, "another tenant's pod under \"{namespace}\"");
            assert!(foreign.stderr.contains("not found"), "{}", foreign.stderr);
        }
        let forward = kubectl_env(
            &alice.path(),
            &["port-forward", "-n", &full, "pod/secret", ":8080"],
            None,
            env,
        )
        .await;
        assert!(
            !forward.ok && forward.stderr.contains("not found"),
            "{}",
            forward.stderr
        );
    }
    let viewer_forward = kubectl(&bob, &["port-forward", "-n", "dev", "pod/web", ":8080"]).await;
    assert!(
        !viewer_forward.ok && viewer_forward.stderr.contains("forbidden"),
        "{}",
        viewer_forward.stderr
    );
    let viewer_logs = kubectl(&bob, &["logs", "-n", "dev", "web"]).await;
    assert!(viewer_logs.ok, "viewers read logs: {}", viewer_logs.stderr);
    assert!(
        session_events(app, &other, "tenant_api.session.started")
            .await
            .is_empty(),
        "nothing reached the other tenant"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn sessions_are_bounded_per_tenant_and_a_suspended_tenant_has_none(db: PgPool) {
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let acme = tenant(app, "gwbound").await;
    let set = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/tenants/{}/policy", acme.slug),
        )
        .json(
            &json!({"tenant_api": {"requests_per_second": 100, "burst": 100,
            "max_in_flight": 20, "max_watches": 20, "max_sessions": 1}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200, "{}", set.text().await.unwrap());
    app.wait_ready(&acme.slug, READY).await;
    let alice = member_kubeconfig(&setup, "ALICE", &acme.slug).await;
    running_pod(&alice, "dev", "web").await;

    let mut held = Background::start(
        &alice.path(),
        &[
            "exec",
            "-i",
            "-n",
            "dev",
            "web",
            "--",
            "sh",
            "-c",
            "echo open; cat",
        ],
        &[],
    )
    .await;
    held.line_with("open").await;
    let second = kubectl(&alice, &["exec", "-n", "dev", "web", "--", "true"]).await;
    assert!(!second.ok);
    assert!(
        second.stderr.contains("sessions open"),
        "the second session is refused by the bound: {}",
        second.stderr
    );
    drop(held);
    common::cluster::eventually("the session's slot is given back", READY, || async {
        kubectl(&alice, &["exec", "-n", "dev", "web", "--", "true"])
            .await
            .ok
    })
    .await;

    let suspended = app
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{}:suspend", acme.slug),
        )
        .send()
        .await
        .unwrap();
    assert!(
        suspended.status().is_success(),
        "{}",
        suspended.text().await.unwrap()
    );
    app.wait_ready(&acme.slug, READY).await;
    common::cluster::eventually("exec is refused once suspended", READY, || async {
        let refused = kubectl(&alice, &["exec", "-n", "dev", "web", "--", "true"]).await;
        !refused.ok && refused.stderr.contains("forbidden")
    })
    .await;
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn all_namespaces_lists_page_and_watches_take_in_namespaces_made_while_they_run(db: PgPool) {
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let acme = tenant(app, "gwpage").await;
    let alice = member_kubeconfig(&setup, "ALICE", &acme.slug).await;
    for (namespace, name) in [
        ("dev", "a"),
        ("dev", "b"),
        ("dev", "c"),
        ("prod", "d"),
        ("prod", "e"),
    ] {
        let made = kubectl(&alice, &["create", "configmap", name, "-n", namespace]).await;
        assert!(made.ok, "{}", made.stderr);
    }
    let whole = kubectl(
        &alice,
        &["get", "configmaps", "-A", "--chunk-size=0", "-o", "name"],
    )
    .await;
    let paged = kubectl(
        &alice,
        &["get", "configmaps", "-A", "--chunk-size=2", "-o", "name"],
    )
    .await;
    assert!(paged.ok, "{}", paged.stderr);
    assert_eq!(
        lines(&paged),
        lines(&whole),
        "pages of two hold every object once"
    );
    assert!(lines(&whole).contains(&"configmap/e"), "{}", whole.stdout);

    let mut watch = Background::start(
        &alice.path(),
        &["get", "configmaps", "-A", "--watch", "-o", "name"],
        &[],
    )
    .await;
    watch.line_with("configmap/e").await;
    let staging = kubectl(&alice, &["create", "namespace", "staging"]).await;
    assert!(staging.ok, "{}", staging.stderr);
    let made = kubectl(&alice, &["create", "configmap", "later", "-n", "staging"]).await;
    assert!(made.ok, "{}", made.stderr);
    watch.line_with("configmap/later").await;
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_developer_s_everyday_kubectl_works_through_the_tenant_api(db: PgPool) {
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let acme = tenant(app, "gwday").await;
    let alice = member_kubeconfig(&setup, "ALICE", &acme.slug).await;

    let created = kubectl(
        &alice,
        &[
            "create",
            "deployment",
            "web",
            "-n",
            "dev",
            "--image=registry.example.com/app:1",
            "--replicas=2",
        ],
    )
    .await;
    assert!(created.ok, "{}", created.stderr);
    let rolled = kubectl(
        &alice,
        &[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            "dev",
            "--timeout=15s",
        ],
    )
    .await;
    assert!(
        rolled.ok,
        "rollout status: {}{}",
        rolled.stdout, rolled.stderr
    );
    assert!(
        rolled.stdout.contains("successfully rolled out"),
        "{}",
        rolled.stdout
    );
    let available = kubectl(
        &alice,
        &[
            "wait",
            "deployment/web",
            "-n",
            "dev",
            "--for=condition=Available",
            "--timeout=15s",
        ],
    )
    .await;
    assert!(available.ok, "wait: {}", available.stderr);
    let logs = kubectl(&alice, &["logs", "deployment/web", "-n", "dev"]).await;
    assert!(logs.ok && !logs.stdout.is_empty(), "logs: {}", logs.stderr);
    let first = logs.stdout.lines().next().unwrap_or_default().to_string();
    let previous = kubectl(
        &alice,
        &["logs", "deployment/web", "-n", "dev", "--previous"],
    )
    .await;
    assert!(previous.ok, "logs --previous: {}", previous.stderr);
    let mut following = Background::start(
        &alice.path(),
        &["logs", "-f", "deployment/web", "-n", "dev"],
        &[],
    )
    .await;
    following.line_with(&first).await;
    drop(following);

    let whoami = kubectl(&alice, &["auth", "whoami", "-o", "json"]).await;
    let whoami: Value = serde_json::from_str(&whoami.stdout)
        .unwrap_or_else(|_| panic!("{}{}", whoami.stdout, whoami.stderr));
    assert_eq!(
        whoami["status"]["userInfo"]["username"],
        "alice@example.com"
    );
    assert_eq!(
        whoami["status"]["userInfo"]["extra"]["tenant-portal.dev/role"],
        json!(["owner"])
    );

    let resources = kubectl(
        &alice,
        &["api-resources", "--namespaced=true", "-o", "name"],
    )
    .await;
    assert!(resources.ok, "api-resources: {}", resources.stderr);
    assert!(
        resources.stderr.trim().is_empty(),
        "api-resources without warnings or errors: {}",
        resources.stderr
    );
    assert!(resources.stdout.lines().any(|l| l == "deployments.apps"));
    let explained = kubectl(&alice, &["explain", "deployment.spec.replicas"]).await;
    assert!(explained.ok, "explain: {}", explained.stderr);
    assert!(
        explained.stdout.contains("replicas"),
        "{}",
        explained.stdout
    );

    let generated = kubectl_with(
        &alice.path(),
        &["create", "-f", "-", "-o", "name"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  generateName: preview-\n".into()),
    )
    .await;
    assert!(generated.ok, "generateName: {}", generated.stderr);
    assert!(
        generated.stdout.trim().starts_with("namespace/preview-"),
        "{}",
        generated.stdout
    );
    let removed = kubectl(&alice, &["delete", generated.stdout.trim(), "--wait=false"]).await;
    assert!(removed.ok, "{}", removed.stderr);
    let labelled = kubectl_with(
        &alice.path(),
        &["apply", "--server-side", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: qa\n  labels:\n    tenant-portal.dev/tenant: other\n".into()),
    )
    .await;
    assert!(!labelled.ok);
    assert!(
        labelled.stderr.contains("tenant-portal.dev/tenant"),
        "a refused label is named: {}",
        labelled.stderr
    );
    let applied = kubectl_with(
        &alice.path(),
        &["apply", "--server-side", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: qa\n".into()),
    )
    .await;
    assert!(
        applied.ok,
        "server-side apply of a Namespace: {}",
        applied.stderr
    );
    let again = kubectl_with(
        &alice.path(),
        &["apply", "--server-side", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: qa\n".into()),
    )
    .await;
    assert!(again.ok, "applied again, unchanged: {}", again.stderr);
}

/// Cluster-scoped objects made by the cluster's admin for one test, as
/// `kind/name`, removed when it ends.
struct ClusterObjects(Vec<String>);

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        for object in &self.0 {
            let _ = std::process::Command::new(stack_kubectl())
                .args(["delete", object, "--wait=false", "--ignore-not-found"])
                .output();
        }
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_tenant_reads_its_classes_nodes_and_volumes_and_nothing_of_another_s(db: PgPool) {
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let acme = tenant(app, "gwview").await;
    let other = tenant(app, "gwviewnoise").await;
    let fast = unique("fast-");
    let slow = unique("slow-");
    let ours = unique("pv-ours-");
    let theirs = unique("pv-theirs-");
    let _cleanup = ClusterObjects(vec![
        format!("storageclass/{fast}"),
        format!("storageclass/{slow}"),
        format!("pv/{ours}"),
        format!("pv/{theirs}"),
    ]);
    let admin = kube().await;
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(admin.clone());
    for name in [&fast, &slow] {
        classes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "provisioner": "example.com/none",
                }))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    let volumes: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(admin.clone());
    for (name, namespace) in [
        (&ours, format!("{}-dev", acme.slug)),
        (&theirs, format!("{}-dev", other.slug)),
    ] {
        volumes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {
                        "capacity": {"storage": "1Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "hostPath": {"path": "/tmp/tenant-portal-test"},
                        "storageClassName": "",
                        "claimRef": {"namespace": namespace, "name": "data"},
                    },
                }))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    let response = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/tenants/{}/policy", acme.slug),
        )
        .json(&json!({"storage_classes": [fast], "node_selector": {"pool": "tenants"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let alice = member_kubeconfig(&setup, "ALICE", &acme.slug).await;
    let bob = member_kubeconfig(&setup, "BOB", &acme.slug).await;

    // Nodes: the pool's, with what a developer needs to debug scheduling.
    let nodes = kubectl(&alice, &["get", "nodes", "-o", "name"]).await;
    assert!(nodes.ok, "{}", nodes.stderr);
    assert_eq!(lines(&nodes), ["node/kwok-pool-tenants-1"]);
    let labelled = kubectl(&bob, &["get", "nodes", "-l", "type=kwok", "-o", "name"]).await;
    assert_eq!(
        lines(&labelled),
        ["node/kwok-pool-tenants-1"],
        "{}",
        labelled.stderr
    );
    let foreign = kubectl(&alice, &["get", "node", "kwok-node-1"]).await;
    assert!(
        !foreign.ok && foreign.stderr.contains(r#"nodes "kwok-node-1" not found"#),
        "another pool's node does not exist: {}",
        foreign.stderr
    );
    let node = kubectl(
        &alice,
        &["get", "node", "kwok-pool-tenants-1", "-o", "json"],
    )
    .await;
    assert!(node.ok, "{}", node.stderr);
    let node: Value = serde_json::from_str(&node.stdout).unwrap();
    assert_eq!(node["metadata"]["labels"]["pool"], "tenants");
    assert!(node["status"]["allocatable"]["pods"].is_string(), "{node}");
    assert!(node["status"]["conditions"].is_array(), "{node}");
    for hidden in ["images", "volumesInUse", "volumesAttached"] {
        assert_eq!(node["status"].get(hidden), None, "{hidden} is not shown");
    }
    let described = kubectl(&alice, &["describe", "node", "kwok-pool-tenants-1"]).await;
    assert!(described.ok, "{}", described.stderr);
    assert!(
        described.stdout.contains("Allocatable:"),
        "{}",
        described.stdout
    );
    assert!(
        !described.stdout.contains(&other.slug),
        "{}",
        described.stdout
    );
    let top = kubectl(
        &alice,
        &[
            "get",
            "--raw",
            "/api/v1/nodes/kwok-pool-tenants-1/proxy/metrics",
        ],
    )
    .await;
    assert!(
        !top.ok && top.stderr.contains("Forbidden"),
        "{}",
        top.stderr
    );
    // kubectl cordon reports the refusal and exits 0.
    let cordon = kubectl(&alice, &["cordon", "kwok-pool-tenants-1"]).await;
    assert!(
        cordon.stderr.contains("unable to cordon") && cordon.stderr.contains("read-only"),
        "{}",
        cordon.stderr
    );

    // Classes: only those the policy names; another is not found.
    let listed = kubectl(&alice, &["get", "storageclasses", "-o", "name"]).await;
    assert!(listed.ok, "{}", listed.stderr);
    assert_eq!(
        lines(&listed),
        [format!("storageclass.storage.k8s.io/{fast}")]
    );
    let forbidden_class = kubectl(&alice, &["get", "storageclass", &slow]).await;
    assert!(
        !forbidden_class.ok && forbidden_class.stderr.contains("not found"),
        "{}",
        forbidden_class.stderr
    );

    // Volumes: those bound to the tenant's claims, claims by the tenant's names.
    let table = kubectl(&alice, &["get", "pv"]).await;
    assert!(table.ok, "{}", table.stderr);
    assert!(table.stdout.contains(&ours), "{}", table.stdout);
    assert!(table.stdout.contains("dev/data"), "{}", table.stdout);
    assert!(
        !table.stdout.contains(&theirs) && !table.stdout.contains(&other.slug),
        "{}",
        table.stdout
    );
    let theirs_read = kubectl(&alice, &["get", "pv", &theirs]).await;
    assert!(
        !theirs_read.ok && theirs_read.stderr.contains("not found"),
        "{}",
        theirs_read.stderr
    );
    let ours_json = kubectl(&alice, &["get", "pv", &ours, "-o", "json"]).await;
    let ours_json: Value = serde_json::from_str(&ours_json.stdout).unwrap();
    assert_eq!(ours_json["spec"]["claimRef"]["namespace"], "dev");

    // kube-rs: a list and a watch of nodes see the pool only.
    let document = kube::config::Kubeconfig::from_yaml(&alice.yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(document, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let seen: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let listed = seen.list(&ListParams::default().limit(1)).await.unwrap();
    let names: Vec<_> = listed
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert_eq!(names, ["kwok-pool-tenants-1"]);
    assert_eq!(listed.metadata.continue_, None, "a view is answered whole");
    let mut events = seen
        .watch(&WatchParams::default().timeout(3), "0")
        .await
        .unwrap()
        .boxed();
    let mut watched = Vec::new();
    while let Some(event) = events.next().await {
        if let Ok(WatchEvent::Added(node) | WatchEvent::Modified(node)) = event {
            watched.extend(node.metadata.name);
        }
    }
    watched.dedup();
    assert_eq!(watched, ["kwok-pool-tenants-1"]);

    // Another tenant without a pool policy sees every node, and none of acme's volumes.
    let carol = member_kubeconfig(&setup, "ALICE", &other.slug).await;
    let all_nodes = kubectl(&carol, &["get", "nodes", "-o", "name"]).await;
    assert_eq!(lines(&all_nodes).len(), 3, "{}", all_nodes.stdout);
    let their_volumes = kubectl(&carol, &["get", "pv", "-o", "name"]).await;
    assert_eq!(
        lines(&their_volumes),
        [format!("persistentvolume/{theirs}")]
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn discovery_lists_exactly_what_the_tenant_api_serves(db: PgPool) {
    let setup = portal(db, TenantApiConfig::default()).await;
    let app = &setup.portal.app;
    let acme = tenant(app, "gwdisc").await;
    let group = format!("{}.example.com", unique("widgets"));
    let crd = format!("widgets.{group}");
    let _cleanup = ClusterObjects(vec![format!("crd/{crd}")]);
    let definitions: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(kube().await);
    definitions
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": crd},
                "spec": {
                    "group": group,
                    "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object",
                            "x-kubernetes-preserve-unknown-fields": true}}}],
                },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // The API server serves the new group a moment after the definition is made.
    for _ in 0..50 {
        let direct = std::process::Command::new(stack_kubectl())
            .args(["api-resources", "-o", "name"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&direct.stdout).contains(&crd) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alice = member_kubeconfig(&setup, "ALICE", &acme.slug).await;

    let resources = kubectl(&alice, &["api-resources", "-o", "name"]).await;
    assert!(resources.ok, "{}", resources.stderr);
    assert!(
        resources.stderr.trim().is_empty(),
        "no warnings: {}",
        resources.stderr
    );
    let listed = lines(&resources);
    for offered in [
        "pods",
        "deployments.apps",
        "roles.rbac.authorization.k8s.io",
        "namespaces",
        "nodes",
        "persistentvolumes",
        "storageclasses.storage.k8s.io",
        "selfsubjectaccessreviews.authorization.k8s.io",
    ] {
        assert!(listed.contains(&offered), "{offered} is listed: {listed:?}");
    }
    for hidden in [
        "clusterroles.rbac.authorization.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
        "apiservices.apiregistration.k8s.io",
        "validatingadmissionpolicies.admissionregistration.k8s.io",
        "componentstatuses",
        "certificatesigningrequests.certificates.k8s.io",
        crd.as_str(),
    ] {
        assert!(!listed.contains(&hidden), "{hidden} is not listed");
    }
    let wide = kubectl(&alice, &["api-resources", "-o", "wide"]).await;
    let nodes_line = wide
        .stdout
        .lines()
        .find(|line| line.starts_with("nodes "))
        .unwrap_or_else(|| panic!("{}", wide.stdout));
    assert!(nodes_line.contains(" get,list,watch "), "{nodes_line}");

    // The legacy documents and the OpenAPI index say the same.
    let groups = kubectl(&alice, &["get", "--raw", "/apis"]).await;
    let groups: Value = serde_json::from_str(&groups.stdout).unwrap();
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(names.contains(&"apps") && names.contains(&"storage.k8s.io"));
    for hidden in [
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        group.as_str(),
    ] {
        assert!(!names.contains(&hidden), "{hidden} in {names:?}");
    }
    let core = kubectl(&alice, &["get", "--raw", "/api/v1"]).await;
    assert!(core.stdout.contains(r#""name":"pods/exec""#));
    assert!(!core.stdout.contains("componentstatuses") && !core.stdout.contains("nodes/proxy"));
    let index = kubectl(&alice, &["get", "--raw", "/openapi/v3"]).await;
    assert!(index.stdout.contains("apis/apps/v1"), "{}", index.stdout);
    assert!(!index.stdout.contains("apiextensions") && !index.stdout.contains(&group));
    let hidden_group = kubectl(&alice, &["get", "--raw", &format!("/apis/{group}/v1")]).await;
    assert!(
        !hidden_group.ok && hidden_group.stderr.contains("NotFound"),
        "{}",
        hidden_group.stderr
    );

    // What discovery does not list is not served: the custom resource is
    // unknown to the tenant, even by its full path.
    let widgets = kubectl(&alice, &["get", "widgets", "-n", "dev"]).await;
    assert!(
        !widgets.ok
            && widgets
                .stderr
                .contains("the server doesn't have a resource type"),
        "{}",
        widgets.stderr
    );
    let by_path = kubectl(
        &alice,
        &[
            "get",
            "--raw",
            &format!("/apis/{group}/v1/namespaces/dev/widgets"),
        ],
    )
    .await;
    assert!(
        !by_path.ok && by_path.stderr.contains("NotFound"),
        "{}",
        by_path.stderr
    );

    // kubectl explain reads the narrowed OpenAPI documents.
    for kind in [
        "pods.spec.containers",
        "nodes.status.allocatable",
        "deployments",
    ] {
        let explained = kubectl(&alice, &["explain", kind]).await;
        assert!(explained.ok, "explain {kind}: {}", explained.stderr);
    }
}
