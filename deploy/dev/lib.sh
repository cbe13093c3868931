# shellcheck shell=bash
# Shared settings and helpers for the deploy/dev scripts; sourced, never run.
# The variables are used by the scripts that source this file.
# shellcheck disable=SC2034

# Pinned versions. Changing one rebuilds that binary under a new cache name.
# Kubernetes minor matches k8s-openapi's v1_34 feature on the Rust side;
# v1.34.4 is the newest 1.34 patch the module proxy serves.
K8S_VERSION=v1.34.4
# etcd 3.6 is the line Kubernetes 1.34 ships with (it vendors the 3.6 client).
ETCD_VERSION=v3.6.16
# Dex master commit ab64ed778070 (2026-08-06): the newest Dex the proxy serves.
# It has the client_credentials grant (PR #4583) and groups on static
# passwords. Dex tags are v2.x without /v2 in the module path, so only a
# pseudo-version can be required; its api/v2 is pinned separately because
# Dex's own `replace ./api/v2` is ignored in a dependency.
DEX_VERSION=v0.0.0-20260806151424-ab64ed778070
DEX_API_VERSION=v2.4.0
# kwok simulates nodes (pods scheduled and Running, exec/logs/attach/
# port-forward answered through the API server's kubelet path). Built with
# three small patches (see build-binaries); KWOK_BUILD names that build in
# the cache: bump its suffix when the patches change.
KWOK_VERSION=v0.8.0
KWOK_BUILD=$KWOK_VERSION-p3
# Helm v4, the real tool run through the tenant API in the tests.
HELM_VERSION=v4.3.2

TP_CACHE=${TENANT_PORTAL_CACHE:-$HOME/.cache/tenant-portal}
TP_BIN=$TP_CACHE/bin
TP_STATE=${TENANT_PORTAL_STATE:-$HOME/.local/state/tenant-portal}
DEV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

bin_path() { # name -> cached binary path for the pinned version
  bin_var "$1" && echo "$BIN"
}
bin_var() { # name -> BIN (the same, without a subshell)
  case $1 in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) BIN=$TP_BIN/$1-$K8S_VERSION ;;
    kwok) BIN=$TP_BIN/kwok-$KWOK_BUILD ;;
    helm) BIN=$TP_BIN/helm-$HELM_VERSION ;;
    etcd) BIN=$TP_BIN/etcd-$ETCD_VERSION ;;
    dex) BIN=$TP_BIN/dex-$DEX_VERSION ;;
    *) die "unknown binary '$1'" ;;
  esac
}

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# A free loopback TCP port: the preferred one if nothing listens on it.
# Ports are drawn below the kernel's ephemeral range: a port an outgoing
# connection holds answers no connect, so port_in_use cannot see it, yet a
# listener's bind on it fails.
free_port() {
  local preferred=${1:-} p low=32768 span
  if [[ -n $preferred ]] && ! port_in_use "$preferred"; then echo "$preferred"; return; fi
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  span=$(( low - 20000 ))
  (( span >= 1000 )) || span=30000
  for _ in $(seq 50); do
    p=$(( 20000 + RANDOM % span ))
    port_in_use "$p" || { echo "$p"; return; }
  done
  die "no free port found on 127.0.0.1"
}
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pidfile [binary] -> true if the process recorded there is alive (and, when
# given, runs that binary: guards against a recycled pid).
# Bash builtins only (no fork): `up` on a running stack calls it often.
pid_alive() {
  local pid
  [[ -f $1 ]] && read -r pid <"$1" && [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ -z ${2:-} || /proc/$pid/exe -ef $2 ]]
}

# stop_pids <pidfile>...: TERM the processes recorded there (all at once:
# each takes seconds to shut down gracefully), wait up to 10s, then KILL.
stop_pids() {
  local f pid pids=() alive _
  for f in "$@"; do
    [[ -f $f ]] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping $(basename "$f" .pid) (pid $pid)"
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$f"
  done
  for _ in $(seq 100); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    (( alive )) || return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && { log "pid $pid did not stop in 10s, killing it"; kill -9 "$pid" 2>/dev/null || true; }
  done
  return 0
}

# Start a command detached, logging to a file, recording its pid.
start_bg() {
  local pidfile=$1 logfile=$2; shift 2
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

# wait_for <seconds> <what> <logfile> <pidfile> <command...>: retry the
# command until it succeeds; fail early if the process behind pidfile died.
wait_for() {
  local secs=$1 what=$2 logfile=$3 pidfile=$4; shift 4
  local deadline=$(( SECONDS + secs ))
  until "$@" >/dev/null 2>&1; do
    local why=
    pid_alive "$pidfile" || why="exited"
    (( SECONDS < deadline )) || why="not ready after ${secs}s"
    if [[ -n $why ]]; then
      log "$what $why; last lines of $logfile:"
      tail -n 20 "$logfile" >&2 || true
      die "$what failed to start (full log: $logfile); 'down' stops what was started"
    fi
    sleep 0.2
  done
}

ms_now() { date +%s%3N; }
ms_since() { # $EPOCHREALTIME from before -> milliseconds since
  local a=${1/[.,]/} b=${EPOCHREALTIME/[.,]/}
  echo $(( (10#$b - 10#$a) / 1000 ))
}
