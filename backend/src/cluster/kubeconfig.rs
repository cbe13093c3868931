//! A kubeconfig for a tenant's automation ServiceAccount, with a short-lived
//! token from the TokenRequest API. It reaches the tenant's namespaces only,
//! because that account is bound in them and nowhere else.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::Cluster;
use super::apply::describe;
use super::render::AUTOMATION_ACCOUNT;

/// A kubeconfig document and when its token expires.
pub struct IssuedKubeconfig {
    pub yaml: String,
    pub expires_at: Option<String>,
}

pub async fn issue(
    cluster: &Cluster,
    slug: &str,
    namespaces: &[String],
    ttl: Duration,
) -> Result<IssuedKubeconfig, String> {
    let home = namespaces
        .iter()
        .min()
        .ok_or("the tenant has no namespaces yet; add one first")?;
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), home);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            // The API server refuses lifetimes under ten minutes.
            expiration_seconds: Some(ttl.as_secs().max(600) as i64),
            ..Default::default()
        },
        ..Default::default()
    };
    let issued = accounts
        .create_token_request(AUTOMATION_ACCOUNT, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            format!(
                "the cluster refused a token for {home}/{AUTOMATION_ACCOUNT}: {}",
                describe(&e)
            )
        })?;
    let status = issued
        .status
        .ok_or("the cluster answered the TokenRequest without a token")?;

    let mut server = json!({"server": cluster.server_url});
    if let Some(ca) = &cluster.ca_pem {
        use base64::Engine;
        server["certificate-authority-data"] =
            base64::engine::general_purpose::STANDARD.encode(ca).into();
    }
    let user = format!("{slug}-automation");
    let contexts: Vec<_> = namespaces
        .iter()
        .map(|ns| json!({"name": ns, "context": {"cluster": cluster.name, "user": user, "namespace": ns}}))
        .collect();
    let document = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster.name, "cluster": server}],
        "users": [{"name": user, "user": {"token": status.token}}],
        "contexts": contexts,
        "current-context": home,
    });
    let yaml = serde_saphyr::to_string(&document)
        .map_err(|e| format!("failed to write the kubeconfig: {e}"))?;
    Ok(IssuedKubeconfig {
        yaml,
        expires_at: Some(status.expiration_timestamp.0.to_string()),
    })
}
