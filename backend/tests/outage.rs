//! A database outage under load: a private PostgreSQL server is stopped and
//! started again while requests keep coming. The portal answers 503 with
//! `Retry-After` while it is down, recovers without failing a request on a
//! connection that died meanwhile, and loses nothing it accepted.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use common::cluster::{fast_settings, kubeconfig_path, outbox_drained, unique};
use common::postgres::PrivatePostgres;
use serde_json::json;
use tenant_portal::config::{DatabaseConfig, Secret};
use tokio_util::sync::CancellationToken;

const UP: u8 = 0;
const STOPPING: u8 = 1;
const DOWN: u8 = 2;
const STARTING: u8 = 3;
const BACK: u8 = 4;
const PHASES: [&str; 5] = ["up", "stopping", "down", "starting", "back"];

/// Concurrent clients, each sending one request at a time.
const CLIENTS: usize = 8;

#[derive(Debug)]
struct Answer {
    started: u8,
    ended: u8,
    path: &'static str,
    status: u16,
    problem_json: bool,
    retry_after: bool,
    created: Option<String>,
}

async fn send(
    app: &common::TestApp,
    n: usize,
    client: usize,
    prefix: &str,
    phase: &AtomicU8,
) -> Answer {
    let started = phase.load(Ordering::SeqCst);
    let (path, response, slug) = if n.is_multiple_of(2) {
        let slug = format!("{prefix}{client}x{n}");
        let body = json!({"slug": slug, "namespaces": [{"name": "a"}]});
        (
            "POST /api/v1/tenants",
            app.post_json("/api/v1/tenants", body).await,
            Some(slug),
        )
    } else {
        (
            "GET /api/v1/tenants",
            app.get("/api/v1/tenants?page_size=5").await,
            None,
        )
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let status = response.status().as_u16();
    Answer {
        started,
        ended: phase.load(Ordering::SeqCst),
        path,
        status,
        problem_json: header("content-type") == "application/problem+json",
        retry_after: !header("retry-after").is_empty(),
        created: slug.filter(|_| status == 201),
    }
}

/// A dashboard page: status, whether it asks to retry later, and its text.
async fn page(app: &common::TestApp) -> (u16, bool, String) {
    let response = app.get("/").await;
    let retry_after = response.headers().contains_key("retry-after");
    (
        response.status().as_u16(),
        retry_after,
        response.text().await.unwrap(),
    )
}

async fn readyz(app: &common::TestApp) -> (u16, bool) {
    let response = app.get("/readyz").await;
    let retry_after = response.headers().contains_key("retry-after");
    (response.status().as_u16(), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_is_answered_with_503s_and_loses_nothing() {
    let postgres = Arc::new(PrivatePostgres::start());
    let config = DatabaseConfig {
        url: Secret::new(postgres.url.clone()),
        max_connections: 10,
    };
    let db = tenant_portal::db::connect(&config).await.unwrap();
    tenant_portal::db::migrate(&db).await.unwrap();
    let (spec, clusters) = common::cluster::local_cluster(&kubeconfig_path()).await;
    let app = Arc::new(common::spawn_app_with(db.clone(), vec![spec], clusters.clone()).await);
    // Workers poll only once a minute: within this test only notifications wake them.
    let settings = tenant_portal::reconciler::Settings {
        poll_interval: Duration::from_secs(60),
        ..fast_settings()
    };
    let stop = CancellationToken::new();
    let _reconciler =
        tenant_portal::reconciler::start(db.clone(), &clusters, settings, stop.clone());
    let warm = unique("warm");
    app.create_tenant(json!({"slug": warm})).await;
    app.wait_ready(&warm, Duration::from_secs(30)).await;

    let prefix = unique("pg");
    let phase = Arc::new(AtomicU8::new(UP));
    let done = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (app, phase, done, prefix) = (app.clone(), phase.clone(), done.clone(), prefix.clone());
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut n = 0;
            while !done.load(Ordering::SeqCst) && n < 2_000 {
                answers.push(send(&app, n, client, &prefix, &phase).await);
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answers
        }));
    }
    let blocking = |f: fn(&PrivatePostgres)| {
        let postgres = postgres.clone();
        tokio::task::spawn_blocking(move || f(&postgres))
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    phase.store(STOPPING, Ordering::SeqCst);
    blocking(PrivatePostgres::stop).await.unwrap();
    phase.store(DOWN, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down_readyz = readyz(&app).await;
    let down_page = page(&app).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    phase.store(STARTING, Ordering::SeqCst);
    blocking(PrivatePostgres::start_again).await.unwrap();
    phase.store(BACK, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    done.store(true, Ordering::SeqCst);
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.unwrap());
    }
    let back_readyz = readyz(&app).await;

    let mut tally = std::collections::BTreeMap::new();
    for a in &answers {
        *tally
            .entry((
                PHASES[a.started as usize],
                PHASES[a.ended as usize],
                a.path,
                a.status,
            ))
            .or_insert(0) += 1;
    }
    eprintln!("answers (started, ended, request, status) -> count: {tally:?}");
    let server_errors: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status >= 500 && a.status != 503)
        .collect();
    assert!(server_errors.is_empty(), "no 500s, ever: {server_errors:?}");
    let bad_503: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == 503 && !(a.problem_json && a.retry_after))
        .collect();
    assert!(
        bad_503.is_empty(),
        "every 503 is problem+json with Retry-After: {bad_503:?}"
    );
    let while_down: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.started == DOWN && a.ended == DOWN)
        .collect();
    assert!(
        !while_down.is_empty(),
        "requests were answered while the database was down"
    );
    assert!(
        while_down.iter().all(|a| a.status == 503),
        "only 503s while it is down: {while_down:?}"
    );
    let failed_after: Vec<&Answer> = answers
        .iter()
        .filter(|a| (a.started == BACK || (a.started == UP && a.ended == UP)) && a.status >= 400)
        .collect();
    assert!(
        failed_after.is_empty(),
        "no request fails while the database is up, before or after: {failed_after:?}"
    );
    assert!(
        answers.iter().filter(|a| a.started == BACK).count() >= CLIENTS,
        "requests were answered after the restart"
    );
    assert_eq!(
        down_readyz,
        (503, true),
        "/readyz says 503 while it is down"
    );
    assert_eq!(back_readyz.0, 200, "/readyz is 200 again");
    assert_eq!((down_page.0, down_page.1), (503, true), "{}", down_page.2);
    assert!(
        down_page.2.contains("Try again shortly"),
        "pages say to try again shortly: {}",
        down_page.2
    );

    // Nothing accepted is lost: every tenant answered 201 is there and applied.
    let created: Vec<&String> = answers.iter().filter_map(|a| a.created.as_ref()).collect();
    assert!(!created.is_empty());
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE slug = ANY($1)")
        .bind(created.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        stored,
        created.len() as i64,
        "every accepted tenant is stored"
    );
    for slug in &created {
        app.wait_ready(slug, Duration::from_secs(60)).await;
    }
    eprintln!(
        "{} requests: {} while down (all 503), {} after the restart; {} tenants accepted, all Ready",
        answers.len(),
        while_down.len(),
        answers.iter().filter(|a| a.started == BACK).count(),
        created.len()
    );

    // Notifications are back: with the outbox empty and workers polling once
    // a minute, a new tenant is applied within seconds only if its commit's
    // NOTIFY reaches them.
    outbox_drained(&db, Duration::from_secs(30)).await;
    let last = unique("notify");
    app.create_tenant(json!({"slug": last})).await;
    app.wait_ready(&last, Duration::from_secs(10)).await;
    stop.cancel();
}
