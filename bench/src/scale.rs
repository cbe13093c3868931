//! Scale: many tenants actually in the cluster. The portal's reconciler
//! applies them from the outbox; then list and tenant pages, resident
//! memory, and a full resync of the unchanged fleet with the writes the API
//! server received during it.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::stack::{self, Env, Portal, f1, f2, median, percentile, table};

#[derive(Debug, Clone)]
pub struct Options {
    pub tenants: i64,
    pub requests: usize,
    pub resyncs: usize,
    pub workers: Option<u16>,
    /// Leave the namespaces in the cluster instead of deleting them.
    pub keep_namespaces: bool,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub initial_apply_s: f64,
    pub first_page_ms: Vec<f64>,
    pub deep_page_ms: Vec<f64>,
    pub tenant_ms: Vec<f64>,
    pub dashboard_list_ms: Vec<f64>,
    pub dashboard_search_ms: Vec<f64>,
    pub dashboard_tenant_ms: Vec<f64>,
    pub dashboard_home_ms: Vec<f64>,
    /// VmRSS right after the initial apply, after the page figures, and after each resync.
    pub rss_after_apply_mib: f64,
    pub rss_mib: f64,
    pub rss_resync_mib: Vec<f64>,
    /// VmHWM at the end: the peak over the whole run.
    pub peak_rss_mib: f64,
    pub resync_s: Vec<f64>,
    pub resync_writes: Vec<usize>,
    pub managed_namespaces: usize,
}

pub async fn run(env: &Env, options: &Options) -> anyhow::Result<Figures> {
    let client = env.kube().await?;
    let user = env
        .kubectl(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])?
        .trim()
        .to_string();
    let portal = Portal::start(env, "scale", true, options.workers).await?;
    let result = measure(env, options, &portal, &user).await;
    portal.stop().await?;
    if options.keep_namespaces {
        eprintln!(
            "  left the namespaces in the cluster; `deploy/dev/cluster down && deploy/dev/up` \
             gives a fresh, empty cluster in seconds"
        );
        return result;
    }
    let started = Instant::now();
    let removed =
        stack::delete_namespaces(&client, &format!("s{}", env.run_id), options.timeout).await?;
    eprintln!(
        "  cleaned up {removed} namespaces in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    result
}

async fn measure(
    env: &Env,
    options: &Options,
    portal: &Portal,
    user: &str,
) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    let template = format!("s{}template", env.run_id);
    let prefix = format!("s{}x", env.run_id);
    portal.create_tenant(&template).await?;
    portal
        .wait_outbox_empty(Instant::now(), options.timeout)
        .await?;
    portal
        .clone_tenants(&template, &prefix, options.tenants - 1)
        .await?;
    let one = format!("{prefix}{:05}", options.tenants / 2);
    // An owner of three tenants among all the others: the first, the middle
    // and the last, so no scan in id order can stop early. Added before the
    // initial apply, so the resyncs find their RoleBindings in place.
    sqlx::query(
        "INSERT INTO members (tenant_id, kind, subject, role)
         SELECT id, 'user', 'owner@example.com', 'owner' FROM tenants
         WHERE id IN ((SELECT min(id) FROM tenants), (SELECT max(id) FROM tenants),
                      (SELECT id FROM tenants WHERE slug = $1))",
    )
    .bind(&one)
    .execute(&portal.db)
    .await?;
    eprintln!(
        "  {} tenants in the database; the reconciler applies them",
        options.tenants
    );
    figures.initial_apply_s = portal.resync_all(options.timeout).await?.as_secs_f64();
    eprintln!(
        "  all applied in {:.1} s ({:.1} tenants/s)",
        figures.initial_apply_s,
        options.tenants as f64 / figures.initial_apply_s
    );
    let namespaces = env.kubectl(&[
        "get",
        "namespaces",
        "-l",
        "app.kubernetes.io/managed-by=tenant-portal",
        "-o",
        "name",
    ])?;
    figures.managed_namespaces = namespaces.lines().count();
    // Let watches and the drift check settle before timing anything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    figures.rss_after_apply_mib = portal.rss_mib()?;

    let deep = crate::api::deep_page_token(portal, options.tenants * 9 / 10)
        .await
        .ok();
    figures.first_page_ms =
        stack::latencies(options.requests, || portal.get("/tenants?page_size=50")).await?;
    if let Some(deep) = deep {
        figures.deep_page_ms = stack::latencies(options.requests, || {
            portal.get(&format!("/tenants?page_size=50&page_token={deep}"))
        })
        .await?;
    }
    figures.tenant_ms =
        stack::latencies(options.requests, || portal.get(&format!("/tenants/{one}"))).await?;
    let cookie = portal
        .session("admin@example.com", &["platform-admins"])
        .await?;
    // A redirect to sign in would be timed as well as a page; make sure it is the page.
    let page = portal
        .page(&format!("/tenants/{one}"), &cookie)
        .send()
        .await?
        .text()
        .await?;
    if !page.contains(&format!("{one}-prod")) {
        bail!("the dashboard's tenant page for {one} does not show its namespaces");
    }
    figures.dashboard_list_ms =
        stack::latencies(options.requests, || portal.page("/tenants", &cookie)).await?;
    figures.dashboard_search_ms = stack::latencies(options.requests, || {
        portal.page(&format!("/tenants?q={one}"), &cookie)
    })
    .await?;
    figures.dashboard_tenant_ms = stack::latencies(options.requests, || {
        portal.page(&format!("/tenants/{one}"), &cookie)
    })
    .await?;
    let owner = portal.session("owner@example.com", &[]).await?;
    let home = portal.page("/", &owner).send().await?.text().await?;
    if !home.contains(&one) {
        bail!("the dashboard's home page for an owner of {one} does not list it");
    }
    figures.dashboard_home_ms =
        stack::latencies(options.requests, || portal.page("/", &owner)).await?;
    figures.rss_mib = portal.rss_mib()?;

    for i in 1..=options.resyncs {
        let offset = stack::audit_offset(env)?;
        let took = portal.resync_all(options.timeout).await?;
        // The audit log is written asynchronously; give it a moment.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let writes = stack::audit_writes(env, user, offset)?;
        eprintln!(
            "  resync {i}: {:.2} s, {writes} writes by {user}",
            took.as_secs_f64()
        );
        figures.resync_s.push(took.as_secs_f64());
        figures.resync_writes.push(writes);
        figures.rss_resync_mib.push(portal.rss_mib()?);
    }
    figures.peak_rss_mib = portal.peak_rss_mib()?;
    eprintln!(
        "  VmRSS after apply {:.1} MiB, after the pages {:.1} MiB, after each resync {} MiB; peak VmHWM {:.1} MiB",
        figures.rss_after_apply_mib,
        figures.rss_mib,
        mib_list(&figures.rss_resync_mib),
        figures.peak_rss_mib
    );
    Ok(figures)
}

fn mib_list(values: &[f64]) -> String {
    let values: Vec<String> = values.iter().map(|m| f1(*m)).collect();
    format!("[{}]", values.join(", "))
}

pub fn report(options: &Options, figures: &Figures, command: &str) {
    println!(
        "### Scale: {} tenants, {} managed namespaces in the cluster\n",
        options.tenants, figures.managed_namespaces
    );
    println!("`{command}`\n");
    let lat = |v: &[f64]| (f2(percentile(v, 0.5)), f2(percentile(v, 0.99)));
    let (first50, first99) = lat(&figures.first_page_ms);
    let (deep50, deep99) = lat(&figures.deep_page_ms);
    let (one50, one99) = lat(&figures.tenant_ms);
    let (list50, list99) = lat(&figures.dashboard_list_ms);
    let (search50, search99) = lat(&figures.dashboard_search_ms);
    let (page50, page99) = lat(&figures.dashboard_tenant_ms);
    let (home50, home99) = lat(&figures.dashboard_home_ms);
    let n = options.requests;
    table(
        &["figure", "value"],
        &[
            vec![
                "initial apply of all tenants by the reconciler (s)".into(),
                format!(
                    "{} ({} tenants/s)",
                    f1(figures.initial_apply_s),
                    f1(options.tenants as f64 / figures.initial_apply_s)
                ),
            ],
            vec![
                format!("list, first page of 50: p50 / p99 (ms, {n} sequential)"),
                format!("{first50} / {first99}"),
            ],
            vec![
                format!("list, deep page of 50: p50 / p99 (ms, {n} sequential)"),
                format!("{deep50} / {deep99}"),
            ],
            vec![
                format!("GET one tenant: p50 / p99 (ms, {n} sequential)"),
                format!("{one50} / {one99}"),
            ],
            vec![
                format!("dashboard tenant list (admin, first 50): p50 / p99 (ms, {n} sequential)"),
                format!("{list50} / {list99}"),
            ],
            vec![
                format!("dashboard tenant list searched by slug: p50 / p99 (ms, {n} sequential)"),
                format!("{search50} / {search99}"),
            ],
            vec![
                format!("dashboard tenant page: p50 / p99 (ms, {n} sequential)"),
                format!("{page50} / {page99}"),
            ],
            vec![
                format!("dashboard home of an owner of 3 tenants: p50 / p99 (ms, {n} sequential)"),
                format!("{home50} / {home99}"),
            ],
            vec![
                "portal resident memory after the initial apply, VmRSS (MiB)".into(),
                f1(figures.rss_after_apply_mib),
            ],
            vec![
                "portal resident memory after the page figures, VmRSS (MiB)".into(),
                f1(figures.rss_mib),
            ],
            vec![
                "portal resident memory after each resync, VmRSS (MiB)".into(),
                mib_list(&figures.rss_resync_mib),
            ],
            vec![
                "portal peak resident memory over the run, VmHWM (MiB)".into(),
                f1(figures.peak_rss_mib),
            ],
            vec![
                format!(
                    "full resync of the unchanged fleet, median of {} (s)",
                    figures.resync_s.len()
                ),
                f2(median(&figures.resync_s)),
            ],
            vec![
                "API server writes during those resyncs (each)".into(),
                format!("{:?}", figures.resync_writes),
            ],
        ],
    );
}
