//! The tenant API as the tests reach it: a portal with a reconciler and
//! sign-in through the stack's Dex, behind a TLS front (kubectl sends
//! credentials over TLS only), and the tenant-view kubeconfigs its members
//! download.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sqlx::PgPool;
use tenant_portal::config::{ServeConfig, TenantApiConfig};

use super::cluster::{Portal, kubeconfig_path, spawn_portal_config};
use super::idp::{PUBLIC_URL, login_as, login_config};
use super::tls::TlsFront;

/// A portal with a reconciler and sign-in, reached over TLS as in production.
pub struct Setup {
    pub portal: Portal,
    pub front: TlsFront,
}

pub async fn portal(db: PgPool, tenant_api: TenantApiConfig) -> Setup {
    let config = ServeConfig {
        login: login_config(),
        tenant_api,
        ..super::config()
    };
    let portal = spawn_portal_config(db, &kubeconfig_path(), config).await;
    let front = super::tls::start(portal.app.base.trim_start_matches("http://").to_string()).await;
    Setup { portal, front }
}

/// The tenant-view kubeconfig `user` downloads once signed in, pointed at
/// the TLS front (the portal names its public URL) with the front's CA.
pub async fn member_kubeconfig_yaml(setup: &Setup, user: &str, slug: &str) -> String {
    let browser = login_as(&setup.portal.app, user).await;
    let response = browser
        .change(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{slug}/kubeconfig?view=tenant"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "{user} gets a tenant-view kubeconfig"
    );
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(&setup.front.ca_pem);
    let yaml = response.text().await.unwrap().replace(
        &format!("server: {PUBLIC_URL}"),
        &format!(
            "certificate-authority-data: {ca}\n    server: {}",
            setup.front.url
        ),
    );
    assert!(yaml.contains(&format!("/k8s/tenants/{slug}")), "{yaml}");
    yaml
}

/// A tenant-view kubeconfig for a signed-in member, written to a file.
pub struct Kubeconfig {
    pub dir: PathBuf,
    pub yaml: String,
}

impl Kubeconfig {
    pub fn path(&self) -> PathBuf {
        self.dir.join("config")
    }

    pub fn token(&self) -> String {
        let document: Value = serde_saphyr::from_str(&self.yaml).unwrap();
        document["users"][0]["user"]["token"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for Kubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn member_kubeconfig(setup: &Setup, user: &str, slug: &str) -> Kubeconfig {
    Kubeconfig::written(member_kubeconfig_yaml(setup, user, slug).await)
}

impl Kubeconfig {
    /// A kubeconfig in a file of its own, removed with it.
    pub fn written(yaml: String) -> Self {
        let dir = std::env::temp_dir().join(super::cluster::unique("kubeconfig-"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config"), &yaml).unwrap();
        Self { dir, yaml }
    }
}

pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The stack's kubectl with this kubeconfig, off the test's runtime threads.
pub async fn kubectl(config: &Kubeconfig, args: &[&str]) -> Run {
    kubectl_with(&config.path(), args, None).await
}

pub async fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: Option<String>) -> Run {
    kubectl_env(kubeconfig, args, stdin, &[]).await
}

/// kubectl with extra environment, such as the switches that make it use
/// SPDY instead of WebSocket for exec and port-forward.
pub async fn kubectl_env(
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<String>,
    env: &[(&str, &str)],
) -> Run {
    let binary = stack_kubectl();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let kubeconfig = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(&binary)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--request-timeout=20s")
            .args(&args)
            .envs(env)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to run {binary}: {e}"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().unwrap();
        Run {
            ok: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

pub fn stack_kubectl() -> String {
    std::env::var("TP_KUBECTL").expect(
        "TP_KUBECTL is not set: start the local stack with deploy/dev/up and source the stack.env it prints",
    )
}

/// The lines of kubectl's output, trimmed and sorted.
pub fn lines(run: &Run) -> Vec<&str> {
    let mut lines: Vec<&str> = run.stdout.lines().map(str::trim).collect();
    lines.sort_unstable();
    lines
}
