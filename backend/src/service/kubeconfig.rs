//! Kubeconfigs: the tenant view (the tenant API at
//! `<public-url>/k8s/tenants/<slug>`, names without the prefix, acting with
//! the caller's own role) and the cluster view (the cluster's API server
//! directly, prefixed names, the tenant's automation account).

use std::time::Duration;

use sqlx::PgPool;

use super::Actor;
use super::access::load_authorized;
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::cluster::{Clusters, kubeconfig};
use crate::db;
use crate::error::Error;

pub use kubeconfig::IssuedKubeconfig as Issued;

/// Issues a kubeconfig with a token valid for `ttl`, and records who got it.
pub async fn issue(
    db: &PgPool,
    clusters: &Clusters,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    ttl: Duration,
) -> Result<Issued, Error> {
    precheck(who, Action::IssueKubeconfig)?;
    let mut conn = db.acquire().await?;
    let row = load_authorized(&mut conn, who, slug, Action::IssueKubeconfig).await?;
    if !row.state().is_editable() {
        return Err(Error::conflict(format!(
            "the tenant \"{slug}\" is {} and issues no credentials",
            row.state()
        )));
    }
    let namespaces: Vec<String> = db::namespaces::list_for_tenants(&mut conn, &[row.id])
        .await?
        .into_iter()
        .map(|n| n.full_name)
        .collect();
    // The automation account lives in the tenant's first namespace.
    if namespaces.is_empty() {
        return Err(Error::conflict(format!(
            "the tenant \"{slug}\" has no namespaces yet, so there is nothing to give access to; add one first"
        )));
    }
    let cluster = clusters.get(&row.cluster).ok_or_else(|| {
        Error::Unavailable(format!(
            "the cluster \"{}\" is not connected to this portal",
            row.cluster
        ))
    })?;
    let issued = kubeconfig::issue(cluster, slug, &namespaces, ttl)
        .await
        .map_err(Error::Unavailable)?;
    db::audit::record(
        &mut conn,
        db::audit::NewEvent {
            actor: &actor.name,
            action: "kubeconfig.issued",
            tenant: Some((row.id, &row.slug)),
            before: None,
            after: Some(
                &serde_json::json!({"expires_at": issued.expires_at, "ttl_seconds": ttl.as_secs()}),
            ),
            request_id: actor.request_id.as_deref(),
        },
    )
    .await?;
    Ok(issued)
}

/// How a tenant-view kubeconfig signs in.
pub enum SignIn<'a> {
    /// A short-lived token the portal issues now.
    Token { ttl: Duration },
    /// `kubectl oidc-login` with the identity provider's public client for
    /// kubectl: the member's own login, no secret in the file.
    IdentityProvider { issuer: &'a str, client_id: &'a str },
}

impl<'a> SignIn<'a> {
    /// Signing in with the identity provider, when this portal has a
    /// client for kubectl at it (`--oidc-kubectl-client-id`).
    pub fn identity_provider(login: &'a crate::config::LoginConfig) -> Option<Self> {
        Some(Self::IdentityProvider {
            issuer: login.oidc_issuer.as_deref()?,
            client_id: login.oidc_kubectl_client_id.as_deref()?,
        })
    }
}

/// Where clients reach the portal's tenant API, and the CA to trust it by.
pub struct PublicEndpoint<'a> {
    pub url: &'a str,
    /// certificate-authority-data, when a private CA signed the portal's certificate.
    pub ca_data: Option<String>,
}

/// A kubeconfig for the tenant API, one context per namespace by the
/// tenant's names. With a token: an employee acts with their own role, a
/// service token gets the automation account. With the identity provider:
/// employees only, each with their own login.
pub async fn issue_tenant_view(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    endpoint: &PublicEndpoint<'_>,
    sign_in: SignIn<'_>,
) -> Result<Issued, Error> {
    let (tenant, user, credentials, expires_at) = match sign_in {
        SignIn::Token { ttl } => {
            let issued = super::gateway::issue(db, who, actor, slug, ttl).await?;
            let user = issued.holder.describe(slug);
            let credentials = serde_json::json!({"token": issued.token});
            (
                issued.tenant,
                user,
                credentials,
                Some(issued.expires_at.to_rfc3339()),
            )
        }
        SignIn::IdentityProvider { issuer, client_id } => {
            let Principal::User(employee) = who else {
                return Err(Error::invalid(
                    "credentials",
                    "idp is for employees, who sign in themselves; a service token gets credentials=token",
                ));
            };
            let tenant = super::gateway::member_view(db, who, slug).await?;
            let credentials = serde_json::json!({"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "kubectl",
                "args": ["oidc-login", "get-token",
                         format!("--oidc-issuer-url={issuer}"),
                         format!("--oidc-client-id={client_id}"),
                         "--oidc-extra-scope=email", "--oidc-extra-scope=groups"],
                "interactiveMode": "IfAvailable",
            }});
            (tenant, employee.email.clone(), credentials, None)
        }
    };
    let namespaces: Vec<&str> = tenant
        .namespaces
        .iter()
        .map(|ns| ns.name.as_str())
        .collect();
    let yaml = tenant_view_yaml(slug, endpoint, &user, credentials, &namespaces)?;
    Ok(Issued { yaml, expires_at })
}

/// The tenant-view kubeconfig document: the tenant API at the public
/// endpoint, one context per namespace (by the tenant's names), signing in
/// as `user` with `credentials` (a kubeconfig `user` entry).
pub fn tenant_view_yaml(
    slug: &str,
    endpoint: &PublicEndpoint<'_>,
    user: &str,
    credentials: serde_json::Value,
    namespaces: &[&str],
) -> Result<String, Error> {
    let mut cluster_entry = serde_json::json!({"server": tenant_api_url(endpoint.url, slug)});
    if let Some(ca) = &endpoint.ca_data {
        cluster_entry["certificate-authority-data"] = ca.clone().into();
    }
    let cluster = format!("{slug}-tenant-api");
    let mut contexts: Vec<serde_json::Value> = namespaces
        .iter()
        .map(|ns| {
            serde_json::json!({"name": format!("{slug}-{ns}"),
                "context": {"cluster": cluster, "user": user, "namespace": ns}})
        })
        .collect();
    if contexts.is_empty() {
        contexts
            .push(serde_json::json!({"name": slug, "context": {"cluster": cluster, "user": user}}));
    }
    let current = contexts[0]["name"].clone();
    let document = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": cluster_entry}],
        "users": [{"name": user, "user": credentials}],
        "contexts": contexts,
        "current-context": current,
    });
    serde_saphyr::to_string(&document)
        .map_err(|e| Error::Internal(anyhow::anyhow!("failed to write the kubeconfig: {e}")))
}

/// Where the tenant API of `slug` answers, under the portal's public URL.
pub fn tenant_api_url(public_url: &str, slug: &str) -> String {
    format!("{}/k8s/tenants/{slug}", public_url.trim_end_matches('/'))
}
