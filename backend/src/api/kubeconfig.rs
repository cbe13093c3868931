use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ApiQuery, RequestId, decode};
use super::model::{KubeconfigCredentials, KubeconfigRequest, KubeconfigView};
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::error::Error;
use crate::service;
use crate::state::AppState;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ViewQuery {
    view: Option<KubeconfigView>,
    credentials: Option<KubeconfigCredentials>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issue))
}

/// A kubeconfig with a short-lived token that reaches the tenant's
/// namespaces and nothing else. `view=tenant`: the tenant API at
/// `/k8s/tenants/{slug}`, names without the prefix, acting with the
/// caller's own role (a service token gets the automation account, an
/// editor). `view=cluster` (the default): the cluster's API server
/// directly, prefixed names, the automation account.
#[utoipa::path(post, path = "/tenants/{slug}/kubeconfig", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("view" = Option<KubeconfigView>, Query, description = "tenant or cluster; the body's view wins when both are given"),
           ("credentials" = Option<KubeconfigCredentials>, Query, description = "token or idp (tenant view only); the body's wins when both are given")),
    request_body(content = Option<KubeconfigRequest>, description = "Optional token lifetime"),
    responses((status = 200, description = "A kubeconfig (YAML)", content_type = "application/yaml", body = String),
              (status = 409, description = "The tenant is not active, or (view=cluster) has no namespaces yet"),
              (status = 503, description = "The tenant's cluster cannot issue a token now")))]
async fn issue(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(slug): Path<String>,
    ApiQuery(query): ApiQuery<ViewQuery>,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let max = app.config.kubeconfig_ttl;
    let request: KubeconfigRequest = if body.is_empty() {
        KubeconfigRequest::default()
    } else {
        decode(&body)?
    };
    let ttl = match request.expiration_seconds {
        Some(seconds) if (600..=max.as_secs()).contains(&seconds) => Duration::from_secs(seconds),
        Some(_) => {
            return Err(Error::invalid(
                "expiration_seconds",
                format!("must be between 600 and {}", max.as_secs()),
            ));
        }
        None => max,
    };
    let view = request
        .view
        .or(query.view)
        .unwrap_or(KubeconfigView::Cluster);
    let credentials = request.credentials.or(query.credentials);
    let actor = request_id.actor(&who);
    let issued = match (view, credentials) {
        (KubeconfigView::Cluster, Some(KubeconfigCredentials::Idp)) => {
            return Err(Error::invalid(
                "credentials",
                "idp signs in to the tenant API only; use view=tenant",
            ));
        }
        (KubeconfigView::Cluster, _) => {
            precheck(&who, Action::IssueKubeconfig)?;
            service::kubeconfig::issue(&app.db, &app.clusters, &who, &actor, &slug, ttl).await?
        }
        (KubeconfigView::Tenant, credentials) => {
            let sign_in = sign_in(&app, credentials, ttl)?;
            let endpoint = app.public_endpoint()?;
            service::kubeconfig::issue_tenant_view(&app.db, &who, &actor, &slug, &endpoint, sign_in)
                .await?
        }
    };
    let mut response = issued.yaml.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{slug}.kubeconfig\""))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    Ok(response)
}

/// How a tenant-view kubeconfig signs in, as asked and as configured.
pub fn sign_in(
    app: &AppState,
    credentials: Option<KubeconfigCredentials>,
    ttl: Duration,
) -> Result<service::kubeconfig::SignIn<'_>, Error> {
    match credentials {
        None | Some(KubeconfigCredentials::Token) => Ok(service::kubeconfig::SignIn::Token { ttl }),
        Some(KubeconfigCredentials::Idp) => service::kubeconfig::SignIn::identity_provider(&app.config.login)
            .ok_or_else(|| {
                Error::invalid(
                    "credentials",
                    "idp needs an identity provider client for kubectl, which this portal does not have (--oidc-kubectl-client-id)",
                )
            }),
    }
}
