//! Showback over real HTTP against real PostgreSQL: prices with their
//! history, and costs computed from a known usage history to the exact
//! millionth, including a price change and a tenant deleted mid-period.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::idp::{login_as, login_config};
use common::{TestApp, config, create_token, problem, spawn_app_config};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::auth::Scope;
use tenant_portal::config::ServeConfig;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

async fn spawn(db: PgPool) -> TestApp {
    spawn_in(db, "EUR").await
}

/// A portal whose prices and costs are in `currency`.
async fn spawn_in(db: PgPool, currency: &str) -> TestApp {
    spawn_app_config(
        db,
        ServeConfig {
            login: login_config(),
            currency: currency.parse().unwrap(),
            ..config()
        },
        Default::default(),
    )
    .await
}

/// An exact amount ("1.385000") rounded half up to `digits` decimals and
/// followed by its currency, as pages show it ("1.39 EUR").
fn for_people(exact: &str, digits: usize, currency: &str) -> String {
    let (whole, fraction) = exact.split_once('.').unwrap();
    let micros: i128 = format!("{whole}{fraction}").parse().unwrap();
    let step = 10i128.pow(6 - digits as u32);
    let units = (micros + step / 2) / step;
    let scale = 10i128.pow(digits as u32);
    if digits == 0 {
        format!("{units} {currency}")
    } else {
        format!("{}.{:0digits$} {currency}", units / scale, units % scale)
    }
}

async fn put_prices(app: &TestApp, token: &str, prices: Value) -> reqwest::Response {
    app.client
        .put(format!("{}/api/v1/prices", app.base))
        .bearer_auth(token)
        .json(&json!({ "prices": prices }))
        .send()
        .await
        .unwrap()
}

/// Adds a sample as the sampler would have taken it at `at`.
async fn sample(app: &TestApp, full_name: &str, at: DateTime<Utc>, allocated: Value, used: Value) {
    sqlx::query(
        "INSERT INTO usage_samples (namespace_id, sampled_at, used, allocated)
         SELECT id, $2, $3, $4 FROM namespaces WHERE full_name = $1",
    )
    .bind(full_name)
    .bind(at)
    .bind(used)
    .bind(allocated)
    .execute(&app.db)
    .await
    .unwrap();
}

/// Deletes the tenant over the API and tombstones it as the reconciler
/// does once its namespaces are gone; answers the time of deletion, set
/// three hours back.
async fn delete_tenant(app: &TestApp, slug: &str) -> DateTime<Utc> {
    let response = app
        .request(Method::DELETE, &format!("/api/v1/tenants/{slug}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let mut conn = app.db.acquire().await.unwrap();
    let row = tenant_portal::db::tenants::get(&mut conn, slug)
        .await
        .unwrap()
        .unwrap();
    let mut tx = app.db.begin().await.unwrap();
    tenant_portal::service::lifecycle::tombstone(
        &mut tx,
        &tenant_portal::service::Actor::system("system:test"),
        &row,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // As if that had happened three hours ago, so the periods below lie in the past.
    let deleted = Utc::now() - Duration::hours(3);
    let deleted = DateTime::from_timestamp(deleted.timestamp(), 0).unwrap();
    sqlx::query("UPDATE tenants SET deleted_at = $2 WHERE slug = $1 AND state = 'deleted'")
        .bind(slug)
        .bind(deleted)
        .execute(&app.db)
        .await
        .unwrap();
    deleted
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Two tenants with a known history around `t`, the moment globex was deleted:
///
/// - prices: CPU 0.04 per core-hour, 0.10 from t-1h; memory 0.005 per
///   GiB-hour; on cluster `edge` CPU costs 0.20 throughout.
/// - acme (local, cost-center 42): `dev` sampled at t-5h (1500m CPU and 2Gi
///   allocated, 500m and 1Gi used) and t-2h (1 CPU and 2Gi allocated, all
///   used); `prod` sampled at t-3h (2 CPU and 4Gi allocated, nothing used).
/// - globex (edge, cost-center 7): `dev` sampled at t-6h (1 CPU allocated,
///   250m used) and t-2h (1 CPU, all used), deleted at t.
///
/// Answers the period `[t-4h, t+2h)`.
async fn known_history(app: &TestApp) -> (DateTime<Utc>, DateTime<Utc>) {
    app.create_tenant(json!({
        "slug": "acme", "labels": {"cost-center": "42"}, "cluster": "local",
        "budget": {"requests.cpu": "4", "requests.memory": "8Gi"},
        "namespaces": [
            {"name": "dev", "allocations": {"requests.cpu": "1500m", "requests.memory": "2Gi"}},
            {"name": "prod", "allocations": {"requests.cpu": "2", "requests.memory": "4Gi"}}
        ],
        "members": [{"kind": "group", "subject": "team-acme", "role": "owner"}]
    }))
    .await;
    app.create_tenant(json!({
        "slug": "globex", "labels": {"cost-center": "7"}, "cluster": "edge",
        "budget": {"requests.cpu": "2"},
        "namespaces": [{"name": "dev", "allocations": {"requests.cpu": "1"}}],
        "members": [{"kind": "group", "subject": "team-globex", "role": "owner"}]
    }))
    .await;
    let deleted = delete_tenant(app, "globex").await;
    let t = DateTime::from_timestamp(deleted.timestamp(), 0).unwrap();
    let h = Duration::hours;

    let response = put_prices(
        app,
        &app.token,
        json!([
            {"resource": "requests.cpu", "price": "0.04", "effective_from": at(t - h(10))},
            {"resource": "requests.cpu", "price": "0.10", "effective_from": at(t - h(1))},
            {"resource": "requests.memory", "price": "0.005", "effective_from": at(t - h(10))},
            {"resource": "requests.cpu", "price": "0.2", "cluster": "edge", "effective_from": at(t - h(10))}
        ]),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let dev_before = json!({"requests.cpu": "1500m", "requests.memory": "2Gi"});
    sample(
        app,
        "acme-dev",
        t - h(5),
        dev_before,
        json!({"requests.cpu": "500m", "requests.memory": "1Gi", "pods": "3"}),
    )
    .await;
    let dev_after = json!({"requests.cpu": "1", "requests.memory": "2Gi"});
    sample(
        app,
        "acme-dev",
        t - h(2),
        dev_after,
        json!({"requests.cpu": "1", "requests.memory": "2Gi"}),
    )
    .await;
    let prod = json!({"requests.cpu": "2", "requests.memory": "4Gi"});
    sample(
        app,
        "acme-prod",
        t - h(3),
        prod,
        json!({"requests.cpu": "0", "requests.memory": "0"}),
    )
    .await;
    let globex = json!({"requests.cpu": "1"});
    sample(
        app,
        "globex-dev",
        t - h(6),
        globex.clone(),
        json!({"requests.cpu": "250m"}),
    )
    .await;
    sample(
        app,
        "globex-dev",
        t - h(2),
        globex,
        json!({"requests.cpu": "1"}),
    )
    .await;
    (t - h(4), t + h(2))
}

async fn report(app: &TestApp, from: DateTime<Utc>, to: DateTime<Utc>, group_by: &str) -> Value {
    let response = app
        .get(&format!(
            "/api/v1/showback?from={}&to={}&group_by={group_by}",
            at(from),
            at(to)
        ))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `(group, resource)` to `[allocated, used, allocated_cost, used_cost]`.
fn lines(report: &Value) -> Vec<(String, String, [String; 4])> {
    let mut out = Vec::new();
    for group in report["groups"].as_array().unwrap() {
        for line in group["resources"].as_array().unwrap() {
            let s = |k: &str| line[k].as_str().unwrap().to_string();
            out.push((
                group["group"].as_str().unwrap().to_string(),
                format!("{} ({})", s("resource"), s("unit")),
                [
                    s("allocated"),
                    s("used"),
                    s("allocated_cost"),
                    s("used_cost"),
                ],
            ));
        }
    }
    out
}

/// Each group with one of its totals.
fn totals<'a>(report: &'a Value, total: &str) -> Vec<(&'a str, &'a str)> {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"].as_str().unwrap(), g[total].as_str().unwrap()))
        .collect()
}

fn line(group: &str, resource: &str, amounts: [&str; 4]) -> (String, String, [String; 4]) {
    (group.into(), resource.into(), amounts.map(String::from))
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn costs_are_time_weighted_at_the_price_of_each_instant_up_to_a_deletion(db: PgPool) {
    let app = spawn(db).await;
    let (from, to) = known_history(&app).await;

    let by_tenant = report(&app, from, to, "tenant").await;
    // acme dev CPU: 1.5 cores for 2 h at 0.04 = 0.12; 1 core for 1 h at 0.04 and
    //   3 h at 0.10 = 0.34; prod: 2 cores 2 h at 0.04 and 3 h at 0.10 = 0.76.
    // acme memory: dev 2 GiB for 6 h, prod 4 GiB for 5 h = 32 GiB-hours at 0.005.
    // globex: 1 core for the 4 h up to its deletion at edge's 0.20; used
    //   0.25 core for 2 h and 1 core for 2 h.
    assert_eq!(
        lines(&by_tenant),
        vec![
            line(
                "acme",
                "requests.cpu (core-hours)",
                ["17.000000", "5.000000", "1.220000", "0.380000"]
            ),
            line(
                "acme",
                "requests.memory (GiB-hours)",
                ["32.000000", "10.000000", "0.160000", "0.050000"]
            ),
            line(
                "globex",
                "requests.cpu (core-hours)",
                ["4.000000", "2.500000", "0.800000", "0.500000"]
            ),
        ]
    );
    assert_eq!(by_tenant["groups"][0]["allocated_cost"], "1.380000");
    assert_eq!(by_tenant["groups"][0]["used_cost"], "0.430000");
    assert_eq!(by_tenant["groups"][1]["tenants"], json!(["globex"]));
    assert_eq!(by_tenant["allocated_cost"], "2.180000");
    assert_eq!(by_tenant["used_cost"], "0.930000");
    assert_eq!(by_tenant["currency"], "EUR", "every cost says its currency");
    assert_eq!(by_tenant["from"], at(from));

    let by_namespace = report(&app, from, to, "namespace").await;
    assert_eq!(
        lines(&by_namespace),
        vec![
            line(
                "acme/dev",
                "requests.cpu (core-hours)",
                ["7.000000", "5.000000", "0.460000", "0.380000"]
            ),
            line(
                "acme/dev",
                "requests.memory (GiB-hours)",
                ["12.000000", "10.000000", "0.060000", "0.050000"]
            ),
            line(
                "acme/prod",
                "requests.cpu (core-hours)",
                ["10.000000", "0.000000", "0.760000", "0.000000"]
            ),
            line(
                "acme/prod",
                "requests.memory (GiB-hours)",
                ["20.000000", "0.000000", "0.100000", "0.000000"]
            ),
            line(
                "globex/dev",
                "requests.cpu (core-hours)",
                ["4.000000", "2.500000", "0.800000", "0.500000"]
            ),
        ]
    );

    let by_cluster = report(&app, from, to, "cluster").await;
    let groups = totals(&by_cluster, "allocated_cost");
    assert_eq!(groups, vec![("edge", "0.800000"), ("local", "1.380000")]);

    let by_label = report(&app, from, to, "label:cost-center").await;
    let groups = totals(&by_label, "used_cost");
    assert_eq!(groups, vec![("42", "0.430000"), ("7", "0.500000")]);

    // The hour after the deletion costs globex nothing.
    let after = report(&app, to - Duration::hours(2), to, "tenant").await;
    let slugs: Vec<&str> = after["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, vec!["acme"]);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_report_is_csv_a_spreadsheet_opens(db: PgPool) {
    let app = spawn(db).await;
    let (from, to) = known_history(&app).await;
    let response = app
        .request(
            Method::GET,
            &format!(
                "/api/v1/showback?from={}&to={}&group_by=tenant",
                at(from),
                at(to)
            ),
        )
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"),
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"showback-"),
    );
    assert_eq!(
        response.text().await.unwrap(),
        "tenant,resource,unit,allocated,used,allocated_cost,used_cost,currency\r\n\
         acme,requests.cpu,core-hours,17.000000,5.000000,1.220000,0.380000,EUR\r\n\
         acme,requests.memory,GiB-hours,32.000000,10.000000,0.160000,0.050000,EUR\r\n\
         globex,requests.cpu,core-hours,4.000000,2.500000,0.800000,0.500000,EUR\r\n\
         (total),,,,,2.18,0.93,EUR\r\n"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn owners_see_the_costs_of_their_own_tenants_and_admins_all(db: PgPool) {
    let app = spawn(db).await;
    let (from, to) = known_history(&app).await;
    let path = format!("/api/v1/showback?from={}&to={}", at(from), at(to));

    let alice = login_as(&app, "ALICE").await;
    let mine: Value = alice.get(&path).await.json().await.unwrap();
    assert_eq!(
        lines(&mine).into_iter().map(|l| l.0).collect::<Vec<_>>(),
        vec!["acme", "acme"],
        "alice is in team-acme: {mine}"
    );
    let carol = login_as(&app, "CAROL").await;
    let none: Value = carol.get(&path).await.json().await.unwrap();
    assert_eq!(none["groups"], json!([]));
    assert_eq!(none["allocated_cost"], "0.000000");

    let admin = login_as(&app, "ADMIN").await;
    let all: Value = admin.get(&path).await.json().await.unwrap();
    assert_eq!(all["groups"].as_array().unwrap().len(), 2);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn bad_periods_and_groupings_are_refused_naming_the_field(db: PgPool) {
    let app = spawn(db).await;
    let cases = [
        (
            "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "query.to",
        ),
        (
            "from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "query.to",
        ),
        (
            "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&group_by=team",
            "query.group_by",
        ),
        (
            "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&group_by=label:",
            "query.group_by",
        ),
        ("from=yesterday&to=2026-02-01T00:00:00Z", "query.from"),
        (
            "from=0001-01-01T00:00:00Z&to=0001-02-01T00:00:00Z",
            "query.from",
        ),
    ];
    for (query, field) in cases {
        let (status, body) = problem(app.get(&format!("/api/v1/showback?{query}")).await).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn prices_keep_their_history_and_only_platform_admins_set_them(db: PgPool) {
    let app = spawn(db).await;
    let response = put_prices(
        &app,
        &app.token,
        json!([
            {"resource": "requests.cpu", "price": "0.031", "effective_from": "2026-01-01T00:00:00Z"},
            {"resource": "fast.storageclass.storage.k8s.io/requests.storage", "price": "0.1", "cluster": "edge"}
        ]),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = put_prices(
        &app,
        &app.token,
        json!([{"resource": "requests.cpu", "price": "0.035", "effective_from": "2026-02-01T00:00:00Z"}]),
    )
    .await;
    let list: Value = response.json().await.unwrap();
    assert!(
        list["prices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["currency"] == "EUR"),
        "every price says its currency: {list}"
    );
    let cpu: Vec<(&str, &str, &str)> = list["prices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["resource"] == "requests.cpu")
        .map(|p| {
            (
                p["price"].as_str().unwrap(),
                p["per"].as_str().unwrap(),
                p["effective_from"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cpu,
        vec![
            ("0.031000", "core-hour", "2026-01-01T00:00:00Z"),
            ("0.035000", "core-hour", "2026-02-01T00:00:00Z"),
        ],
        "the old price stays, for the periods it priced"
    );
    let storage = list["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["cluster"] == "edge")
        .unwrap();
    assert_eq!(storage["per"], "GiB-month");

    let audit: Vec<(String, Option<Value>, Value)> = sqlx::query_as(
        "SELECT actor, before, after FROM audit_events WHERE action = 'price.set' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(audit.len(), 3);
    assert_eq!(
        audit[2].1.as_ref().unwrap()["price"],
        "0.031000",
        "the price it follows"
    );
    assert_eq!(audit[2].2["price"], "0.035000");
    assert_eq!(audit[2].0, "token:test-admin");

    let reader = create_token(&app.db, "reader", &[Scope::TenantsRead], None).await;
    let read = app
        .client
        .get(format!("{}/api/v1/prices", app.base))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "anyone who reads tenants reads prices");
    let alice = login_as(&app, "ALICE").await;
    let before = app.table_counts().await;
    let (status, body) = problem(
        put_prices(
            &app,
            &reader,
            json!([{"resource": "requests.cpu", "price": "0"}]),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let response = alice
        .change(Method::PUT, "/api/v1/prices")
        .json(&json!({"prices": [{"resource": "requests.cpu", "price": "0"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "only platform admins set prices");

    let refusals = [
        (
            json!([{"resource": "pods", "price": "1"}]),
            422,
            "prices[0].resource",
        ),
        (
            json!([{"resource": "requests.cpu", "price": "-1"}]),
            422,
            "prices[0].price",
        ),
        (
            json!([{"resource": "requests.cpu", "price": "0.0000001"}]),
            422,
            "prices[0].price",
        ),
        (
            json!([{"resource": "requests.cpu", "price": "1", "cluster": "mars"}]),
            422,
            "prices[0].cluster",
        ),
        (json!([]), 422, "prices"),
        (
            json!([{"resource": "requests.cpu", "price": "1", "effective_from": "0001-01-01T00:00:00Z"}]),
            422,
            "prices[0].effective_from",
        ),
        (
            json!([{"resource": "requests.cpu", "price": "1", "effective_from": "2026-02-01T00:00:00Z"}]),
            409,
            "prices[0].effective_from",
        ),
    ];
    for (prices, code, field) in refusals {
        let (status, body) = problem(put_prices(&app, &app.token, prices.clone()).await).await;
        assert_eq!(status, code, "{prices}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{prices}: {body}");
    }
    assert_eq!(
        app.table_counts().await,
        before,
        "no refusal wrote anything"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_usage_writer_never_waits_for_a_row_another_transaction_holds(db: PgPool) {
    // A batch that waited for a tenant being recorded could deadlock with
    // it; it skips the held row instead and writes it once free.
    let app = spawn(db).await;
    app.create_tenant(common::acme()).await;
    let used = json!({"requests.cpu": "1"});
    let changes = [
        ("acme-dev", &used),
        ("acme-prod", &used),
        ("not-a-tenant-ns", &used),
    ];
    let mut holder = app.db.begin().await.unwrap();
    sqlx::query("UPDATE namespaces SET sync_status = 'Ready' WHERE full_name = 'acme-dev'")
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut conn = app.db.acquire().await.unwrap();
    let done = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tenant_portal::db::sync::store_usage(&mut conn, &changes),
    )
    .await
    .expect("the usage writer waited for a held row")
    .unwrap();
    let mut done: Vec<&str> = done.iter().map(String::as_str).collect();
    done.sort();
    assert_eq!(done, ["acme-prod", "not-a-tenant-ns"]);
    holder.commit().await.unwrap();
    let done = tenant_portal::db::sync::store_usage(&mut conn, &changes[..1])
        .await
        .unwrap();
    assert_eq!(done, ["acme-dev"]);
    let stored: Vec<Value> =
        sqlx::query_scalar("SELECT usage FROM namespaces WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'acme') ORDER BY name")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, [used.clone(), used]);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_samplers_samples_carry_the_allocation_in_force(db: PgPool) {
    let app = spawn(db).await;
    app.create_tenant(common::acme()).await;
    let mut conn = app.db.acquire().await.unwrap();
    tenant_portal::db::sync::store_usage(&mut conn, &[("acme-dev", &json!({"requests.cpu": "1"}))])
        .await
        .unwrap();
    tenant_portal::db::sync::sample_usage(&mut conn, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let allocated: Value = sqlx::query_scalar(
        "SELECT s.allocated FROM usage_samples s JOIN namespaces n ON n.id = s.namespace_id
         WHERE n.full_name = 'acme-dev'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        allocated,
        json!({"requests.cpu": "1500m", "requests.memory": "2Gi"})
    );
}

/// `namespace/resource` to `(p50, p95, idle, suggested)` from a utilisation answer.
fn uses(answer: &Value) -> Vec<(String, Value, Value, bool, String)> {
    let mut out = Vec::new();
    for ns in answer["namespaces"].as_array().unwrap() {
        let name = ns["namespace"].as_str().unwrap_or("(tenant)");
        for r in ns["resources"].as_array().unwrap() {
            out.push((
                format!("{name}/{}", r["resource"].as_str().unwrap()),
                r["p50"].clone(),
                r["p95"].clone(),
                r["idle"].as_bool().unwrap(),
                r["suggested"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn utilisation_shows_percentiles_idle_allocations_and_a_right_size(db: PgPool) {
    let app = spawn(db).await;
    let (from, to) = known_history(&app).await;
    let response = app
        .get(&format!(
            "/api/v1/tenants/acme/utilisation?from={}&to={}",
            at(from),
            at(to)
        ))
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let u = |name: &str, p50: &str, p95: &str, idle: bool, suggested: &str| {
        (
            name.to_string(),
            json!(p50),
            json!(p95),
            idle,
            suggested.to_string(),
        )
    };
    // dev CPU: 500m of 1500m, then 1 of 1; the 95th percentile of use is
    // 1 core, plus 20 %. prod was allocated and never used.
    // The tenant at each sampling time: 500m of 1500m, 500m of 3500m, 1 of 3.
    assert_eq!(
        uses(&answer),
        vec![
            u("(tenant)/requests.cpu", "33.3%", "33.3%", false, "1200m"),
            u(
                "(tenant)/requests.memory",
                "33.3%",
                "50.0%",
                false,
                "2458Mi"
            ),
            u("dev/requests.cpu", "33.3%", "100.0%", false, "1200m"),
            u("dev/requests.memory", "50.0%", "100.0%", false, "2458Mi"),
            u("prod/requests.cpu", "0.0%", "0.0%", true, "0"),
            u("prod/requests.memory", "0.0%", "0.0%", true, "0"),
        ]
    );
    let (status, _) = problem(
        app.get(&format!(
            "/api/v1/tenants/acme/utilisation?from={}&to={}",
            at(to),
            at(from)
        ))
        .await,
    )
    .await;
    assert_eq!(status, 422);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_fleet_page_shows_the_months_top_tenants_and_its_csv_and_admins_alone_see_it(
    db: PgPool,
) {
    let app = spawn(db).await;
    let (_, end) = known_history(&app).await;
    // acme's allocations end with the period, so its costs stop growing.
    for namespace in ["acme-dev", "acme-prod"] {
        sample(&app, namespace, end, json!({}), json!({})).await;
    }
    let now = Utc::now();
    let month = now.format("%Y-%m").to_string();
    let start = DateTime::parse_from_rfc3339(&format!("{month}-01T00:00:00Z"))
        .unwrap()
        .with_timezone(&Utc);
    let api = report(&app, start, now, "tenant").await;

    let admin = login_as(&app, "ADMIN").await;
    let page = admin.get("/admin/fleet").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for group in api["groups"].as_array().unwrap() {
        let row = format!(
            "<tr><td><a href=\"/tenants/{0}\">{0}</a></td><td>{1}</td></tr>",
            group["group"].as_str().unwrap(),
            for_people(group["allocated_cost"].as_str().unwrap(), 2, "EUR")
        );
        assert!(
            html.contains(&row),
            "the page shows {row}, the API's cost rounded to the cent"
        );
    }
    let total = format!(
        "tenants reserved <strong>{}</strong>",
        for_people(api["allocated_cost"].as_str().unwrap(), 2, "EUR")
    );
    assert!(html.contains(&total), "{total} in {html}");
    assert!(html.contains("aria-label=\"Top tenants by reserved cost\""));
    assert!(
        html.contains("local: 2 namespaces; CPU 3500m allocated"),
        "{html}"
    );

    let csv = admin.get(&format!("/admin/fleet.csv?month={month}")).await;
    assert_eq!(csv.status(), 200);
    let csv = csv.text().await.unwrap();
    assert!(
        csv.starts_with(
            "tenant,resource,unit,allocated,used,allocated_cost,used_cost,currency\r\n"
        ),
        "{csv}"
    );
    let total = for_people(api["allocated_cost"].as_str().unwrap(), 2, "EUR");
    let total_row = format!("\r\n(total),,,,,{},", total.trim_end_matches(" EUR"));
    assert!(
        csv.contains(&total_row) && csv.ends_with(",EUR\r\n"),
        "the CSV ends with the month's total rounded to the cent: {csv}"
    );

    let alice = login_as(&app, "ALICE").await;
    assert_eq!(alice.get("/admin/fleet").await.status(), 403);
    assert_eq!(alice.get("/admin/fleet.csv").await.status(), 403);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_portal_in_yen_states_it_everywhere_and_shows_whole_yen_to_people(db: PgPool) {
    let app = spawn_in(db, "JPY").await;
    let (from, to) = known_history(&app).await;
    let prices: Value = app.get("/api/v1/prices").await.json().await.unwrap();
    assert!(
        prices["prices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["currency"] == "JPY"),
        "{prices}"
    );
    let json = report(&app, from, to, "tenant").await;
    assert_eq!(json["currency"], "JPY");
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    for schema in ["ShowbackReport", "PriceView"] {
        let required = &doc["components"]["schemas"][schema]["required"];
        assert!(
            required.as_array().unwrap().contains(&json!("currency")),
            "the OpenAPI document says every {schema} has a currency: {required}"
        );
    }
    assert_eq!(
        json["allocated_cost"], "2.180000",
        "the API stays exact whatever the currency's minor unit"
    );

    let csv = app
        .request(
            Method::GET,
            &format!("/api/v1/showback?from={}&to={}", at(from), at(to)),
        )
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains(",0.800000,0.500000,JPY\r\n"),
        "lines stay exact: {csv}"
    );
    assert!(
        csv.ends_with("\r\n(total),,,,,2,1,JPY\r\n"),
        "the total is in whole yen: {csv}"
    );

    let alice = login_as(&app, "ALICE").await;
    let html = alice.get("/tenants/acme").await.text().await.unwrap();
    let said = html
        .split("id=\"tenant-cost\">")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_default();
    assert!(
        said.contains(" JPY</strong>") && !said.contains(".0"),
        "the tenant's cost in whole yen with its code: {said}"
    );
}

#[test]
fn the_portal_refuses_to_start_with_a_currency_that_is_not_iso_4217() {
    for (bad, says) in [
        ("eur", "capitals"),
        ("EURO", "capitals"),
        ("ABC", "ISO 4217"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-portal"))
            .args([
                "serve",
                "--database-url",
                "postgres://unused/none",
                "--currency",
                bad,
            ])
            .env_remove("TP_CURRENCY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("--currency") && stderr.contains(says),
            "{bad}: {stderr}"
        );
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-portal"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--currency") && help.contains("[default: USD]"),
        "{help}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_pending_quota_request_shows_the_tenants_use_beside_it(db: PgPool) {
    let app = spawn(db).await;
    known_history(&app).await;
    let asked = app
        .post_json(
            "/api/v1/quota-requests",
            json!({"tenant": "acme", "resource": "requests.cpu", "amount": "8", "reason": "more builds"}),
        )
        .await;
    assert_eq!(asked.status(), 201);
    let admin = login_as(&app, "ADMIN").await;
    let html = admin.get("/quota-requests").await.text().await.unwrap();
    // The tenant at each sampling time: 500m of 1500m, 500m of 3500m, 1 of 3.
    assert!(
        html.contains("<dd class=\"usage\">p50 33.3%, p95 33.3% of 3 allocated; fits 1200m</dd>"),
        "{html}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn usage_is_sampled_once_per_interval_for_all_replicas_and_forgotten_after_retention(
    db: PgPool,
) {
    let app = spawn(db).await;
    app.create_tenant(common::acme()).await;
    let mut conn = app.db.acquire().await.unwrap();
    tenant_portal::db::sync::store_usage(&mut conn, &[("acme-dev", &json!({"requests.cpu": "1"}))])
        .await
        .unwrap();
    let gap = std::time::Duration::from_secs(60);
    let sample = || {
        let db = app.db.clone();
        async move {
            let mut conn = db.acquire().await.unwrap();
            tenant_portal::db::sync::sample_usage(&mut conn, gap)
                .await
                .unwrap()
        }
    };
    // Three replicas' samplers at once: one sample between them.
    let taken = futures::future::join_all([sample(), sample(), sample()]).await;
    assert_eq!(taken.iter().sum::<u64>(), 1, "{taken:?}");
    assert_eq!(sample().await, 0, "none again within the interval");

    sqlx::query(
        "INSERT INTO usage_samples (namespace_id, sampled_at, used)
         SELECT id, now() - interval '500 days', '{}' FROM namespaces WHERE full_name = 'acme-dev'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let retention = std::time::Duration::from_secs(400 * 86_400);
    let gone = tenant_portal::db::sync::expire_usage(&mut conn, retention)
        .await
        .unwrap();
    assert_eq!(gone, 1);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_samples")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(kept, 1, "the recent sample stays");
}
