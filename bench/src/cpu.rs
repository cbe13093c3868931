//! CPU time of the processes that share the machine in a run: the control
//! plane, the client under test and PostgreSQL's backends. On two cores a
//! run is CPU-bound, so these say what each client's wall time is made of.

use std::path::{Path, PathBuf};

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds the process has used so far; 0 when it is gone.
pub fn seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; the fields after it do not.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

/// The CPU seconds of this very process.
pub fn own() -> f64 {
    seconds(std::process::id())
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
