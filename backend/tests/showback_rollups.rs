//! Showback from the hourly rollups is the raw computation's answer, to
//! the millionth, for every grouping: on generated samples at uneven times,
//! with prices that change mid-month, mid-hour and per cluster, a tenant
//! deleted mid-month, samples written late, changed and forgotten, and
//! catch-ups that run twice at once.

mod common;

use chrono::{DateTime, Utc};
use common::{TestApp, spawn_app};
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::db::showback::ScopeFilter;
use tenant_portal::service::showback::{GroupBy, Period, compute, compute_raw};
use tenant_portal::service::showback_rollups::catch_up;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A small deterministic generator, so a failure replays.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

fn ts(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap()
}

fn at(t: i64) -> String {
    ts(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn tenant(app: &TestApp, slug: &str, cluster: &str, cost_center: &str, namespaces: &[&str]) {
    let namespaces: Vec<Value> = namespaces
        .iter()
        .map(|n| json!({"name": n, "allocations": {"requests.cpu": "1", "requests.memory": "1Gi"}}))
        .collect();
    app.create_tenant(json!({
        "slug": slug, "labels": {"cost-center": cost_center}, "cluster": cluster,
        "budget": {"requests.cpu": "8", "requests.memory": "16Gi"},
        "namespaces": namespaces,
    }))
    .await;
}

/// Samples of `full_name` every 17 to 95 minutes (at uneven seconds) over
/// `[from, to)`, the allocation changing now and then, use at every sample.
async fn history(app: &TestApp, rng: &mut Lcg, full_name: &str, from: i64, to: i64) {
    let (mut times, mut allocated, mut used) = (Vec::new(), Vec::new(), Vec::new());
    let mut t = from + rng.next(3600) as i64;
    let mut cpu = 1 + rng.next(2000);
    while t < to {
        if rng.next(10) == 0 {
            cpu = 1 + rng.next(2000);
        }
        times.push(ts(t));
        allocated.push(json!({"requests.cpu": format!("{cpu}m"), "requests.memory": format!("{}Mi", 512 + rng.next(1024)), "pods": "3"}));
        used.push(json!({"requests.cpu": format!("{}m", rng.next(cpu + 1)), "requests.memory": format!("{}Ki", rng.next(900_000))}));
        t += 17 * 60 + rng.next(78 * 60) as i64;
    }
    sqlx::query(
        "INSERT INTO usage_samples (namespace_id, sampled_at, allocated, used)
         SELECT (SELECT id FROM namespaces WHERE full_name = $1), s.at, s.allocated, s.used
         FROM unnest($2::timestamptz[], $3::jsonb[], $4::jsonb[]) AS s(at, allocated, used)",
    )
    .bind(full_name)
    .bind(&times)
    .bind(&allocated)
    .bind(&used)
    .execute(&app.db)
    .await
    .unwrap();
}

async fn set_prices(app: &TestApp, prices: Value) {
    let response = app
        .client
        .put(format!("{}/api/v1/prices", app.base))
        .bearer_auth(&app.token)
        .json(&json!({ "prices": prices }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// The month: four tenants on two clusters, one deleted mid-month, prices
/// changing on the hour, within an hour and for one cluster only. Answers
/// the start of the month (a UTC midnight).
async fn month(app: &TestApp) -> i64 {
    let now = Utc::now().timestamp();
    let start = (now / 86_400 - 32) * 86_400;
    let end = now - 2 * 3600;
    tenant(app, "acme", "local", "42", &["dev", "prod"]).await;
    tenant(app, "globex", "edge", "7", &["dev"]).await;
    tenant(app, "initech", "local", "42", &["web", "db"]).await;
    tenant(app, "umbrella", "edge", "", &["lab"]).await;
    let mut rng = Lcg(17);
    for ns in [
        "acme-dev",
        "acme-prod",
        "globex-dev",
        "initech-web",
        "initech-db",
        "umbrella-lab",
    ] {
        history(app, &mut rng, ns, start - 5 * 3600, end).await;
    }
    // globex goes mid-month, at an uneven second; its samples stop a while later.
    let gone = start + 11 * 86_400 + 4321;
    app.request(reqwest::Method::DELETE, "/api/v1/tenants/globex")
        .send()
        .await
        .unwrap();
    sqlx::query("DELETE FROM usage_samples WHERE namespace_id = (SELECT id FROM namespaces WHERE full_name = 'globex-dev') AND sampled_at > $1")
        .bind(ts(gone + 5 * 3600))
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("UPDATE tenants SET state = 'deleted', deleted_at = $1 WHERE slug = 'globex'")
        .bind(ts(gone))
        .execute(&app.db)
        .await
        .unwrap();
    set_prices(
        app,
        json!([
            {"resource": "requests.cpu", "price": "0.031", "effective_from": at(start - 86_400)},
            {"resource": "requests.cpu", "price": "0.035", "effective_from": at(start + 15 * 86_400)},
            {"resource": "requests.cpu", "price": "0.033", "effective_from": at(start + 20 * 86_400 + 1799)},
            {"resource": "requests.cpu", "price": "0.2", "cluster": "edge", "effective_from": at(start + 3 * 86_400 + 7 * 3600 + 61)},
            {"resource": "requests.memory", "price": "0.004", "effective_from": at(start - 86_400)},
            {"resource": "requests.memory", "price": "0.0045", "effective_from": at(start + 9 * 86_400 + 13 * 3600)}
        ]),
    )
    .await;
    start
}

/// Every grouping and a few periods: the month, uneven ends, within an
/// hour, across a mid-hour price change, and one tenant's month.
async fn assert_rollups_equal_raw(db: &PgPool, start: i64, when: &str) {
    let now = Utc::now().timestamp();
    let periods = [
        (start, start + 30 * 86_400),
        (start + 86_400 + 1111, now - 3 * 3600 - 59),
        (start + 5 * 86_400 + 600, start + 5 * 86_400 + 1700),
        (start + 20 * 86_400 + 17, start + 20 * 86_400 + 7000),
        (start + 10 * 86_400, start + 13 * 86_400 + 3600),
        (start - 86_400, now - 7200),
    ];
    let mut conn = db.acquire().await.unwrap();
    for (from, to) in periods {
        let period = Period::parse(ts(from), ts(to)).unwrap();
        for group_by in ["tenant", "namespace", "cluster", "label:cost-center"] {
            for tenant in [None, Some("globex"), Some("acme")] {
                let filter = ScopeFilter {
                    tenant: tenant.map(String::from),
                    ..ScopeFilter::default()
                };
                let group_by = GroupBy::parse(group_by).unwrap();
                let raw = compute_raw(&mut conn, &filter, period, group_by.clone())
                    .await
                    .unwrap();
                let rolled = compute(&mut conn, &filter, period, group_by.clone())
                    .await
                    .unwrap();
                assert_eq!(
                    rolled,
                    raw,
                    "{when}: {group_by:?} of {tenant:?} over [{}, {})",
                    at(from),
                    at(to)
                );
            }
        }
    }
    let month = Period::parse(ts(start), ts(start + 30 * 86_400)).unwrap();
    let raw = compute_raw(&mut conn, &ScopeFilter::default(), month, GroupBy::Tenant)
        .await
        .unwrap();
    assert_eq!(raw.groups.len(), 4, "{when}: the deleted tenant is counted");
    assert!(raw.allocated_cost > 0 && raw.used_cost > 0);
}

async fn rolled_up_hours(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM showback_days")
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn reports_from_rollups_equal_reports_from_samples(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let start = month(&app).await;
    assert_rollups_equal_raw(&db, start, "before any catch-up").await;

    // Two catch-ups at once add every hour once.
    let (a, b) = tokio::join!(catch_up(&db), catch_up(&db));
    assert_eq!(a.unwrap() + b.unwrap(), 6, "each namespace advanced once");
    assert!(rolled_up_hours(&db).await > 0);
    assert_eq!(catch_up(&db).await.unwrap(), 0, "nothing left to roll up");
    assert_rollups_equal_raw(&db, start, "rolled up").await;

    // A sample written late, into sealed hours, and one changed in place.
    sqlx::query(
        "INSERT INTO usage_samples (namespace_id, sampled_at, allocated, used)
         SELECT id, $2, '{\"requests.cpu\": \"7\"}', '{\"requests.cpu\": \"5\"}' FROM namespaces WHERE full_name = $1",
    )
    .bind("initech-db")
    .bind(ts(start + 12 * 86_400 + 1234))
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE usage_samples SET used = '{\"requests.cpu\": \"3\"}'
         WHERE namespace_id = (SELECT id FROM namespaces WHERE full_name = 'acme-dev')
           AND sampled_at = (SELECT min(sampled_at) FROM usage_samples s JOIN namespaces n ON n.id = s.namespace_id
                             WHERE n.full_name = 'acme-dev' AND s.sampled_at > $1)",
    )
    .bind(ts(start + 17 * 86_400))
    .execute(&db)
    .await
    .unwrap();
    assert_rollups_equal_raw(&db, start, "late and changed samples, before the catch-up").await;
    assert_eq!(catch_up(&db).await.unwrap(), 2);
    assert_rollups_equal_raw(&db, start, "late and changed samples, caught up").await;

    // The oldest samples forgotten, as the retention does, and one from the middle.
    sqlx::query("DELETE FROM usage_samples WHERE sampled_at < $1")
        .bind(ts(start + 2 * 86_400 + 777))
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(
        "DELETE FROM usage_samples WHERE namespace_id = (SELECT id FROM namespaces WHERE full_name = 'umbrella-lab')
           AND sampled_at = (SELECT max(sampled_at) FROM usage_samples s JOIN namespaces n ON n.id = s.namespace_id
                             WHERE n.full_name = 'umbrella-lab' AND s.sampled_at < $1)",
    )
    .bind(ts(start + 25 * 86_400))
    .execute(&db)
    .await
    .unwrap();
    assert_rollups_equal_raw(&db, start, "samples forgotten, before the catch-up").await;
    catch_up(&db).await.unwrap();
    assert_rollups_equal_raw(&db, start, "samples forgotten, caught up").await;

    // A price set afterwards for the past, within an hour: rollups hold no prices.
    set_prices(
        &app,
        json!([{"resource": "requests.memory", "price": "0.006", "effective_from": at(start + 6 * 86_400 + 2 * 3600 + 5)}]),
    )
    .await;
    assert_rollups_equal_raw(&db, start, "a price set later for the past").await;

    // New samples after the sealed hours, as the sampler writes them.
    let mut rng = Lcg(99);
    let now = Utc::now().timestamp();
    history(&app, &mut rng, "initech-web", now - 90 * 60, now - 60).await;
    catch_up(&db).await.unwrap();
    assert_rollups_equal_raw(&db, start, "the sampler went on").await;
}
