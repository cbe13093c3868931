//! The assembled service: shared state, the HTTP stack and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, Request, StatusCode};
use axum::routing::get;
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::OpenApi;

use tokio_util::sync::CancellationToken;

use crate::cluster::Clusters;
use crate::config::ServeConfig;
use crate::error::Error;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<ServeConfig>,
    pub clusters: Clusters,
    /// Employee login; `None` when no identity provider is configured.
    pub login: Option<Arc<crate::auth::oidc::Login>>,
    /// Wakes requests waiting for tenants to change.
    pub events: crate::events::EventHub,
    /// Change streams open per principal, to bound them.
    pub streams: crate::api::events::OpenStreams,
    pub openapi: Arc<OpenApi>,
}

/// The whole HTTP application.
pub fn router(db: PgPool, config: ServeConfig, clusters: Clusters) -> anyhow::Result<Router> {
    install_crypto();
    let login = crate::auth::oidc::Login::new(&config.login)?.map(Arc::new);
    let max_body = config.max_body_bytes as usize;
    let timeout = config.request_timeout;
    let events = crate::events::EventHub::start(db.clone());
    let mut app = AppState {
        db,
        config: Arc::new(config),
        clusters,
        login,
        events,
        streams: Default::default(),
        openapi: Arc::new(OpenApi::default()),
    };
    let (api, doc) = crate::api::router(app.clone());
    app.openapi = Arc::new(doc);
    Ok(Router::new()
        .nest("/api/v1", api)
        .merge(crate::auth::login::router())
        .merge(crate::web::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::scrape))
        .fallback(|| async {
            crate::web::page::message(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page.",
                ("/", "Back to your tenants"),
            )
        })
        .with_state(app)
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
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid)))
}

/// TLS for outgoing HTTPS (the identity provider) uses ring, like the cluster clients.
fn install_crypto() {
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Ready when the database answers.
async fn readyz(State(app): State<AppState>) -> Result<&'static str, Error> {
    tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&app.db),
    )
    .await
    .map_err(|_| Error::Internal(anyhow::anyhow!("the database did not answer within 2s")))?
    .context("the database is unreachable")?;
    Ok("ready")
}

/// Serves until SIGINT or SIGTERM, then lets in-flight requests and
/// reconciles finish and releases their leases.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let db = crate::db::connect(&config.database).await?;
    crate::db::migrate(&db).await?;
    let clusters = Clusters::connect(&config.clusters).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "failed to listen on {}; is another process using it? change --listen",
                config.listen
            )
        })?;
    tracing::info!(address = %listener.local_addr()?, clusters = ?config.cluster_names(), "tenant portal listening");
    spawn_housekeeping(db.clone(), config.idempotency_ttl, config.event_retention);
    let stop = CancellationToken::new();
    let mut reconciler = config.reconciler.then(|| {
        let settings = crate::reconciler::Settings::from_config(&config);
        crate::reconciler::start(db.clone(), &clusters, settings, stop.clone())
    });
    axum::serve(listener, router(db, config, clusters)?)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    stop.cancel();
    if let Some(tasks) = reconciler.as_mut() {
        while tasks.join_next().await.is_some() {}
    }
    tracing::info!("tenant portal stopped");
    Ok(())
}

/// Forgets idempotency keys, ended sessions and old events, hourly.
fn spawn_housekeeping(db: PgPool, idempotency_ttl: Duration, event_retention: Duration) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            if let Err(e) = crate::db::idempotency::expire(&db, idempotency_ttl).await {
                tracing::warn!(error = %e, "failed to expire old idempotency keys; will retry in an hour");
            }
            let sessions = match db.acquire().await {
                Ok(mut conn) => match crate::db::sessions::expire(&mut conn).await {
                    Ok(()) => crate::db::events::expire(&mut conn, event_retention)
                        .await
                        .map(drop),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.into()),
            };
            if let Err(e) = sessions {
                tracing::warn!(error = %e, "failed to forget ended sessions; will retry in an hour");
            }
        }
    });
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
