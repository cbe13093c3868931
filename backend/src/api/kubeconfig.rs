use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::change::load_authorized;
use super::extract::{RequestId, decode};
use super::model::KubeconfigRequest;
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::cluster::kubeconfig;
use crate::db;
use crate::error::Error;

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
pub(crate) async fn issue(
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
    let mut conn = app.db.acquire().await?;
    let row = load_authorized(&mut conn, &who, &slug, Action::IssueKubeconfig).await?;
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
    let cluster = app.clusters.get(&row.cluster).ok_or_else(|| {
        Error::Unavailable(format!(
            "the cluster \"{}\" is not connected to this portal",
            row.cluster
        ))
    })?;
    let issued = kubeconfig::issue(cluster, &slug, &namespaces, ttl)
        .await
        .map_err(Error::Unavailable)?;
    db::audit::record(
        &mut conn,
        db::audit::NewEvent {
            actor: &who.actor(),
            action: "kubeconfig.issued",
            tenant: Some((row.id, &row.slug)),
            before: None,
            after: Some(
                &serde_json::json!({"expires_at": issued.expires_at, "ttl_seconds": ttl.as_secs()}),
            ),
            request_id: request_id.0.as_deref(),
        },
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
