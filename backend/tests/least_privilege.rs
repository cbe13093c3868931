//! The portal's ClusterRole and admission policy in `deploy/kubernetes/base`
//! allow all the reconciler and the API do in a cluster, and nothing else:
//! the real reconciler runs here with a TokenRequest token of the portal's
//! ServiceAccount instead of the admin, against the control plane of
//! `deploy/dev/up`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::{eventually, kube, kubeconfig_path, outbox_drained, spawn_portal, unique};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::cluster::objects::Kind;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
const READY: Duration = Duration::from_secs(30);
/// Where the base puts the portal, and the account it runs as.
const NAMESPACE: &str = "tenant-portal";
const ACCOUNT: &str = "tenant-portal";
const USERNAME: &str = "system:serviceaccount:tenant-portal:tenant-portal";

/// The portal's identity in the local cluster: a kubeconfig with a token of
/// its ServiceAccount, and a client built from it.
struct Identity {
    kubeconfig: PathBuf,
    client: kube::Client,
}

impl Drop for Identity {
    fn drop(&mut self) {
        if let Some(dir) = self.kubeconfig.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The base as `kubectl kustomize` renders it: what an installation applies.
fn rendered_base() -> Vec<Value> {
    let kubectl = std::env::var("TP_KUBECTL").expect(
        "TP_KUBECTL is not set: start the local stack with deploy/dev/up and source the stack.env it prints",
    );
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/base");
    let output = std::process::Command::new(&kubectl)
        .arg("kustomize")
        .arg(&base)
        .output()
        .unwrap_or_else(|e| panic!("failed to run {kubectl}: {e}"));
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        base.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8(output.stdout).unwrap())
        .expect("the rendered base is not YAML")
}

fn api_resource(object: &Value) -> (ApiResource, bool) {
    let kind = object["kind"].as_str().unwrap();
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", object["apiVersion"].as_str().unwrap()),
    };
    let (plural, namespaced) = match kind {
        "Namespace" => ("namespaces", false),
        "ServiceAccount" => ("serviceaccounts", true),
        "ClusterRole" => ("clusterroles", false),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        "ValidatingAdmissionPolicy" => ("validatingadmissionpolicies", false),
        "ValidatingAdmissionPolicyBinding" => ("validatingadmissionpolicybindings", false),
        other => panic!("unexpected kind {other}"),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    (ApiResource::from_gvk_with_plural(&gvk, plural), namespaced)
}

/// Applies the base's Namespace, ServiceAccount, ClusterRole,
/// ClusterRoleBinding and admission policy as the admin, then gets a token for
/// the account and waits until RBAC and the policy are in force.
async fn portal_identity() -> Identity {
    let admin = kube().await;
    let wanted = [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ];
    // The base's other ClusterRole (kubectl debug, aggregated into edit and
    // admin) is no part of the portal's identity.
    let objects: Vec<Value> = rendered_base()
        .into_iter()
        .filter(|o| wanted.contains(&o["kind"].as_str().unwrap_or_default()))
        .filter(|o| o["metadata"]["name"] != "tenant-portal-debug")
        .collect();
    assert_eq!(
        objects.len(),
        wanted.len(),
        "the base has one each of {wanted:?}"
    );
    let params = PatchParams::apply("least-privilege-test").force();
    for object in &objects {
        let (resource, namespaced) = api_resource(object);
        let name = object["metadata"]["name"].as_str().unwrap();
        let api: Api<DynamicObject> = if namespaced {
            let ns = object["metadata"]["namespace"].as_str().unwrap();
            Api::namespaced_with(admin.clone(), ns, &resource)
        } else {
            Api::all_with(admin.clone(), &resource)
        };
        api.patch(name, &params, &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| panic!("failed to apply {} {name}: {e}", resource.kind));
    }

    let accounts: Api<ServiceAccount> = Api::namespaced(admin, NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(ACCOUNT, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;

    // The admin kubeconfig's server and CA, with the account's token.
    let admin_config = Kubeconfig::read_from(kubeconfig_path()).unwrap();
    let cluster = admin_config
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .expect("the admin kubeconfig names no cluster");
    let document = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "portal", "context": {"cluster": "local", "user": ACCOUNT}}],
        "current-context": "portal",
    });
    let dir = std::env::temp_dir().join(unique("least-privilege-"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, document.to_string()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();

    // RBAC learns of a new binding through a watch: wait for it.
    eventually(
        "RBAC grants the portal its ClusterRole",
        Duration::from_secs(10),
        || {
            let client = client.clone();
            async move { allowed(&client, "create", "", "namespaces", None, None).await }
        },
    )
    .await;
    // The admission policy is compiled and loaded asynchronously too: in force
    // once it refuses a RoleBinding outside the portal's namespaces.
    eventually(
        "the admission policy holds the portal to its namespaces",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            async move { refused_by_policy(create_binding(&client, "default", "view").await) }
        },
    )
    .await;
    Identity { kubeconfig, client }
}

const DRY_RUN: PostParams = PostParams {
    dry_run: true,
    field_manager: None,
};

/// Creates (dry run) a RoleBinding of `role` for a made-up user.
async fn create_binding(
    client: &kube::Client,
    namespace: &str,
    role: &str,
) -> kube::Result<RoleBinding> {
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": unique("lp-binding-")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory@example.com"}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&DRY_RUN, &binding)
        .await
}

/// Refused by RBAC: 403 without the policy's message.
fn refused_by_rbac<T>(result: kube::Result<T>) -> bool {
    refused(result, false)
}

/// Refused by the admission policy in deploy/kubernetes/base.
fn refused_by_policy<T>(result: kube::Result<T>) -> bool {
    refused(result, true)
}

fn refused<T>(result: kube::Result<T>, by_policy: bool) -> bool {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains(POLICY) == by_policy => {
            true
        }
        Err(e) => {
            eprintln!("refused otherwise: {e}");
            false
        }
        Ok(_) => {
            eprintln!("allowed");
            false
        }
    }
}

/// Part of the admission policy's message.
const POLICY: &str = "the tenant portal may only change namespaces labelled";

/// A namespace the admin creates for the test, and deletes.
struct TestNamespace {
    name: String,
    admin: kube::Client,
}

impl TestNamespace {
    async fn create(prefix: &str, managed: bool) -> Self {
        let admin = kube().await;
        let name = unique(prefix);
        let labels = if managed {
            json!({"app.kubernetes.io/managed-by": "tenant-portal"})
        } else {
            json!({})
        };
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        Self { name, admin }
    }

    async fn delete(self) {
        Api::<Namespace>::all(self.admin)
            .delete(&self.name, &DeleteParams::default())
            .await
            .unwrap();
    }
}

/// Whether the client's user may do `verb` on the resource, as the API server
/// answers a SelfSubjectAccessReview.
async fn allowed(
    client: &kube::Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: namespace.map(Into::into),
                name: name.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.unwrap().allowed
}

/// The portal's writes for the tenant, from the API server's audit log:
/// (requests, refused with 403).
fn audited_writes(slug: &str) -> (usize, usize) {
    let path = std::env::var("TP_KUBE_AUDIT_LOG")
        .expect("TP_KUBE_AUDIT_LOG is not set: source the stack.env that deploy/dev/up prints");
    let log = std::fs::read_to_string(&path).unwrap();
    let mut writes = 0;
    let mut refused = 0;
    for line in log.lines().filter(|l| l.contains(USERNAME)) {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let object = &event["objectRef"];
        let about_tenant = [&object["namespace"], &object["name"]]
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.starts_with(slug)));
        if event["stage"] != "ResponseComplete"
            || event["user"]["username"] != USERNAME
            || !about_tenant
        {
            continue;
        }
        writes += 1;
        if event["responseStatus"]["code"] == 403 {
            refused += 1;
        }
    }
    (writes, refused)
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_reconciler_runs_a_tenants_whole_life_as_the_portals_service_account(db: PgPool) {
    let identity = portal_identity().await;
    let portal = spawn_portal(db, identity.kubeconfig.to_str().unwrap()).await;
    let slug = unique("lp");
    portal
        .app
        .create_tenant(json!({
            "slug": slug,
            "budget": {"requests.cpu": "2", "requests.memory": "2Gi", "pods": "10"},
            "namespaces": [
                {"name": "dev", "allocations": {"requests.cpu": "500m", "requests.memory": "512Mi", "pods": "4"}},
                {"name": "prod", "allocations": {"requests.cpu": "1500m", "requests.memory": "1Gi", "pods": "6"}}
            ],
            // One member per role, so the portal binds admin, edit and view.
            "members": [
                {"kind": "group", "subject": "team-lp", "role": "owner"},
                {"kind": "user", "subject": "alice@example.com", "role": "editor"},
                {"kind": "user", "subject": "bob@example.com", "role": "viewer"}
            ]
        }))
        .await;
    portal.app.wait_ready(&slug, READY).await;
    let admin = kube().await;
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &format!("{slug}-prod"));
    let roles = |list: Vec<RoleBinding>| -> Vec<String> {
        let mut roles: Vec<String> = list.into_iter().map(|b| b.role_ref.name).collect();
        roles.sort();
        roles.dedup();
        roles
    };
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=tenant-portal");
    assert_eq!(
        roles(bindings.list(&managed).await.unwrap().items),
        ["admin", "edit", "view"]
    );

    // Objects labelled as the tenant's that it does not want are pruned: the
    // portal deletes every namespaced kind it manages (namespaces below).
    let dev = format!("{slug}-dev");
    let labels =
        json!({"app.kubernetes.io/managed-by": "tenant-portal", "tenant-portal.dev/tenant": slug});
    let metadata = json!({"name": "stray", "namespace": dev, "labels": labels});
    let strays = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}),
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": metadata,
            "spec": {"hard": {"pods": "100"}}}),
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": metadata,
            "spec": {"limits": [{"type": "Container", "max": {"cpu": "4"}}]}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "stray@example.com"}]}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata,
            "spec": {"podSelector": {}}}),
    ];
    // One at a time, each once the outbox is empty: a drift check that
    // arrives while a worker syncs the same tenant can be lost (the queue's
    // row is deleted when that sync completes), and this test is about
    // permissions, not that race.
    let params = PatchParams::apply("least-privilege-test");
    for stray in &strays {
        let kind = Kind::from_api_kind(stray["kind"].as_str().unwrap()).unwrap();
        outbox_drained(&portal.app.db, Duration::from_secs(30)).await;
        let api: Api<DynamicObject> =
            Api::namespaced_with(admin.clone(), &dev, &kind.api_resource());
        api.patch("stray", &params, &Patch::Apply(stray))
            .await
            .unwrap_or_else(|e| panic!("failed to create a stray {kind:?}: {e}"));
        eventually(
            &format!("the stray {kind:?} is pruned"),
            Duration::from_secs(30),
            || async {
                matches!(api.get("stray").await, Err(kube::Error::Api(s)) if s.code == 404)
            },
        )
        .await;
    }
    portal.app.wait_ready(&slug, READY).await;

    // Suspending replaces every binding with one to view (new objects and a
    // prune); resuming brings admin and edit back.
    for (action, expected) in [
        ("suspend", &["view"][..]),
        ("resume", &["admin", "edit", "view"][..]),
    ] {
        let response = portal
            .app
            .request(Method::POST, &format!("/api/v1/tenants/{slug}:{action}"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{action}: {response:?}");
        portal.app.wait_ready(&slug, READY).await;
        assert_eq!(
            roles(bindings.list(&managed).await.unwrap().items),
            expected,
            "after {action}"
        );
    }

    // A kubeconfig needs a TokenRequest for the tenant's automation account.
    let response = portal
        .app
        .request(Method::POST, &format!("/api/v1/tenants/{slug}/kubeconfig"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("token"), "{body}");

    let response = portal
        .app
        .request(Method::DELETE, &format!("/api/v1/tenants/{slug}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    // The namespace controller takes from seconds to most of a minute on a
    // busy machine.
    eventually(
        "the tenant becomes a tombstone",
        Duration::from_secs(120),
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

    // All of it was done as the ServiceAccount, and nothing it tried was refused.
    let (writes, refused) = audited_writes(&slug);
    assert!(
        writes >= 2 * 6,
        "the audit log shows the portal's writes as {USERNAME} ({writes})"
    );
    assert_eq!(refused, 0, "no write of the portal was refused");
    drop(identity);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_portals_service_account_may_do_nothing_else(_db: PgPool) {
    let identity = portal_identity().await;
    let client = &identity.client;

    // Exactly these verbs on the objects a tenant becomes: no get, update or
    // deletecollection.
    let managed = [
        ("", "namespaces"),
        ("", "serviceaccounts"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("networking.k8s.io", "networkpolicies"),
    ];
    for (group, resource) in managed {
        for verb in ["list", "watch", "create", "patch", "delete"] {
            assert!(
                allowed(client, verb, group, resource, None, None).await,
                "{verb} {resource} is allowed"
            );
        }
        for verb in ["get", "update", "deletecollection"] {
            assert!(
                !allowed(client, verb, group, resource, None, None).await,
                "{verb} {resource} is refused"
            );
        }
    }
    assert!(
        allowed(
            client,
            "create",
            "",
            "serviceaccounts/token",
            Some("x-dev"),
            None
        )
        .await
    );
    for role in ["admin", "edit", "view"] {
        assert!(
            allowed(
                client,
                "bind",
                "rbac.authorization.k8s.io",
                "clusterroles",
                None,
                Some(role)
            )
            .await,
            "bind {role}"
        );
    }

    // Its own admission policies, by name, and the verb they let through.
    for kind in [
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
    ] {
        for verb in ["get", "create", "patch"] {
            let group = "admissionregistration.k8s.io";
            assert!(
                allowed(
                    client,
                    verb,
                    group,
                    kind,
                    None,
                    Some("tenant-portal-suspended")
                )
                .await,
                "{verb} its own {kind}"
            );
            assert!(
                !allowed(client, verb, group, kind, None, Some("someone-elses")).await,
                "{verb} another {kind} is refused"
            );
        }
        for verb in ["delete", "list"] {
            assert!(
                !allowed(
                    client,
                    verb,
                    "admissionregistration.k8s.io",
                    kind,
                    None,
                    None
                )
                .await,
                "{verb} {kind} is refused"
            );
        }
    }
    assert!(
        allowed(
            client,
            "bypass",
            "tenant-portal.dev",
            "guardrails",
            None,
            None
        )
        .await
    );

    let refused = [
        ("get", "", "secrets"),
        ("list", "", "secrets"),
        ("create", "", "pods"),
        ("create", "", "pods/exec"),
        ("list", "", "configmaps"),
        ("create", "apps", "deployments"),
        ("create", "rbac.authorization.k8s.io", "clusterroles"),
        ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
        ("create", "rbac.authorization.k8s.io", "roles"),
        ("escalate", "rbac.authorization.k8s.io", "clusterroles"),
        ("impersonate", "", "users"),
        ("impersonate", "", "serviceaccounts"),
        ("update", "", "namespaces/finalize"),
        // The tenant API's views read nodes and volumes, and nothing more.
        ("get", "", "nodes/proxy"),
        ("create", "", "nodes/proxy"),
        ("patch", "", "nodes"),
        ("delete", "", "persistentvolumes"),
        (
            "create",
            "certificates.k8s.io",
            "certificatesigningrequests",
        ),
    ];
    for (verb, group, resource) in refused {
        assert!(
            !allowed(client, verb, group, resource, Some("default"), None).await,
            "{verb} {group}/{resource} is refused"
        );
    }
    for role in ["cluster-admin", "system:node", "tenant-portal"] {
        assert!(
            !allowed(
                client,
                "bind",
                "rbac.authorization.k8s.io",
                "clusterroles",
                None,
                Some(role)
            )
            .await,
            "bind {role} is refused"
        );
    }

    // And the API server itself says no, beyond the reviews.
    let secrets: Api<Secret> = Api::all(client.clone());
    assert!(
        refused_by_rbac(secrets.list(&ListParams::default()).await),
        "listing secrets is forbidden"
    );
    let managed = TestNamespace::create("lp-managed-", true).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &managed.name);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": unique("lp-pod-")},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
    }))
    .unwrap();
    assert!(
        refused_by_rbac(pods.create(&DRY_RUN, &pod).await),
        "creating a pod is forbidden, even in a namespace of the portal"
    );
    // It binds view, edit and admin in its namespaces, but no other role: RBAC's
    // escalation check holds, so it cannot make anyone cluster-admin.
    for role in ["view", "edit", "admin"] {
        create_binding(client, &managed.name, role)
            .await
            .unwrap_or_else(|e| panic!("binding {role} in a managed namespace is allowed: {e}"));
    }
    assert!(
        refused_by_rbac(create_binding(client, &managed.name, "cluster-admin").await),
        "binding cluster-admin is forbidden"
    );

    // Outside the namespaces it manages, the admission policy refuses what
    // RBAC alone would allow.
    assert!(
        refused_by_policy(create_binding(client, "kube-system", "view").await),
        "no RoleBinding in kube-system"
    );
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
    assert!(
        refused_by_policy(
            accounts
                .create_token_request("namespace-controller", &DRY_RUN, &request)
                .await
        ),
        "no token for a kube-system account"
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let dry_apply = PatchParams {
        dry_run: true,
        ..PatchParams::apply("tenant-portal").force()
    };
    let managed_labels =
        json!({"app.kubernetes.io/managed-by": "tenant-portal", "tenant-portal.dev/tenant": "x"});
    let unmanaged = TestNamespace::create("lp-unmanaged-", false).await;
    for name in ["kube-system", "default", unmanaged.name.as_str()] {
        let adopt = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": managed_labels}});
        assert!(
            refused_by_policy(
                namespaces
                    .patch(name, &dry_apply, &Patch::Apply(&adopt))
                    .await
            ),
            "the portal does not adopt the namespace {name}"
        );
    }
    // (kube-system and default cannot be deleted by anyone.)
    let delete = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    assert!(
        refused_by_policy(namespaces.delete(&unmanaged.name, &delete).await),
        "the portal does not delete a namespace it did not create"
    );
    let new_name = unique("lp-unlabelled-");
    let unlabelled =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": new_name}});
    assert!(
        refused_by_policy(
            namespaces
                .patch(&new_name, &dry_apply, &Patch::Apply(&unlabelled))
                .await
        ),
        "a namespace the portal creates carries its label"
    );

    // The policy's expressions type-check against the API server's schema.
    let policies: Api<DynamicObject> = Api::all_with(
        kube().await,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingAdmissionPolicy",
            ),
            "validatingadmissionpolicies",
        ),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let policy = policies
            .get("tenant-portal-managed-namespaces-only")
            .await
            .unwrap();
        let status = policy.data["status"].clone();
        if status["observedGeneration"].as_i64() == policy.metadata.generation {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API server has not type-checked the policy: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        status["typeChecking"]["expressionWarnings"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{status}"
    );
    managed.delete().await;
    unmanaged.delete().await;
}

/// The GitOps credentials' Role (`deploy/kubernetes/examples/gitops-credentials.yaml`)
/// is all the portal needs to keep tenants' Secrets in its namespace, and
/// the portal may touch no Secret anywhere else.
#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_gitops_role_is_enough_for_the_secrets_there_and_grants_nothing_elsewhere(db: PgPool) {
    const GITOPS: &str = "tenant-portal-gitops";
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes/examples/gitops-credentials.yaml");
    let applied = std::process::Command::new(common::tenant_api::stack_kubectl())
        .args(["--kubeconfig", &kubeconfig_path(), "apply", "-f"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let identity = portal_identity().await;
    eventually(
        "RBAC grants the portal the GitOps Role",
        Duration::from_secs(10),
        || {
            let client = identity.client.clone();
            async move { allowed(&client, "create", "", "secrets", Some(GITOPS), None).await }
        },
    )
    .await;

    // A tenant (made by an admin portal), whose owner asked for both Secrets.
    let portal = spawn_portal(db.clone(), &kubeconfig_path()).await;
    let slug = unique("lpg");
    portal
        .app
        .create_tenant(json!({"slug": slug, "namespaces": [{"name": "dev"}]}))
        .await;
    sqlx::query(
        "INSERT INTO gitops_credentials (tenant_id, argocd, flux, requested_by)
         SELECT id, true, true, 'test' FROM tenants WHERE slug = $1",
    )
    .bind(&slug)
    .execute(&db)
    .await
    .unwrap();

    // The keeper's pass, as the portal's ServiceAccount.
    let (_, clusters) = common::cluster::local_cluster(identity.kubeconfig.to_str().unwrap()).await;
    let keeper = tenant_portal::service::gitops::Keeper {
        cluster: "local".into(),
        namespace: GITOPS.into(),
        token_ttl: Duration::from_secs(3600),
        public_url: format!("https://{}.example.com", unique("portal-")),
        ca_data: None,
    };
    let keep = || tenant_portal::service::gitops::keep(&db, &clusters, &keeper);
    let pass = keep().await.unwrap();
    assert_eq!((pass.written.created, pass.failed), (2, 0), "{pass:?}");
    let again = keep().await.unwrap();
    assert_eq!(
        again.written,
        Default::default(),
        "nothing to write the second time"
    );
    sqlx::query("DELETE FROM gitops_credentials")
        .execute(&db)
        .await
        .unwrap();
    let removed = keep().await.unwrap();
    assert_eq!(removed.written.deleted, 2, "{removed:?}");

    // Elsewhere the portal may not read or write a Secret.
    for verb in ["get", "list", "create", "update", "delete"] {
        assert!(
            !allowed(&identity.client, verb, "", "secrets", Some("default"), None).await,
            "{verb} secrets in default"
        );
    }
    assert!(!allowed(&identity.client, "get", "", "secrets", Some(GITOPS), None).await);
    let elsewhere: Api<Secret> = Api::namespaced(identity.client.clone(), "kube-system");
    assert!(refused_by_rbac(
        elsewhere.list(&ListParams::default()).await
    ));
}
