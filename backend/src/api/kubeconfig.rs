use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{RequestId, decode};
use super::model::KubeconfigRequest;
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::error::Error;
use crate::service;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issue))
}

/// A kubeconfig for the tenant's automation account, with a short-lived
/// token; it reaches the tenant's namespaces and nothing else.
#[utoipa::path(post, path = "/tenants/{slug}/kubeconfig", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug")),
    request_body(content = Option<KubeconfigRequest>, description = "Optional token lifetime"),
    responses((status = 200, description = "A kubeconfig (YAML)", content_type = "application/yaml", body = String),
              (status = 503, description = "The tenant's cluster cannot issue a token now")))]
async fn issue(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(slug): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    precheck(&who, Action::IssueKubeconfig)?;
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
    let issued = service::kubeconfig::issue(
        &app.db,
        &app.clusters,
        &who,
        &request_id.actor(&who),
        &slug,
        ttl,
    )
    .await?;
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
