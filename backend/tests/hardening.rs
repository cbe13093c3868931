//! What a caller cannot stretch: stored answers replayed only to the caller
//! that earned them, secrets never stored, a bounded number of change
//! streams that end with their credential, and metrics whose labels a
//! client cannot multiply. Real HTTP, real Postgres.

mod common;

use common::{problem, spawn_app};
use reqwest::Method;
use sqlx::PgPool;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[sqlx::test(migrator = "MIGRATIONS")]
async fn made_up_http_methods_are_counted_as_other(db: PgPool) {
    let app = spawn_app(db).await;
    let made_up: Vec<String> = (0..20).map(|i| format!("BREW{i}")).collect();

    for method in &made_up {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .request(method, "/api/v1/tenants")
            .send()
            .await
            .unwrap();
        assert_eq!(problem(response).await.0, 405);
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert!(
        made_up
            .iter()
            .all(|m| !metrics.contains(&format!("method=\"{m}\""))),
        "no series per made-up method"
    );
    let other: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("method=\"other\"")
                && l.contains("status=\"405\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(other >= 20.0, "counted as other: {other}\n{metrics}");
}
