//! CPU time of the processes that share the machine in a run: the control
//! plane, the client under test and PostgreSQL's backends. On two cores a
//! run is CPU-bound, so these say what each client's wall time is made of.

use std::path::{Path, PathBuf};

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds the process has used so far; 0 when it is gone.
pub fn seconds(pid: u32) -> f64 {
    // utime and stime are fields 14 and 15 of the stat line.
    stat_seconds(&format!("/proc/{pid}/stat"), 14)
}

/// The CPU seconds of this very process.
pub fn own() -> f64 {
    seconds(std::process::id())
}

/// The CPU seconds of this process's children that have ended and been
/// waited for (a wrk run, once `output()` returns).
pub fn children() -> f64 {
    // cutime and cstime are fields 16 and 17.
    stat_seconds("/proc/self/stat", 16)
}

/// The sum of the two clock-tick fields from `field` (1-based, as `proc(5)`
/// numbers them) of a stat file, in seconds; 0 when it cannot be read.
fn stat_seconds(path: &str, field: usize) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; the fields after it do not.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let ticks = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(field) + ticks(field + 1)) / TICKS_PER_SECOND
}

/// The control plane's processes (etcd, kube-apiserver, controller manager),
/// found through the pid files beside its kubeconfig (`deploy/dev/cluster`
/// keeps them in one state directory).
pub struct ControlPlane {
    state: PathBuf,
}

impl ControlPlane {
    pub fn of_kubeconfig(kubeconfig: &str) -> Self {
        let state = Path::new(kubeconfig)
            .parent()
            .map_or_else(PathBuf::new, Path::to_path_buf);
        Self { state }
    }

    /// CPU seconds used so far by the components whose pid files exist.
    pub fn seconds(&self) -> f64 {
        ["etcd", "kube-apiserver", "kube-controller-manager"]
            .iter()
            .filter_map(|c| std::fs::read_to_string(self.state.join(format!("{c}.pid"))).ok())
            .filter_map(|pid| pid.trim().parse().ok())
            .map(seconds)
            .sum()
    }
}

/// CPU seconds used so far by PostgreSQL's backends connected to
/// `database`: the portal's, and those of the benchmark's own connections.
pub async fn database_backends(db: &sqlx::PgPool, database: &str) -> anyhow::Result<(f64, f64)> {
    let backends: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT pid, application_name = $2 FROM pg_stat_activity WHERE datname = $1",
    )
    .bind(database)
    .bind(crate::stack::BENCH_APPLICATION)
    .fetch_all(db)
    .await?;
    let (mut portal, mut bench) = (0.0, 0.0);
    for (pid, of_bench) in backends {
        let used = seconds(pid as u32);
        if of_bench {
            bench += used;
        } else {
            portal += used;
        }
    }
    Ok((portal, bench))
}

/// CPU microseconds per request of each process on the machine that serves
/// or drives a wrk run: the portal, its PostgreSQL backends, the control
/// plane (etcd, kube-apiserver, controller manager) and wrk. When wrk keeps
/// every core busy, a run's rate is about the machine's cores divided by
/// their sum ([`PerRequest::ceiling`]): what one process spends is what
/// the others do not get.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerRequest {
    pub portal: f64,
    pub database: f64,
    pub control_plane: f64,
    pub wrk: f64,
}

impl PerRequest {
    pub fn all(&self) -> f64 {
        self.portal + self.database + self.control_plane + self.wrk
    }

    /// The rate (requests per second) this machine's cores could serve if
    /// they did nothing but these requests.
    pub fn ceiling(&self) -> f64 {
        cores() as f64 * 1e6 / self.all()
    }
}

/// The cores this process may run on, which on the benchmark's machines
/// are all of them.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU seconds used so far by each process of [`PerRequest`], read before
/// and after a wrk run.
pub struct Meter<'a> {
    portal: &'a crate::stack::Portal,
    control_plane: ControlPlane,
    start: [f64; 4],
}

impl<'a> Meter<'a> {
    pub async fn start(portal: &'a crate::stack::Portal, kubeconfig: &str) -> anyhow::Result<Self> {
        let mut meter = Self {
            portal,
            control_plane: ControlPlane::of_kubeconfig(kubeconfig),
            start: [0.0; 4],
        };
        meter.start = meter.now().await?;
        Ok(meter)
    }

    /// PostgreSQL's figure counts the backends connected when it is read: a
    /// pool connection closed during a run takes its CPU time with it (the
    /// portal's pool keeps its connections through a run).
    async fn now(&self) -> anyhow::Result<[f64; 4]> {
        let (database, _) = database_backends(&self.portal.db, self.portal.db_name()).await?;
        Ok([
            seconds(self.portal.pid()),
            database,
            self.control_plane.seconds(),
            children(),
        ])
    }

    /// What each process spent per request of the `requests` served since
    /// [`Meter::start`].
    pub async fn per_request(&self, requests: f64) -> anyhow::Result<PerRequest> {
        let now = self.now().await?;
        let spent = |i: usize| (now[i] - self.start[i]) * 1e6 / requests.max(1.0);
        Ok(PerRequest {
            portal: spent(0),
            database: spent(1),
            control_plane: spent(2),
            wrk: spent(3),
        })
    }
}

impl std::fmt::Display for PerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU µs/req: portal {:.0}, PostgreSQL {:.0}, control plane {:.0}, wrk {:.0} (ceiling {:.0} req/s)",
            self.portal,
            self.database,
            self.control_plane,
            self.wrk,
            self.ceiling()
        )
    }
}

/// Prints, for each measured row, the median over runs of each process's
/// CPU per request, their sum, and the rate the machine's cores could serve
/// at that cost (the ceiling a measured rate sits under).
pub fn table(rows: &[(&str, Vec<PerRequest>)]) {
    let cores = cores();
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, runs)| {
            let median = |f: &dyn Fn(&PerRequest) -> f64| {
                crate::stack::median(&runs.iter().map(f).collect::<Vec<_>>())
            };
            vec![
                name.to_string(),
                format!("{:.0}", median(&|c| c.portal)),
                format!("{:.0}", median(&|c| c.database)),
                format!("{:.0}", median(&|c| c.control_plane)),
                format!("{:.0}", median(&|c| c.wrk)),
                format!("{:.0}", median(&|c| c.all())),
                format!("{:.0}", median(&|c| c.ceiling())),
            ]
        })
        .collect();
    let ceiling = format!("{cores} cores ÷ all (req/s)");
    crate::stack::table(
        &[
            "CPU per request (µs, median of runs)",
            "portal",
            "PostgreSQL",
            "control plane",
            "wrk",
            "all",
            &ceiling,
        ],
        &lines,
    );
}
