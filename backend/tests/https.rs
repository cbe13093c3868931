//! HTTPS served by the portal itself, as `scripts/run` serves it: the real
//! `tenant-portal serve` process with a certificate from a CA of the test's
//! own, kubectl with nothing but the kubeconfig the portal wrote, HTTP/2 by
//! ALPN, and a renewed certificate served without a restart.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::{eventually, kubeconfig_path, unique};
use serde_json::{Value, json};
use sqlx::PgPool;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A `tenant-portal serve` process serving HTTPS with the files in `tls`.
struct HttpsPortal {
    child: std::process::Child,
    base: String,
    tls: PathBuf,
}

impl HttpsPortal {
    async fn start(db: &PgPool) -> Self {
        let server =
            std::env::var("DATABASE_URL").expect("DATABASE_URL names the test PostgreSQL server");
        let name = db.connect_options().get_database().unwrap().to_string();
        let database_url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
        let tls = std::env::temp_dir().join(unique("https-"));
        common::tls::certificates(&tls, "portal-test-ca");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("https://127.0.0.1:{port}");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-portal"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", database_url)
            .env("TP_CLUSTERS", format!("local={}", kubeconfig_path()))
            .env("TP_PUBLIC_URL", &base)
            .env("TP_TLS_CERT", tls.join("tls.crt"))
            .env("TP_TLS_KEY", tls.join("tls.key"))
            .env("TP_TLS_CA", tls.join("ca.crt"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the tenant-portal binary starts");
        let portal = Self { child, base, tls };
        eventually(
            "the portal serves HTTPS",
            Duration::from_secs(30),
            || async { portal.curl(&["-fsS", &format!("{}/readyz", portal.base)]).0 },
        )
        .await;
        portal
    }

    /// curl trusting only the test's CA (as it is now in `tls/ca.crt`).
    fn curl(&self, args: &[&str]) -> (bool, String) {
        curl_with_ca(&self.tls.join("ca.crt"), args)
    }
}

impl Drop for HttpsPortal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.tls);
    }
}

fn curl_with_ca(ca: &Path, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new("curl")
        .arg("--cacert")
        .arg(ca)
        .args(["--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is needed (scripts/install-packages installs it)");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let binary = std::env::var("TP_KUBECTL").expect(
        "TP_KUBECTL is not set: start the local stack with deploy/dev/up and source the stack.env it prints",
    );
    let output = std::process::Command::new(&binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--request-timeout=20s")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("failed to run {binary}: {e}"));
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn kubectl_trusts_the_portal_by_the_kubeconfig_it_downloaded(db: PgPool) {
    let token =
        common::create_token(&db, "https", &[tenant_portal::auth::Scope::Admin], None).await;
    let portal = HttpsPortal::start(&db).await;
    let auth = format!("Authorization: Bearer {token}");
    let slug = unique("https");
    let body = json!({"slug": slug, "namespaces": [{"name": "dev"}]}).to_string();

    let (_, answer) = portal.curl(&[
        "-sS",
        "-w",
        "\n%{http_code}",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        &body,
        &format!("{}/api/v1/tenants?wait_for=Ready", portal.base),
    ]);
    assert!(
        answer.ends_with("\n201"),
        "the tenant is created over HTTPS: {answer}"
    );
    let (_, kubeconfig) = portal.curl(&[
        "-fsS",
        "-X",
        "POST",
        "-H",
        &auth,
        &format!(
            "{}/api/v1/tenants/{slug}/kubeconfig?view=tenant",
            portal.base
        ),
    ]);
    let document: Value = serde_saphyr::from_str(&kubeconfig).unwrap();
    let cluster = &document["clusters"][0]["cluster"];
    assert_eq!(
        cluster["server"],
        format!("{}/k8s/tenants/{slug}", portal.base)
    );
    assert!(
        cluster["certificate-authority-data"].is_string(),
        "the kubeconfig carries the portal's CA: {kubeconfig}"
    );
    let path = portal.tls.join("tenant.kubeconfig");
    std::fs::write(&path, &kubeconfig).unwrap();

    let (listed, namespaces) = kubectl(&path, &["get", "namespaces", "-o", "name"]);
    assert!(
        listed,
        "kubectl with the downloaded kubeconfig: {namespaces}"
    );
    assert_eq!(namespaces.trim(), "namespace/dev");
    let (_, whoami) = kubectl(&path, &["auth", "whoami", "-o", "json"]);
    let whoami: Value = serde_json::from_str(&whoami).unwrap_or_else(|_| panic!("{whoami}"));
    assert_eq!(
        whoami["status"]["userInfo"]["username"],
        format!("{slug}-automation"),
        "whoami names the tenant's automation account by the portal's name, not the prefixed ServiceAccount"
    );

    let (h2, version) = portal.curl(&[
        "-sS",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        &format!("{}/readyz", portal.base),
    ]);
    assert!(h2 && version == "2", "HTTP/2 is offered by ALPN: {version}");
    let (plain, said) = curl_with_ca(
        &portal.tls.join("ca.crt"),
        &[
            "-fsS",
            &format!("{}/readyz", portal.base.replace("https://", "http://")),
        ],
    );
    assert!(
        !plain,
        "plain HTTP gets no answer on the HTTPS port: {said}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_renewed_certificate_is_served_without_a_restart(db: PgPool) {
    let portal = HttpsPortal::start(&db).await;
    let renewed = std::env::temp_dir().join(unique("renewed-"));
    common::tls::certificates(&renewed, "renewed-test-ca");
    let readyz = format!("{}/readyz", portal.base);
    let (trusted, said) = curl_with_ca(&renewed.join("ca.crt"), &["-fsS", &readyz]);
    assert!(
        !trusted,
        "the renewed CA does not sign the first certificate: {said}"
    );

    // As cert-manager does: the new pair replaces the files in place.
    for file in ["tls.key", "tls.crt"] {
        std::fs::copy(renewed.join(file), portal.tls.join(file)).unwrap();
    }
    eventually(
        "the renewed certificate is served",
        Duration::from_secs(20),
        || async { curl_with_ca(&renewed.join("ca.crt"), &["-fsS", &readyz]).0 },
    )
    .await;
    let (old, _) = portal.curl(&["-fsS", &readyz]);
    assert!(!old, "the first certificate is no longer served");
    let _ = std::fs::remove_dir_all(&renewed);
}
