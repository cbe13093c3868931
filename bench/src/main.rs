//! `tenant-portal-bench`: programs that print Tenant Portal's figures as
//! tables, each with the command that reproduces it. Run through
//! `scripts/bench`, which starts the local stack and builds in release.

mod api;
mod clusters;
mod cpu;
mod gateway;
mod provision;
mod scale;
mod sessions;
mod showback;
mod stack;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use provision::Mode;
use stack::Env;

#[derive(Debug, Parser)]
#[command(name = "tenant-portal-bench", about = "Benchmarks for Tenant Portal")]
struct Cli {
    /// The portal binary; defaults to $CARGO_TARGET_DIR/release/tenant-portal.
    #[arg(long, global = true)]
    portal_bin: Option<PathBuf>,
    /// Give up on a phase (and on waiting for namespaces to go) after this many seconds.
    #[arg(long, global = true, default_value_t = 1800)]
    timeout_secs: u64,
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Tenants created through the API until Ready, against direct kube-rs and kubectl applies.
    Provision {
        #[arg(long, default_value_t = 100)]
        tenants: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The portal's --reconcile-workers; its default when absent.
        #[arg(long)]
        workers: Option<u16>,
        /// Only the portal, without the baselines.
        #[arg(long)]
        portal_only: bool,
        /// Without the kubectl baseline (about 170 s per 1,000 tenants).
        #[arg(long)]
        no_kubectl: bool,
        /// Also the direct apply with the portal's watches open (its drift
        /// detection) in the benchmark: what watching costs, apart from the portal.
        #[arg(long)]
        watched: bool,
        /// Also a direct client that creates each object (POST) instead of
        /// applying it: the cheapest way to write new objects, as the portal
        /// writes what its cache does not hold.
        #[arg(long)]
        created: bool,
        /// After each phase, recreate the private control plane named by
        /// TP_BENCH_CLUSTER (seconds) instead of deleting the namespaces
        /// (minutes per 1,000 tenants).
        #[arg(long)]
        fresh_cluster: bool,
    },
    /// Requests per second and p99 with wrk, against the API server as reference.
    Api {
        #[arg(long, default_value_t = 10_000)]
        tenants: i64,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Many tenants in the cluster: page latency, memory, an idle resync and its writes.
    Scale {
        #[arg(long, default_value_t = 2_000)]
        tenants: i64,
        /// Sequential requests per latency figure.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        #[arg(long, default_value_t = 3)]
        resyncs: usize,
        #[arg(long)]
        workers: Option<u16>,
        /// Leave the tenants' namespaces in the cluster at the end (deleting
        /// 20,000 takes the controller manager about an hour here; a fresh
        /// cluster takes seconds).
        #[arg(long)]
        keep_namespaces: bool,
    },
    /// The tenant API against the API server directly: GET, list of 100, watch fan-out.
    Gateway {
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 20)]
        watchers: usize,
        #[arg(long, default_value_t = 200)]
        events: usize,
    },
    /// exec and port-forward with kubectl through the tenant API against the API server directly.
    Sessions {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// `kubectl exec POD -- true` per path and transport in a run.
        #[arg(long, default_value_t = 30)]
        execs: usize,
        /// MiB pushed through exec's stdin and through a forwarded port.
        #[arg(long, default_value_t = 64)]
        megabytes: usize,
        /// Small messages through a forwarded port, for its round-trip time.
        #[arg(long, default_value_t = 200)]
        round_trips: usize,
    },
    /// The showback report over a fleet with days of usage samples (reconciler off).
    Showback {
        #[arg(long, default_value_t = 10_000)]
        tenants: i64,
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Minutes between a namespace's samples.
        #[arg(long, default_value_t = 60)]
        interval_mins: i64,
        /// Sequential requests per latency figure.
        #[arg(long, default_value_t = 5)]
        requests: usize,
    },
    /// One portal, several independent control planes: convergence per cluster, one cut.
    Clusters {
        /// Tenants created in each phase.
        #[arg(long, default_value_t = 300)]
        tenants: usize,
        /// Clusters in all, the stack's own among them (the others are started and removed).
        #[arg(long, default_value_t = 3)]
        clusters: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Every benchmark at its default size, or tiny with --quick (a smoke run for CI).
    All {
        #[arg(long)]
        quick: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // reqwest is built without a default TLS provider in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let env = Env::from_environment(cli.portal_bin)?;
    let timeout = Duration::from_secs(cli.timeout_secs);
    machine();
    match cli.command {
        Bench::Provision {
            tenants,
            concurrency,
            runs,
            workers,
            portal_only,
            no_kubectl,
            watched,
            created,
            fresh_cluster,
        } => {
            let fresh_cluster = match (fresh_cluster, std::env::var("TP_BENCH_CLUSTER")) {
                (false, _) => None,
                (true, Ok(name)) if !name.is_empty() => Some(name),
                (true, _) => anyhow::bail!(
                    "--fresh-cluster recreates a private control plane: set TP_BENCH_CLUSTER (deploy/dev/cluster up NAME)"
                ),
            };
            let mut modes = if portal_only {
                vec![Mode::Portal]
            } else if no_kubectl {
                vec![Mode::Direct, Mode::Portal]
            } else {
                vec![Mode::Direct, Mode::Kubectl, Mode::Portal]
            };
            if watched {
                modes.insert(modes.len() - 1, Mode::Watched);
            }
            if created && !portal_only {
                modes.insert(1, Mode::Created);
            }
            let options = provision::Options {
                tenants,
                concurrency,
                runs,
                workers,
                modes,
                timeout,
                fresh_cluster,
            };
            provision(&env, options).await
        }
        Bench::Api {
            tenants,
            duration_secs,
            connections,
            threads,
            runs,
        } => {
            api(
                &env,
                api::Options {
                    tenants,
                    duration: Duration::from_secs(duration_secs),
                    connections,
                    threads,
                    runs,
                },
            )
            .await
        }
        Bench::Scale {
            tenants,
            requests,
            resyncs,
            workers,
            keep_namespaces,
        } => {
            scale(
                &env,
                scale::Options {
                    tenants,
                    requests,
                    resyncs,
                    workers,
                    keep_namespaces,
                    timeout,
                },
            )
            .await
        }
        Bench::Gateway {
            duration_secs,
            connections,
            threads,
            runs,
            watchers,
            events,
        } => {
            gateway(
                &env,
                gateway::Options {
                    duration: Duration::from_secs(duration_secs),
                    connections,
                    threads,
                    runs,
                    watchers,
                    events,
                },
            )
            .await
        }
        Bench::Sessions {
            runs,
            execs,
            megabytes,
            round_trips,
        } => {
            let options = sessions::Options {
                runs,
                execs,
                megabytes,
                round_trips,
                timeout,
            };
            let command = format!(
                "scripts/bench sessions --runs {runs} --execs {execs} --megabytes {megabytes} --round-trips {round_trips}"
            );
            eprintln!("{command}");
            let figures = sessions::run(&env, &options).await?;
            sessions::report(&options, &figures, &command);
            Ok(())
        }
        Bench::Clusters {
            tenants,
            clusters: count,
            concurrency,
        } => {
            clusters(
                &env,
                clusters::Options {
                    tenants,
                    clusters: count,
                    concurrency,
                    timeout,
                },
            )
            .await
        }
        Bench::Showback {
            tenants,
            days,
            interval_mins,
            requests,
        } => {
            let options = showback::Options {
                tenants,
                days,
                interval_mins,
                requests,
            };
            let command = format!(
                "scripts/bench showback --tenants {tenants} --days {days} --interval-mins {interval_mins} --requests {requests}"
            );
            eprintln!("{command}");
            let figures = showback::run(&env, &options).await?;
            showback::report(&options, &figures, &command);
            Ok(())
        }
        Bench::All { quick } => {
            let (small, large, runs) = if quick { (5, 20, 1) } else { (100, 1000, 3) };
            let all = || vec![Mode::Direct, Mode::Created, Mode::Kubectl, Mode::Portal];
            let options = |tenants, concurrency, runs| provision::Options {
                tenants,
                concurrency,
                runs,
                workers: None,
                modes: all(),
                timeout,
                fresh_cluster: None,
            };
            provision(&env, options(small, 1, runs)).await?;
            provision(&env, options(small, 16, runs)).await?;
            provision(&env, options(large, 16, 1)).await?;
            api(
                &env,
                api::Options {
                    tenants: if quick { 200 } else { 10_000 },
                    duration: Duration::from_secs(if quick { 1 } else { 10 }),
                    connections: 16,
                    threads: 2,
                    runs,
                },
            )
            .await?;
            gateway(
                &env,
                gateway::Options {
                    duration: Duration::from_secs(if quick { 1 } else { 10 }),
                    connections: 16,
                    threads: 2,
                    runs,
                    watchers: if quick { 3 } else { 20 },
                    events: if quick { 10 } else { 200 },
                },
            )
            .await?;
            scale(
                &env,
                scale::Options {
                    tenants: if quick { 20 } else { 2_000 },
                    requests: if quick { 20 } else { 200 },
                    resyncs: if quick { 1 } else { 3 },
                    workers: None,
                    keep_namespaces: false,
                    timeout,
                },
            )
            .await?;
            clusters(
                &env,
                clusters::Options {
                    tenants: if quick { 6 } else { 300 },
                    clusters: 3,
                    concurrency: 16,
                    timeout,
                },
            )
            .await
        }
    }
}

/// The machine, printed once before the figures.
fn machine() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {cpus} CPUs ({model}), {mem_gib:.1} GiB memory\n");
}

async fn provision(env: &Env, options: provision::Options) -> anyhow::Result<()> {
    let portal_only = options.modes == [Mode::Portal];
    let no_kubectl = !portal_only && !options.modes.contains(&Mode::Kubectl);
    let watched = options.modes.contains(&Mode::Watched);
    let created = options.modes.contains(&Mode::Created);
    let mut command = format!(
        "scripts/bench provision --tenants {} --concurrency {} --runs {}",
        options.tenants, options.concurrency, options.runs
    );
    if let Some(w) = options.workers {
        command += &format!(" --workers {w}");
    }
    if portal_only {
        command += " --portal-only";
    }
    if no_kubectl {
        command += " --no-kubectl";
    }
    if watched {
        command += " --watched";
    }
    if created {
        command += " --created";
    }
    if let Some(name) = &options.fresh_cluster {
        command = format!("TP_BENCH_CLUSTER={name} {command} --fresh-cluster");
    }
    eprintln!("{command}");
    let results = provision::run(env, &options).await?;
    provision::report(&options, &results, &command);
    Ok(())
}

async fn api(env: &Env, options: api::Options) -> anyhow::Result<()> {
    let command = format!(
        "scripts/bench api --tenants {} --duration-secs {} --connections {} --threads {} --runs {}",
        options.tenants,
        options.duration.as_secs(),
        options.connections,
        options.threads,
        options.runs
    );
    eprintln!("{command}");
    let results = api::run(env, &options).await?;
    api::report(&options, &results, &command);
    Ok(())
}

async fn gateway(env: &Env, options: gateway::Options) -> anyhow::Result<()> {
    let command = format!(
        "scripts/bench gateway --duration-secs {} --connections {} --threads {} --runs {} --watchers {} --events {}",
        options.duration.as_secs(),
        options.connections,
        options.threads,
        options.runs,
        options.watchers,
        options.events
    );
    eprintln!("{command}");
    let figures = gateway::run(env, &options).await?;
    gateway::report(&options, &figures, &command);
    Ok(())
}

async fn clusters(env: &Env, options: clusters::Options) -> anyhow::Result<()> {
    let command = format!(
        "scripts/bench clusters --tenants {} --clusters {} --concurrency {}",
        options.tenants, options.clusters, options.concurrency
    );
    eprintln!("{command}");
    let rows = clusters::run(env, &options).await?;
    clusters::report(&options, &rows, &command);
    Ok(())
}

async fn scale(env: &Env, options: scale::Options) -> anyhow::Result<()> {
    let mut command = format!(
        "scripts/bench scale --tenants {} --requests {} --resyncs {}",
        options.tenants, options.requests, options.resyncs
    );
    if let Some(w) = options.workers {
        command += &format!(" --workers {w}");
    }
    if options.keep_namespaces {
        command += " --keep-namespaces";
    }
    eprintln!("{command}");
    let figures = scale::run(env, &options).await?;
    scale::report(&options, &figures, &command);
    Ok(())
}
