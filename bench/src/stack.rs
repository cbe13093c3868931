//! The local stack as the benchmarks see it: the environment from
//! `stack.env`, a portal process on a fresh database, the cluster, and the
//! small helpers every benchmark shares (timing, percentiles, tables).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tenant_portal::cluster::guardrails::Guardrails;
use tenant_portal::cluster::objects::{MANAGED_SELECTOR, TENANT_LABEL};
use tenant_portal::cluster::render::TenantState;
use tenant_portal::domain::{MemberKind, ResourceList, Role};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What the benchmarks need from the local stack (`stack.env`).
#[derive(Debug, Clone)]
pub struct Env {
    pub postgres_url: String,
    pub kubeconfig: String,
    pub audit_log: PathBuf,
    pub kubectl: String,
    pub portal_bin: PathBuf,
    /// Where scratch files and portal logs go.
    pub work: PathBuf,
    /// Unique per invocation, so slugs of different runs never collide.
    pub run_id: String,
}

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| {
        format!(
            "{name} is not set: source ~/.local/state/tenant-portal/stack.env (scripts/bench does)"
        )
    })
}

impl Env {
    pub fn from_environment(portal_bin: Option<PathBuf>) -> anyhow::Result<Self> {
        let portal_bin = match portal_bin {
            Some(path) => path,
            None => PathBuf::from(var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
                .join("release/tenant-portal"),
        };
        if !portal_bin.exists() {
            bail!(
                "no portal binary at {}: build it with `cargo build --release -p tenant-portal` or pass --portal-bin",
                portal_bin.display()
            );
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let work = std::env::temp_dir().join("tenant-portal-bench");
        std::fs::create_dir_all(&work)?;
        Ok(Self {
            postgres_url: var("TP_POSTGRES_URL")?,
            kubeconfig: var("KUBECONFIG")?,
            audit_log: var("TP_KUBE_AUDIT_LOG")?.into(),
            kubectl: var("TP_KUBECTL")?,
            portal_bin,
            work,
            run_id: base36(nanos / 1_000_000 % 36u128.pow(4), 4),
        })
    }

    pub fn database_url(&self, name: &str) -> String {
        let base = self
            .postgres_url
            .rsplit_once('/')
            .map_or(self.postgres_url.as_str(), |(base, _)| base);
        format!("{base}/{name}")
    }

    pub async fn kube(&self) -> anyhow::Result<kube::Client> {
        Ok(kube::Client::try_default().await?)
    }

    /// Runs kubectl against the stack and returns its stdout.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

fn base36(mut n: u128, width: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = digits[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The tenant every benchmark creates: a budget, two namespaces sharing it
/// and one owner group. `body` is what the API gets, `state` what rendering
/// gets for the same tenant.
pub fn tenant_body(slug: &str) -> Value {
    json!({
        "slug": slug,
        "budget": {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20"},
        "namespaces": [
            {"name": "dev", "allocations": {"requests.cpu": "1", "requests.memory": "2Gi", "pods": "5"}},
            {"name": "prod", "allocations": {"requests.cpu": "3", "requests.memory": "6Gi", "pods": "15"}}
        ],
        "members": [{"kind": "group", "subject": "bench-owners", "role": "owner"}]
    })
}

pub fn tenant_state(
    slug: &str,
    guardrails: &std::sync::Arc<Guardrails>,
) -> anyhow::Result<TenantState> {
    let body = tenant_body(slug);
    let list = |value: &Value| -> anyhow::Result<ResourceList> {
        let raw: BTreeMap<String, String> = serde_json::from_value(value.clone())?;
        ResourceList::parse(&raw, "bench").map_err(|e| anyhow::anyhow!("{e:?}"))
    };
    let mut namespaces = Vec::new();
    for ns in body["namespaces"].as_array().into_iter().flatten() {
        let name = ns["name"].as_str().unwrap_or_default();
        namespaces.push((format!("{slug}-{name}"), list(&ns["allocations"])?));
    }
    Ok(TenantState {
        slug: slug.to_string(),
        suspended: false,
        budget: list(&body["budget"])?,
        namespaces,
        members: vec![(MemberKind::Group, "bench-owners".into(), Role::Owner)],
        policy: guardrails.default_policy.clone(),
        platform_apis: Default::default(),
        guardrails: guardrails.clone(),
    })
}

/// The `application_name` of the benchmark's own connections to a portal's database.
pub const BENCH_APPLICATION: &str = "tenant-portal-bench";

/// A portal process serving on loopback, on a database of its own.
pub struct Portal {
    child: Child,
    pub base: String,
    pub token: String,
    pub db: PgPool,
    pub http: reqwest::Client,
    db_name: String,
    postgres_url: String,
}

impl Portal {
    /// Creates database `bench_<run>_<label>`, a token, and starts `serve`
    /// on the stack's cluster.
    pub async fn start(
        env: &Env,
        label: &str,
        reconciler: bool,
        workers: Option<u16>,
    ) -> anyhow::Result<Self> {
        let clusters = [("local".to_string(), env.kubeconfig.clone())];
        Self::start_on(env, label, reconciler, workers, &clusters).await
    }

    /// [`Portal::start`] serving HTTPS itself with the stack's certificate
    /// (`TP_PORTAL_TLS_*`), as in production; [`Portal::http`] trusts the
    /// stack's CA.
    pub async fn start_https(env: &Env, label: &str, reconciler: bool) -> anyhow::Result<Self> {
        let clusters = [("local".to_string(), env.kubeconfig.clone())];
        Self::launch(env, label, reconciler, None, &clusters, true).await
    }

    /// [`Portal::start`] on these clusters (name, kubeconfig).
    pub async fn start_on(
        env: &Env,
        label: &str,
        reconciler: bool,
        workers: Option<u16>,
        clusters: &[(String, String)],
    ) -> anyhow::Result<Self> {
        Self::launch(env, label, reconciler, workers, clusters, false).await
    }

    async fn launch(
        env: &Env,
        label: &str,
        reconciler: bool,
        workers: Option<u16>,
        clusters: &[(String, String)],
        https: bool,
    ) -> anyhow::Result<Self> {
        // Read before anything is made, so a missing variable leaves nothing behind.
        let tls = if https {
            let var = |name: &str| {
                std::env::var(name).with_context(|| {
                    format!("{name} is not set: the stack's stack.env names the portal's HTTPS certificate")
                })
            };
            Some([
                var("TP_PORTAL_TLS_CERT")?,
                var("TP_PORTAL_TLS_KEY")?,
                var("TP_PORTAL_TLS_CA")?,
            ])
        } else {
            None
        };
        let db_name = format!("bench_{}_{label}", env.run_id);
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&env.postgres_url)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&admin)
            .await?;
        admin.close().await;
        let url = env.database_url(&db_name);
        let out = Command::new(&env.portal_bin)
            .args([
                "token",
                "create",
                "--name",
                "bench",
                "--scope",
                "admin",
                "--all-tenants",
            ])
            .env("DATABASE_URL", &url)
            .stderr(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("tenant-portal token create failed");
        }
        let token = String::from_utf8(out.stdout)?.trim().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log_path = env.work.join(format!("portal-{}-{label}.log", env.run_id));
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(&env.portal_bin);
        command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(clusters.iter().flat_map(|(name, kubeconfig)| {
                ["--cluster".into(), format!("{name}={kubeconfig}")]
            }))
            .args(["--reconciler", if reconciler { "true" } else { "false" }])
            .env("DATABASE_URL", &url)
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(workers) = workers {
            command.args(["--reconcile-workers", &workers.to_string()]);
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut http = reqwest::Client::builder();
        if let Some([cert, key, ca]) = &tls {
            command
                .args(["--public-url", &format!("https://127.0.0.1:{port}")])
                .args(["--tls-cert", cert, "--tls-key", key, "--tls-ca", ca]);
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca)?)?);
        }
        let http = http.build()?;
        // Everything that can fail comes before the spawn, so no process is left behind.
        // Named, so the CPU of the benchmark's own queries (the Ready poller)
        // is told apart from the portal's in the same database.
        let options = url
            .parse::<PgConnectOptions>()?
            .application_name(BENCH_APPLICATION);
        let db = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let portal = Self {
            child: command.spawn()?,
            base: format!("{scheme}://127.0.0.1:{port}"),
            token,
            db,
            http,
            db_name,
            postgres_url: env.postgres_url.clone(),
        };
        let started = Instant::now();
        loop {
            let ready = portal
                .http
                .get(format!("{}/readyz", portal.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the portal did not become ready in 30 s; see {}",
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(portal)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The portal's own database.
    pub fn db_name(&self) -> &str {
        &self.db_name
    }

    /// The portal's Prometheus metrics, as text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// A dashboard page, fetched with the session cookie `cookie`.
    pub fn page(&self, path: &str, cookie: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("tp_session={cookie}"))
    }

    /// Signs `email` (in `groups`) in without an identity provider: a session
    /// row as the login callback would store it (the SHA-256 of the cookie).
    /// Returns the cookie's value.
    pub async fn session(&self, email: &str, groups: &[&str]) -> anyhow::Result<String> {
        let cookie = format!("bench-session-{}-{email}", self.db_name);
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        sqlx::query(
            "INSERT INTO sessions (id_hash, subject, email, name, groups, csrf_token, expires_at)
             VALUES (sha256(convert_to($1, 'UTF8')), $2, $2, $2, $3, 'bench-csrf',
                     now() + interval '1 day')",
        )
        .bind(&cookie)
        .bind(email)
        .bind(&groups)
        .execute(&self.db)
        .await?;
        Ok(cookie)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Resident memory of the portal process, in MiB.
    pub fn rss_mib(&self) -> anyhow::Result<f64> {
        self.status_mib("VmRSS:")
    }

    /// The most the portal process has held resident since it started, in MiB.
    pub fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        self.status_mib("VmHWM:")
    }

    fn status_mib(&self, field: &str) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .with_context(|| format!("no {field} in /proc/PID/status"))?
            .parse()?;
        Ok(kib / 1024.0)
    }

    /// Creates a tenant through the API, with the body every benchmark uses.
    pub async fn create_tenant(&self, slug: &str) -> anyhow::Result<()> {
        let created = self
            .post("/tenants")
            .json(&tenant_body(slug))
            .send()
            .await?;
        if !created.status().is_success() {
            bail!("creating tenant {slug}: {}", created.text().await?);
        }
        Ok(())
    }

    /// Copies tenant `template` (created through the API) `count` times with
    /// slugs `<prefix><n>`, with its namespaces and members, marked in sync.
    pub async fn clone_tenants(
        &self,
        template: &str,
        prefix: &str,
        count: i64,
    ) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO tenants (slug, display_name, cluster, budget, generation,
                                  sync_status, observed_generation, last_synced_at)
             SELECT $2 || lpad(i::text, 5, '0'), $2 || lpad(i::text, 5, '0'), t.cluster,
                    t.budget, 1, 'Ready', 1, now()
             FROM tenants t, generate_series(1, $3) AS i WHERE t.slug = $1",
        )
        .bind(template)
        .bind(prefix)
        .bind(count)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO namespaces (tenant_id, name, full_name, allocations, sync_status)
             SELECT c.id, n.name, c.slug || '-' || n.name, n.allocations, 'Ready'
             FROM tenants t JOIN namespaces n ON n.tenant_id = t.id
             JOIN tenants c ON c.slug LIKE $2 || '%' AND c.slug <> t.slug
             WHERE t.slug = $1",
        )
        .bind(template)
        .bind(prefix)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO members (tenant_id, kind, subject, role)
             SELECT c.id, m.kind, m.subject, m.role
             FROM tenants t JOIN members m ON m.tenant_id = t.id
             JOIN tenants c ON c.slug LIKE $2 || '%' AND c.slug <> t.slug
             WHERE t.slug = $1",
        )
        .bind(template)
        .bind(prefix)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        sqlx::query("ANALYZE").execute(&self.db).await?;
        Ok(())
    }

    /// Queues every tenant for the reconciler and waits until the outbox is
    /// empty; returns how long that took.
    pub async fn resync_all(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        sqlx::query(
            "INSERT INTO outbox (tenant_id, generation)
             SELECT id, generation FROM tenants WHERE state <> 'deleted' ON CONFLICT DO NOTHING",
        )
        .execute(&self.db)
        .await?;
        self.wait_outbox_empty(started, timeout).await?;
        Ok(started.elapsed())
    }

    pub async fn wait_outbox_empty(
        &self,
        started: Instant,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        loop {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(&self.db)
                .await?;
            if left == 0 {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!("{left} tenants still queued after {} s", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the process and drops its database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.db.close().await;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.postgres_url)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.db_name
        )))
        .execute(&admin)
        .await?;
        admin.close().await;
        Ok(())
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Deletes every managed namespace whose tenant slug starts with `prefix`,
/// then waits until the controller manager has removed them; returns how
/// many there were.
pub async fn delete_namespaces(
    client: &kube::Client,
    prefix: &str,
    timeout: Duration,
) -> anyhow::Result<usize> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ours = |ns: &Namespace| {
        ns.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TENANT_LABEL))
            .is_some_and(|t| t.starts_with(prefix))
    };
    let list = |api: Api<Namespace>| async move {
        let all = api
            .list(&ListParams::default().labels(MANAGED_SELECTOR))
            .await?;
        anyhow::Ok(all.items.into_iter().filter(ours).collect::<Vec<_>>())
    };
    let doomed = list(api.clone()).await?;
    let count = doomed.len();
    let limit = Arc::new(Semaphore::new(16));
    let mut tasks = JoinSet::new();
    for ns in doomed {
        let api = api.clone();
        let permit = limit.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let name = ns.metadata.name.unwrap_or_default();
            let _ = api.delete(&name, &DeleteParams::background()).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let started = Instant::now();
    loop {
        let left = list(api.clone()).await?.len();
        if left == 0 {
            return Ok(count);
        }
        if started.elapsed() > timeout {
            eprintln!(
                "warning: {left} namespaces of {prefix}* still terminating after {} s",
                timeout.as_secs()
            );
            return Ok(count);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes (create, update, patch, delete) by `user` that the API server
/// logged after byte `offset` of its audit log.
pub fn audit_writes(env: &Env, user: &str, offset: u64) -> anyhow::Result<usize> {
    let text = std::fs::read(&env.audit_log)?;
    let tail = &text[(offset as usize).min(text.len())..];
    let mut count = 0;
    for line in tail.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(event) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let write = matches!(
            event["verb"].as_str(),
            Some("create" | "update" | "patch" | "delete" | "deletecollection")
        );
        if write && event["stage"] == "ResponseComplete" && event["user"]["username"] == user {
            count += 1;
        }
    }
    Ok(count)
}

pub fn audit_offset(env: &Env) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(&env.audit_log)?.len())
}

/// The value at quantile `q` (0..=1) of `values`, nearest rank.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

/// Sequential latencies of `count` requests, in milliseconds.
pub async fn latencies(
    count: usize,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let response = request().send().await?;
        let status = response.status();
        response.bytes().await?;
        if !status.is_success() {
            bail!("request failed with {status}");
        }
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}

/// A plain text table: a header row, then rows, columns padded to fit.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}{}", " ".repeat(widths[i] - width(c))))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.iter().map(|h| h.to_string()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for row in rows {
        line(row.clone());
    }
    println!();
}

pub fn f1(v: f64) -> String {
    format!("{v:.1}")
}

pub fn f2(v: f64) -> String {
    format!("{v:.2}")
}
