//! What tenants do every day, under every admission policy the portal
//! installs (`cluster/guardrails.rs`: services, workloads, classes,
//! credentials, managed objects, the cordon of a suspended tenant) and under
//! Pod Security, with the stack's real kubectl against the real API server,
//! as the tenant's own accounts: directly, with the downloaded cluster
//! kubeconfig, and through the tenant API (`/k8s/tenants/<slug>`) as a
//! signed-in owner.
//!
//! Every everyday change to every workload kind the workloads policy matches
//! and to the tenant's Services, ConfigMaps, Secrets, claims, Ingresses,
//! NetworkPolicies and RoleBindings is allowed: create, updates that change
//! nothing, labels and annotations, client-side and server-side apply,
//! scale, set image, rollouts, delete. Every escape the policies exist for
//! is still refused, in the policy's own words. And no answer anywhere is a
//! refusal by evaluation error ("resulted in error"): a policy that fails
//! closed turns its own bug into a refusal of everything it matches.

mod common;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::TestApp;
use common::cluster::{eventually, kube, kubeconfig_path, unique};
use common::tenant_api::{Setup, member_kubeconfig_yaml};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, PostParams};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
const READY: Duration = Duration::from_secs(30);
/// How long the API server may take to load a changed policy or namespace.
const POLICY_LOADED: Duration = Duration::from_secs(20);
/// How the API server words a refusal by a policy whose expression could
/// not be evaluated: always a bug in the policy, never a tenant's fault.
const EVALUATION_ERROR: &str = "resulted in error";
/// The tenant's allowed registry; nothing is ever pulled from it.
const REGISTRY: &str = "registry.example.com/";
/// Objects kubectl works on at the same time.
const PARALLEL: usize = 4;

// ---- the portal and its tenants --------------------------------------------

/// The strictest policy a tenant gets: its own registry, node pool and
/// classes only.
fn strict_policy(pod_security: &str) -> Value {
    json!({
        "pod_security": pod_security,
        "registries": [REGISTRY],
        "node_selector": {"pool": "tenants"},
        "storage_classes": ["standard"],
        "ingress_classes": ["nginx"],
        "priority_classes": ["tenant-normal"],
        "runtime_classes": ["tenant-runc"],
        "tenant_api": generous_share(),
    })
}

/// A share of the tenant API no kubectl loop of these tests exhausts.
fn generous_share() -> Value {
    json!({"requests_per_second": 1000, "burst": 2000, "max_in_flight": 100, "max_watches": 20})
}

/// A Ready tenant with one namespace, `dev`, and a budget that fits every
/// pod below; alice owns it, bob views it. Answers its slug.
async fn tenant(app: &TestApp, prefix: &str, policy: Value) -> String {
    let slug = unique(prefix);
    let budget = json!({"requests.cpu": "8", "requests.memory": "16Gi", "pods": "40"});
    app.create_tenant(json!({
        "slug": slug,
        "budget": budget,
        "namespaces": [{"name": "dev", "allocations": budget}],
        "members": [
            {"kind": "user", "subject": "alice@example.com", "role": "owner"},
            {"kind": "user", "subject": "bob@example.com", "role": "viewer"}
        ]
    }))
    .await;
    let response = app
        .request(Method::PUT, &format!("/api/v1/tenants/{slug}/policy"))
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    app.wait_ready(&slug, READY).await;
    let namespace = format!("{slug}-dev");
    // Quota admission refuses every pod until the quota controller has
    // computed the quota's status.
    common::cluster::quota_counted(&namespace).await;
    policies_in_force(&namespace, &policy).await;
    slug
}

/// Waits until the API server enforces the admission policies and reads
/// the tenant's rules from its namespace: it loads both a moment after
/// they are written. Dry runs as the admin, whom the workloads policy and
/// Pod Security hold like anyone: a pod breaking the tenant's strictest
/// rule is refused exactly when the namespace as last written is in force.
async fn policies_in_force(namespace: &str, policy: &Value) {
    let admin = kube().await;
    let dry_run = PostParams {
        dry_run: true,
        field_manager: None,
    };
    let services: Api<Service> = Api::namespaced(admin.clone(), namespace);
    let probe: Service = serde_json::from_value(json!({"metadata": {"generateName": "probe-"},
        "spec": {"ports": [{"port": 80}], "externalIPs": ["192.0.2.1"]}}))
    .unwrap();
    eventually(
        "the admission policies are in force",
        POLICY_LOADED,
        || async { services.create(&dry_run, &probe).await.is_err() },
    )
    .await;
    let shape = if policy.get("node_selector").is_some() {
        STRICT
    } else {
        DEFAULT
    };
    let mut probe = workload("Pod", "probe", shape, 1);
    if policy.get("registries").is_some() {
        probe["spec"]["containers"][0]["image"] = json!("docker.io/library/busybox:1");
    } else if policy["pod_security"] == "restricted" {
        probe["spec"]["containers"][0]["securityContext"] = json!({});
    } else {
        return;
    }
    let probe: Pod = serde_json::from_value(probe).unwrap();
    let pods: Api<Pod> = Api::namespaced(admin, namespace);
    eventually("the tenant's rules are in force", POLICY_LOADED, || async {
        pods.create(&dry_run, &probe).await.is_err()
    })
    .await;
}

/// The same kubeconfig with a token for another of the tenant's accounts
/// in its home namespace: `tenant-owner` is the account the tenant API
/// acts as for owners (bound to `admin`, which RoleBindings need).
async fn with_account(kubeconfig: &str, namespace: &str, account: &str) -> String {
    let document: Value = serde_saphyr::from_str(kubeconfig).unwrap();
    let old = document["users"][0]["user"]["token"].as_str().unwrap();
    let request = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let issued = Api::<ServiceAccount>::namespaced(kube().await, namespace)
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .unwrap();
    kubeconfig.replace(old, &issued.status.unwrap().token)
}

/// A tenant-view kubeconfig for a signed-in member, pointing at the TLS front.
async fn member_kubeconfig(setup: &Setup, user: &str, slug: &str) -> String {
    member_kubeconfig_yaml(setup, user, slug).await
}

/// Cluster-wide classes a tenant may not use, made by the platform as a
/// cluster admin (the policy can only refuse a class that exists: the API
/// server's own admission refuses an unknown one first).
async fn foreign_classes() {
    let admin = kube().await;
    let priority: PriorityClass =
        serde_json::from_value(json!({"metadata": {"name": "everyday-high"}, "value": 1000}))
            .unwrap();
    let runtime: RuntimeClass = serde_json::from_value(
        json!({"metadata": {"name": "everyday-sandbox"}, "handler": "sandbox"}),
    )
    .unwrap();
    let created = Api::<PriorityClass>::all(admin.clone())
        .create(&PostParams::default(), &priority)
        .await;
    assert!(already_there_or_made(&created), "{created:?}");
    let created = Api::<RuntimeClass>::all(admin)
        .create(&PostParams::default(), &runtime)
        .await;
    assert!(already_there_or_made(&created), "{created:?}");
}

fn already_there_or_made<T>(result: &kube::Result<T>) -> bool {
    match result {
        Ok(_) => true,
        Err(kube::Error::Api(status)) => status.code == 409,
        Err(_) => false,
    }
}

// ---- kubectl, checked -------------------------------------------------------

/// How many commands a door ran, by outcome.
#[derive(Debug, Default)]
struct Tally {
    allowed: usize,
    refused: usize,
    reads: usize,
}

/// kubectl with one kubeconfig: the tenant's own credentials, at the
/// cluster's API server or at the tenant API, in the tenant's namespace as
/// that door names it. Every command goes through [`Door::kubectl`], which
/// records any refusal by evaluation error as a failure; each test ends by
/// failing on all failures of all its doors ([`assert_all_held`]).
struct Door {
    name: String,
    dir: PathBuf,
    namespace: String,
    tally: Mutex<Tally>,
    /// Everything that did not go as it should, to report all at once.
    failures: Mutex<Vec<String>>,
}

impl Drop for Door {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    /// stdout and stderr: everything kubectl said.
    said: String,
}

/// One kubectl command, and what it reads on stdin.
#[derive(Clone)]
enum Step {
    Kubectl {
        args: Vec<String>,
        input: Option<Value>,
    },
    /// `kubectl get -o json | kubectl replace -f -`: an update of the
    /// object exactly as read. kubectl sends the resourceVersion it read
    /// (it fills one in when the file has none), so a controller's status
    /// update in between is a conflict, and a tenant replaces again.
    ReplaceAsRead { target: String },
    /// `kubectl diff --server-side -f -`: a dry-run apply through every
    /// admission policy; kubectl exits 1 when it finds a difference.
    Diff { input: Value },
    /// Waits until the controller has recorded a second revision, which
    /// `rollout undo` goes back to. Rollouts themselves are never waited on.
    TwoRevisions { target: String },
}

fn kubectl(args: &[&str]) -> Step {
    Step::Kubectl {
        args: args.iter().map(|a| a.to_string()).collect(),
        input: None,
    }
}

fn kubectl_with(args: &[&str], input: &Value) -> Step {
    Step::Kubectl {
        args: args.iter().map(|a| a.to_string()).collect(),
        input: Some(input.clone()),
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kubectl { args, input: None } => write!(f, "kubectl {}", args.join(" ")),
            Self::Kubectl {
                args,
                input: Some(input),
            } => write!(
                f,
                "kubectl {} <<< {} {}",
                args.join(" "),
                input["kind"].as_str().unwrap_or("?"),
                input["metadata"]["name"].as_str().unwrap_or("?")
            ),
            Self::ReplaceAsRead { target } => {
                write!(f, "kubectl get {target} -o json | kubectl replace -f -")
            }
            Self::TwoRevisions { target } => write!(f, "kubectl rollout history {target}"),
            Self::Diff { input } => write!(
                f,
                "kubectl diff --server-side -f - <<< {} {}",
                input["kind"].as_str().unwrap_or("?"),
                input["metadata"]["name"].as_str().unwrap_or("?")
            ),
        }
    }
}

impl Door {
    fn new(name: &str, kubeconfig: &str, namespace: &str) -> Self {
        let dir = std::env::temp_dir().join(unique("everyday-"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config"), kubeconfig).unwrap();
        Self {
            name: name.to_string(),
            dir,
            namespace: namespace.to_string(),
            tally: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Runs kubectl in the tenant's namespace, off the runtime's threads,
    /// and fails the test if any policy refused by evaluation error.
    async fn kubectl(&self, args: &[String], input: Option<String>) -> Run {
        let binary = std::env::var("TP_KUBECTL").expect(
            "TP_KUBECTL is not set: start the local stack with deploy/dev/up and source the stack.env it prints",
        );
        let mut command = std::process::Command::new(&binary);
        command
            .arg("--kubeconfig")
            .arg(self.dir.join("config"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .arg("--request-timeout=30s")
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args);
        let run = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            use std::process::Stdio;
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("failed to run {binary}: {e}"));
            let mut stdin = child.stdin.take().unwrap();
            if let Some(input) = input {
                stdin.write_all(input.as_bytes()).unwrap();
            }
            drop(stdin);
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let said = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
            Run {
                ok: output.status.success(),
                code: output.status.code(),
                stdout,
                said,
            }
        })
        .await
        .unwrap();
        if run.said.contains(EVALUATION_ERROR) {
            self.fail(format!(
                "kubectl {} was refused by evaluation error, a bug in a policy:\n{}",
                args.join(" "),
                run.said
            ));
        }
        run
    }

    async fn read(&self, args: &[&str]) -> Run {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let run = self.kubectl(&args, None).await;
        if run.ok {
            self.tally.lock().unwrap().reads += 1;
        } else {
            self.fail(format!(
                "kubectl {} should read:\n{}",
                args.join(" "),
                run.said
            ));
        }
        run
    }

    async fn attempt(&self, step: &Step) -> Run {
        match step {
            Step::Kubectl { args, input } => {
                let input = input.as_ref().map(Value::to_string);
                self.kubectl(args, input).await
            }
            Step::ReplaceAsRead { target } => {
                let args = ["replace", "-f", "-"].map(String::from);
                let mut tries = 0;
                loop {
                    let read = self.read(&["get", target, "-o", "json"]).await;
                    if !read.ok {
                        return read;
                    }
                    let replaced = self.kubectl(&args, Some(read.stdout)).await;
                    tries += 1;
                    if tries == 3 || !replaced.said.contains("the object has been modified") {
                        return replaced;
                    }
                }
            }
            Step::Diff { input } => {
                let args = ["diff", "--server-side", "-f", "-"].map(String::from);
                let mut run = self.kubectl(&args, Some(input.to_string())).await;
                run.ok = matches!(run.code, Some(0 | 1));
                run
            }
            Step::TwoRevisions { target } => {
                let deadline = Instant::now() + READY;
                loop {
                    let history = self.read(&["rollout", "history", target]).await;
                    if !history.ok {
                        return history;
                    }
                    let revisions = history
                        .stdout
                        .lines()
                        .filter(|l| {
                            l.split_whitespace()
                                .next()
                                .is_some_and(|n| n.parse::<u32>().is_ok())
                        })
                        .count();
                    if revisions >= 2 || Instant::now() > deadline {
                        return history;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// The step succeeds; a failure is recorded, answered false.
    async fn allowed(&self, step: &Step) -> bool {
        let run = self.attempt(step).await;
        if !run.ok {
            self.fail(format!("{step} should be allowed:\n{}", run.said));
            return false;
        }
        if !matches!(step, Step::TwoRevisions { .. }) {
            self.tally.lock().unwrap().allowed += 1;
        }
        true
    }

    /// The step succeeds, or the test ends here: what later steps build on.
    async fn must(&self, step: &Step) -> Run {
        let run = self.attempt(step).await;
        assert!(run.ok, "{}: {step}: {}", self.name, run.said);
        run
    }

    /// The step fails, and kubectl's answer says every one of `words`; a
    /// failure is recorded.
    async fn refused(&self, step: &Step, words: &[String]) {
        let run = self.attempt(step).await;
        if run.ok {
            self.fail(format!(
                "{step} should be refused saying {words:?}, and was allowed:\n{}",
                run.said
            ));
            return;
        }
        let missing: Vec<&String> = words
            .iter()
            .filter(|w| !run.said.contains(w.as_str()))
            .collect();
        if !missing.is_empty() {
            self.fail(format!(
                "{step} should be refused saying {missing:?}, and said:\n{}",
                run.said
            ));
            return;
        }
        self.tally.lock().unwrap().refused += 1;
    }

    /// Records a failure; tokens kubectl printed are left out of it.
    fn fail(&self, what: String) {
        let redacted: Vec<String> = what
            .lines()
            .map(|line| {
                let words: Vec<&str> = line
                    .split(' ')
                    .map(|w| if w.starts_with("eyJ") { "<token>" } else { w })
                    .collect();
                words.join(" ")
            })
            .collect();
        self.failures
            .lock()
            .unwrap()
            .push(format!("{}: {}", self.name, redacted.join("\n")));
    }

    fn report(&self, started: Instant) {
        let tally = self.tally.lock().unwrap();
        eprintln!(
            "{}: {} allowed, {} refused, {} reads, {} failed, {:.1?}",
            self.name,
            tally.allowed,
            tally.refused,
            tally.reads,
            self.failures.lock().unwrap().len(),
            started.elapsed()
        );
    }
}

/// Reports every door's tally, then fails the test with everything that
/// did not go as it should, from all doors at once.
fn assert_all_held(doors: &[&Door], started: Instant) {
    for door in doors {
        door.report(started);
    }
    let failures: Vec<String> = doors
        .iter()
        .flat_map(|d| d.failures.lock().unwrap().clone())
        .collect();
    assert!(
        failures.is_empty(),
        "{} steps did not go as they should:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---- what tenants run ---------------------------------------------------------

/// What the tenant's policy asks of its objects.
#[derive(Clone, Copy)]
struct Shape {
    node_pool: bool,
    storage_class: Option<&'static str>,
    ingress_class: Option<&'static str>,
}

const STRICT: Shape = Shape {
    node_pool: true,
    storage_class: Some("standard"),
    ingress_class: Some("nginx"),
};

const DEFAULT: Shape = Shape {
    node_pool: false,
    storage_class: None,
    ingress_class: None,
};

fn image(version: u32) -> String {
    format!("{REGISTRY}app:{version}")
}

/// A pod spec Pod Security's restricted level admits, with small requests.
fn pod_spec(shape: Shape, image: &str, restart: &str) -> Value {
    let mut spec = json!({
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 1,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "app",
            "image": image,
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                          "limits": {"cpu": "50m", "memory": "32Mi"}},
            "securityContext": {"allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]}}
        }]
    });
    if shape.node_pool {
        spec["nodeSelector"] = json!({"pool": "tenants"});
    }
    spec
}

fn template(shape: Shape, name: &str, image: &str, restart: &str) -> Value {
    json!({"metadata": {"labels": {"app": name}}, "spec": pod_spec(shape, image, restart)})
}

fn object(api_version: &str, kind: &str, name: &str, body: Value) -> Value {
    let mut object = json!({"apiVersion": api_version, "kind": kind,
                            "metadata": {"name": name, "labels": {"app": name}}});
    for (key, value) in body.as_object().unwrap() {
        object[key] = value.clone();
    }
    object
}

/// The versions a workload goes through: each changes the pod template's
/// image, except a Job's, whose template is immutable (its parallelism
/// changes instead).
fn workload(kind: &str, name: &str, shape: Shape, version: u32) -> Value {
    let selector = json!({"matchLabels": {"app": name}});
    let always = template(shape, name, &image(version), "Always");
    match kind {
        "Pod" => object(
            "v1",
            kind,
            name,
            json!({"spec": pod_spec(shape, &image(version), "Always")}),
        ),
        "Deployment" | "ReplicaSet" => object(
            "apps/v1",
            kind,
            name,
            json!({"spec": {"replicas": 1, "selector": selector, "template": always}}),
        ),
        "StatefulSet" => object(
            "apps/v1",
            kind,
            name,
            json!({"spec": {"replicas": 1, "serviceName": name, "selector": selector, "template": always}}),
        ),
        "DaemonSet" => object(
            "apps/v1",
            kind,
            name,
            json!({"spec": {"selector": selector, "template": always}}),
        ),
        "ReplicationController" => object(
            "v1",
            kind,
            name,
            json!({"spec": {"replicas": 1, "selector": {"app": name}, "template": always}}),
        ),
        "Job" => object(
            "batch/v1",
            kind,
            name,
            json!({"spec": {"parallelism": if version == 2 { 2 } else { 1 }, "backoffLimit": 0,
                            "template": template(shape, name, &image(1), "Never")}}),
        ),
        "CronJob" => object(
            "batch/v1",
            kind,
            name,
            json!({"spec": {"schedule": "0 3 * * *", "suspend": true,
                            "jobTemplate": {"spec": {"template": template(shape, name, &image(version), "Never")}}}}),
        ),
        other => unreachable!("{other}"),
    }
}

fn service(version: u32) -> Value {
    object(
        "v1",
        "Service",
        "web",
        json!({"spec": {"selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080 + version}]}}),
    )
}

fn config_map(version: u32) -> Value {
    object(
        "v1",
        "ConfigMap",
        "settings",
        json!({"data": {"mode": format!("v{version}")}}),
    )
}

fn secret(version: u32) -> Value {
    use base64::Engine;
    let password = base64::engine::general_purpose::STANDARD.encode(format!("s3cret-{version}"));
    object(
        "v1",
        "Secret",
        "credentials",
        json!({"type": "Opaque", "data": {"password": password}}),
    )
}

fn claim(shape: Shape, version: u32) -> Value {
    // A claim's spec is fixed once bound; its labels are what changes.
    let mut claim = object(
        "v1",
        "PersistentVolumeClaim",
        "data",
        json!({"spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    claim["metadata"]["labels"]["revision"] = json!(format!("v{version}"));
    if let Some(class) = shape.storage_class {
        claim["spec"]["storageClassName"] = json!(class);
    }
    claim
}

fn ingress(shape: Shape, version: u32) -> Value {
    let mut ingress = object(
        "networking.k8s.io/v1",
        "Ingress",
        "web",
        json!({"spec": {"rules": [{"host": "web.example.com", "http": {"paths": [{
            "path": format!("/v{version}"), "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    );
    if let Some(class) = shape.ingress_class {
        ingress["spec"]["ingressClassName"] = json!(class);
    }
    ingress
}

fn network_policy(version: u32) -> Value {
    object(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "allow-web",
        json!({"spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"ports": [{"protocol": "TCP", "port": 8080 + version}]}]}}),
    )
}

/// The tenant's own binding of `view` to its viewer, later to more readers.
fn role_binding(version: u32) -> Value {
    let subjects = [
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob@example.com"}),
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "auditors"}),
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "support"}),
    ];
    object(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "readers",
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": subjects[..version as usize].to_vec()}),
    )
}

/// One object of the tenant's and what is done to it in a day.
struct Everyday {
    /// `kind/name`, as kubectl takes it.
    target: String,
    steps: Vec<Step>,
    /// Binding roles takes the owner's rights (`admin`); all else an editor's.
    owner: bool,
}

/// Create it, update it without changing it, label and annotate it, apply
/// it unchanged and changed (client-side and server-side), then what its
/// kind allows (`extras`), then delete it.
fn everyday(target: &str, versions: [Value; 3], extras: Vec<Step>) -> Everyday {
    let [first, second, third] = versions;
    let t = target;
    let mut steps = vec![
        kubectl_with(&["create", "-f", "-"], &first),
        Step::ReplaceAsRead { target: t.into() },
        kubectl(&["label", t, "everyday.example.com/team=payments"]),
        kubectl(&[
            "label",
            "--overwrite",
            t,
            "everyday.example.com/team=billing",
        ]),
        kubectl(&["label", t, "everyday.example.com/team-"]),
        kubectl(&["annotate", t, "everyday.example.com/note=first"]),
        kubectl(&[
            "annotate",
            "--overwrite",
            t,
            "everyday.example.com/note=second",
        ]),
        // The first apply adopts what `create` made; the second changes nothing.
        kubectl_with(&["apply", "-f", "-"], &first),
        kubectl_with(&["apply", "-f", "-"], &first),
        kubectl_with(&["apply", "-f", "-"], &second),
        kubectl_with(&["apply", "--server-side", "-f", "-"], &second),
        kubectl_with(&["apply", "--server-side", "-f", "-"], &third),
        kubectl_with(&["apply", "--server-side", "-f", "-"], &third),
        Step::Diff { input: third },
        Step::Diff { input: second },
    ];
    steps.extend(extras);
    steps.push(kubectl(&["delete", t, "--wait=false"]));
    Everyday {
        target: target.into(),
        steps,
        owner: false,
    }
}

/// Everyday extras of a workload kind.
fn scale(t: &str) -> Vec<Step> {
    vec![
        kubectl(&["scale", t, "--replicas=2"]),
        kubectl(&["scale", t, "--replicas=1"]),
    ]
}

fn set_image_and_env(t: &str) -> Vec<Step> {
    vec![
        kubectl(&["set", "image", t, &format!("app={}", image(4))]),
        kubectl(&["set", "env", t, "MODE=everyday"]),
        kubectl(&["set", "env", t, "MODE-"]),
    ]
}

fn restart_and_undo(t: &str) -> Vec<Step> {
    vec![
        kubectl(&["rollout", "restart", t]),
        Step::TwoRevisions { target: t.into() },
        kubectl(&["rollout", "undo", t]),
    ]
}

/// Every kind the workloads policy matches, and the tenant's everyday
/// objects beside them.
fn matrix(shape: Shape) -> Vec<Everyday> {
    let versions = |kind: &str, name: &str| [1, 2, 3].map(|v| workload(kind, name, shape, v));
    let mut deployment = vec![
        kubectl(&["rollout", "pause", "deployment/web"]),
        kubectl(&["rollout", "resume", "deployment/web"]),
        kubectl(&[
            "expose",
            "deployment/web",
            "--name=web-exposed",
            "--port=80",
            "--target-port=8080",
        ]),
        kubectl(&["delete", "service/web-exposed", "--wait=false"]),
    ];
    deployment.extend(scale("deployment/web"));
    deployment.extend(set_image_and_env("deployment/web"));
    deployment.extend(restart_and_undo("deployment/web"));
    let mut statefulset = scale("statefulset/db");
    statefulset.extend(set_image_and_env("statefulset/db"));
    statefulset.extend(restart_and_undo("statefulset/db"));
    let mut daemonset = set_image_and_env("daemonset/agent");
    daemonset.extend(restart_and_undo("daemonset/agent"));
    let mut replicaset = scale("replicaset/cache");
    replicaset.extend(set_image_and_env("replicaset/cache"));
    let mut controller = scale("replicationcontroller/legacy");
    controller.extend(set_image_and_env("replicationcontroller/legacy"));
    let mut cronjob = set_image_and_env("cronjob/nightly");
    cronjob.extend([
        kubectl(&["create", "job", "nightly-now", "--from=cronjob/nightly"]),
        kubectl(&["delete", "job/nightly-now", "--wait=false"]),
    ]);
    // `kubectl debug` (pods/ephemeralcontainers): with the refusals, where
    // the policy's image rule is tried too.
    let pod = vec![kubectl(&[
        "set",
        "image",
        "pod/shell",
        &format!("app={}", image(4)),
    ])];
    let mut bindings = everyday("rolebinding/readers", [1, 2, 3].map(role_binding), vec![]);
    bindings.owner = true;
    vec![
        everyday("pod/shell", versions("Pod", "shell"), pod),
        everyday("deployment/web", versions("Deployment", "web"), deployment),
        everyday(
            "replicaset/cache",
            versions("ReplicaSet", "cache"),
            replicaset,
        ),
        everyday("statefulset/db", versions("StatefulSet", "db"), statefulset),
        everyday("daemonset/agent", versions("DaemonSet", "agent"), daemonset),
        everyday("job/migrate", versions("Job", "migrate"), vec![]),
        everyday("cronjob/nightly", versions("CronJob", "nightly"), cronjob),
        everyday(
            "replicationcontroller/legacy",
            versions("ReplicationController", "legacy"),
            controller,
        ),
        everyday("service/web", [1, 2, 3].map(service), vec![]),
        everyday("configmap/settings", [1, 2, 3].map(config_map), vec![]),
        everyday("secret/credentials", [1, 2, 3].map(secret), vec![]),
        everyday(
            "persistentvolumeclaim/data",
            [1, 2, 3].map(|v| claim(shape, v)),
            vec![],
        ),
        everyday("ingress/web", [1, 2, 3].map(|v| ingress(shape, v)), vec![]),
        everyday(
            "networkpolicy/allow-web",
            [1, 2, 3].map(network_policy),
            vec![],
        ),
        bindings,
    ]
}

/// Runs the matrix, a few objects at a time, each object's steps in order.
async fn run_everyday(shape: Shape, editor: &Door, owner: &Door) -> usize {
    let objects = matrix(shape);
    let count = objects.len();
    futures::stream::iter(objects)
        .map(|object| async move {
            let door = if object.owner { owner } else { editor };
            // Past a failure the object's later steps would only repeat it.
            for step in &object.steps {
                if !door.allowed(step).await {
                    break;
                }
            }
            object.target
        })
        .buffer_unordered(PARALLEL)
        .collect::<Vec<String>>()
        .await;
    count
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn everyday_changes_are_allowed_directly(db: PgPool) {
    let started = Instant::now();
    let setup = common::tenant_api::portal(db, Default::default()).await;
    let app = &setup.portal.app;
    let slug = tenant(app, "daily", strict_policy("restricted")).await;
    let namespace = format!("{slug}-dev");
    let downloaded = common::automation_kubeconfig(app, &slug).await;
    let automation = Door::new("directly, automation account", &downloaded, &namespace);
    let owner = Door::new(
        "directly, owner account",
        &with_account(&downloaded, &namespace, "tenant-owner").await,
        &namespace,
    );

    let objects = run_everyday(STRICT, &automation, &owner).await;

    assert_eq!(objects, 15);
    assert_all_held(&[&automation, &owner], started);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn everyday_changes_are_allowed_through_the_tenant_api(db: PgPool) {
    let started = Instant::now();
    let setup = common::tenant_api::portal(db, Default::default()).await;
    let app = &setup.portal.app;
    let slug = tenant(app, "dailyapi", json!({"tenant_api": generous_share()})).await;
    let alice = Door::new(
        "tenant API, alice (owner)",
        &member_kubeconfig(&setup, "ALICE", &slug).await,
        "dev",
    );

    let objects = run_everyday(DEFAULT, &alice, &alice).await;

    assert_eq!(objects, 15);
    assert_all_held(&[&alice], started);
}

// ---- what stays refused -------------------------------------------------------

/// One escape, refused in these words (`{slug}` stands for the tenant's).
struct Guarded {
    step: Step,
    words: Vec<&'static str>,
    /// Needs the owner's rights to get past RBAC to the policy.
    owner: bool,
}

fn guarded(step: Step, words: &[&'static str]) -> Guarded {
    Guarded {
        step,
        words: words.to_vec(),
        owner: false,
    }
}

fn pod_with(name: &str, spec: Value) -> Value {
    let mut pod = workload("Pod", name, STRICT, 1);
    for (key, value) in spec.as_object().unwrap() {
        pod["spec"][key] = value.clone();
    }
    pod
}

fn service_with(name: &str, spec: Value) -> Value {
    let mut service = service(1);
    service["metadata"]["name"] = json!(name);
    for (key, value) in spec.as_object().unwrap() {
        service["spec"][key] = value.clone();
    }
    service
}

/// Everything the policies of a strict tenant at baseline exist to refuse.
fn escapes() -> Vec<Guarded> {
    let types = "tenant {slug} may use Service types ClusterIP; this Service asks for";
    let images = "tenant {slug} may use images from registry.example.com/;";
    let pool = "tenant {slug} runs on nodes labelled pool=tenants;";
    let managed = "is managed by the tenant portal and cannot be created, changed or deleted from inside the tenant";
    let foreign = "docker.io/evil/miner:1";
    let mut outside_cron = workload("CronJob", "outside", STRICT, 1);
    outside_cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"] =
        json!([{"name": "init", "image": "docker.io/evil/init:1"}]);
    let mut outside_deployment = workload("Deployment", "outside", STRICT, 1);
    outside_deployment["spec"]["template"]["spec"]["containers"][0]["image"] = json!(foreign);
    let claim_for = |class: Option<&'static str>, volume: Option<&str>| {
        let mut claim = claim(
            Shape {
                storage_class: class,
                ..STRICT
            },
            1,
        );
        claim["metadata"]["name"] = json!("grab");
        if let Some(volume) = volume {
            claim["spec"]["volumeName"] = json!(volume);
        }
        claim
    };
    let ingress_for = |class: Option<&'static str>| {
        let mut ingress = ingress(
            Shape {
                ingress_class: class,
                ..STRICT
            },
            1,
        );
        ingress["metadata"]["name"] = json!("public");
        ingress
    };
    let token_secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "forever", "annotations": {"kubernetes.io/service-account.name": "tenant-automation"}},
        "type": "kubernetes.io/service-account-token"});
    let lookalike = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "lookalike", "labels": {"app.kubernetes.io/managed-by": "tenant-portal"}}});
    let privileged = json!({"containers": [{"name": "app", "image": image(1),
                                            "securityContext": {"privileged": true}}]});
    let host = json!({"hostNetwork": true,
                      "containers": [{"name": "app", "image": image(1),
                                      "volumeMounts": [{"name": "root", "mountPath": "/host"}]}],
                      "volumes": [{"name": "root", "hostPath": {"path": "/"}}]});
    let hijack = r#"[{"op": "add", "path": "/subjects/-", "value": {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory@example.com"}}]"#;
    let mut escapes = vec![
        // services
        guarded(
            kubectl_with(
                &["create", "-f", "-"],
                &service_with("exposed", json!({"type": "NodePort"})),
            ),
            &[types, "NodePort"],
        ),
        guarded(
            kubectl_with(
                &["create", "-f", "-"],
                &service_with("exposed", json!({"type": "LoadBalancer"})),
            ),
            &[types, "LoadBalancer"],
        ),
        guarded(
            kubectl_with(
                &["create", "-f", "-"],
                &service_with("intercept", json!({"externalIPs": ["8.8.8.8"]})),
            ),
            &["tenant {slug} may not set externalIPs on a Service"],
        ),
        guarded(
            kubectl(&[
                "patch",
                "service/web",
                "--type=merge",
                "-p",
                r#"{"spec": {"type": "NodePort"}}"#,
            ]),
            &[types, "NodePort"],
        ),
        guarded(
            kubectl(&[
                "expose",
                "deployment/web",
                "--name=exposed",
                "--port=80",
                "--type=NodePort",
            ]),
            &[types, "NodePort"],
        ),
        // workloads: registries, node pool, classes
        guarded(
            kubectl_with(
                &["create", "-f", "-"],
                &pod_with(
                    "miner",
                    json!({"containers": [{"name": "app", "image": foreign}]}),
                ),
            ),
            &[images, "this Pod uses docker.io/evil/miner:1"],
        ),
        guarded(
            kubectl_with(&["apply", "-f", "-"], &outside_deployment),
            &[images, "this Deployment uses docker.io/evil/miner:1"],
        ),
        guarded(
            kubectl(&["set", "image", "deployment/web", &format!("app={foreign}")]),
            &[images, "this Deployment uses docker.io/evil/miner:1"],
        ),
        guarded(
            kubectl_with(&["apply", "--server-side", "-f", "-"], &outside_cron),
            &[images, "this CronJob uses docker.io/evil/init:1"],
        ),
        guarded(
            kubectl_with(
                &["create", "-f", "-"],
                &workload("Pod", "anywhere", DEFAULT, 1),
            ),
            &[pool, "this Pod must set spec.nodeSelector to include it"],
        ),
        guarded(
            kubectl(&[
                "patch",
                "deployment/web",
                "--type=json",
                "-p",
                r#"[{"op": "remove", "path": "/spec/template/spec/nodeSelector"}]"#,
            ]),
            &[
                pool,
                "this Deployment must set spec.nodeSelector to include it",
            ],
        ),
        guarded(
            kubectl_with(
                &["create", "-f", "-"],
                &pod_with("pinned", json!({"nodeName": "some-node"})),
            ),
            &[pool, "pods may not name a node"],
        ),
        guarded(
            kubectl_with(
                &["create", "-f", "-"],
                &pod_with("urgent", json!({"priorityClassName": "everyday-high"})),
            ),
            &[
                "tenant {slug} may use PriorityClasses tenant-normal; this Pod asks for everyday-high",
            ],
        ),
        guarded(
            kubectl_with(
                &["create", "-f", "-"],
                &pod_with("sandboxed", json!({"runtimeClassName": "everyday-sandbox"})),
            ),
            &[
                "tenant {slug} may use RuntimeClasses tenant-runc; this Pod asks for everyday-sandbox",
            ],
        ),
        // classes
        guarded(
            kubectl_with(&["create", "-f", "-"], &claim_for(Some("gold"), None)),
            &["tenant {slug} may use StorageClasses standard; this claim asks for gold"],
        ),
        guarded(
            kubectl_with(&["create", "-f", "-"], &claim_for(None, None)),
            &["tenant {slug} may use StorageClasses standard; this claim asks for none"],
        ),
        guarded(
            kubectl_with(
                &["create", "-f", "-"],
                &claim_for(Some("standard"), Some("someone-elses")),
            ),
            &["tenant {slug} may not bind a claim to a named PersistentVolume (someone-elses)"],
        ),
        guarded(
            kubectl_with(&["create", "-f", "-"], &ingress_for(Some("public"))),
            &["tenant {slug} may use IngressClasses nginx; this Ingress asks for public"],
        ),
        guarded(
            kubectl_with(&["create", "-f", "-"], &ingress_for(None)),
            &["tenant {slug} may use IngressClasses nginx; this Ingress asks for none"],
        ),
        // credentials
        guarded(
            kubectl_with(&["create", "-f", "-"], &token_secret),
            &["tenant {slug} may not create Secrets of type kubernetes.io/service-account-token"],
        ),
        guarded(
            kubectl(&["create", "token", "default", "--duration=24h"]),
            &[
                "tenant {slug} may request ServiceAccount tokens valid for at most 3600 seconds; this request asks for 86400",
            ],
        ),
        guarded(
            kubectl(&["create", "token", "tenant-owner", "--duration=10m"]),
            &["tenant {slug} may not request tokens of the portal's role account tenant-owner"],
        ),
        // the portal's objects
        guarded(
            kubectl(&[
                "patch",
                "networkpolicy/tenant-isolation",
                "--type=merge",
                "-p",
                r#"{"spec": {"ingress": [{}]}}"#,
            ]),
            &["tenant {slug}: NetworkPolicy tenant-isolation", managed],
        ),
        guarded(
            kubectl(&[
                "label",
                "networkpolicy/tenant-isolation",
                "everyday.example.com/team=payments",
            ]),
            &["tenant {slug}: NetworkPolicy tenant-isolation", managed],
        ),
        guarded(
            kubectl(&["delete", "networkpolicy/tenant-isolation"]),
            &["tenant {slug}: NetworkPolicy tenant-isolation", managed],
        ),
        guarded(
            kubectl(&["delete", "serviceaccount/tenant-automation"]),
            &["tenant {slug}: ServiceAccount tenant-automation", managed],
        ),
        guarded(
            kubectl_with(&["create", "-f", "-"], &lookalike),
            &["tenant {slug}: ConfigMap lookalike", managed],
        ),
        // RBAC keeps quotas and defaults from every tenant role before any policy.
        guarded(
            kubectl(&[
                "label",
                "resourcequota/tenant-quota",
                "everyday.example.com/team=payments",
            ]),
            &["forbidden", "cannot patch resource \"resourcequotas\""],
        ),
        guarded(
            kubectl(&[
                "patch",
                "resourcequota/tenant-quota",
                "--type=merge",
                "-p",
                r#"{"spec": {"hard": {"pods": "1000"}}}"#,
            ]),
            &["forbidden", "cannot patch resource \"resourcequotas\""],
        ),
        guarded(
            kubectl(&["delete", "limitrange/tenant-defaults"]),
            &["forbidden", "cannot delete resource \"limitranges\""],
        ),
        // Pod Security
        guarded(
            kubectl_with(&["create", "-f", "-"], &pod_with("root", privileged)),
            &["violates PodSecurity \"baseline:latest\"", "privileged"],
        ),
        guarded(
            kubectl_with(&["create", "-f", "-"], &pod_with("host", host)),
            &[
                "violates PodSecurity \"baseline:latest\"",
                "hostNetwork",
                "hostPath",
            ],
        ),
    ];
    escapes.push(Guarded {
        owner: true,
        ..guarded(
            kubectl(&[
                "patch",
                "rolebinding/tenant-owners-admin",
                "--type=json",
                "-p",
                hijack,
            ]),
            &["tenant {slug}: RoleBinding tenant-owners-admin", managed],
        )
    });
    escapes
}

/// What Pod Security's restricted level refuses that baseline admits.
fn restricted_escapes() -> Vec<Guarded> {
    let mut root = workload("Pod", "root", DEFAULT, 1);
    root["spec"]
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    root["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    vec![guarded(
        kubectl_with(&["create", "-f", "-"], &root),
        &[
            "violates PodSecurity \"restricted:latest\"",
            "runAsNonRoot",
            "allowPrivilegeEscalation",
        ],
    )]
}

async fn refuse_all(slug: &str, escapes: &[Guarded], editor: &Door, owner: &Door) {
    for escape in escapes {
        let words: Vec<String> = escape
            .words
            .iter()
            .map(|w| w.replace("{slug}", slug))
            .collect();
        let door = if escape.owner { owner } else { editor };
        door.refused(&escape.step, &words).await;
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn guarded_changes_are_still_refused_in_the_policies_words(db: PgPool) {
    let started = Instant::now();
    foreign_classes().await;
    let setup = common::tenant_api::portal(db, Default::default()).await;
    let app = &setup.portal.app;
    let slug = tenant(app, "guard", strict_policy("baseline")).await;
    let namespace = format!("{slug}-dev");
    let downloaded = common::automation_kubeconfig(app, &slug).await;
    let automation = Door::new("directly, automation account", &downloaded, &namespace);
    let owner = Door::new(
        "directly, owner account",
        &with_account(&downloaded, &namespace, "tenant-owner").await,
        &namespace,
    );
    let alice = Door::new(
        "tenant API, alice (owner)",
        &member_kubeconfig(&setup, "ALICE", &slug).await,
        "dev",
    );
    // What the escapes try to change.
    for object in [
        workload("Deployment", "web", STRICT, 1),
        workload("Pod", "shell", STRICT, 1),
        service(1),
        config_map(1),
    ] {
        automation
            .must(&kubectl_with(&["apply", "-f", "-"], &object))
            .await;
    }

    let escapes = escapes();
    refuse_all(&slug, &escapes, &automation, &owner).await;
    refuse_all(&slug, &escapes, &alice, &alice).await;

    // Ephemeral containers, the one subresource the workloads policy reads:
    // `kubectl debug` by the tenant (edit and admin have them through the
    // aggregated tenant-portal-debug role) and by a cluster admin, every one
    // held to the tenant's rules.
    let admin = Door::new(
        "directly, cluster admin (kubectl debug)",
        &std::fs::read_to_string(kubeconfig_path()).unwrap(),
        &namespace,
    );
    let debug = |image: &str| {
        kubectl(&[
            "debug",
            "pod/shell",
            &format!("--container=debug-{}", unique("")),
            &format!("--image={image}"),
            "--profile=baseline",
        ])
    };
    admin.allowed(&debug(&format!("{REGISTRY}debug:1"))).await;
    admin
        .refused(
            &debug("docker.io/evil/shell:1"),
            &[format!(
                "tenant {slug} may use images from registry.example.com/; this Pod uses docker.io/evil/shell:1"
            )],
        )
        .await;
    for door in [&automation, &alice] {
        door.allowed(&debug(&format!("{REGISTRY}debug:1"))).await;
        door.refused(
            &debug("docker.io/evil/shell:1"),
            &[format!(
                "tenant {slug} may use images from registry.example.com/; this Pod uses docker.io/evil/shell:1"
            )],
        )
        .await;
    }

    let strict = tenant(app, "guardps", json!({"pod_security": "restricted"})).await;
    let strict_namespace = format!("{strict}-dev");
    let strict_automation = Door::new(
        "directly, automation account (restricted)",
        &common::automation_kubeconfig(app, &strict).await,
        &strict_namespace,
    );
    let strict_alice = Door::new(
        "tenant API, alice (restricted)",
        &member_kubeconfig(&setup, "ALICE", &strict).await,
        "dev",
    );
    let restricted = restricted_escapes();
    refuse_all(&strict, &restricted, &strict_automation, &strict_automation).await;
    refuse_all(&strict, &restricted, &strict_alice, &strict_alice).await;

    let deployer =
        the_cordon_of_a_suspended_tenant_holds(app, &slug, &downloaded, &automation, &owner).await;

    assert_all_held(
        &[
            &automation,
            &owner,
            &alice,
            &strict_automation,
            &strict_alice,
            &deployer,
            &admin,
        ],
        started,
    );
}

/// A suspended tenant's own side door (an account of its own, bound to
/// `edit` by the tenant itself, which the portal's swap to `view` does not
/// touch) is closed by the cordon, in the cordon's words, for every write;
/// resuming opens it again. Answers the side door, with what it saw.
async fn the_cordon_of_a_suspended_tenant_holds(
    app: &TestApp,
    slug: &str,
    downloaded: &str,
    automation: &Door,
    owner: &Door,
) -> Door {
    let namespace = &automation.namespace;
    automation
        .must(&kubectl(&["create", "serviceaccount", "deployer"]))
        .await;
    owner
        .must(&kubectl(&[
            "create",
            "rolebinding",
            "deployer-edit",
            "--clusterrole=edit",
            &format!("--serviceaccount={namespace}:deployer"),
        ]))
        .await;
    let token = automation
        .must(&kubectl(&["create", "token", "deployer", "--duration=1h"]))
        .await
        .stdout;
    let old: Value = serde_saphyr::from_str(downloaded).unwrap();
    let old = old["users"][0]["user"]["token"].as_str().unwrap();
    let deployer = Door::new(
        "directly, the tenant's own deployer account",
        &downloaded.replace(old, token.trim()),
        namespace,
    );
    // RBAC's authorizer learns of a new binding a moment after it is written.
    let deadline = Instant::now() + READY;
    while !deployer
        .kubectl(
            &["auth", "can-i", "patch", "deployments"].map(String::from),
            None,
        )
        .await
        .ok
    {
        assert!(
            Instant::now() < deadline,
            "the deployer's binding never took"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let response = app
        .request(Method::POST, &format!("/api/v1/tenants/{slug}:suspend"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    app.wait_ready(slug, READY).await;
    let label = kubectl(&[
        "label",
        "--overwrite",
        "deployment/web",
        "everyday.example.com/on-call=bob",
    ]);
    let deadline = Instant::now() + POLICY_LOADED;
    while deployer.attempt(&label).await.ok {
        assert!(Instant::now() < deadline, "the cordon never held");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let suspended = [format!("tenant {slug} is suspended")];
    for step in [
        label.clone(),
        kubectl(&[
            "annotate",
            "configmap/settings",
            "everyday.example.com/note=late",
        ]),
        kubectl_with(&["apply", "--server-side", "-f", "-"], &config_map(1)),
        kubectl_with(&["apply", "-f", "-"], &config_map(2)),
        kubectl(&["create", "configmap", "during"]),
        kubectl(&["delete", "configmap/settings"]),
        kubectl(&[
            "set",
            "image",
            "deployment/web",
            &format!("app={}", image(2)),
        ]),
        kubectl(&["rollout", "restart", "deployment/web"]),
        // Subresources are writes too.
        kubectl(&["scale", "deployment/web", "--replicas=3"]),
        kubectl(&["create", "token", "deployer", "--duration=10m"]),
    ] {
        deployer.refused(&step, &suspended).await;
    }
    deployer.read(&["get", "deployment/web"]).await;

    let response = app
        .request(Method::POST, &format!("/api/v1/tenants/{slug}:resume"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    app.wait_ready(slug, READY).await;
    let deadline = Instant::now() + POLICY_LOADED;
    while !deployer.attempt(&label).await.ok {
        assert!(
            Instant::now() < deadline,
            "resuming never lifted the cordon"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    deployer
}
