//! The tenant API's cost: the same requests through the gateway
//! (`/k8s/tenants/<slug>`) and straight to the API server, in one run, with
//! the same load generator (wrk), as the same account (the tenant's
//! automation account, an editor); and a watch fan-out, timing each event
//! from its write to its arrival at every watcher. Both sides are reached
//! over TLS: the benchmark's portal serves HTTPS itself with the stack's
//! certificate, as in production.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::api::{Load, Options as WrkOptions, which, write_script, wrk_run};
use crate::cpu;
use crate::stack::{Env, Portal, f2, median, percentile, table};

#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub connections: usize,
    pub threads: usize,
    pub runs: usize,
    /// Watchers of the fan-out, and events each should see.
    pub watchers: usize,
    pub events: usize,
}

pub struct Figures {
    /// Per run: gateway and direct, for GET one and the list of 100.
    pub loads: Vec<[Load; 4]>,
    /// Per run, the same four: CPU per request of each process.
    pub cpu: Vec<[cpu::PerRequest; 4]>,
    /// Event delivery latencies (ms), through the gateway and direct.
    pub watch_gateway: Vec<f64>,
    pub watch_direct: Vec<f64>,
}

const LISTED: usize = 100;

pub async fn run(env: &Env, options: &Options) -> anyhow::Result<Figures> {
    let wrk = which("wrk").context("wrk is not installed: apt-get install -y wrk")?;
    let portal = Portal::start_https(env, "gateway", true).await?;
    let result = measure(env, options, &wrk, &portal).await;
    portal.stop().await?;
    result
}

async fn measure(
    env: &Env,
    options: &Options,
    wrk: &str,
    portal: &Portal,
) -> anyhow::Result<Figures> {
    let slug = format!("g{}", env.run_id);
    portal.create_tenant(&slug).await?;
    wait_ready(portal, &slug).await?;
    // The benchmark measures the gateway's cost, not the tenant's share.
    let share = json!({"tenant_api": {"requests_per_second": 100000, "burst": 100000, "max_in_flight": 100000, "max_watches": 100000}});
    let set = portal
        .http
        .put(format!("{}/api/v1/tenants/{slug}/policy", portal.base))
        .bearer_auth(&portal.token)
        .json(&share)
        .send()
        .await?;
    if !set.status().is_success() {
        bail!("setting the tenant's share: {}", set.text().await?);
    }
    let yaml = portal
        .post(&format!("/tenants/{slug}/kubeconfig?view=tenant"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let token = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .context("the tenant-view kubeconfig has no token")?
        .to_string();
    let namespace = format!("{slug}-dev");
    let direct_token = env
        .kubectl(&[
            "-n",
            &namespace,
            "create",
            "token",
            "tenant-automation",
            "--duration=1h",
        ])?
        .trim()
        .to_string();
    let server = env
        .kubectl(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])?
        .trim()
        .to_string();
    let manifest: String = (0..LISTED)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}\n  namespace: {namespace}\n  labels: {{bench: list}}\ndata: {{n: \"{i}\"}}\n---\n"))
        .collect();
    env.kubectl(&[
        "apply",
        "-f",
        &write_script(env, "gateway-configmaps.yaml", &manifest)?,
    ])?;

    let gateway = format!(
        "{}/k8s/tenants/{slug}/api/v1/namespaces/dev/configmaps",
        portal.base
    );
    let direct = format!("{server}/api/v1/namespaces/{namespace}/configmaps");
    let gateway_auth = write_script(
        env,
        "gateway-auth.lua",
        &format!("wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"),
    )?;
    let direct_auth = write_script(
        env,
        "direct-auth.lua",
        &format!("wrk.headers[\"Authorization\"] = \"Bearer {direct_token}\"\n"),
    )?;
    let targets = [
        (format!("{gateway}/cm-050"), &gateway_auth),
        (format!("{direct}/cm-050"), &direct_auth),
        (
            format!("{gateway}?labelSelector=bench%3Dlist"),
            &gateway_auth,
        ),
        (format!("{direct}?labelSelector=bench%3Dlist"), &direct_auth),
    ];
    let wrk_options = WrkOptions {
        tenants: 1,
        duration: options.duration,
        connections: options.connections,
        threads: options.threads,
        runs: options.runs,
    };
    let warm_up = WrkOptions {
        duration: Duration::from_secs(1),
        ..wrk_options.clone()
    };
    let mut loads = Vec::new();
    let mut cpus = Vec::new();
    for run in 1..=options.runs {
        let mut measured = Vec::new();
        let mut spent = Vec::new();
        for (i, (url, script)) in targets.iter().enumerate() {
            wrk_run(wrk, &warm_up, url, script)?;
            let meter = cpu::Meter::start(portal, &env.kubeconfig).await?;
            let load = wrk_run(wrk, &wrk_options, url, script)?;
            let used = meter
                .per_request(load.rate * options.duration.as_secs_f64())
                .await?;
            eprintln!(
                "  run {run} {:<44} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}  {}",
                ROWS[i], load.rate, load.p50_ms, load.p99_ms, load.errors, used
            );
            measured.push(load);
            spent.push(used);
        }
        loads.push([measured[0], measured[1], measured[2], measured[3]]);
        cpus.push([spent[0], spent[1], spent[2], spent[3]]);
    }

    // As a user downloads it: the portal's HTTPS URL, its CA, the token.
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&yaml)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let through_gateway: Api<ConfigMap> = Api::namespaced(kube::Client::try_from(config)?, "dev");
    let admin = env.kube().await?;
    let straight: Api<ConfigMap> = Api::namespaced(admin.clone(), &namespace);
    let writer: Api<ConfigMap> = Api::namespaced(admin, &namespace);
    let watch_gateway = fan_out(&through_gateway, &writer, options, "gw").await?;
    let watch_direct = fan_out(&straight, &writer, options, "direct").await?;
    Ok(Figures {
        loads,
        cpu: cpus,
        watch_gateway,
        watch_direct,
    })
}

/// Polls the tenant's status until it is Ready (at most a minute).
pub(crate) async fn wait_ready(portal: &Portal, slug: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let status: serde_json::Value = portal
            .get(&format!("/tenants/{slug}/status"))
            .send()
            .await?
            .json()
            .await?;
        if status["status"] == "Ready" {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("tenant {slug} not Ready in 60 s: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `watchers` watches of the namespace; `events` ConfigMaps written one
/// after another; per event and watcher, the time from the write's answer
/// to the event's arrival (ms).
async fn fan_out(
    watched: &Api<ConfigMap>,
    writer: &Api<ConfigMap>,
    options: &Options,
    tag: &str,
) -> anyhow::Result<Vec<f64>> {
    let version = writer
        .list(&Default::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let (sender, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut tasks = Vec::new();
    for _ in 0..options.watchers {
        let mut stream = watched
            .watch(&WatchParams::default().timeout(290), &version)
            .await?
            .boxed();
        let sender = sender.clone();
        let prefix = format!("watch-{tag}-");
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                if let WatchEvent::Added(object) = event
                    && let Some(name) = object.metadata.name.filter(|n| n.starts_with(&prefix))
                    && sender.send((name, Instant::now())).is_err()
                {
                    return;
                }
            }
        }));
    }
    drop(sender);
    let mut written = std::collections::HashMap::new();
    for i in 0..options.events {
        let name = format!("watch-{tag}-{i:04}");
        let object: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        writer.create(&PostParams::default(), &object).await?;
        written.insert(name, Instant::now());
    }
    let expected = options.watchers * options.events;
    let mut latencies = Vec::with_capacity(expected);
    let deadline = Instant::now() + Duration::from_secs(60);
    while latencies.len() < expected {
        let Ok(Some((name, at))) = tokio::time::timeout_at(deadline.into(), arrivals.recv()).await
        else {
            bail!(
                "the {tag} watchers saw {} of {expected} events within 60 s",
                latencies.len()
            );
        };
        if let Some(sent) = written.get(&name) {
            latencies.push(at.saturating_duration_since(*sent).as_secs_f64() * 1000.0);
        }
    }
    for task in tasks {
        task.abort();
    }
    Ok(latencies)
}

const ROWS: [&str; 4] = [
    "tenant API: GET one ConfigMap",
    "direct: GET one ConfigMap",
    "tenant API: list of 100 ConfigMaps",
    "direct: list of 100 ConfigMaps",
];

pub fn report(options: &Options, figures: &Figures, command: &str) {
    println!(
        "### Tenant API: wrk {} threads / {} connections, {} s per endpoint, {} run(s); watch fan-out {} watchers × {} events\n",
        options.threads,
        options.connections,
        options.duration.as_secs(),
        figures.loads.len(),
        options.watchers,
        options.events
    );
    println!("`{command}`\n");
    let mut rows = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        let column = |f: &dyn Fn(&Load) -> f64| {
            median(&figures.loads.iter().map(|r| f(&r[i])).collect::<Vec<_>>())
        };
        // Each gateway row against the direct row after it, within each run.
        let direct = i - i % 2 + 1;
        let ratio = median(
            &figures
                .loads
                .iter()
                .map(|r| r[i].rate / r[direct].rate)
                .collect::<Vec<_>>(),
        );
        let added = median(
            &figures
                .loads
                .iter()
                .map(|r| r[i].p50_ms - r[direct].p50_ms)
                .collect::<Vec<_>>(),
        );
        let errors: u64 = figures.loads.iter().map(|r| r[i].errors).sum();
        rows.push(vec![
            row.to_string(),
            format!("{:.0}", column(&|l| l.rate)),
            f2(column(&|l| l.p50_ms)),
            f2(column(&|l| l.p99_ms)),
            f2(ratio),
            f2(added),
            errors.to_string(),
        ]);
    }
    table(
        &[
            "endpoint",
            "req/s",
            "p50 (ms)",
            "p99 (ms)",
            "req/s ÷ direct",
            "p50 − direct (ms)",
            "non-2xx",
        ],
        &rows,
    );
    println!();
    let cpu_rows: Vec<(&str, Vec<cpu::PerRequest>)> = ROWS
        .iter()
        .enumerate()
        .map(|(i, row)| (*row, figures.cpu.iter().map(|r| r[i]).collect()))
        .collect();
    cpu::table(&cpu_rows);
    println!();
    let watch = |name: &str, values: &[f64]| {
        vec![
            name.to_string(),
            values.len().to_string(),
            f2(percentile(values, 0.5)),
            f2(percentile(values, 0.99)),
        ]
    };
    table(
        &[
            "watch fan-out",
            "deliveries",
            "p50 write → event (ms)",
            "p99 (ms)",
        ],
        &[
            watch("tenant API", &figures.watch_gateway),
            watch("direct", &figures.watch_direct),
        ],
    );
}
