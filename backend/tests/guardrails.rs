//! A hostile tenant against the real API server of `deploy/dev/up`: every
//! escape is tried with the tenant's own credentials (its downloaded
//! kubeconfig, or an owner's identity impersonated through the admin
//! kubeconfig) and must be refused by the API server itself, in its own
//! words, or repaired by the portal.

mod common;

use std::time::Duration;

use common::cluster::{
    eventually, kube, kubeconfig_path, quota_counted, spawn_portal, spawn_reconciler, unique,
};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::auth::Scope;
use tenant_portal::cluster::SeenNamespace;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
const READY: Duration = Duration::from_secs(30);
/// How long the API server may take to load a changed policy.
const POLICY_LOADED: Duration = Duration::from_secs(20);

fn tenant(slug: &str) -> Value {
    json!({
        "slug": slug,
        "budget": {"requests.cpu": "2", "requests.memory": "2Gi", "pods": "10"},
        "namespaces": [
            {"name": "dev", "allocations": {"requests.cpu": "1", "requests.memory": "1Gi", "pods": "5"}},
            {"name": "prod", "allocations": {"requests.cpu": "1", "requests.memory": "1Gi", "pods": "5"}}
        ],
        "members": [{"kind": "group", "subject": "team-acme", "role": "owner"}]
    })
}

/// A client acting as a tenant owner: alice in the team-acme group, the
/// identity the owner binding names, impersonated through the admin.
async fn as_owner() -> kube::Client {
    as_user("alice@example.com", &["team-acme"]).await
}

async fn as_user(user: &str, groups: &[&str]) -> kube::Client {
    let mut config = kube::Config::infer().await.unwrap();
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(
        groups
            .iter()
            .map(|g| g.to_string())
            .chain(["system:authenticated".into()])
            .collect(),
    );
    kube::Client::try_from(config).unwrap()
}

/// The tenant's downloaded kubeconfig as a client configuration: its
/// automation account.
async fn automation_config(app: &common::TestApp, slug: &str) -> kube::Config {
    let yaml = common::automation_kubeconfig(app, slug).await;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap()
}

/// A client with the tenant's downloaded kubeconfig: its automation account.
async fn as_automation(app: &common::TestApp, slug: &str) -> kube::Client {
    kube::Client::try_from(automation_config(app, slug).await).unwrap()
}

/// The API server refused with 403 and a message containing `words`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: kube::Result<T>, words: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.code == 403 || status.code == 422,
                "expected a refusal, got {}: {}",
                status.code,
                status.message
            );
            assert!(
                status.message.contains(words),
                "the refusal should say \"{words}\": {}",
                status.message
            );
        }
        other => panic!("expected a refusal saying \"{words}\", got {other:?}"),
    }
}

/// Runs the stack's kubectl with the admin kubeconfig; returns what it said.
fn kubectl(args: &[&str]) -> String {
    let kubectl = std::env::var("TP_KUBECTL").expect(
        "TP_KUBECTL is not set: start the local stack with deploy/dev/up and source the stack.env it prints",
    );
    let output = std::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("failed to run {kubectl}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn object<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

fn pod(name: &str, spec: Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": "registry.example.com/app:1"}]);
    }
    object(json!({"metadata": {"name": name}, "spec": spec}))
}

async fn ready_tenant(portal: &common::cluster::Portal, prefix: &str) -> String {
    let slug = unique(prefix);
    portal.app.create_tenant(tenant(&slug)).await;
    portal.app.wait_ready(&slug, READY).await;
    // Quota admission refuses every pod until the quota controller has
    // computed the quota's status.
    for ns in ["dev", "prod"] {
        quota_counted(&format!("{slug}-{ns}")).await;
    }
    policies_in_force(&format!("{slug}-dev")).await;
    slug
}

/// Waits until the API server enforces the admission policies: it compiles
/// and loads them a moment after they are written, so on a fresh cluster
/// the first tenant can be Ready before they are in force. A dry run of a
/// Service with externalIPs is refused exactly then.
async fn policies_in_force(namespace: &str) {
    let services: Api<Service> = Api::namespaced(kube().await, namespace);
    let probe: Service = object(json!({"metadata": {"generateName": "probe-"},
        "spec": {"ports": [{"port": 80}], "externalIPs": ["192.0.2.1"]}}));
    let dry_run = PostParams {
        dry_run: true,
        field_manager: None,
    };
    eventually(
        "the admission policies are in force",
        POLICY_LOADED,
        || async { services.create(&dry_run, &probe).await.is_err() },
    )
    .await;
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn privileged_and_host_pods_are_refused_by_pod_security(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = ready_tenant(&portal, "psa").await;
    let namespace = format!("{slug}-dev");
    let labels = Api::<Namespace>::all(kube().await)
        .get(&namespace)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap();
    for mode in ["enforce", "warn", "audit"] {
        assert_eq!(
            labels[&format!("pod-security.kubernetes.io/{mode}")],
            "baseline"
        );
    }

    let escape = pod(
        "root-on-the-node",
        json!({
            "hostNetwork": true, "hostPID": true,
            "containers": [{"name": "app", "image": "registry.example.com/app:1",
                            "securityContext": {"privileged": true},
                            "volumeMounts": [{"name": "root", "mountPath": "/host"}]}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}]
        }),
    );
    for client in [as_automation(&portal.app, &slug).await, as_owner().await] {
        let pods: Api<Pod> = Api::namespaced(client, &namespace);
        assert_refused(
            pods.create(&PostParams::default(), &escape).await,
            "violates PodSecurity \"baseline:latest\"",
        );
        pods.create(&PostParams::default(), &pod(&unique("plain-"), json!({})))
            .await
            .expect("a plain pod is admitted");
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn removed_pod_security_labels_are_put_back(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = ready_tenant(&portal, "psadrift").await;
    let namespaces: Api<Namespace> = Api::all(kube().await);
    let name = format!("{slug}-prod");
    let patch =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
    namespaces
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the Pod Security label is repaired", READY, || async {
        namespaces.get(&name).await.is_ok_and(|ns| {
            ns.metadata.labels.unwrap_or_default()["pod-security.kubernetes.io/enforce"]
                == "baseline"
        })
    })
    .await;
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn services_are_cluster_ip_only_and_never_take_external_ips(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = ready_tenant(&portal, "svc").await;
    let services: Api<Service> = Api::namespaced(as_owner().await, &format!("{slug}-dev"));
    let service = |name: &str, spec: Value| -> Service {
        let mut spec = spec;
        spec["ports"] = json!([{"port": 80}]);
        object(json!({"metadata": {"name": name}, "spec": spec}))
    };
    assert_refused(
        services
            .create(
                &PostParams::default(),
                &service("intercept", json!({"externalIPs": ["8.8.8.8"]})),
            )
            .await,
        &format!("tenant {slug} may not set externalIPs"),
    );
    for kind in ["NodePort", "LoadBalancer"] {
        assert_refused(
            services
                .create(
                    &PostParams::default(),
                    &service("exposed", json!({"type": kind})),
                )
                .await,
            &format!("tenant {slug} may use Service types ClusterIP; this Service asks for {kind}"),
        );
    }
    services
        .create(&PostParams::default(), &service("internal", json!({})))
        .await
        .expect("a ClusterIP Service is admitted");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn long_lived_credentials_are_refused(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = ready_tenant(&portal, "cred").await;
    let home = format!("{slug}-dev");
    let automation = as_automation(&portal.app, &slug).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(automation.clone(), &home);
    let request = |seconds: i64| TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(seconds),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "deployer"}})),
        )
        .await
        .expect("the tenant makes an account of its own");
    assert_refused(
        accounts
            .create_token_request("deployer", &PostParams::default(), &request(8760 * 3600))
            .await,
        &format!("tenant {slug} may request ServiceAccount tokens valid for at most 3600 seconds"),
    );
    // 3607 s is what the API server silently extends to a year.
    assert_refused(
        accounts
            .create_token_request("deployer", &PostParams::default(), &request(3607))
            .await,
        "at most 3600 seconds",
    );
    accounts
        .create_token_request("deployer", &PostParams::default(), &request(3600))
        .await
        .expect("an hour-long token is granted");
    // An editor minting the owner account's token would be an owner.
    for role_account in ["tenant-owner", "tenant-automation", "tenant-viewer"] {
        assert_refused(
            accounts
                .create_token_request(role_account, &PostParams::default(), &request(600))
                .await,
            &format!("may not request tokens of the portal's role account {role_account}"),
        );
    }

    let secrets: Api<Secret> = Api::namespaced(as_owner().await, &home);
    let forever: Secret = object(json!({
        "metadata": {"name": "forever", "annotations": {"kubernetes.io/service-account.name": "tenant-automation"}},
        "type": "kubernetes.io/service-account-token"
    }));
    assert_refused(
        secrets.create(&PostParams::default(), &forever).await,
        "may not create Secrets of type kubernetes.io/service-account-token",
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_editor_impersonating_the_owners_account_is_refused_its_writes(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = ready_tenant(&portal, "imper").await;
    let home = format!("{slug}-dev");
    // The downloaded kubeconfig: the automation account, bound to `edit`,
    // which may impersonate the ServiceAccounts of its namespaces.
    let mut config = automation_config(&portal.app, &slug).await;
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{home}:tenant-owner"));
    let as_owner_account = kube::Client::try_from(config).unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(as_owner_account.clone(), &home);
    let dry_run = PostParams {
        dry_run: true,
        field_manager: None,
    };
    // A policy installed moments ago is in force once the API server loaded it.
    eventually(
        "the role-accounts policy is in force",
        POLICY_LOADED,
        || async {
            config_maps
                .create(&dry_run, &object(json!({"metadata": {"name": "probe"}})))
                .await
                .is_err()
        },
    )
    .await;
    let bindings: Api<RoleBinding> = Api::namespaced(as_owner_account.clone(), &home);
    let grab: RoleBinding = object(json!({
        "metadata": {"name": "friend-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory@example.com"}]
    }));
    assert_refused(
        bindings.create(&PostParams::default(), &grab).await,
        "is the portal's role account and acts only with the tokens the portal issues",
    );
    assert_refused(
        config_maps
            .create(
                &PostParams::default(),
                &object(json!({"metadata": {"name": "as-owner"}})),
            )
            .await,
        "impersonating it is refused",
    );
    // Nor may a pod run as it, which would mount its token for an editor to read.
    let automation = as_automation(&portal.app, &slug).await;
    let pods: Api<Pod> = Api::namespaced(automation.clone(), &home);
    assert_refused(
        pods.create(
            &PostParams::default(),
            &pod("as-owner", json!({"serviceAccountName": "tenant-owner"})),
        )
        .await,
        &format!("tenant {slug} may not run pods as the portal's role account tenant-owner"),
    );
    // The account itself, with a token the portal issued, still writes.
    Api::<ConfigMap>::namespaced(automation, &home)
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "with-a-token"}})),
        )
        .await
        .expect("the automation account writes with its own token");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_portals_objects_are_read_only_inside_the_tenant(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = ready_tenant(&portal, "ro").await;
    let other = ready_tenant(&portal, "rox").await;
    let namespace = format!("{slug}-dev");
    let owner = as_owner().await;
    let words = "is managed by the tenant portal";

    // RBAC already keeps quotas from the admin role; the policy holds the rest.
    let quotas: Api<ResourceQuota> = Api::namespaced(owner.clone(), &namespace);
    assert_refused(
        quotas
            .delete("tenant-quota", &DeleteParams::default())
            .await,
        "forbidden",
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(owner.clone(), &namespace);
    let open = json!({"spec": {"ingress": [{}]}});
    assert_refused(
        policies
            .patch(
                "tenant-isolation",
                &PatchParams::default(),
                &Patch::Merge(&open),
            )
            .await,
        words,
    );
    let relabel = json!({"metadata": {"labels": {"tenant-portal.dev/tenant": other}}});
    assert_refused(
        policies
            .patch(
                "tenant-isolation",
                &PatchParams::default(),
                &Patch::Merge(&relabel),
            )
            .await,
        words,
    );
    let bindings: Api<RoleBinding> = Api::namespaced(owner.clone(), &namespace);
    let hijack = json!({"subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory@example.com"}]});
    assert_refused(
        bindings
            .patch(
                "tenant-owners-admin",
                &PatchParams::default(),
                &Patch::Merge(&hijack),
            )
            .await,
        words,
    );
    let lookalike: RoleBinding = object(json!({
        "metadata": {"name": "tenant-viewers-view",
                     "labels": {"app.kubernetes.io/managed-by": "tenant-portal", "tenant-portal.dev/tenant": other}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory@example.com"}]
    }));
    assert_refused(
        bindings.create(&PostParams::default(), &lookalike).await,
        words,
    );
    let accounts: Api<ServiceAccount> = Api::namespaced(owner.clone(), &namespace);
    assert_refused(
        accounts
            .delete("tenant-automation", &DeleteParams::default())
            .await,
        words,
    );

    // What the tenant makes itself stays its own to change.
    let maps: Api<ConfigMap> = Api::namespaced(owner, &namespace);
    let map: ConfigMap = object(json!({"metadata": {"name": "settings"}, "data": {"a": "1"}}));
    maps.create(&PostParams::default(), &map).await.unwrap();
    maps.delete("settings", &DeleteParams::default())
        .await
        .unwrap();
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_object_relabelled_for_another_tenant_is_repaired_for_the_tenant_it_sits_in(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = ready_tenant(&portal, "rel").await;
    let other = ready_tenant(&portal, "relx").await;
    // Past the admission policy (a cluster admin, or a bug): the portal's
    // repair is the second line.
    let policies: Api<NetworkPolicy> = Api::namespaced(kube().await, &format!("{slug}-prod"));
    for label in [json!(other), json!("no-such-tenant")] {
        let relabel = json!({"metadata": {"labels": {"tenant-portal.dev/tenant": label}},
                             "spec": {"ingress": [{}]}});
        policies
            .patch(
                "tenant-isolation",
                &PatchParams::default(),
                &Patch::Merge(&relabel),
            )
            .await
            .unwrap();
        eventually("the relabelled policy is repaired", READY, || async {
            policies.get("tenant-isolation").await.is_ok_and(|p| {
                p.metadata.labels.unwrap_or_default()["tenant-portal.dev/tenant"] == slug
                    && p.spec.unwrap().ingress.unwrap()[0].from.is_some()
            })
        })
        .await;
    }
    // The other tenant's pruning never touched it.
    assert!(policies.get("tenant-isolation").await.is_ok());
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn egress_reaches_the_tenant_dns_and_the_outside_but_not_the_metadata_service(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = ready_tenant(&portal, "egress").await;
    let policy = Api::<NetworkPolicy>::namespaced(kube().await, &format!("{slug}-dev"))
        .get("tenant-isolation")
        .await
        .unwrap();
    let spec = serde_json::to_value(policy.spec.unwrap()).unwrap();
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
    let egress = spec["egress"].as_array().unwrap();
    assert_eq!(
        egress[0]["to"][0]["namespaceSelector"]["matchLabels"]["tenant-portal.dev/tenant"],
        slug
    );
    assert_eq!(
        egress[1]["ports"],
        json!([{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}])
    );
    assert_eq!(
        egress[2]["to"][0]["ipBlock"],
        json!({"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]})
    );
    assert_eq!(
        egress[2]["to"][1]["ipBlock"],
        json!({"cidr": "::/0", "except": ["fd00:ec2::254/128"]})
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_suspended_tenant_is_read_only_through_every_binding(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = ready_tenant(&portal, "cordon").await;
    let namespace = format!("{slug}-dev");
    // The owner hands out edit rights of its own, outside the portal.
    let side_door: RoleBinding = object(json!({
        "metadata": {"name": "side-door"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory@example.com"}]
    }));
    Api::<RoleBinding>::namespaced(as_owner().await, &namespace)
        .create(&PostParams::default(), &side_door)
        .await
        .unwrap();
    let maps: Api<ConfigMap> =
        Api::namespaced(as_user("mallory@example.com", &[]).await, &namespace);
    let map = |name: &str| -> ConfigMap { object(json!({"metadata": {"name": name}})) };
    // RBAC's authorizer learns of a new binding through its own cache, a
    // moment after the binding is written.
    eventually("the side door lets mallory write", READY, || {
        let (maps, before) = (maps.clone(), map("before"));
        async move { maps.create(&PostParams::default(), &before).await.is_ok() }
    })
    .await;
    Api::<Pod>::namespaced(as_owner().await, &namespace)
        .create(&PostParams::default(), &pod("worker", json!({})))
        .await
        .unwrap();

    let response = portal
        .app
        .request(Method::POST, &format!("/api/v1/tenants/{slug}:suspend"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    portal.app.wait_ready(&slug, READY).await;
    let refusal = format!("tenant {slug} is suspended");
    eventually("the cordon holds", POLICY_LOADED, || async {
        maps.create(&PostParams::default(), &map(&unique("during-")))
            .await
            .is_err()
    })
    .await;
    assert_refused(
        maps.create(&PostParams::default(), &map("during")).await,
        &refusal,
    );
    assert_refused(
        maps.delete("before", &DeleteParams::default()).await,
        &refusal,
    );
    // The owner's binding is the portal's, swapped to view: RBAC says no.
    let owner_pods: Api<Pod> = Api::namespaced(as_owner().await, &namespace);
    assert_refused(
        owner_pods
            .create(&PostParams::default(), &pod("late", json!({})))
            .await,
        "forbidden",
    );
    let exec = kubectl(&[
        "--as",
        "mallory@example.com",
        "-n",
        &namespace,
        "exec",
        "worker",
        "--",
        "true",
    ]);
    assert!(exec.contains(&refusal), "exec while suspended: {exec}");
    maps.get("before").await.expect("reads still work");
    owner_pods
        .list(&ListParams::default())
        .await
        .expect("reads still work");

    portal
        .app
        .request(Method::POST, &format!("/api/v1/tenants/{slug}:resume"))
        .send()
        .await
        .unwrap();
    portal.app.wait_ready(&slug, READY).await;
    maps.create(&PostParams::default(), &map("after"))
        .await
        .expect("resume lifts the cordon");
}

/// A namespace someone else made (`<slug>-manager`, with a Secret in it),
/// created by the admin as a cluster team would.
async fn foreign_namespace(name: &str) {
    let admin = kube().await;
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": name}})),
        )
        .await
        .unwrap();
    let secret: Secret =
        object(json!({"metadata": {"name": "signing-key"}, "stringData": {"key": "s3cret"}}));
    Api::<Secret>::namespaced(admin.clone(), name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // The portal's check at request time reads the API server's watch cache
    // (the reconciler's refusal is the guarantee, tested below); let the
    // cache have it, as it does within milliseconds.
    let cached = ListParams::default()
        .fields(&format!("metadata.name={name}"))
        .match_any();
    eventually("the API server's cache has the namespace", READY, || {
        let (admin, cached) = (admin.clone(), cached.clone());
        async move {
            Api::<Namespace>::all(admin)
                .list_metadata(&cached)
                .await
                .is_ok_and(|found| !found.items.is_empty())
        }
    })
    .await;
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn asking_for_a_namespace_the_cluster_already_has_is_refused_naming_it(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = unique("taken");
    let existing = format!("{slug}-manager");
    foreign_namespace(&existing).await;
    // The check reads the portal's own watch of the cluster's namespaces,
    // which has the new one within milliseconds.
    let cluster = portal.clusters.get("local").unwrap().clone();
    eventually("the portal's watch has the namespace", READY, || {
        let cluster = cluster.clone();
        let existing = existing.clone();
        async move { cluster.seen_namespace(&existing) == Some(SeenNamespace::Foreign) }
    })
    .await;

    let response = portal
        .app
        .post_json(
            "/api/v1/tenants",
            json!({"slug": slug, "namespaces": [{"name": "dev"}, {"name": "manager"}]}),
        )
        .await;
    let (status, problem) = common::problem(response).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(
        problem["errors"][0]["field"], "namespaces[1].name",
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains(&format!(
            "the cluster already has a namespace \"{existing}\""
        )),
        "{problem}"
    );
    assert_eq!(
        portal
            .app
            .get(&format!("/api/v1/tenants/{slug}"))
            .await
            .status(),
        404,
        "nothing was written"
    );

    portal
        .app
        .create_tenant(json!({"slug": slug, "namespaces": [{"name": "dev"}]}))
        .await;
    let response = portal
        .app
        .post_json(
            &format!("/api/v1/tenants/{slug}/namespaces"),
            json!({"name": "manager"}),
        )
        .await;
    let (status, problem) = common::problem(response).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "name", "{problem}");
    Api::<Namespace>::all(kube().await)
        .delete(&existing, &DeleteParams::default())
        .await
        .unwrap();
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn without_a_reconciler_to_watch_the_cluster_the_check_asks_the_api_server(db: PgPool) {
    // A replica whose namespace watch has not listed the cluster (here
    // none runs) cannot tell from memory, so it asks the API server, and
    // refuses all the same.
    let (spec, clusters) = common::cluster::local_cluster(&kubeconfig_path()).await;
    let app = common::spawn_app_with(db, vec![spec], clusters.clone()).await;
    let slug = unique("asked");
    let existing = format!("{slug}-ops");
    foreign_namespace(&existing).await;
    let response = app
        .post_json(
            "/api/v1/tenants",
            json!({"slug": slug, "cluster": "local", "namespaces": [{"name": "ops"}]}),
        )
        .await;
    let (status, problem) = common::problem(response).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(
        problem["errors"][0]["field"], "namespaces[0].name",
        "{problem}"
    );
    assert_eq!(
        clusters.get("local").unwrap().seen_namespace(&existing),
        None
    );
    Api::<Namespace>::all(kube().await)
        .delete(&existing, &DeleteParams::default())
        .await
        .unwrap();
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_api_only_replica_watches_namespaces_and_cluster_health_itself(db: PgPool) {
    // No reconciler here, only what `serve` starts for an API-only replica.
    let (spec, clusters) = common::cluster::local_cluster(&kubeconfig_path()).await;
    let app = common::spawn_app_with(db, vec![spec], clusters.clone()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let cluster = clusters.get("local").unwrap().clone();
    tenant_portal::cluster::observe(&cluster, &mut tasks, &stop);
    tenant_portal::cluster::observe(&cluster, &mut tasks, &stop);
    assert_eq!(tasks.len(), 2, "a second observe adds no watch");

    let slug = unique("watched");
    let existing = format!("{slug}-ops");
    foreign_namespace(&existing).await;
    eventually("the replica's watch has the namespace", READY, || {
        let cluster = cluster.clone();
        let existing = existing.clone();
        async move { cluster.seen_namespace(&existing) == Some(SeenNamespace::Foreign) }
    })
    .await;
    let clusters_view: Value = app.get("/api/v1/clusters").await.json().await.unwrap();
    assert_eq!(
        clusters_view[0]["reachable"], true,
        "placement and the clusters view see the cluster answer: {clusters_view}"
    );
    let response = app
        .post_json(
            "/api/v1/tenants",
            json!({"slug": slug, "cluster": "local", "namespaces": [{"name": "ops"}, {"name": "dev"}]}),
        )
        .await;
    let (status, problem) = common::problem(response).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 1, "{problem}");
    assert_eq!(
        problem["errors"][0]["field"], "namespaces[0].name",
        "{problem}"
    );

    // A namespace labelled as the portal's for a tenant is that tenant's,
    // and the watch sees it go.
    let owned = format!("{slug}-dev");
    let namespace: Namespace = object(json!({"metadata": {"name": owned, "labels": {
        "app.kubernetes.io/managed-by": "tenant-portal", "tenant-portal.dev/tenant": slug}}}));
    let namespaces = Api::<Namespace>::all(kube().await);
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    eventually("the replica's watch knows whose it is", READY, || {
        let (cluster, owned, slug) = (cluster.clone(), owned.clone(), slug.clone());
        async move {
            cluster.seen_namespace(&owned)
                == Some(SeenNamespace::Managed {
                    tenant: Some(slug.as_str().into()),
                })
        }
    })
    .await;
    for name in [&existing, &owned] {
        namespaces
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually("the replica's watch sees it deleted", READY, || {
        let (cluster, owned) = (cluster.clone(), owned.clone());
        async move { cluster.seen_namespace(&owned) == Some(SeenNamespace::Absent) }
    })
    .await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_namespace_that_appears_after_it_was_accepted_is_never_taken(db: PgPool) {
    // The API accepts while the name is free; the namespace appears before
    // the reconciler gets to it.
    let app = common::spawn_app(db.clone()).await;
    let slug = unique("adopt");
    let existing = format!("{slug}-manager");
    app.create_tenant(json!({"slug": slug, "cluster": "local", "namespaces": [{"name": "manager"}],
                             "members": [{"kind": "group", "subject": "team-acme", "role": "owner"}]}))
        .await;
    foreign_namespace(&existing).await;
    let (_reconciler, _stop) = spawn_reconciler(db, &kubeconfig_path()).await;

    eventually(
        "the tenant fails instead of taking the namespace",
        READY,
        || async {
            let status: Value = app
                .get(&format!("/api/v1/tenants/{slug}/status"))
                .await
                .json()
                .await
                .unwrap();
            status["status"] == "Failed"
                && status["message"].as_str().is_some_and(|m| {
                    m.contains(&format!("namespace \"{existing}\" already exists in the cluster and was not created by the portal"))
                })
        },
    )
    .await;
    let admin = kube().await;
    let labels = Api::<Namespace>::all(admin.clone())
        .get(&existing)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default();
    assert!(
        !labels.contains_key("tenant-portal.dev/tenant"),
        "{labels:?}"
    );
    assert!(
        Api::<RoleBinding>::namespaced(admin.clone(), &existing)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing of the tenant's was written into the namespace"
    );
    assert_refused(
        Api::<Secret>::namespaced(as_owner().await, &existing)
            .get("signing-key")
            .await,
        "forbidden",
    );
    Api::<Namespace>::all(admin)
        .delete(&existing, &DeleteParams::default())
        .await
        .unwrap();
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_namespace_name_is_never_given_to_a_second_tenant(db: PgPool) {
    // The database remembers every name given, whether or not the cluster
    // still has the namespace: here no cluster is asked at all.
    let app = common::spawn_app(db).await;
    let first = unique("ab");
    app.create_tenant(json!({"slug": first, "namespaces": [{"name": "c-dev"}, {"name": "keep"}]}))
        .await;
    let removed = app
        .request(
            Method::DELETE,
            &format!("/api/v1/tenants/{first}/namespaces/c-dev"),
        )
        .send()
        .await
        .unwrap();
    assert!(
        removed.status().is_success(),
        "{}",
        removed.text().await.unwrap()
    );
    let second = format!("{first}-c");
    let response = app
        .post_json(
            "/api/v1/tenants",
            // The free name first: the answer names the taken one, not the first.
            json!({"slug": second, "namespaces": [{"name": "apps"}, {"name": "dev"}]}),
        )
        .await;
    let (status, problem) = common::problem(response).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("\"{first}-c-dev\" was used by another tenant")),
        "{problem}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn classes_registries_and_node_pools_hold_when_the_policy_says_so(db: PgPool) {
    let portal = spawn_portal(db, &kubeconfig_path()).await;
    let slug = ready_tenant(&portal, "pol").await;
    let response = portal
        .app
        .request(Method::PUT, &format!("/api/v1/tenants/{slug}/policy"))
        .json(&json!({
            "service_types": ["NodePort"],
            "storage_classes": ["fast", "standard"],
            "registries": ["registry.example.com/"],
            "node_selector": {"pool": "tenants"}
        }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["policy"]["storage_classes"],
        json!(["fast", "standard"]),
        "{body}"
    );
    portal.app.wait_ready(&slug, READY).await;

    let owner = as_owner().await;
    let namespace = format!("{slug}-dev");
    let services: Api<Service> = Api::namespaced(owner.clone(), &namespace);
    let service = |kind: &str| -> Service {
        object(
            json!({"metadata": {"generateName": "svc-"}, "spec": {"type": kind, "ports": [{"port": 80}]}}),
        )
    };
    eventually("the policy is in force", POLICY_LOADED, || async {
        services
            .create(&PostParams::default(), &service("NodePort"))
            .await
            .is_ok()
    })
    .await;
    assert_refused(
        services
            .create(&PostParams::default(), &service("LoadBalancer"))
            .await,
        &format!(
            "tenant {slug} may use Service types ClusterIP, NodePort; this Service asks for LoadBalancer"
        ),
    );

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(owner.clone(), &namespace);
    let claim = |class: &str| -> PersistentVolumeClaim {
        object(json!({"metadata": {"generateName": "data-"},
                      "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                               "resources": {"requests": {"storage": "1Gi"}}}}))
    };
    assert_refused(
        claims.create(&PostParams::default(), &claim("gold")).await,
        &format!("tenant {slug} may use StorageClasses fast, standard; this claim asks for gold"),
    );
    claims
        .create(&PostParams::default(), &claim("fast"))
        .await
        .expect("a listed class is admitted");

    let pinned = json!({"nodeSelector": {"pool": "tenants"}});
    let pods: Api<Pod> = Api::namespaced(owner.clone(), &namespace);
    let mut foreign = pinned.clone();
    foreign["containers"] = json!([{"name": "app", "image": "docker.io/evil/miner:1"}]);
    assert_refused(
        pods.create(&PostParams::default(), &pod("miner", foreign))
            .await,
        &format!(
            "tenant {slug} may use images from registry.example.com/; this Pod uses docker.io/evil/miner:1"
        ),
    );
    assert_refused(
        pods.create(&PostParams::default(), &pod("anywhere", json!({})))
            .await,
        &format!("tenant {slug} runs on nodes labelled pool=tenants"),
    );
    pods.create(&PostParams::default(), &pod("pinned", pinned))
        .await
        .expect("a conforming pod is admitted");

    // Workloads are checked at apply time, not later by their controller.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(owner, &namespace);
    let deployment = object(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"nodeSelector": {"pool": "tenants"},
                                       "containers": [{"name": "web", "image": "nginx:1.27"}]}}}
    }));
    assert_refused(
        deployments
            .create(&PostParams::default(), &deployment)
            .await,
        "this Deployment uses nginx:1.27",
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn only_platform_admins_change_a_policy_and_each_change_is_audited(db: PgPool) {
    let app = common::spawn_app(db.clone()).await;
    let slug = unique("govern");
    app.create_tenant(tenant(&slug)).await;
    let path = format!("/api/v1/tenants/{slug}/policy");
    let policy: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(policy["source"], "default", "{policy}");
    assert_eq!(policy["policy"]["pod_security"], "baseline");
    assert_eq!(policy["policy"]["service_types"], json!(["ClusterIP"]));

    let writer = common::create_token(&db, "ci-writer", &[Scope::TenantsWrite], None).await;
    let response = app
        .client
        .put(format!("{}{path}", app.base))
        .bearer_auth(&writer)
        .json(&json!({"pod_security": "privileged"}))
        .send()
        .await
        .unwrap();
    let (status, problem) = common::problem(response).await;
    assert_eq!(status, 403, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("admin"),
        "{problem}"
    );

    let bad = app
        .request(Method::PUT, &path)
        .json(&json!({"registries": ["docker.io"], "service_types": ["Ingress"]}))
        .send()
        .await
        .unwrap();
    let (status, problem) = common::problem(bad).await;
    assert_eq!(status, 422, "{problem}");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["service_types[0]", "registries[0]"], "{problem}");

    let set = app
        .request(Method::PUT, &path)
        .json(&json!({"pod_security": "privileged", "storage_classes": ["fast"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let tenant: Value = app
        .get(&format!("/api/v1/tenants/{slug}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tenant["policy"]["pod_security"], "privileged", "{tenant}");
    assert_eq!(tenant["policy"]["storage_classes"], json!(["fast"]));

    let audit: Value = app
        .get(&format!(
            "/api/v1/audit-events?tenant={slug}&action=tenant.policy_changed"
        ))
        .await
        .json()
        .await
        .unwrap();
    let events = audit["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["before"]["policy"], Value::Null);
    assert_eq!(events[0]["after"]["policy"]["pod_security"], "privileged");

    let reset = app.request(Method::DELETE, &path).send().await.unwrap();
    let reset: Value = reset.json().await.unwrap();
    assert_eq!(reset["source"], "default", "{reset}");
    assert_eq!(reset["policy"]["pod_security"], "baseline");
}
