//! The real control plane from `deploy/dev/up`: a client for it, a portal
//! whose reconciler applies to it, and a TCP proxy that can cut the portal
//! off from it.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use tenant_portal::cluster::Clusters;
use tenant_portal::config::ClusterSpec;
use tenant_portal::reconciler::Settings;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::TestApp;

/// The admin kubeconfig of the local stack; the tests fail loudly without it.
pub fn kubeconfig_path() -> String {
    std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        panic!("KUBECONFIG is not set: start the local stack with deploy/dev/up and source the stack.env it prints")
    })
}

pub async fn kube() -> kube::Client {
    let config = kube::Config::infer()
        .await
        .expect("the KUBECONFIG of the local stack is not usable");
    kube::Client::try_from(config).unwrap()
}

/// A slug no other test or run uses: `prefix` plus random letters.
pub fn unique(prefix: &str) -> String {
    let suffix: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .filter(char::is_ascii_lowercase)
        .take(6)
        .collect();
    format!("{prefix}{suffix}")
}

pub fn fast_settings() -> Settings {
    Settings {
        workers_per_cluster: 4,
        resync_interval: Duration::from_secs(3600),
        usage_sample_interval: Duration::from_secs(3600),
        lease: Duration::from_secs(3),
        lease_renewal: Duration::from_secs(1),
        sync_timeout: Duration::from_secs(20),
        poll_interval: Duration::from_millis(500),
        expiry_interval: Duration::from_secs(1),
        guardrails: Default::default(),
        gitops: None,
    }
}

/// A portal process: the API and a reconciler, stoppable or killable.
pub struct Portal {
    pub app: TestApp,
    /// The clients and caches the portal's reconciler keeps.
    pub clusters: Clusters,
    pub reconciler: JoinSet<()>,
    pub stop: CancellationToken,
}

impl Portal {
    /// Ends the reconciler the way a crash would: no lease is released.
    pub fn kill(&mut self) {
        self.reconciler.abort_all();
    }
}

pub async fn spawn_portal(db: PgPool, kubeconfig: &str) -> Portal {
    spawn_portal_config(db, kubeconfig, super::config()).await
}

/// The cluster `kubeconfig` reaches, configured as `local`, with its clients.
pub async fn local_cluster(kubeconfig: &str) -> (ClusterSpec, Clusters) {
    let spec = ClusterSpec {
        name: "local".into(),
        kubeconfig: Some(kubeconfig.into()),
        context: None,
    };
    let clusters = Clusters::connect(std::slice::from_ref(&spec))
        .await
        .unwrap();
    (spec, clusters)
}

/// A portal with these settings, on the local cluster only.
pub async fn spawn_portal_config(
    db: PgPool,
    kubeconfig: &str,
    config: tenant_portal::config::ServeConfig,
) -> Portal {
    let (spec, clusters) = local_cluster(kubeconfig).await;
    let config = tenant_portal::config::ServeConfig {
        clusters: vec![spec],
        ..config
    };
    let app = super::spawn_app_config(db.clone(), config, clusters.clone()).await;
    let stop = CancellationToken::new();
    let reconciler = tenant_portal::reconciler::start(db, &clusters, fast_settings(), stop.clone());
    Portal {
        app,
        clusters,
        reconciler,
        stop,
    }
}

/// Another reconciler on the same database: a second replica.
pub async fn spawn_reconciler(db: PgPool, kubeconfig: &str) -> (JoinSet<()>, CancellationToken) {
    spawn_reconciler_with(db, kubeconfig, fast_settings()).await
}

/// A replica with its own pace.
pub async fn spawn_reconciler_with(
    db: PgPool,
    kubeconfig: &str,
    settings: Settings,
) -> (JoinSet<()>, CancellationToken) {
    let spec = ClusterSpec {
        name: "local".into(),
        kubeconfig: Some(kubeconfig.into()),
        context: None,
    };
    let clusters = Clusters::connect(&[spec]).await.unwrap();
    let stop = CancellationToken::new();
    (
        tenant_portal::reconciler::start(db, &clusters, settings, stop.clone()),
        stop,
    )
}

impl TestApp {
    /// Polls the tenant until its status is Ready at its generation.
    pub async fn wait_ready(&self, slug: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let status: Value = self
                .get(&format!("/api/v1/tenants/{slug}/status"))
                .await
                .json()
                .await
                .unwrap();
            if status["status"] == "Ready" && status["observed_generation"] == status["generation"]
            {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{slug} not Ready within {timeout:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until the quota controller has counted the namespace's quota:
/// quota admission refuses every pod until then.
pub async fn quota_counted(namespace: &str) {
    let quotas: kube::Api<k8s_openapi::api::core::v1::ResourceQuota> =
        kube::Api::namespaced(kube().await, namespace);
    eventually("quota status", Duration::from_secs(30), || async {
        quotas
            .get("tenant-quota")
            .await
            .is_ok_and(|q| q.status.is_some_and(|s| s.hard.is_some()))
    })
    .await;
}

/// Polls `check` until it holds.
/// Waits until the reconciler has worked off every queued tenant.
pub async fn outbox_drained(db: &PgPool, timeout: Duration) {
    eventually("the outbox drains", timeout, || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(db)
            .await
            .unwrap();
        left == 0
    })
    .await;
}

pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A TCP proxy in front of the API server. Switched off, it drops every
/// connection: to the portal the cluster is down. Stalled, it takes
/// connections and never answers: to the portal the cluster hangs.
pub struct Outage {
    pub kubeconfig: String,
    up: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _dir: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Outage {
    pub async fn start() -> Self {
        let original = std::fs::read_to_string(kubeconfig_path()).unwrap();
        let server = original
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("server:")
                    .map(|s| s.trim().to_string())
            })
            .expect("the kubeconfig names no server");
        let target = server.trim_start_matches("https://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, stall, open) = (up.clone(), stalled.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    continue;
                }
                if stall.load(Ordering::SeqCst) {
                    open.lock().unwrap().push(tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        drop(inbound);
                    }));
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                open.lock().unwrap().push(task);
            }
        });
        let dir = std::env::temp_dir().join(unique("outage-"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            original.replace(&server, &format!("https://{local}")),
        )
        .unwrap();
        Self {
            kubeconfig: path.display().to_string(),
            up,
            stalled,
            connections,
            _dir: tempdir::Dir(dir),
        }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }

    /// From now on the cluster takes every request and answers none.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}
