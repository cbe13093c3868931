//! The tenant API as the tests reach it: a portal with a reconciler and
//! sign-in through the stack's Dex, behind a TLS front (kubectl sends
//! credentials over TLS only), and the tenant-view kubeconfigs its members
//! download.

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
