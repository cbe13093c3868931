//! Provisioning: N tenants with two namespaces each, C at a time, through the
//! portal's API and, as baselines on the same control plane, by applying the
//! same rendered objects directly with kube-rs and with kubectl.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use tenant_portal::cluster::render::render;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::stack::{self, Env, Portal, f1, f2, median, percentile, table};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Portal,
    Direct,
    Kubectl,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Portal => "portal (REST API -> Ready)",
            Mode::Direct => "kube-rs server-side apply",
            Mode::Kubectl => "kubectl apply --server-side",
        }
    }

    fn letter(self) -> char {
        match self {
            Mode::Portal => 'p',
            Mode::Direct => 'd',
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
}

pub async fn run(env: &Env, options: &Options) -> anyhow::Result<Vec<Vec<Outcome>>> {
    let client = env.kube().await?;
    let mut runs = Vec::new();
    for run in 1..=options.runs {
        let mut outcomes = Vec::new();
        for &mode in &options.modes {
            let prefix = format!("{}{}{run}", mode.letter(), env.run_id);
            let outcome = match mode {
                Mode::Portal => {
                    let portal =
                        Portal::start(env, &format!("prov{run}"), true, options.workers).await?;
                    let result = provision(env, options, mode, &prefix, Some(&portal)).await;
                    portal.stop().await?;
                    result?
                }
                _ => provision(env, options, mode, &prefix, None).await?,
            };
            eprintln!(
                "  run {run} {:<28} {:>8.2} s  {:>7.1} tenants/s  p50 {:>7.1} ms  p99 {:>7.1} ms",
                mode.name(),
                outcome.total.as_secs_f64(),
                outcome.rate(),
                percentile(&outcome.latencies, 0.5),
                percentile(&outcome.latencies, 0.99)
            );
            outcomes.push(outcome);
            let started = Instant::now();
            let removed = stack::delete_namespaces(&client, &prefix, options.timeout).await?;
            eprintln!(
                "  cleaned up {removed} namespaces in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        runs.push(outcomes);
    }
    Ok(runs)
}

async fn provision(
    env: &Env,
    options: &Options,
    mode: Mode,
    prefix: &str,
    portal: Option<&Portal>,
) -> anyhow::Result<Outcome> {
    let client = env.kube().await?;
    let ready = portal.map(|p| ReadyWatch::start(p.db.clone()));
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
                (Mode::Direct, ..) => apply_direct(&client, &slug).await,
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

async fn apply_direct(client: &kube::Client, slug: &str) -> anyhow::Result<()> {
    let params = PatchParams::apply("bench-direct").force();
    for object in render(&stack::tenant_state(slug, &Default::default())?) {
        let resource = object.key.kind.api_resource();
        let api: Api<DynamicObject> = match &object.key.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.patch(&object.key.name, &params, &Patch::Apply(&object.body))
            .await
            .with_context(|| format!("apply {}", object.key))?;
    }
    Ok(())
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

/// Watches the tenants table for tenants turning Ready, polling every 5 ms
/// while someone waits, and tells each waiter when its tenant is.
#[derive(Clone)]
struct ReadyWatch {
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
}

impl ReadyWatch {
    fn start(db: sqlx::PgPool) -> Self {
        let watch = Self {
            waiting: Arc::default(),
        };
        let weak = Arc::downgrade(&watch.waiting);
        tokio::spawn(async move {
            while let Some(waiting) = weak.upgrade() {
                let slugs: Vec<String> = waiting
                    .lock()
                    .map(|w| w.keys().cloned().collect())
                    .unwrap_or_default();
                if !slugs.is_empty() {
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
                drop(waiting);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        watch
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
        let ratio = median(
            &runs
                .iter()
                .filter_map(|run| {
                    let this = run.iter().find(|o| o.mode == mode)?;
                    let direct = run.iter().find(|o| o.mode == Mode::Direct)?;
                    Some(this.total.as_secs_f64() / direct.total.as_secs_f64())
                })
                .collect::<Vec<_>>(),
        );
        rows.push(vec![
            mode.name().to_string(),
            f2(total),
            f1(rate),
            f1(p50),
            f1(p99),
            if ratio.is_nan() {
                "-".into()
            } else {
                f2(ratio)
            },
        ]);
    }
    table(
        &[
            "client",
            "all Ready (s)",
            "tenants/s",
            "p50 to Ready (ms)",
            "p99 to Ready (ms)",
            "time ÷ direct",
        ],
        &rows,
    );
}
