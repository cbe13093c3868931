//! Many clusters: one portal, the stack's cluster and further independent
//! control planes (`deploy/dev/cluster up NAME`), tenants placed across them
//! by the portal. Convergence and throughput per cluster; then one cluster is
//! cut (its API server stopped) while more tenants arrive, and the others
//! must keep converging at their rate; then it comes back and catches up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::stack::{self, Env, Portal, f1, f2, table};

#[derive(Debug, Clone)]
pub struct Options {
    /// Tenants created in each phase, spread over the clusters by the portal.
    pub tenants: usize,
    /// Clusters in all, the stack's own among them.
    pub clusters: usize,
    pub concurrency: usize,
    pub timeout: Duration,
}

/// One cluster in one phase.
#[derive(Debug, Clone)]
pub struct Row {
    pub phase: &'static str,
    pub cluster: String,
    pub tenants: i64,
    pub ready: i64,
    /// Seconds from the first create of the phase until its last tenant on this cluster was Ready.
    pub converged_s: Option<f64>,
}

/// A control plane started for the benchmark, stopped and deleted at the end.
struct Extra {
    name: String,
    state: PathBuf,
    kubeconfig: String,
}

fn script() -> PathBuf {
    PathBuf::from("deploy/dev/cluster")
}

fn cluster_cmd(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(script())
        .args(args)
        .output()
        .with_context(|| "running deploy/dev/cluster (run the benchmark from the repository root, as scripts/bench does)")?;
    if !out.status.success() {
        bail!(
            "deploy/dev/cluster {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

impl Extra {
    fn up(name: &str) -> anyhow::Result<Self> {
        let env = cluster_cmd(&["up", name])?;
        let kubeconfig = env
            .lines()
            .find_map(|l| l.strip_prefix("export KUBECONFIG="))
            .context("deploy/dev/cluster up printed no KUBECONFIG")?
            .to_string();
        let state = PathBuf::from(&kubeconfig)
            .parent()
            .context("a kubeconfig path without a directory")?
            .to_path_buf();
        Ok(Self {
            name: name.to_string(),
            state,
            kubeconfig,
        })
    }

    /// Stops the API server only: the cluster is cut off, its data kept.
    fn cut(&self) -> anyhow::Result<()> {
        let pid = std::fs::read_to_string(self.state.join("kube-apiserver.pid"))?;
        let pid = pid.trim();
        let status = Command::new("kill").arg(pid).status()?;
        if !status.success() {
            bail!("could not stop the API server of cluster {}", self.name);
        }
        // It shuts down gracefully; cut means gone, and `up` restarts only what is.
        let started = Instant::now();
        // Gone, or a zombie nobody reaps (a container's init may not).
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| !rest.starts_with('Z'))
            })
        };
        // As `deploy/dev/cluster down` does: TERM, then KILL after 10 s
        // (open watches hold a graceful shutdown up to a minute).
        let mut killed = false;
        while running() {
            if !killed && started.elapsed() > Duration::from_secs(10) {
                let _ = Command::new("kill").args(["-9", pid]).status();
                killed = true;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the API server of cluster {} did not stop in 30 s",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Starts what is not running again (the API server after a cut).
    fn restore(&self) -> anyhow::Result<()> {
        cluster_cmd(&["up", &self.name]).map(|_| ())
    }

    fn down(&self) {
        if let Err(e) = cluster_cmd(&["down", &self.name]) {
            eprintln!("warning: {e}");
        }
    }
}

pub async fn run(env: &Env, options: &Options) -> anyhow::Result<Vec<Row>> {
    if options.clusters < 2 {
        bail!("--clusters must be at least 2");
    }
    let mut extras = Vec::new();
    let started = (|| {
        for i in 1..options.clusters {
            let name = format!("bench-{}-{i}", env.run_id.to_lowercase());
            eprintln!("  starting control plane {name}");
            extras.push(Extra::up(&name)?);
        }
        anyhow::Ok(())
    })();
    let result = match started {
        Ok(()) => measure(env, options, &extras).await,
        Err(e) => Err(e),
    };
    for extra in &extras {
        extra.down();
    }
    let client = env.kube().await?;
    stack::delete_namespaces(&client, &format!("m{}", env.run_id), options.timeout).await?;
    result
}

async fn measure(env: &Env, options: &Options, extras: &[Extra]) -> anyhow::Result<Vec<Row>> {
    let mut clusters = vec![("local".to_string(), env.kubeconfig.clone())];
    for (i, extra) in extras.iter().enumerate() {
        clusters.push((format!("c{}", i + 2), extra.kubeconfig.clone()));
    }
    let portal = Portal::start_on(env, "clusters", true, None, &clusters).await?;
    let result = phases(env, options, &portal, extras, &clusters).await;
    portal.stop().await?;
    result
}

async fn phases(
    env: &Env,
    options: &Options,
    portal: &Portal,
    extras: &[Extra],
    clusters: &[(String, String)],
) -> anyhow::Result<Vec<Row>> {
    let cut_name = &clusters.last().context("no cluster")?.0;
    let cut = extras.last().context("no extra cluster")?;
    let mut rows = Vec::new();

    let prefix = format!("m{}a", env.run_id);
    let started = Instant::now();
    let all: Vec<&str> = clusters.iter().map(|(n, _)| n.as_str()).collect();
    create(portal, &prefix, options, None).await?;
    rows.extend(wait(portal, "all up", &prefix, &all, started, options.timeout).await?);

    cut.cut()?;
    eprintln!("  cut cluster {cut_name} (its API server stopped)");
    let prefix_b = format!("m{}b", env.run_id);
    let started = Instant::now();
    // Placement would steer new tenants away from a cluster it finds
    // unreachable; naming the clusters in turn gives the cut one its share
    // of work that cannot finish, which the others must not feel.
    create(portal, &prefix_b, options, Some(&all)).await?;
    let healthy: Vec<&str> = all.iter().copied().filter(|n| n != cut_name).collect();
    rows.extend(
        wait(
            portal,
            "one cut",
            &prefix_b,
            &healthy,
            started,
            options.timeout,
        )
        .await?,
    );
    rows.extend(
        progress(portal, &prefix_b)
            .await?
            .into_iter()
            .filter(|(c, _)| c == cut_name)
            .map(|(cluster, (tenants, ready))| Row {
                phase: "one cut",
                cluster,
                tenants,
                ready,
                converged_s: None,
            }),
    );

    let restored = Instant::now();
    cut.restore()?;
    eprintln!("  restored cluster {cut_name}");
    let mut back = wait(
        portal,
        "after restore",
        &prefix_b,
        &[cut_name.as_str()],
        restored,
        options.timeout,
    )
    .await?;
    for row in &mut back {
        row.phase = "cut cluster back";
    }
    rows.extend(back);
    Ok(rows)
}

/// Creates the phase's tenants: placed by the portal, or with `pinned`,
/// naming those clusters in turn.
async fn create(
    portal: &Portal,
    prefix: &str,
    options: &Options,
    pinned: Option<&[&str]>,
) -> anyhow::Result<()> {
    let limit = Arc::new(Semaphore::new(options.concurrency));
    let mut tasks = JoinSet::new();
    for i in 0..options.tenants {
        let permit = limit.clone().acquire_owned().await?;
        let mut body = stack::tenant_body(&format!("{prefix}{i:05}"));
        if let Some(clusters) = pinned {
            body["cluster"] = clusters[i % clusters.len()].into();
        }
        let request = portal.post("/tenants").json(&body);
        tasks.spawn(async move {
            let answer = request.send().await;
            drop(permit);
            match answer {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => bail!("creating a tenant: {}", r.text().await.unwrap_or_default()),
                Err(e) => Err(e.into()),
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// Tenants and Ready tenants of the prefix, per cluster.
async fn progress(portal: &Portal, prefix: &str) -> anyhow::Result<BTreeMap<String, (i64, i64)>> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT cluster, count(*),
                count(*) FILTER (WHERE sync_status = 'Ready' AND observed_generation = generation)
         FROM tenants WHERE starts_with(slug, $1) GROUP BY cluster",
    )
    .bind(prefix)
    .fetch_all(&portal.db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(cluster, tenants, ready)| (cluster, (tenants, ready)))
        .collect())
}

/// Waits until every tenant of the prefix on `clusters` is Ready, noting
/// when each cluster got there.
async fn wait(
    portal: &Portal,
    phase: &'static str,
    prefix: &str,
    clusters: &[&str],
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<Vec<Row>> {
    let mut done: BTreeMap<String, Row> = BTreeMap::new();
    loop {
        let now = progress(portal, prefix).await?;
        for name in clusters {
            let (tenants, ready) = now.get(*name).copied().unwrap_or((0, 0));
            if ready == tenants && !done.contains_key(*name) {
                done.insert(
                    name.to_string(),
                    Row {
                        phase,
                        cluster: name.to_string(),
                        tenants,
                        ready,
                        converged_s: Some(started.elapsed().as_secs_f64()),
                    },
                );
            }
        }
        if done.len() == clusters.len() {
            return Ok(done.into_values().collect());
        }
        if started.elapsed() > timeout {
            bail!(
                "{phase}: tenants still not Ready after {} s: {now:?}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn report(options: &Options, rows: &[Row], command: &str) {
    println!(
        "### Many clusters: {} clusters, {} tenants a phase\n",
        options.clusters, options.tenants
    );
    println!("`{command}`\n");
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.phase.to_string(),
                row.cluster.clone(),
                row.tenants.to_string(),
                row.ready.to_string(),
                row.converged_s.map_or("not yet (cut)".into(), f2),
                row.converged_s
                    .filter(|s| *s > 0.0)
                    .map_or("-".into(), |s| f1(row.tenants as f64 / s)),
            ]
        })
        .collect();
    table(
        &[
            "phase",
            "cluster",
            "tenants placed",
            "Ready",
            "all Ready after (s)",
            "tenants/s",
        ],
        &body,
    );
}
