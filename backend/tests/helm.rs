//! The real Helm v4, as a tenant owner runs it with her tenant-view
//! kubeconfig: the project's own chart (`deploy/charts/hello`) installed,
//! upgraded, rolled back and uninstalled through the tenant's own Kubernetes
//! API, on the stack's real API server with kwok's simulated nodes.

mod common;

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{eventually, kube, unique};
use common::tenant_api::{Setup, member_kubeconfig_yaml};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use sqlx::PgPool;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
const READY: Duration = Duration::from_secs(30);
/// The workspace root, where Helm runs so that the chart is `deploy/charts/hello`.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// What the API server answered when an admission policy could not be
/// evaluated; no Helm step may ever see it.
const POLICY_ERROR: &str = "resulted in error";

/// A temporary directory holding a member's tenant-view kubeconfig and
/// Helm's cache, configuration and data.
struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Signs `user` in as a browser does and writes the tenant-view kubeconfig
/// the portal hands out, pointed at the test portal's TLS front.
async fn member_workspace(setup: &Setup, user: &str, slug: &str) -> Workspace {
    let yaml = member_kubeconfig_yaml(setup, user, slug).await;
    let dir = std::env::temp_dir().join(unique("helm-"));
    std::fs::create_dir_all(&dir).unwrap();
    let workspace = Workspace { dir };
    std::fs::write(workspace.kubeconfig(), &yaml).unwrap();
    workspace
}

struct Run {
    ok: bool,
    stdout: String,
    /// The command, how it ended, its stdout and its stderr.
    shown: String,
}

/// Runs `program` with `args` off the test's runtime threads, killing it
/// after `limit`; stdout and stderr go to files so neither pipe can fill.
async fn run(
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, PathBuf)>,
    dir: PathBuf,
) -> Run {
    tokio::task::spawn_blocking(move || {
        let name = unique("out-");
        let (out, err) = (
            dir.join(format!("{name}.stdout")),
            dir.join(format!("{name}.stderr")),
        );
        let started = Instant::now();
        let mut child = std::process::Command::new(&program)
            .args(&args)
            .current_dir(ROOT)
            .env_remove("KUBECONFIG")
            .envs(env)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to run {}: {e}", program.display()));
        let limit = Duration::from_secs(180);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        let shown = format!(
            "$ {} {}\n({}, {:.1?})\n--- stdout\n{stdout}--- stderr\n{stderr}",
            program.file_name().unwrap().to_string_lossy(),
            args.join(" "),
            match status {
                Some(status) => status.to_string(),
                None => format!("killed after {limit:?}"),
            },
            started.elapsed(),
        );
        Run {
            ok: status.is_some_and(|s| s.success()),
            stdout,
            shown,
        }
    })
    .await
    .unwrap()
}

/// The stack's Helm, acting with one member's kubeconfig, with its own
/// cache, configuration and data; every call is kept for the transcript.
struct Helm {
    binary: PathBuf,
    workspace: Workspace,
    transcript: Mutex<Vec<String>>,
}

/// `TP_HELM`, else the Helm `deploy/dev/build-binaries` puts in the cache.
fn helm_binary() -> PathBuf {
    let binary = match std::env::var_os("TP_HELM") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var("HOME").expect("HOME is not set"))
            .join(".cache/tenant-portal/bin/helm-v4.3.2"),
    };
    assert!(
        binary.is_file(),
        "Helm is missing at {}: build it with `deploy/dev/build-binaries helm` or set TP_HELM",
        binary.display()
    );
    binary
}

impl Helm {
    fn new(binary: PathBuf, workspace: Workspace) -> Self {
        Self {
            binary,
            workspace,
            transcript: Mutex::new(Vec::new()),
        }
    }

    /// Runs `helm <command>`, the command's words split at whitespace.
    async fn run(&self, command: &str) -> Run {
        let dir = &self.workspace.dir;
        let mut all = vec![
            "--kubeconfig".to_string(),
            self.workspace.kubeconfig().display().to_string(),
        ];
        all.extend(command.split_whitespace().map(str::to_string));
        let env = ["CACHE", "CONFIG", "DATA"]
            .map(|what| (format!("HELM_{what}_HOME"), dir.join(what.to_lowercase())))
            .to_vec();
        let run = run(self.binary.clone(), all, env, dir.clone()).await;
        eprintln!("{}", run.shown);
        self.transcript.lock().unwrap().push(run.shown.clone());
        run
    }

    /// Runs Helm and insists it succeeds without an admission-policy error.
    async fn ok(&self, command: &str) -> Run {
        let run = self.run(command).await;
        assert!(run.ok, "{}", run.shown);
        assert!(
            !run.shown.contains(POLICY_ERROR),
            "an admission policy failed to evaluate:\n{}",
            run.shown
        );
        run
    }

    fn transcript(&self) -> String {
        self.transcript.lock().unwrap().join("\n")
    }
}

/// The stack's kubectl with a member's kubeconfig.
async fn kubectl(workspace: &Workspace, args: &[&str]) -> Run {
    let binary = std::env::var("TP_KUBECTL").expect(
        "TP_KUBECTL is not set: start the local stack with deploy/dev/up and source the stack.env it prints",
    );
    let mut all = vec![
        "--kubeconfig".to_string(),
        workspace.kubeconfig().display().to_string(),
        "--request-timeout=20s".to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    run(binary.into(), all, vec![], workspace.dir.clone()).await
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.shown))
}

/// What the cluster itself holds for a release, read with the admin's client.
struct Cluster {
    namespace: String,
    client: kube::Client,
}

impl Cluster {
    async fn new(namespace: String) -> Self {
        Self {
            namespace,
            client: kube().await,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn message(&self, name: &str) -> String {
        let map = self.api::<ConfigMap>().get(name).await.unwrap();
        map.data.unwrap()["message"].clone()
    }

    async fn deployment_generation(&self, name: &str) -> i64 {
        let deployment = self.api::<Deployment>().get(name).await.unwrap();
        deployment.metadata.generation.unwrap()
    }

    /// What is left of release `release`: its objects, its pods and Helm's
    /// own records of it.
    async fn remains(&self, release: &str) -> Vec<String> {
        let instance = format!("app.kubernetes.io/instance={release}");
        let mut left = self.names::<Deployment>("deployment", &instance).await;
        left.extend(self.names::<Service>("service", &instance).await);
        left.extend(self.names::<ConfigMap>("configmap", &instance).await);
        left.extend(self.names::<Pod>("pod", &instance).await);
        let records = format!("owner=helm,name={release}");
        left.extend(self.names::<Secret>("secret", &records).await);
        left
    }

    async fn names<K>(&self, kind: &str, selector: &str) -> Vec<String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let listed = self
            .api::<K>()
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        listed
            .items
            .iter()
            .map(|o| format!("{kind}/{}", o.meta().name.clone().unwrap_or_default()))
            .collect()
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn helm_installs_upgrades_rolls_back_and_uninstalls_through_the_tenant_api(db: PgPool) {
    let binary = helm_binary();
    let setup = common::tenant_api::portal(db, Default::default()).await;
    let app = &setup.portal.app;
    let slug = unique("helm");
    app.create_tenant(json!({
        "slug": slug,
        "display_name": "Helm test",
        "budget": {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20", "namespaces": "4"},
        "namespaces": [{"name": "dev", "allocations": {"requests.cpu": "2", "requests.memory": "4Gi", "pods": "10"}}],
        "members": [{"kind": "user", "subject": "alice@example.com", "role": "owner"}]
    }))
    .await;
    app.wait_ready(&slug, READY).await;
    let helm = Helm::new(binary, member_workspace(&setup, "ALICE", &slug).await);
    let dev = Cluster::new(format!("{slug}-dev")).await;
    let started = Instant::now();

    // 1. Install, waiting until both replicas are Available.
    helm.ok("install hello deploy/charts/hello -n dev --wait --timeout 90s")
        .await;
    let deployment = dev.api::<Deployment>().get("hello").await.unwrap();
    assert_eq!(
        deployment.status.and_then(|s| s.available_replicas),
        Some(2),
        "{}",
        helm.transcript()
    );
    assert_eq!(dev.message("hello").await, "hello");
    let generation = dev.deployment_generation("hello").await;

    // 2. An upgrade that changes only the ConfigMap, then one that changes nothing.
    let second =
        "upgrade hello deploy/charts/hello -n dev --set message=second --wait --timeout 90s";
    helm.ok(second).await;
    assert_eq!(dev.message("hello").await, "second");
    assert_eq!(
        dev.deployment_generation("hello").await,
        generation,
        "only the ConfigMap changed"
    );
    helm.ok(second).await;
    assert_eq!(dev.message("hello").await, "second");

    // 3. Back to the first revision; the history tells all four.
    helm.ok("rollback hello 1 -n dev --wait --timeout 90s")
        .await;
    assert_eq!(dev.message("hello").await, "hello");
    let history = json_of(&helm.ok("history hello -n dev -o json").await);
    let revisions: Vec<(i64, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["revision"].as_i64().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        revisions,
        [
            (1, "superseded"),
            (2, "superseded"),
            (3, "superseded"),
            (4, "deployed")
        ],
        "{history}"
    );
    assert!(
        history[3]["description"]
            .as_str()
            .unwrap()
            .contains("Rollback to 1"),
        "{history}"
    );
    let table = helm.ok("history hello -n dev").await;
    assert!(table.stdout.contains("Rollback to 1"), "{}", table.shown);

    // 4. The release as `helm list` and `helm status` see it, by the tenant's names.
    let list = json_of(&helm.ok("list -n dev -o json").await);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        (
            &list[0]["name"],
            &list[0]["namespace"],
            &list[0]["revision"],
            &list[0]["status"]
        ),
        (
            &json!("hello"),
            &json!("dev"),
            &json!("4"),
            &json!("deployed")
        ),
        "{list}"
    );
    let status = helm.ok("status hello -n dev").await;
    assert!(
        status.stdout.contains("STATUS: deployed") && status.stdout.contains("NAMESPACE: dev"),
        "{}",
        status.shown
    );
    assert!(
        !status.stdout.contains(&slug),
        "no prefixed names: {}",
        status.shown
    );

    // 5. A second release into a namespace Helm creates through the tenant API.
    //    A namespace created that way has no share of the budget (its quota
    //    is zero), so the owner gives it one while Helm waits for the pods.
    let create =
        "install other deploy/charts/hello -n staging --create-namespace --wait --timeout 90s";
    let done = AtomicBool::new(false);
    let install = async {
        let run = helm.run(create).await;
        done.store(true, Ordering::SeqCst);
        run
    };
    let share = async {
        loop {
            if done.load(Ordering::SeqCst) {
                return Err("Helm ended before staging was in the tenant".to_string());
            }
            let tenant: Value = app
                .get(&format!("/api/v1/tenants/{slug}"))
                .await
                .json()
                .await
                .unwrap();
            if tenant["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["name"] == "staging")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let path = format!("/api/v1/tenants/{slug}/namespaces/staging");
        let allocations = json!({"requests.cpu": "1", "requests.memory": "2Gi", "pods": "5"});
        let given = app
            .request(reqwest::Method::PATCH, &path)
            .json(&json!({ "allocations": allocations }))
            .send()
            .await
            .unwrap();
        match given.status().as_u16() {
            200 => Ok(()),
            status => Err(format!("{status}: {}", given.text().await.unwrap())),
        }
    };
    let (installed, shared) = tokio::join!(install, share);
    assert!(
        installed.ok && !installed.shown.contains(POLICY_ERROR),
        "{}",
        installed.shown
    );
    shared.unwrap();
    let namespaces = kubectl(&helm.workspace, &["get", "ns", "-o", "name"]).await;
    assert!(namespaces.ok, "{}", namespaces.shown);
    let mut names: Vec<&str> = namespaces.stdout.lines().map(str::trim).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["namespace/dev", "namespace/staging"],
        "{}",
        namespaces.shown
    );
    let staging = Cluster::new(format!("{slug}-staging")).await;
    let other = staging
        .api::<Deployment>()
        .get("other-hello")
        .await
        .unwrap();
    assert_eq!(other.status.and_then(|s| s.available_replicas), Some(2));

    // 6. Uninstall: the release and everything it made are gone.
    helm.ok("uninstall hello -n dev --wait --timeout 90s").await;
    eventually(
        "the release's objects are gone",
        Duration::from_secs(30),
        || async { dev.remains("hello").await.is_empty() },
    )
    .await;
    let list = json_of(&helm.ok("list -n dev -o json").await);
    assert_eq!(list, json!([]), "{list}");
    let listed = helm.ok("list -A -o json").await;
    assert!(listed.stdout.contains("\"other\""), "{}", listed.shown);
    helm.ok("uninstall other -n staging --wait --timeout 90s")
        .await;
    eventually(
        "the second release's objects are gone",
        Duration::from_secs(30),
        || async { staging.remains("other").await.is_empty() },
    )
    .await;

    let transcript = helm.transcript();
    assert!(!transcript.contains(POLICY_ERROR), "{transcript}");
    eprintln!("helm steps took {:.1?}", started.elapsed());
}
