//! Every route of the portal in one place: the REST API, sign-in, the
//! dashboard, health and metrics, with the layers every request passes.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::Error;
use crate::state::{AppState, REQUEST_ID};

/// The routers of the API, sign-in and the dashboard merged over `app`.
pub fn build(app: AppState) -> Router {
    let max_body = app.config.max_body_bytes as usize;
    let timeout = app.config.request_timeout;
    let (api, openapi) = crate::api::router(app.clone());
    let portal = Router::new()
        .nest("/api/v1", api)
        .merge(crate::auth::login::router())
        .merge(crate::web::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            crate::page::message(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page.",
                ("/", "Back to your tenants"),
            )
        })
        .layer(axum::middleware::from_fn_with_state(openapi, crate::api::contract::allow_on_405))
        .with_state(app.clone())
        .layer(axum::middleware::from_fn(crate::metrics::track_http))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(axum::middleware::from_fn(crate::api::problems_for_plain_errors))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(Error::Internal(anyhow::anyhow!("a request handler panicked")))
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid));
    // The tenant API has no request timeout (watches stay open for as long
    // as the client wants, as at the API server) and takes bodies as large
    // as the API server does; its answers are Kubernetes Status objects.
    let tenant_api = crate::gateway::router(&app)
        .with_state(app)
        .layer(axum::extract::DefaultBodyLimit::max(crate::gateway::MAX_BODY))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(Error::Internal(anyhow::anyhow!("a tenant API handler panicked")))
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("tenant_api", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid));
    tenant_api.merge(portal)
}

async fn metrics(State(app): State<AppState>) -> Result<Response, Error> {
    crate::metrics::scrape(&app.db, &app.clusters).await
}

/// Ready when the database answers.
pub async fn readyz(State(app): State<AppState>) -> Result<&'static str, Error> {
    tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&app.db),
    )
    .await
    .map_err(|_| {
        Error::DatabaseUnavailable(anyhow::anyhow!("the database did not answer within 2s"))
    })?
    .map_err(|e| {
        Error::DatabaseUnavailable(anyhow::Error::new(e).context("the database is unreachable"))
    })?;
    Ok("ready")
}
