//! The identity provider's signing keys are fetched again for a token with a
//! bad signature at most once a minute, however many such tokens arrive. Its
//! own test binary: it reads a process-wide metric that other tests move.

mod common;

use common::idp::{login_config, machine_token};
use common::{TestApp, config, problem, spawn_app_config};
use sqlx::PgPool;
use tenant_portal::config::ServeConfig;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

async fn key_fetches(app: &TestApp, reason: &str) -> f64 {
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find(|l| {
            l.starts_with("idp_discovery_total{") && l.contains(&format!("reason=\"{reason}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn status_with(app: &TestApp, token: &str) -> u16 {
    let response = app
        .client
        .get(format!("{}/api/v1/me", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    if response.status().is_success() {
        200
    } else {
        problem(response).await.0
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn forged_signatures_refetch_the_providers_keys_at_most_once_a_minute(db: PgPool) {
    let app = spawn_app_config(
        db,
        ServeConfig {
            login: login_config(),
            ..config()
        },
        Default::default(),
    )
    .await;
    let token = machine_token().await;
    assert_eq!(status_with(&app, &token).await, 200);
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = format!("{signed}.{flipped}{}", &signature[1..]);
    let before = key_fetches(&app, "unknown_key").await;

    for _ in 0..20 {
        assert_eq!(status_with(&app, &forged).await, 401);
    }

    assert_eq!(
        key_fetches(&app, "unknown_key").await - before,
        1.0,
        "twenty forged tokens, one fetch of the keys"
    );
    assert_eq!(
        status_with(&app, &token).await,
        200,
        "genuine tokens still pass"
    );
}
