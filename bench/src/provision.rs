//! Provisioning: N tenants with two namespaces each, C at a time, through the
//! portal's API and, as baselines on the same control plane, by applying the
//! same rendered objects directly with kube-rs and with kubectl.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use tenant_portal::cluster::guardrails::{self, Guardrails};
use tenant_portal::cluster::objects::ObjectKey;
use tenant_portal::cluster::render::render;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::cpu;
use crate::stack::{self, Env, Portal, f1, f2, median, percentile, table};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Portal,
    Direct,
    /// The direct apply while this benchmark holds the watches the portal
    /// holds for drift detection, decoding every event as the portal does.
    Watched,
    /// Each object created (POST) rather than applied.
    Created,
    Kubectl,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Portal => "portal (REST API -> Ready)",
            Mode::Direct => "kube-rs server-side apply",
            Mode::Watched => "kube-rs apply, watched",
            Mode::Created => "kube-rs create",
            Mode::Kubectl => "kubectl apply --server-side",
        }
    }

    fn letter(self) -> char {
        match self {
            Mode::Portal => 'p',
            Mode::Direct => 'd',
            Mode::Watched => 'w',
            Mode::Created => 'n',
            Mode::Kubectl => 'c',
        }
    }
}

/// One mode's figures from one run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub mode: Mode,
    pub total: Duration,
    /// Per tenant, from the first request to Ready, in ms.
    pub latencies: Vec<f64>,
    pub cpu: CpuUse,
    /// The portal's time per tenant in each step, in ms (empty for the baselines).
    pub steps: Vec<(String, f64)>,
}

/// CPU seconds used during one mode's run, by who used them.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// etcd, kube-apiserver and the controller manager.
    pub control_plane: f64,
    /// The client under test: the portal process, or this benchmark for the
    /// direct apply (kubectl's processes are not counted).
    pub client: f64,
    /// The portal database's PostgreSQL backends.
    pub database: f64,
    /// This benchmark while it drives the portal: its POSTs, and the Ready
    /// poller with the PostgreSQL backends that answer it.
    pub driver: f64,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.total.as_secs_f64()
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub tenants: usize,
    pub concurrency: usize,
    pub runs: usize,
    pub workers: Option<u16>,
    pub modes: Vec<Mode>,
    pub timeout: Duration,
    /// The private control plane (`deploy/dev/cluster up NAME`) to recreate
    /// after each phase instead of waiting for its namespaces to be deleted.
    pub fresh_cluster: Option<String>,
}

pub async fn run(env: &Env, options: &Options) -> anyhow::Result<Vec<Vec<Outcome>>> {
    let client = env.kube().await?;
    if options.fresh_cluster.is_some() {
        settle(&cpu::ControlPlane::of_kubeconfig(&env.kubeconfig)).await;
    }
    let mut runs = Vec::new();
    for run in 1..=options.runs {
        let mut outcomes = Vec::new();
        // Each run starts with the next client, so none always comes first
        // or last: on this shared machine a phase's place in the run moves
        // its figures more than some differences being measured.
        let mut order = options.modes.clone();
        let first = (run - 1) % order.len().max(1);
        order.rotate_left(first);
        for &mode in &order {
            let prefix = format!("{}{}{run}", mode.letter(), env.run_id);
            // Every client meets the same admission policies, also on a
            // control plane no portal has started on yet.
            guardrails::install(&env.kube().await?, &Guardrails::default().objects())
                .await
                .map_err(|e| anyhow::anyhow!("installing the admission policies: {e}"))?;
            let control_plane = cpu::ControlPlane::of_kubeconfig(&env.kubeconfig);
            let outcome = match mode {
                Mode::Portal => {
                    let portal =
                        Portal::start(env, &format!("prov{run}"), true, options.workers).await?;
                    let result =
                        measured_portal(env, options, &prefix, &portal, &control_plane).await;
                    portal.stop().await?;
                    result?
                }
                _ => {
                    let watches = match mode {
                        Mode::Watched => Some(watch_as_the_portal(env).await?),
                        _ => None,
                    };
                    let (plane, own) = (control_plane.seconds(), cpu::own());
                    let mut outcome = provision(env, options, mode, &prefix, None).await?;
                    outcome.cpu.control_plane = control_plane.seconds() - plane;
                    if let Some(mut watches) = watches {
                        watches.abort_all();
                    }
                    if mode != Mode::Kubectl {
                        outcome.cpu.client = cpu::own() - own;
                    }
                    outcome
                }
            };
            let per_tenant = |seconds: f64| seconds * 1000.0 / options.tenants as f64;
            eprintln!(
                "  run {run} {:<28} {:>8.2} s  {:>7.1} tenants/s  p50 {:>7.1} ms  p99 {:>7.1} ms  \
                 CPU ms/tenant: control plane {:.1}, client {:.1}, PostgreSQL {:.1}, driver {:.1}",
                mode.name(),
                outcome.total.as_secs_f64(),
                outcome.rate(),
                percentile(&outcome.latencies, 0.5),
                percentile(&outcome.latencies, 0.99),
                per_tenant(outcome.cpu.control_plane),
                per_tenant(outcome.cpu.client),
                per_tenant(outcome.cpu.database),
                per_tenant(outcome.cpu.driver),
            );
            outcomes.push(outcome);
            let started = Instant::now();
            match &options.fresh_cluster {
                Some(name) => {
                    recreate_cluster(name)?;
                    settle(&cpu::ControlPlane::of_kubeconfig(&env.kubeconfig)).await;
                    eprintln!(
                        "  recreated control plane {name} in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                None => {
                    let removed =
                        stack::delete_namespaces(&client, &prefix, options.timeout).await?;
                    eprintln!(
                        "  cleaned up {removed} namespaces in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
        runs.push(outcomes);
    }
    Ok(runs)
}

/// Stops the private control plane `name` and starts it again empty (new
/// certificates and ports; its kubeconfig stays where it was).
fn recreate_cluster(name: &str) -> anyhow::Result<()> {
    for verb in ["down", "up"] {
        let status = std::process::Command::new("deploy/dev/cluster")
            .args([verb, name])
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            bail!("deploy/dev/cluster {verb} {name} failed");
        }
    }
    Ok(())
}

/// Waits (at most a minute) until a control plane just started has finished
/// its own start-up work, under a tenth of a core for three seconds running:
/// a new API server spends its first ten seconds or more building its
/// caches and documents, which a phase started at once would be charged.
async fn settle(control_plane: &cpu::ControlPlane) {
    let started = Instant::now();
    let mut quiet = 0;
    let mut used = control_plane.seconds();
    while quiet < 3 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = control_plane.seconds();
        quiet = if now - used < 0.1 { quiet + 1 } else { 0 };
        used = now;
    }
    eprintln!(
        "  control plane settled after {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// [`provision`] through the portal, with the CPU each process used and the
/// portal's time per tenant in each step, read from its metrics.
async fn measured_portal(
    env: &Env,
    options: &Options,
    prefix: &str,
    portal: &Portal,
    control_plane: &cpu::ControlPlane,
) -> anyhow::Result<Outcome> {
    let plane = control_plane.seconds();
    let client = cpu::seconds(portal.pid());
    let (database, poller) = cpu::database_backends(&portal.db, portal.db_name()).await?;
    let own = cpu::own();
    let before = portal.metrics().await?;
    let mut outcome = provision(env, options, Mode::Portal, prefix, Some(portal)).await?;
    let (database_after, poller_after) =
        cpu::database_backends(&portal.db, portal.db_name()).await?;
    outcome.cpu = CpuUse {
        control_plane: control_plane.seconds() - plane,
        client: cpu::seconds(portal.pid()) - client,
        database: database_after - database,
        driver: cpu::own() - own + poller_after - poller,
    };
    let after = portal.metrics().await?;
    let tenants = options.tenants as f64;
    let per_tenant = |sum: &str| (metric(&after, sum) - metric(&before, sum)) * 1000.0 / tenants;
    outcome.steps = STEPS
        .iter()
        .map(|(step, series)| (step.to_string(), per_tenant(series)))
        .collect();
    Ok(outcome)
}

/// The portal's steps for one tenant and the series that sums their time.
const STEPS: [(&str, &str); 5] = [
    (
        "POST /tenants (one transaction)",
        r#"http_request_duration_seconds_sum{method="POST",route="/api/v1/tenants",status="201"}"#,
    ),
    (
        "outbox claim",
        r#"reconcile_phase_duration_seconds_sum{phase="claim"}"#,
    ),
    (
        "load tenant",
        r#"reconcile_phase_duration_seconds_sum{phase="load"}"#,
    ),
    (
        "server-side applies of its objects",
        r#"reconcile_phase_duration_seconds_sum{phase="apply"}"#,
    ),
    (
        "record status, audit, change event",
        r#"reconcile_phase_duration_seconds_sum{phase="record"}"#,
    ),
];

/// The value of one series in Prometheus' text format; 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn provision(
    env: &Env,
    options: &Options,
    mode: Mode,
    prefix: &str,
    portal: Option<&Portal>,
) -> anyhow::Result<Outcome> {
    let client = env.kube().await?;
    let ready = match portal {
        Some(p) => Some(ReadyWatch::start(p.db.clone()).await?),
        None => None,
    };
    let limit = Arc::new(Semaphore::new(options.concurrency));
    let mut tasks = JoinSet::new();
    let mut latencies = Vec::with_capacity(options.tenants);
    let started = Instant::now();
    for i in 0..options.tenants {
        let permit = limit.clone().acquire_owned().await?;
        let slug = format!("{prefix}x{i:05}");
        let client = client.clone();
        let env = env.clone();
        let portal = portal.map(|p| (p.post("/tenants"), p.base.clone()));
        let ready = ready.clone();
        tasks.spawn(async move {
            let began = Instant::now();
            let result = match (mode, portal, ready) {
                (Mode::Portal, Some((request, _)), Some(ready)) => {
                    create_via_api(request, &ready, &slug).await
                }
                (Mode::Direct | Mode::Watched, ..) => apply_direct(&client, &slug).await,
                (Mode::Created, ..) => create_direct(&client, &slug).await,
                (Mode::Kubectl, ..) => {
                    tokio::task::spawn_blocking(move || apply_kubectl(&env, &slug)).await?
                }
                _ => bail!("portal mode without a portal"),
            };
            drop(permit);
            result.map(|()| began.elapsed().as_secs_f64() * 1000.0)
        });
        // Collect finished tenants as we go, and fail fast on an error.
        while let Some(done) = tasks.try_join_next() {
            latencies.push(done??);
        }
        if started.elapsed() > options.timeout {
            bail!("{} did not finish in {:?}", mode.name(), options.timeout);
        }
    }
    while let Some(done) = tokio::time::timeout(options.timeout, tasks.join_next())
        .await
        .context("timed out waiting for tenants to become Ready")?
    {
        latencies.push(done??);
    }
    let total = started.elapsed();
    Ok(Outcome {
        mode,
        total,
        latencies,
        cpu: CpuUse::default(),
        steps: Vec::new(),
    })
}

/// POST the tenant, then wait until the database the API reads says Ready.
async fn create_via_api(
    request: reqwest::RequestBuilder,
    ready: &ReadyWatch,
    slug: &str,
) -> anyhow::Result<()> {
    let waiter = ready.expect(slug);
    let response = request.json(&stack::tenant_body(slug)).send().await?;
    let status = response.status();
    if status != reqwest::StatusCode::CREATED {
        bail!("POST /tenants {slug}: {status}: {}", response.text().await?);
    }
    waiter.await.context("ready watch stopped")?;
    Ok(())
}

/// Where a rendered object lives: its kind, in its namespace if it has one.
fn object_api(client: &kube::Client, key: &ObjectKey) -> Api<DynamicObject> {
    let resource = key.kind.api_resource();
    match &key.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

async fn apply_direct(client: &kube::Client, slug: &str) -> anyhow::Result<()> {
    let params = PatchParams::apply("bench-direct").force();
    for object in render(&stack::tenant_state(slug, &Default::default())?) {
        object_api(client, &object.key)
            .patch(&object.key.name, &params, &Patch::Apply(&object.body))
            .await
            .with_context(|| format!("apply {}", object.key))?;
    }
    Ok(())
}

async fn create_direct(client: &kube::Client, slug: &str) -> anyhow::Result<()> {
    let params = PostParams {
        field_manager: Some("bench-direct".into()),
        ..Default::default()
    };
    for object in render(&stack::tenant_state(slug, &Default::default())?) {
        let body: DynamicObject = serde_json::from_value(object.body)?;
        object_api(client, &object.key)
            .create(&params, &body)
            .await
            .with_context(|| format!("create {}", object.key))?;
    }
    Ok(())
}

/// The portal's watches (every managed kind, by its label), each event
/// decoded into an object as the portal's watch decodes it, then dropped.
/// Returns once every watch has listed and is watching.
async fn watch_as_the_portal(env: &Env) -> anyhow::Result<JoinSet<()>> {
    use futures::StreamExt;
    use kube::runtime::watcher;
    use tenant_portal::cluster::objects::{Kind, MANAGED_SELECTOR};
    let (listed, mut all_listed) = tokio::sync::mpsc::channel(Kind::ALL.len());
    let mut watches = JoinSet::new();
    for kind in Kind::ALL {
        let api: Api<DynamicObject> = Api::all_with(env.kube().await?, &kind.api_resource());
        let listed = listed.clone();
        watches.spawn(async move {
            let events = watcher(api, watcher::Config::default().labels(MANAGED_SELECTOR));
            events
                .for_each(|event| {
                    if let Ok(watcher::Event::InitDone) = event {
                        let _ = listed.try_send(());
                    }
                    async {}
                })
                .await;
        });
    }
    for _ in Kind::ALL {
        tokio::time::timeout(Duration::from_secs(30), all_listed.recv())
            .await
            .context("the benchmark's watches did not start in 30 s")?;
    }
    Ok(watches)
}

/// One `kubectl apply --server-side` of a multi-document file per tenant.
fn apply_kubectl(env: &Env, slug: &str) -> anyhow::Result<()> {
    let documents: Vec<String> = render(&stack::tenant_state(slug, &Default::default())?)
        .iter()
        .map(|o| o.body.to_string())
        .collect();
    let path = env.work.join(format!("{slug}.yaml"));
    std::fs::write(&path, documents.join("\n---\n"))?;
    let path_text = path.to_string_lossy().into_owned();
    env.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        "bench-kubectl",
        "-o",
        "name",
        "-f",
        &path_text,
    ])?;
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Tells each waiter when its tenant is Ready. It listens to the portal's
/// change stream (`tenant_events`, whose payload names the tenant) and reads
/// the rows of the tenants just named that someone waits for, as a platform
/// following the stream would; every second it also reads all it waits for,
/// in case a notification was lost.
#[derive(Clone)]
struct ReadyWatch {
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
}

impl ReadyWatch {
    /// Listens before returning, so no change of the phase goes unheard.
    async fn start(db: sqlx::PgPool) -> anyhow::Result<Self> {
        let watch = Self {
            waiting: Arc::default(),
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(&db).await?;
        listener.listen("tenant_events").await?;
        let weak = Arc::downgrade(&watch.waiting);
        tokio::spawn(async move {
            while weak.strong_count() > 0 {
                let heard = tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await;
                // The tenants the stream just named; `None`: look at all
                // (nothing heard for a second, or the connection dropped).
                let named = match heard {
                    Ok(Ok(Some(first))) => {
                        let mut named = std::collections::HashSet::new();
                        let mut next = Some(first);
                        while let Some(notification) = next {
                            if let Some((_, slug)) = notification.payload().split_once(' ') {
                                named.insert(slug.to_string());
                            }
                            next = listener.next_buffered();
                        }
                        Some(named)
                    }
                    Ok(Ok(None) | Err(_)) | Err(_) => None,
                };
                let Some(waiting) = weak.upgrade() else { break };
                let slugs: Vec<String> = match (waiting.lock(), named) {
                    (Ok(w), None) => w.keys().cloned().collect(),
                    (Ok(w), Some(named)) => {
                        named.into_iter().filter(|s| w.contains_key(s)).collect()
                    }
                    (Err(_), _) => break,
                };
                if slugs.is_empty() {
                    continue;
                }
                let ready: Vec<String> = sqlx::query_scalar(
                    "SELECT slug FROM tenants WHERE slug = ANY($1)
                       AND sync_status = 'Ready' AND observed_generation >= generation",
                )
                .bind(&slugs)
                .fetch_all(&db)
                .await
                .unwrap_or_default();
                if let Ok(mut waiting) = waiting.lock() {
                    for slug in ready {
                        if let Some(tx) = waiting.remove(&slug) {
                            let _ = tx.send(());
                        }
                    }
                }
            }
        });
        Ok(watch)
    }

    fn expect(&self, slug: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(slug.to_string(), tx);
        }
        rx
    }
}

/// Figures of several runs: per mode the median over runs, and the ratios
/// portal ÷ direct and kubectl ÷ direct, each taken within a run.
pub fn report(options: &Options, runs: &[Vec<Outcome>], command: &str) {
    println!(
        "### Provisioning: {} tenants x 2 namespaces, concurrency {}, {} run(s)\n",
        options.tenants,
        options.concurrency,
        runs.len()
    );
    println!("`{command}`\n");
    let with_created = options.modes.contains(&Mode::Created);
    let mut rows = Vec::new();
    for &mode in &options.modes {
        let of_mode: Vec<&Outcome> = runs.iter().flatten().filter(|o| o.mode == mode).collect();
        let total = median(
            &of_mode
                .iter()
                .map(|o| o.total.as_secs_f64())
                .collect::<Vec<_>>(),
        );
        let rate = median(&of_mode.iter().map(|o| o.rate()).collect::<Vec<_>>());
        let p50 = median(
            &of_mode
                .iter()
                .map(|o| percentile(&o.latencies, 0.5))
                .collect::<Vec<_>>(),
        );
        let p99 = median(
            &of_mode
                .iter()
                .map(|o| percentile(&o.latencies, 0.99))
                .collect::<Vec<_>>(),
        );
        // Each ratio taken within a run, then the median over runs.
        let ratio_to = |base: Mode| {
            let ratio = median(
                &runs
                    .iter()
                    .filter_map(|run| {
                        let this = run.iter().find(|o| o.mode == mode)?;
                        let base = run.iter().find(|o| o.mode == base)?;
                        Some(this.total.as_secs_f64() / base.total.as_secs_f64())
                    })
                    .collect::<Vec<_>>(),
            );
            if ratio.is_nan() {
                "-".into()
            } else {
                f2(ratio)
            }
        };
        let mut row = vec![
            mode.name().to_string(),
            f2(total),
            f1(rate),
            f1(p50),
            f1(p99),
            ratio_to(Mode::Direct),
        ];
        if with_created {
            row.push(ratio_to(Mode::Created));
        }
        rows.push(row);
    }
    let mut header = vec![
        "client",
        "all Ready (s)",
        "tenants/s",
        "p50 to Ready (ms)",
        "p99 to Ready (ms)",
        "time ÷ direct",
    ];
    if with_created {
        header.push("time ÷ create");
    }
    table(&header, &rows);
    breakdown(options, runs);
}

/// Where each client's time goes: the CPU every process used per tenant
/// (the machine is CPU-bound at concurrency 16), and the portal's own
/// steps per tenant; medians over the runs.
fn breakdown(options: &Options, runs: &[Vec<Outcome>]) {
    let tenants = options.tenants as f64;
    let of_mode = |mode: Mode| -> Vec<&Outcome> {
        runs.iter().flatten().filter(|o| o.mode == mode).collect()
    };
    let per_tenant = |outcomes: &[&Outcome], part: fn(&CpuUse) -> f64| {
        median(
            &outcomes
                .iter()
                .map(|o| part(&o.cpu) * 1000.0 / tenants)
                .collect::<Vec<_>>(),
        )
    };
    let mut rows = Vec::new();
    for &mode in &options.modes {
        if mode == Mode::Kubectl {
            continue;
        }
        let outcomes = of_mode(mode);
        let total = |c: &CpuUse| c.control_plane + c.client + c.database + c.driver;
        rows.push(vec![
            mode.name().to_string(),
            f2(per_tenant(&outcomes, |c| c.control_plane)),
            f2(per_tenant(&outcomes, |c| c.client)),
            f2(per_tenant(&outcomes, |c| c.database)),
            f2(per_tenant(&outcomes, |c| c.driver)),
            f2(per_tenant(&outcomes, total)),
        ]);
    }
    println!("\nCPU per tenant (ms; the machine has 2 cores):\n");
    table(
        &[
            "client",
            "control plane",
            "client process",
            "PostgreSQL (portal's database)",
            "benchmark driving the portal (with its queries)",
            "sum",
        ],
        &rows,
    );
    let portal = of_mode(Mode::Portal);
    if portal.is_empty() {
        return;
    }
    let steps: Vec<Vec<String>> = STEPS
        .iter()
        .enumerate()
        .map(|(i, (step, _))| {
            let ms = median(
                &portal
                    .iter()
                    .filter_map(|o| o.steps.get(i).map(|(_, ms)| *ms))
                    .collect::<Vec<_>>(),
            );
            vec![step.to_string(), f2(ms)]
        })
        .collect();
    println!("\nThe portal's wall time per tenant in each step (ms, from its metrics):\n");
    table(&["step", "ms per tenant"], &steps);
}
