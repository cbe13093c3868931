//! Sessions through the tenant API: exec and port-forward with the real
//! kubectl, through the gateway (a service token's tenant-view kubeconfig,
//! which acts as the tenant's automation account, served over HTTPS by a
//! second replica of the portal) and straight to the API server (the same
//! account's cluster kubeconfig), over WebSocket and SPDY, in the same run;
//! which path goes first alternates between runs. The pod runs on the
//! stack's kwok nodes: kwok runs exec's command on this machine and sends
//! every port-forward to `TP_KWOK_PORTFORWARD_TARGET`, where the benchmark
//! listens with an echo server while it forwards.
//!
//! kubectl and the sockets are timed with blocking calls on threads of their
//! own, so no async scheduling sits inside a measurement.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::stack::{Env, Portal, delete_namespaces, f2, median, percentile, table};

#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    /// `kubectl exec POD -- true` per path and transport in a run.
    pub execs: usize,
    /// MiB pushed through exec's stdin and through a forwarded port.
    pub megabytes: usize,
    /// Small messages through a forwarded port, for its round-trip time.
    pub round_trips: usize,
    /// Bounds the wait for the tenant's namespaces to go at the end.
    pub timeout: Duration,
}

/// The two ways to the same pod as the same account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Tenant,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Tenant => "tenant API",
        }
    }
}

/// kubectl's transports for exec and port-forward: WebSocket by default
/// since 1.31; SPDY when switched off, as older clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    WebSocket,
    Spdy,
}

impl Transport {
    const ALL: [Self; 2] = [Self::WebSocket, Self::Spdy];

    fn name(self) -> &'static str {
        match self {
            Self::WebSocket => "WebSocket",
            Self::Spdy => "SPDY",
        }
    }

    /// Said explicitly either way, so an ambient setting cannot pick the transport.
    fn env(self) -> [(&'static str, &'static str); 2] {
        let on = if self == Self::WebSocket {
            "true"
        } else {
            "false"
        };
        [
            ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", on),
            ("KUBECTL_PORT_FORWARD_WEBSOCKETS", on),
        ]
    }
}

/// The figures, one row each; per run a value for each path.
const ROWS: [&str; 10] = [
    "exec `true`, WebSocket: p50 (ms)",
    "exec `true`, WebSocket: p90 (ms)",
    "exec `true`, SPDY: p50 (ms)",
    "exec `true`, SPDY: p90 (ms)",
    "exec -i `cat`, WebSocket (MiB/s)",
    "exec -i `cat`, SPDY (MiB/s)",
    "port-forward echo, WebSocket (MiB/s)",
    "port-forward echo, SPDY (MiB/s)",
    "port-forward round trip, WebSocket: p50 (ms)",
    "port-forward round trip, SPDY: p50 (ms)",
];

/// One run's figures: `[row][direct, tenant API]`.
type RunFigures = [[f64; 2]; ROWS.len()];

pub struct Figures {
    pub runs: Vec<RunFigures>,
}

const POD: &str = "bench";
/// Bounds every kubectl that should end by itself.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// Bounds every read and write on a forwarded port.
const SOCKET_LIMIT: Duration = Duration::from_secs(30);
/// Round trips sent before the timed ones, so the stream is open and warm.
const WARM_ROUND_TRIPS: usize = 10;
const MESSAGE: usize = 64;

pub async fn run(env: &Env, options: &Options) -> anyhow::Result<Figures> {
    let target = std::env::var("TP_KWOK_PORTFORWARD_TARGET").context(
        "TP_KWOK_PORTFORWARD_TARGET is not set: source ~/.local/state/tenant-portal/stack.env (scripts/bench does)",
    )?;
    let portal = Portal::start(env, "sessions", true, None).await?;
    let slug = format!("ss{}", env.run_id);
    let result = async {
        let replica = HttpsReplica::start(env, &portal).await?;
        let setup = prepare(env, &portal, &replica, &slug).await?;
        let options = options.clone();
        tokio::task::spawn_blocking(move || measure(&setup, &options, &target)).await?
    }
    .await;
    portal.stop().await?;
    let gone = delete_namespaces(&env.kube().await?, &slug, options.timeout).await;
    let figures = result?;
    gone?;
    Ok(figures)
}

/// A second replica of the portal on its database, serving HTTPS itself
/// with the stack's certificate (`TP_PORTAL_TLS_*`), as in production:
/// kubectl (client-go) sends credentials over TLS only, and the benchmarks'
/// portal serves plain HTTP. The reconciler stays with the first replica.
/// Stopped on drop.
struct HttpsReplica {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl HttpsReplica {
    async fn start(env: &Env, portal: &Portal) -> anyhow::Result<Self> {
        let tls = |name: &str| {
            std::env::var(name).with_context(|| {
                format!(
                    "{name} is not set: the stack's stack.env names the portal's HTTPS certificate"
                )
            })
        };
        let (cert, key, ca) = (
            tls("TP_PORTAL_TLS_CERT")?,
            tls("TP_PORTAL_TLS_KEY")?,
            tls("TP_PORTAL_TLS_CA")?,
        );
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca)?)?)
            .build()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let base = format!("https://127.0.0.1:{port}");
        let log_path = env
            .work
            .join(format!("portal-{}-sessions-https.log", env.run_id));
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&env.portal_bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--cluster", &format!("local={}", env.kubeconfig)])
            .args(["--reconciler", "false", "--public-url", &base])
            .args(["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca])
            .env("DATABASE_URL", env.database_url(portal.db_name()))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let replica = Self { child, base, http };
        let started = Instant::now();
        while !replica
            .http
            .get(format!("{}/readyz", replica.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the HTTPS replica did not become ready in 30 s; see {}",
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(replica)
    }
}

impl Drop for HttpsReplica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the timed part needs: kubectl, and a kubeconfig and namespace per path.
struct Setup {
    kubectl: String,
    /// kubectl's discovery cache, the same for both paths and apart from the user's.
    cache: PathBuf,
    work: PathBuf,
    run_id: String,
    kubeconfigs: [PathBuf; 2],
    namespaces: [String; 2],
}

impl Setup {
    fn kubectl(&self, path: Path, transport: Transport) -> Command {
        let mut command = Command::new(&self.kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfigs[path as usize])
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(["-n", &self.namespaces[path as usize]])
            .envs(transport.env());
        command
    }
}

impl Drop for Setup {
    /// The kubeconfigs carry tokens (an hour's); they go with the run.
    fn drop(&mut self) {
        for path in &self.kubeconfigs {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A tenant (its `dev` namespace has an allocation: CPU 1, memory 2Gi, 5
/// pods), Ready; the automation account's cluster kubeconfig and a tenant-view
/// kubeconfig of the benchmark's service token, which acts as that account.
async fn prepare(
    env: &Env,
    portal: &Portal,
    replica: &HttpsReplica,
    slug: &str,
) -> anyhow::Result<Setup> {
    portal.create_tenant(slug).await?;
    crate::gateway::wait_ready(portal, slug).await?;
    let direct = portal
        .post(&format!("/tenants/{slug}/kubeconfig"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    // As a user downloads it: the replica names its HTTPS URL and the CA.
    let tenant = replica
        .http
        .post(format!(
            "{}/api/v1/tenants/{slug}/kubeconfig?view=tenant",
            replica.base
        ))
        .bearer_auth(&portal.token)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let file = |name: &str, yaml: &str| {
        let path = env
            .work
            .join(format!("sessions-{}-{name}.kubeconfig", env.run_id));
        std::fs::write(&path, yaml)?;
        anyhow::Ok(path)
    };
    Ok(Setup {
        kubectl: env.kubectl.clone(),
        cache: env.work.join("kubectl-cache"),
        work: env.work.clone(),
        run_id: env.run_id.clone(),
        kubeconfigs: [file("direct", &direct)?, file("tenant", &tenant)?],
        namespaces: [format!("{slug}-dev"), "dev".to_string()],
    })
}

fn measure(setup: &Setup, options: &Options, target: &str) -> anyhow::Result<Figures> {
    running_pod(setup)?;
    let data = payload(options.megabytes << 20);
    let mut runs = Vec::new();
    for run in 1..=options.runs {
        let order = if run % 2 == 1 {
            [Path::Direct, Path::Tenant]
        } else {
            [Path::Tenant, Path::Direct]
        };
        let mut figures: RunFigures = [[f64::NAN; 2]; ROWS.len()];
        let mut record = |row: usize, path: Path, value: f64| {
            eprintln!(
                "  run {run} {:<12} {:<46} {value:>9.2}",
                path.name(),
                ROWS[row]
            );
            figures[row][path as usize] = value;
        };
        for (t, transport) in Transport::ALL.into_iter().enumerate() {
            for path in order {
                let latencies = exec_latencies(setup, path, transport, options.execs)?;
                record(2 * t, path, percentile(&latencies, 0.5));
                record(2 * t + 1, path, percentile(&latencies, 0.9));
            }
        }
        for (t, transport) in Transport::ALL.into_iter().enumerate() {
            for path in order {
                let took = exec_cat(setup, path, transport, &data)?;
                record(4 + t, path, options.megabytes as f64 / took.as_secs_f64());
            }
        }
        let _echo = Echo::bind(target, Duration::from_secs(120))?;
        for (t, transport) in Transport::ALL.into_iter().enumerate() {
            for path in order {
                let forward = Forward::start(setup, path, transport)?;
                let took = forward.push(&data)?;
                let trips = forward.round_trips(options.round_trips)?;
                record(6 + t, path, options.megabytes as f64 / took.as_secs_f64());
                record(8 + t, path, percentile(&trips, 0.5));
            }
        }
        runs.push(figures);
    }
    Ok(Figures { runs })
}

/// The pod, made as the automation account and awaited until Ready.
fn running_pod(setup: &Setup) -> anyhow::Result<()> {
    let mut create = setup.kubectl(Path::Direct, Transport::WebSocket);
    create.args([
        "run",
        POD,
        "--image=registry.example.com/app:1",
        "--restart=Never",
    ]);
    bounded(&mut create, None, COMMAND_LIMIT)?.ok("kubectl run")?;
    let mut ready = setup.kubectl(Path::Direct, Transport::WebSocket);
    ready.args([
        "wait",
        &format!("pod/{POD}"),
        "--for=condition=Ready",
        "--timeout=60s",
    ]);
    bounded(&mut ready, None, COMMAND_LIMIT)?
        .ok("the pod on the stack's kwok nodes did not become Ready")
}

/// `count` times `kubectl exec POD -- true` after one not timed; wall times in ms.
fn exec_latencies(
    setup: &Setup,
    path: Path,
    transport: Transport,
    count: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(count);
    for i in 0..=count {
        let mut exec = setup.kubectl(path, transport);
        exec.args(["exec", POD, "--", "true"]);
        let done = bounded(&mut exec, None, COMMAND_LIMIT)?;
        done.ok(&format!("exec over {} ({})", transport.name(), path.name()))?;
        if i > 0 {
            out.push(done.elapsed.as_secs_f64() * 1000.0);
        }
    }
    Ok(out)
}

/// `data` through `kubectl exec -i POD -- cat` and back; the wall time of the
/// whole command, kubectl's start and the session's opening included.
fn exec_cat(
    setup: &Setup,
    path: Path,
    transport: Transport,
    data: &[u8],
) -> anyhow::Result<Duration> {
    let mut exec = setup.kubectl(path, transport);
    exec.args(["exec", "-i", POD, "--", "cat"]);
    let done = bounded(&mut exec, Some(data), COMMAND_LIMIT)?;
    let what = format!("exec -i cat over {} ({})", transport.name(), path.name());
    done.ok(&what)?;
    if done.stdout != data {
        bail!(
            "{what}: {} bytes came back of {} sent, or different ones",
            done.stdout.len(),
            data.len()
        );
    }
    Ok(done.elapsed)
}

/// Bytes that neither compress nor repeat in a short period (xorshift).
fn payload(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A finished command.
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// From the spawn to the exit.
    elapsed: Duration,
    killed: bool,
}

impl Finished {
    fn ok(&self, what: &str) -> anyhow::Result<()> {
        if self.killed {
            bail!("{what}: killed after {} s", COMMAND_LIMIT.as_secs());
        }
        if !self.status.success() {
            bail!(
                "{what}: {}: {}",
                self.status,
                String::from_utf8_lossy(&self.stderr).trim()
            );
        }
        Ok(())
    }
}

/// Runs `command` to its end with `input` on its stdin, killed (by its pid)
/// once `limit` has passed.
fn bounded(
    command: &mut Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> anyhow::Result<Finished> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().context("starting kubectl")?;
    let pid = child.id().to_string();
    let (finished, watched) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        let expired = matches!(watched.recv_timeout(limit), Err(RecvTimeoutError::Timeout));
        if expired {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        expired
    });
    let (mut stdin, mut stdout, mut stderr) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (status, out, err) = thread::scope(|scope| {
        if let (Some(mut pipe), Some(input)) = (stdin.take(), input) {
            // A write error means kubectl went away; its status says why.
            scope.spawn(move || pipe.write_all(input));
        }
        let err = scope.spawn(move || {
            let mut buf = Vec::new();
            if let Some(pipe) = stderr.as_mut() {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        });
        let mut out = Vec::with_capacity(input.map_or(0, <[u8]>::len));
        if let Some(pipe) = stdout.as_mut() {
            let _ = pipe.read_to_end(&mut out);
        }
        let status = child.wait();
        (status, out, err.join().unwrap_or_default())
    });
    let elapsed = started.elapsed();
    drop(finished);
    let killed = watchdog.join().unwrap_or(true);
    Ok(Finished {
        status: status?,
        stdout: out,
        stderr: err,
        elapsed,
        killed,
    })
}

/// The pod's port-forward target: every connection kwok opens gets its
/// bytes back. Stopped (and its connections shut) on drop.
struct Echo {
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    accepting: Option<JoinHandle<()>>,
}

impl Echo {
    /// Listens on `address`, trying again every 2 s while another test holds it.
    fn bind(address: &str, patience: Duration) -> anyhow::Result<Self> {
        let started = Instant::now();
        let listener = loop {
            match TcpListener::bind(address) {
                Ok(listener) => break listener,
                Err(e) if started.elapsed() < patience => {
                    eprintln!("  the port-forward target {address} is taken ({e}); waiting");
                    thread::sleep(Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "the port-forward target {address} stayed taken for {} s",
                            patience.as_secs()
                        )
                    });
                }
            }
        };
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let accepting = {
            let (stop, open) = (stop.clone(), open.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((socket, _)) => echo(socket, &open),
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        Ok(Self {
            stop,
            open,
            accepting: Some(accepting),
        })
    }
}

fn echo(socket: TcpStream, open: &Mutex<Vec<TcpStream>>) {
    let clones = (socket.try_clone(), socket.try_clone());
    let (Ok(kept), Ok(mut reader)) = clones else {
        return;
    };
    let _ = socket.set_nonblocking(false);
    let _ = socket.set_nodelay(true);
    if let Ok(mut open) = open.lock() {
        open.push(kept);
    }
    thread::spawn(move || {
        let mut writer = socket;
        let _ = std::io::copy(&mut reader, &mut writer);
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
        if let Ok(open) = self.open.lock() {
            for socket in open.iter() {
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// `kubectl port-forward pod/POD :8080` on a local port it picks; stopped on drop.
struct Forward {
    child: Child,
    port: u16,
}

impl Forward {
    fn start(setup: &Setup, path: Path, transport: Transport) -> anyhow::Result<Self> {
        let log = setup.work.join(format!(
            "sessions-{}-port-forward-{}-{}.log",
            setup.run_id,
            if path == Path::Direct {
                "direct"
            } else {
                "tenant"
            },
            transport.name()
        ));
        let mut command = setup.kubectl(path, transport);
        command
            .args([
                "port-forward",
                "--address",
                "127.0.0.1",
                &format!("pod/{POD}"),
                ":8080",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?);
        let mut child = command.spawn().context("starting kubectl port-forward")?;
        let stdout = child.stdout.take().context("kubectl's stdout")?;
        // Drained to the end: kubectl prints a line for every connection.
        let (lines, said) = mpsc::channel::<String>();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut forward = Self { child, port: 0 };
        let deadline = Instant::now() + Duration::from_secs(30);
        while forward.port == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = said.recv_timeout(left).map_err(|_| {
                anyhow::anyhow!(
                    "kubectl port-forward over {} ({}) never said where it listens; see {}",
                    transport.name(),
                    path.name(),
                    log.display()
                )
            })?;
            // "Forwarding from 127.0.0.1:PORT -> 8080"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                forward.port = rest
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .with_context(|| format!("kubectl port-forward said {line:?}"))?;
            }
        }
        Ok(forward)
    }

    fn connect(&self) -> anyhow::Result<TcpStream> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(SOCKET_LIMIT))?;
        stream.set_write_timeout(Some(SOCKET_LIMIT))?;
        Ok(stream)
    }

    /// `data` through the forwarded port and back, from the connect to the last byte.
    fn push(&self, data: &[u8]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut stream = self.connect()?;
        let mut writer = stream.try_clone()?;
        let mut back = vec![0; data.len()];
        let (sent, read) = thread::scope(|scope| {
            let sent = scope.spawn(move || writer.write_all(data));
            let read = stream.read_exact(&mut back);
            (sent.join(), read)
        });
        let took = started.elapsed();
        read.context("reading the echo back through the forwarded port")?;
        match sent {
            Ok(result) => result.context("writing through the forwarded port")?,
            Err(_) => bail!("the writer through the forwarded port panicked"),
        }
        if back != data {
            bail!("the echo through the forwarded port differs from what was sent");
        }
        Ok(took)
    }

    /// `count` round trips of a small message on one connection, in ms.
    fn round_trips(&self, count: usize) -> anyhow::Result<Vec<f64>> {
        let mut stream = self.connect()?;
        let message = [b'x'; MESSAGE];
        let mut back = [0; MESSAGE];
        let mut out = Vec::with_capacity(count);
        for i in 0..WARM_ROUND_TRIPS + count {
            let started = Instant::now();
            stream.write_all(&message)?;
            stream
                .read_exact(&mut back)
                .context("a round trip through the forwarded port")?;
            if i >= WARM_ROUND_TRIPS {
                out.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Ok(out)
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn report(options: &Options, figures: &Figures, command: &str) {
    println!(
        "### Sessions through the tenant API: kubectl exec ({} a path and transport), {} MiB through exec and port-forward, {} round trips; {} run(s)\n",
        options.execs,
        options.megabytes,
        options.round_trips,
        figures.runs.len()
    );
    println!("`{command}`\n");
    let rows: Vec<Vec<String>> = ROWS
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let column = |path: Path| {
                median(
                    &figures
                        .runs
                        .iter()
                        .map(|r| r[i][path as usize])
                        .collect::<Vec<_>>(),
                )
            };
            let ratio = median(
                &figures
                    .runs
                    .iter()
                    .map(|r| r[i][Path::Tenant as usize] / r[i][Path::Direct as usize])
                    .collect::<Vec<_>>(),
            );
            vec![
                row.to_string(),
                f2(column(Path::Direct)),
                f2(column(Path::Tenant)),
                f2(ratio),
            ]
        })
        .collect();
    table(
        &["figure", "direct", "tenant API", "tenant API ÷ direct"],
        &rows,
    );
    println!(
        "Medians over the runs; the ratio is the median of each run's ratio. Latencies: lower is better; MiB/s: higher is better."
    );
}
