//! Showback at fleet size: tenants in the database (reconciler off) with
//! days of hourly usage samples, then the month's report over the API, as
//! JSON by tenant, by label and as CSV.

use std::time::Instant;

use anyhow::bail;

use crate::stack::{Env, Portal, f1, f2, latencies, percentile, table};

#[derive(Debug, Clone)]
pub struct Options {
    pub tenants: i64,
    pub days: i64,
    /// Minutes between samples of a namespace.
    pub interval_mins: i64,
    /// Sequential requests per latency figure.
    pub requests: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub namespaces: i64,
    pub samples: i64,
    pub seed_s: f64,
    pub rollup_s: f64,
    pub by_tenant_ms: Vec<f64>,
    pub by_label_ms: Vec<f64>,
    pub csv_ms: Vec<f64>,
    pub one_tenant_ms: Vec<f64>,
    pub rss_mib: f64,
    pub total: String,
}

pub async fn run(env: &Env, options: &Options) -> anyhow::Result<Figures> {
    let portal = Portal::start(env, "showback", false, None).await?;
    let result = measure(options, &portal).await;
    // TP_BENCH_SHOWBACK_KEEP=1 keeps the seeded database (the portal is
    // stopped) for EXPLAIN and further runs; it is named on stderr.
    if std::env::var_os("TP_BENCH_SHOWBACK_KEEP").is_some() {
        eprintln!(
            "kept database {} (token {}); drop it when done",
            portal.db_name(),
            portal.token
        );
        drop(portal);
    } else {
        portal.stop().await?;
    }
    result
}

async fn measure(options: &Options, portal: &Portal) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    let started = Instant::now();
    portal.create_tenant("sbtemplate").await?;
    portal
        .clone_tenants("sbtemplate", "sb", options.tenants - 1)
        .await?;
    sqlx::query("UPDATE tenants SET labels = jsonb_build_object('cost-center', (id % 40)::text)")
        .execute(&portal.db)
        .await?;
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::days(options.days);
    let prices = portal
        .http
        .put(format!("{}/api/v1/prices", portal.base))
        .bearer_auth(&portal.token)
        .json(&serde_json::json!({"prices": [
            {"resource": "requests.cpu", "price": "0.031", "effective_from": start - chrono::Duration::days(1)},
            {"resource": "requests.cpu", "price": "0.035", "effective_from": start + chrono::Duration::days(options.days / 2)},
            {"resource": "requests.memory", "price": "0.004", "effective_from": start - chrono::Duration::days(1)}
        ]}))
        .send()
        .await?;
    if !prices.status().is_success() {
        bail!("setting prices: {}", prices.text().await?);
    }
    // Usage that changes at every sample, the costly case: no two
    // consecutive samples of a namespace store the same JSON.
    let per_namespace = options.days * 24 * 60 / options.interval_mins;
    let inserted = sqlx::query(
        "INSERT INTO usage_samples (namespace_id, sampled_at, used, allocated)
         SELECT n.id, $1::timestamptz + make_interval(mins => (i * $3)::int),
                jsonb_build_object('requests.cpu', ((n.id * 7 + i) % 1000)::text || 'm',
                                   'requests.memory', ((n.id * 13 + i) % 2048)::text || 'Mi',
                                   'pods', '3'),
                n.allocations
         FROM namespaces n, generate_series(0, $2 - 1) AS i",
    )
    .bind(start)
    .bind(per_namespace)
    .bind(options.interval_mins)
    .execute(&portal.db)
    .await?;
    sqlx::query("ANALYZE").execute(&portal.db).await?;
    figures.seed_s = started.elapsed().as_secs_f64();
    figures.samples = inserted.rows_affected() as i64;
    // The portal rolls up every minute; rolling up here times it (the
    // two take turns on a lock, and each hour is added once).
    let rolling = Instant::now();
    tenant_portal::service::showback_rollups::catch_up(&portal.db).await?;
    // As autovacuum leaves the days of the past in steady state: marked
    // all-visible, so a report reads their integrals from the index alone
    // (a month written at once is vacuumed within minutes anyway).
    sqlx::query("VACUUM (ANALYZE) showback_days, showback_marks")
        .execute(&portal.db)
        .await?;
    figures.rollup_s = rolling.elapsed().as_secs_f64();
    figures.namespaces = sqlx::query_scalar("SELECT count(*) FROM namespaces")
        .fetch_one(&portal.db)
        .await?;

    let period = format!(
        "from={}&to={}",
        start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let get = |path: String, csv: bool| {
        let request = portal.get(&path);
        if csv {
            request.header("accept", "text/csv")
        } else {
            request
        }
    };
    let answer: serde_json::Value = get(format!("/showback?{period}&group_by=tenant"), false)
        .send()
        .await?
        .json()
        .await?;
    figures.total = answer["allocated_cost"].as_str().unwrap_or("?").to_string();
    let groups = answer["groups"].as_array().map_or(0, Vec::len);
    if groups as i64 != options.tenants {
        bail!("the report has {groups} tenants, not {}", options.tenants);
    }
    figures.by_tenant_ms = latencies(options.requests, || {
        get(format!("/showback?{period}&group_by=tenant"), false)
    })
    .await?;
    figures.by_label_ms = latencies(options.requests, || {
        get(
            format!("/showback?{period}&group_by=label:cost-center"),
            false,
        )
    })
    .await?;
    figures.csv_ms = latencies(options.requests, || {
        get(format!("/showback?{period}&group_by=namespace"), true)
    })
    .await?;
    figures.one_tenant_ms = latencies(options.requests, || {
        get(format!("/showback?{period}&tenant=sb00042"), false)
    })
    .await?;
    figures.rss_mib = portal.rss_mib()?;
    Ok(figures)
}

pub fn report(options: &Options, figures: &Figures, command: &str) {
    println!(
        "### Showback: {} tenants, {} namespaces, {} days of samples every {} min ({} samples)\n",
        options.tenants, figures.namespaces, options.days, options.interval_mins, figures.samples
    );
    println!("`{command}`\n");
    let n = options.requests;
    let lat = |v: &[f64]| format!("{} / {}", f2(percentile(v, 0.5)), f2(percentile(v, 1.0)));
    table(
        &["figure", "value"],
        &[
            vec![
                "seeding tenants, prices and samples (s)".into(),
                f1(figures.seed_s),
            ],
            vec![
                "rolling up the samples into hours (s)".into(),
                f1(figures.rollup_s),
            ],
            vec![
                format!("report by tenant, JSON: p50 / max (ms, {n} sequential)"),
                lat(&figures.by_tenant_ms),
            ],
            vec![
                format!("report by label:cost-center, JSON: p50 / max (ms, {n} sequential)"),
                lat(&figures.by_label_ms),
            ],
            vec![
                format!("report by namespace, CSV: p50 / max (ms, {n} sequential)"),
                lat(&figures.csv_ms),
            ],
            vec![
                format!("report of one tenant: p50 / max (ms, {n} sequential)"),
                lat(&figures.one_tenant_ms),
            ],
            vec![
                "portal resident memory after, VmRSS (MiB)".into(),
                f1(figures.rss_mib),
            ],
            vec!["reserved cost of the fleet".into(), figures.total.clone()],
        ],
    );
}
