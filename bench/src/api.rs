//! API throughput: wrk on loopback against a portal whose database holds
//! many tenants (reconciler off), and against the kube-apiserver serving one
//! namespace as the reference.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cpu;
use crate::stack::{self, Env, Portal, f2, median, table};

#[derive(Debug, Clone)]
pub struct Options {
    pub tenants: i64,
    pub duration: Duration,
    pub connections: usize,
    pub threads: usize,
    pub runs: usize,
}

/// What wrk measured for one endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

impl Load {
    /// A target left out (`TP_BENCH_API_ONLY`).
    const SKIPPED: Self = Self {
        rate: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
    };
}

/// One endpoint's run: what wrk measured, and what each process spent.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub load: Load,
    pub cpu: cpu::PerRequest,
}

/// What is measured, each with the row its rate is compared with: one
/// object against one namespace, a page of 50 against 50 namespaces.
const TARGETS: [(&str, usize); 7] = [
    ("GET /api/v1/tenants/{slug}", GET_REFERENCE),
    (
        "GET /api/v1/tenants?page_size=50 (first page)",
        LIST_REFERENCE,
    ),
    (
        "GET /api/v1/tenants?page_size=50&page_token=… (deep page)",
        LIST_REFERENCE,
    ),
    (
        "GET /api/v1/tenants?page_size=50&q={slug} (searched)",
        LIST_REFERENCE,
    ),
    ("POST /api/v1/tenants (2 namespaces)", GET_REFERENCE),
    (
        "reference: kube-apiserver GET /api/v1/namespaces/{name}",
        GET_REFERENCE,
    ),
    (
        "reference: kube-apiserver GET /api/v1/namespaces?limit=50",
        LIST_REFERENCE,
    ),
];
const GET_REFERENCE: usize = 5;
const LIST_REFERENCE: usize = 6;
/// Namespaces the list reference pages through.
const REFERENCE_NAMESPACES: usize = 60;

/// Short names of the targets, in [`TARGETS`] order, for `TP_BENCH_API_ONLY`.
const TARGET_NAMES: [&str; 7] = [
    "get", "first", "deep", "searched", "post", "ref-get", "ref-list",
];

/// `TP_BENCH_API_ONLY=post,ref-get`: measure only these targets (the others
/// are left out of the table); unset: all of them.
fn only() -> anyhow::Result<Option<Vec<bool>>> {
    let Ok(list) = std::env::var("TP_BENCH_API_ONLY") else {
        return Ok(None);
    };
    let mut wanted = [false; 7];
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let i = TARGET_NAMES
            .iter()
            .position(|t| *t == name)
            .with_context(|| {
                format!("TP_BENCH_API_ONLY: unknown target {name:?}; use {TARGET_NAMES:?}")
            })?;
        wanted[i] = true;
    }
    Ok(Some(wanted.to_vec()))
}

/// `TP_BENCH_API_CLUSTERS=N`: the portal is configured with N clusters
/// (`local`, `c2`, `c3`, ...), all names for the stack's one API server, so
/// that placement spreads the POSTs over N rows of `clusters` (what the
/// database does per cluster) without starting further control planes.
fn cluster_names(env: &Env) -> anyhow::Result<Vec<(String, String)>> {
    let n: usize = match std::env::var("TP_BENCH_API_CLUSTERS") {
        Ok(n) => n
            .parse()
            .context("TP_BENCH_API_CLUSTERS must be a number")?,
        Err(_) => 1,
    };
    Ok((1..=n.max(1))
        .map(|i| {
            let name = if i == 1 {
                "local".to_string()
            } else {
                format!("c{i}")
            };
            (name, env.kubeconfig.clone())
        })
        .collect())
}

pub async fn run(env: &Env, options: &Options) -> anyhow::Result<Vec<Vec<Measured>>> {
    let wrk = which("wrk").context("wrk is not installed: apt-get install -y wrk")?;
    let clusters = cluster_names(env)?;
    if clusters.len() > 1 {
        eprintln!(
            "  {} clusters configured on the one API server (TP_BENCH_API_CLUSTERS)",
            clusters.len()
        );
    }
    let portal = Portal::start_on(env, "api", false, None, &clusters).await?;
    let result = measure(env, options, &wrk, &portal).await;
    portal.stop().await?;
    result
}

async fn measure(
    env: &Env,
    options: &Options,
    wrk: &str,
    portal: &Portal,
) -> anyhow::Result<Vec<Vec<Measured>>> {
    let prefix = format!("a{}x", env.run_id);
    let template = format!("a{}template", env.run_id);
    portal.create_tenant(&template).await?;
    let started = std::time::Instant::now();
    portal
        .clone_tenants(&template, &prefix, options.tenants - 1)
        .await?;
    eprintln!(
        "  inserted {} tenants in {:.1} s",
        options.tenants,
        started.elapsed().as_secs_f64()
    );
    let one = format!("{prefix}{:05}", options.tenants / 2);
    let deep = deep_page_token(portal, options.tenants * 9 / 10).await?;
    let (server, reference_token) = apiserver_reference(env)?;

    let auth = write_script(
        env,
        "auth.lua",
        &format!(
            "wrk.headers[\"Authorization\"] = \"Bearer {}\"\n",
            portal.token
        ),
    )?;
    let kube_auth = write_script(
        env,
        "kube-auth.lua",
        &format!("wrk.headers[\"Authorization\"] = \"Bearer {reference_token}\"\n"),
    )?;
    let mut body = stack::tenant_body("SLUG");
    body["slug"] = "%s".into();
    let api = format!("{}/api/v1", portal.base);
    let mut runs = Vec::new();
    for run in 1..=options.runs {
        // Slugs carry the run id, run number and whether it is the warm-up,
        // so no request of any run collides with another.
        let post_run = write_script(
            env,
            &format!("post-{run}.lua"),
            &post_script(portal, env, &body, &run.to_string()),
        )?;
        let post_warm = write_script(
            env,
            &format!("post-{run}u.lua"),
            &post_script(portal, env, &body, &format!("{run}u")),
        )?;
        // URL, script, and the script for the uncounted warm-up.
        let deep_url = format!("{api}/tenants?page_size=50&page_token={deep}");
        let targets = [
            (format!("{api}/tenants/{one}"), &auth, &auth),
            (format!("{api}/tenants?page_size=50"), &auth, &auth),
            (deep_url, &auth, &auth),
            (format!("{api}/tenants?page_size=50&q={one}"), &auth, &auth),
            (format!("{api}/tenants"), &post_run, &post_warm),
            (
                format!("{server}/api/v1/namespaces/bench-reference"),
                &kube_auth,
                &kube_auth,
            ),
            (
                format!(
                    "{server}/api/v1/namespaces?labelSelector=tenant-portal-bench%2Freference&limit=50"
                ),
                &kube_auth,
                &kube_auth,
            ),
        ];
        let wanted = only()?;
        let mut loads = Vec::new();
        for (i, (url, script, warm_script)) in targets.iter().enumerate() {
            if wanted.as_ref().is_some_and(|w| !w[i]) {
                loads.push(Measured {
                    load: Load::SKIPPED,
                    cpu: cpu::PerRequest::default(),
                });
                continue;
            }
            // One second of warm-up (connections, pools, caches) that is not counted.
            let warm_up = Options {
                duration: Duration::from_secs(1),
                ..options.clone()
            };
            wrk_run(wrk, &warm_up, url, warm_script)?;
            let meter = cpu::Meter::start(portal, &env.kubeconfig).await?;
            let load = wrk_run(wrk, options, url, script)?;
            let used = meter
                .per_request(load.rate * options.duration.as_secs_f64())
                .await?;
            eprintln!(
                "  run {run} {:<58} {:>8.0} req/s  p99 {:>6.2} ms  errors {}  {used}",
                TARGETS[i].0, load.rate, load.p99_ms, load.errors
            );
            loads.push(Measured { load, cpu: used });
        }
        runs.push(loads);
    }
    Ok(runs)
}

/// A wrk script that POSTs tenants with slugs `w<run id><tag><thread>x<n>`.
fn post_script(portal: &Portal, env: &Env, body: &Value, tag: &str) -> String {
    format!(
        r#"local n = 0
function setup(thread)
  n = n + 1
  thread:set("tid", n)
end
local counter = 0
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/json"
function request()
  counter = counter + 1
  local slug = string.format("w{run_id}{tag}%dx%d", tid, counter)
  return wrk.format(nil, nil, nil, string.format([[{body}]], slug))
end
"#,
        token = portal.token,
        run_id = env.run_id,
    )
}

/// A page token from `position` tenants into the list, found by paging.
pub async fn deep_page_token(portal: &Portal, position: i64) -> anyhow::Result<String> {
    let mut token: Option<String> = None;
    let mut seen = 0;
    while seen < position {
        // Page tokens are URL-safe base64: they go into the URL as they are.
        let size = (position - seen).min(500);
        let path = match &token {
            Some(t) => format!("/tenants?page_size={size}&page_token={t}"),
            None => format!("/tenants?page_size={size}"),
        };
        let page: Value = portal
            .get(&path)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        seen += page["items"].as_array().map_or(0, |i| i.len() as i64);
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    token.context("the list has no second page")
}

/// The API server's URL and a token of a ServiceAccount allowed to read
/// namespaces, so wrk can authenticate like any client. Namespace
/// `bench-reference` is the one read; it and its numbered siblings, all
/// labelled, are the list.
fn apiserver_reference(env: &Env) -> anyhow::Result<(String, String)> {
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
    let manifest: String = (0..REFERENCE_NAMESPACES)
        .map(|i| {
            let name = match i {
                0 => "bench-reference".to_string(),
                i => format!("bench-reference-{i:02}"),
            };
            format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    tenant-portal-bench/reference: \"true\"\n---\n"
            )
        })
        .collect();
    let file = write_script(env, "reference-namespaces.yaml", &manifest)?;
    env.kubectl(&["apply", "-f", &file])?;
    let _ = env.kubectl(&[
        "-n",
        "bench-reference",
        "create",
        "serviceaccount",
        "reader",
    ]);
    let _ = env.kubectl(&[
        "create",
        "clusterrolebinding",
        "bench-reference-reader",
        "--clusterrole=view",
        "--serviceaccount=bench-reference:reader",
    ]);
    let token = env
        .kubectl(&[
            "-n",
            "bench-reference",
            "create",
            "token",
            "reader",
            "--duration=1h",
        ])?
        .trim()
        .to_string();
    Ok((server, token))
}

pub fn write_script(env: &Env, name: &str, text: &str) -> anyhow::Result<String> {
    let path = env.work.join(format!("{}-{name}", env.run_id));
    std::fs::write(&path, text)?;
    Ok(path.to_string_lossy().into_owned())
}

pub fn which(program: &str) -> Option<String> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|dir| format!("{dir}/{program}"))
        .find(|path| std::path::Path::new(path).exists())
}

pub fn wrk_run(wrk: &str, options: &Options, url: &str, script: &str) -> anyhow::Result<Load> {
    let out = Command::new(wrk)
        .args(["-t", &options.threads.to_string()])
        .args(["-c", &options.connections.to_string()])
        .args(["-d", &format!("{}s", options.duration.as_secs().max(1))])
        .args(["--timeout", "10s", "--latency", "-s", script, url])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<Load> {
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let rate = field("Requests/sec:")?.parse().ok()?;
    let p50_ms = duration_ms(field("50%")?)?;
    let p99_ms = duration_ms(field("99%")?)?;
    let errors = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + field("Socket errors:").map_or(0, |v| {
            v.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        });
    Some(Load {
        rate,
        p50_ms,
        p99_ms,
        errors,
    })
}

fn duration_ms(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("m") {
        (n, 60_000.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.trim().parse::<f64>().ok().map(|n| n * factor)
}

pub fn report(options: &Options, runs: &[Vec<Measured>], command: &str) {
    println!(
        "### API: {} tenants in the database, wrk {} threads / {} connections, {} s per endpoint, {} run(s)\n",
        options.tenants,
        options.threads,
        options.connections,
        options.duration.as_secs(),
        runs.len()
    );
    let settings: Vec<String> = ["TP_BENCH_API_CLUSTERS", "TP_BENCH_API_ONLY"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v} ")))
        .collect();
    println!("`{}{command}`\n", settings.concat());
    let mut rows = Vec::new();
    for (i, (target, reference)) in TARGETS.iter().enumerate() {
        if runs.iter().all(|r| r[i].load.rate.is_nan()) {
            continue;
        }
        let column = |f: &dyn Fn(&Load) -> f64| -> f64 {
            median(&runs.iter().map(|r| f(&r[i].load)).collect::<Vec<_>>())
        };
        let ratio = median(
            &runs
                .iter()
                .map(|r| r[i].load.rate / r[*reference].load.rate)
                .collect::<Vec<_>>(),
        );
        let errors: u64 = runs.iter().map(|r| r[i].load.errors).sum();
        rows.push(vec![
            target.to_string(),
            format!("{:.0}", column(&|l| l.rate)),
            f2(column(&|l| l.p50_ms)),
            f2(column(&|l| l.p99_ms)),
            f2(ratio),
            errors.to_string(),
        ]);
    }
    table(
        &[
            "endpoint",
            "req/s",
            "p50 (ms)",
            "p99 (ms)",
            "req/s ÷ its reference",
            "non-2xx",
        ],
        &rows,
    );
    println!();
    let measured: Vec<(&str, Vec<cpu::PerRequest>)> = TARGETS
        .iter()
        .enumerate()
        .filter(|(i, _)| runs.iter().any(|r| !r[*i].load.rate.is_nan()))
        .map(|(i, (target, _))| (*target, runs.iter().map(|r| r[i].cpu).collect()))
        .collect();
    cpu::table(&measured);
}
