//! The assembled service: serving, housekeeping and graceful shutdown. The
//! state every door shares is in `state.rs`; the routes and layers in
//! `router.rs`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use sqlx::PgPool;

use tokio_util::sync::CancellationToken;

use crate::cluster::Clusters;
use crate::config::ServeConfig;
use crate::error::Error;
use crate::state::AppState;

/// The whole HTTP application: the shared state, and the routes of
/// [`crate::router`] over it.
pub fn router(db: PgPool, config: ServeConfig, clusters: Clusters) -> anyhow::Result<Router> {
    install_crypto();
    let login = crate::auth::oidc::Login::new(&config.login)?.map(Arc::new);
    let events = crate::events::EventHub::start(db.clone());
    let app = AppState {
        db,
        config: Arc::new(config),
        clusters,
        login,
        events,
    };
    Ok(crate::router::build(app))
}

/// TLS for outgoing HTTPS (the identity provider) uses ring, like the cluster clients.
fn install_crypto() {
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves until SIGINT or SIGTERM, then lets in-flight requests and
/// reconciles finish and releases their leases.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let db = crate::db::connect(&config.database).await?;
    crate::db::migrate(&db).await?;
    let counted = crate::db::clusters::count_old_budgets(&db).await?;
    if counted > 0 {
        tracing::info!(
            tenants = counted,
            "counted the budgets of existing tenants into their clusters' load"
        );
    }
    let clusters = Clusters::connect(&config.clusters).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "failed to listen on {}; is another process using it? change --listen",
                config.listen
            )
        })?;
    let scheme = if config.tls.key_pair().is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(address = %listener.local_addr()?, scheme, clusters = ?config.cluster_names(), "tenant portal listening");
    spawn_housekeeping(db.clone(), Retention::of(&config));
    spawn_showback_rollups(db.clone());
    let stop = CancellationToken::new();
    let mut tasks = if config.reconciler {
        let settings = crate::reconciler::Settings::from_config(&config);
        crate::reconciler::start(db.clone(), &clusters, settings, stop.clone())
    } else {
        // An API-only replica watches too, so placement sees which clusters
        // answer and a taken namespace name is refused without asking.
        let mut tasks = tokio::task::JoinSet::new();
        for cluster in clusters.iter() {
            crate::cluster::observe(cluster, &mut tasks, &stop);
        }
        tasks
    };
    let tls = config.tls.key_pair();
    let router = router(db, config, clusters)?;
    match tls {
        Some(pair) => {
            let config = crate::tls::server_config(pair)?;
            serve_on(crate::tls::TlsListener::new(listener, config)?, router).await
        }
        None => serve_on(listener, router).await,
    }
    .context("the HTTP server failed")?;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("tenant portal stopped");
    Ok(())
}

/// Serves `router` on `listener` (plain or TLS) until SIGINT or SIGTERM.
async fn serve_on<L>(listener: L, router: Router) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

/// How long the housekeeping keeps what it forgets.
struct Retention {
    idempotency: Duration,
    events: Duration,
    usage: Duration,
}

impl Retention {
    fn of(config: &ServeConfig) -> Self {
        Self {
            idempotency: config.idempotency_ttl,
            events: config.event_retention,
            usage: config.usage_retention,
        }
    }
}

/// Forgets idempotency keys, ended sessions, old events, expired tenant-API
/// tokens and old usage history, hourly.
fn spawn_housekeeping(db: PgPool, keep: Retention) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            if let Err(e) = crate::db::idempotency::expire(&db, keep.idempotency).await {
                tracing::warn!(error = %e, "failed to expire old idempotency keys; will retry in an hour");
            }
            if let Err(e) = forget(&db, &keep).await {
                tracing::warn!(error = %e, "failed to forget ended sessions, old events, expired tokens or old usage history; will retry in an hour");
            }
        }
    });
}

/// Rolls up the hours of usage that are over, every minute: showback
/// reads the rollups (every replica runs it; a lock makes each hour added once).
fn spawn_showback_rollups(db: PgPool) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            match crate::service::showback_rollups::catch_up(&db).await {
                Ok(0) => {}
                Ok(namespaces) => tracing::debug!(namespaces, "rolled up usage for showback"),
                Err(e) => {
                    tracing::warn!(error = %e, "failed to roll up usage for showback; reports read the samples, next minute retries")
                }
            }
        }
    });
}

async fn forget(db: &PgPool, keep: &Retention) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    crate::db::sessions::expire(&mut conn).await?;
    crate::db::events::expire(&mut conn, keep.events).await?;
    crate::db::gateway_tokens::delete_expired(&mut conn).await?;
    let samples = crate::db::sync::expire_usage(&mut conn, keep.usage).await?;
    if samples > 0 {
        tracing::info!(samples, "forgot usage history older than --usage-retention");
    }
    Ok(())
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
