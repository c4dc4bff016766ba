#!/usr/bin/env bash
# Ballast local test control plane: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and an S3 server (versitygw), all on 127.0.0.1, no kubelet.
#
# Usage: cluster.sh up | down | env | status
#        cluster.sh pause|resume|stop|start COMPONENT
#   COMPONENT: etcd | apiserver | controller-manager | scheduler | s3
#
#   up      start everything (idempotent: starts what is stopped, resumes what
#           is paused) and write $BALLAST_CLUSTER_DIR/env
#   down    kill everything (paused ones too) and delete the state
#   env     print the env file (eval "$(tests/cluster/cluster.sh env)")
#   status  print each component: running | paused | stopped
#   pause   SIGSTOP the component (connections hang, nothing is refused)
#   resume  SIGCONT it
#   stop    terminate it (data is kept)
#   start   start it again with the same flags, ports and data, and wait
#
# State lives in ${BALLAST_CLUSTER_DIR:-<repo>/build/cluster}. Binaries come
# from $BALLAST_BINDIR if set, else tests/cluster/build-servers.sh (which
# honours BALLAST_ASSETS and BALLAST_CACHE).
# BALLAST_CLUSTER_TIMEOUT (seconds, default 120) bounds each readiness wait;
# BALLAST_STOP_GRACE (seconds, default 5) is the SIGTERM-to-SIGKILL delay.
# BALLAST_APISERVER_PROFILING=1 serves kube-apiserver's /debug/pprof (to see
# where its CPU goes in a benchmark: go tool pprof with the admin client cert).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir="${BALLAST_CLUSTER_DIR:-$repo/build/cluster}"
timeout="${BALLAST_CLUSTER_TIMEOUT:-120}"
grace="${BALLAST_STOP_GRACE:-5}"
apiserver_profiling=false
[[ ${BALLAST_APISERVER_PROFILING:-} == 1 ]] && apiserver_profiling=true
components=(etcd apiserver controller-manager scheduler s3)
bucket=ballast
region=us-east-1
empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

valid_component() {
  local c
  for c in "${components[@]}"; do [[ $1 == "$c" ]] && return 0; done
  die "unknown component '$1' (one of: ${components[*]})"
}

# ---------------------------------------------------------------- processes

pidfile() { printf '%s/run/%s.pid' "$dir" "$1"; }
cmdfile() { printf '%s/run/%s.cmd' "$dir" "$1"; }
logfile() { printf '%s/logs/%s.log' "$dir" "$1"; }

# PID of the component if its recorded process is alive (and is still the
# process we started: its command line names our state dir), else nothing.
live_pid() {
  local f pid
  f=$(pidfile "$1")
  [[ -f $f ]] || return 0
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 0
  [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *"$dir/"* ]] || return 0
  [[ $(proc_state "$pid") == Z ]] && return 0
  printf '%s\n' "$pid"
}

proc_state() { # pid -> R/S/D/T/Z...
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  printf '%s\n' "${stat%% *}"
}

component_state() {
  local pid
  pid=$(live_pid "$1")
  if [[ -z $pid ]]; then echo stopped
  elif [[ $(proc_state "$pid") == [Tt] ]]; then echo paused
  else echo running
  fi
}

# Start the component from its recorded command line.
spawn() {
  local c=$1 pid
  local -a cmd
  [[ -f $(cmdfile "$c") ]] || die "no recorded command for $c; run: $0 up"
  mapfile -d '' -t cmd <"$(cmdfile "$c")"
  printf '\n==== %s start: %s\n' "$(date -u +%FT%TZ)" "${cmd[*]}" >>"$(logfile "$c")"
  # 9>&-: the server must not inherit (and so hold) the lock on fd 9.
  setsid "${cmd[@]}" </dev/null >>"$(logfile "$c")" 2>&1 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$(pidfile "$c")"
  log "started $c (pid $pid)"
}

# Record the command line (NUL-separated, exact) and start it.
record_and_spawn() { # component argv...
  local c=$1; shift
  printf '%s\0' "$@" >"$(cmdfile "$c")"
  spawn "$c"
}

# SIGCONT (in case it is paused), SIGTERM, and SIGKILL after $grace seconds.
# kube-apiserver, on SIGTERM, drains in-flight requests, closes its port, and
# then waits up to 60s for open watches to go away; so once its port (the
# optional 3rd argument) is closed, it gets the SIGKILL at once.
kill_pid() { # pid name [port]
  local pid=$1 port=${3:-} i
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    [[ $(proc_state "$pid") == Z ]] && return 0
    if [[ -n $port ]] && ((i >= 2)) && ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  [[ -n $port ]] || log "$2 (pid $pid) still running ${grace}s after SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    [[ $(proc_state "$pid") == Z ]] && return 0
    sleep 0.1
  done
}

stop_component() {
  local pid
  pid=$(live_pid "$1")
  if [[ -z $pid ]]; then log "$1 is not running"; rm -f "$(pidfile "$1")"; return 0; fi
  if [[ $1 == apiserver && -n ${APISERVER_PORT:-} ]]; then kill_pid "$pid" "$1" "$APISERVER_PORT"; else kill_pid "$pid" "$1"; fi
  rm -f "$(pidfile "$1")"
  log "stopped $1"
}

# ---------------------------------------------------------------- readiness

fail_component() { # component message
  log "error: $2"
  log "last lines of $(logfile "$1"):"
  tail -n 30 "$(logfile "$1")" >&2 || true
  exit 1
}

# wait_for COMPONENT DESCRIPTION COMMAND... : retry COMMAND until it succeeds.
wait_for() {
  local c=$1 what=$2 deadline=$((SECONDS + timeout))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [[ -n $(live_pid "$c") ]] || fail_component "$c" "$c exited while waiting for $what"
    ((SECONDS < deadline)) || fail_component "$c" "timed out after ${timeout}s waiting for $what"
    sleep 0.3
  done
}

s3curl() { # curl args... (signed with the root credentials)
  curl -fsS --max-time 10 --aws-sigv4 "aws:amz:$region:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -H "x-amz-content-sha256: $empty_sha256" "$@"
}

check_etcd() { curl -fsS --max-time 5 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
check_apiserver() {
  curl -fsS --max-time 5 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz"
}
# kube-controller-manager answers /healthz before it has built its controllers
# (and exits if the apiserver goes away meanwhile); each built controller adds
# a check, so wait for some of ours.
check_kcm() {
  local out
  out=$(curl -fsSk --max-time 5 "https://127.0.0.1:$KCM_PORT/healthz?verbose") || return 1
  [[ $out == *serviceaccount-token-controller* && $out == *daemonset-controller* &&
    $out == *garbage-collector-controller* && $out == *namespace-controller* ]]
}
check_scheduler() { curl -fsSk --max-time 5 "https://127.0.0.1:$SCHEDULER_PORT/readyz"; }
check_s3() { s3curl "http://127.0.0.1:$S3_PORT/$bucket?list-type=2&max-keys=1"; }
check_s3_up() { # any S3 answer (even an error) means it is listening
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$S3_PORT/") || return 1
  [[ $code != 000 ]]
}

wait_ready() {
  case $1 in
  etcd) wait_for etcd "etcd /health" check_etcd ;;
  apiserver) wait_for apiserver "kube-apiserver /readyz" check_apiserver ;;
  controller-manager) wait_for controller-manager "kube-controller-manager to start its controllers" check_kcm ;;
  scheduler) wait_for scheduler "kube-scheduler /readyz" check_scheduler ;;
  s3)
    wait_for s3 "versitygw to listen" check_s3_up
    if ! check_s3 >/dev/null 2>&1; then
      s3curl -X PUT "http://127.0.0.1:$S3_PORT/$bucket" >/dev/null 2>"$dir/run/s3-bucket.err" ||
        fail_component s3 "could not create bucket $bucket: $(cat "$dir/run/s3-bucket.err")"
    fi
    wait_for s3 "bucket $bucket to answer ListObjectsV2" check_s3 ;;
  esac
  log "$1 is ready"
}

# ---------------------------------------------------------------- setup

# shellcheck source=tests/lib/ports.sh
source "$here/../lib/ports.sh"

find_bindir() {
  local b
  if [[ -n ${BALLAST_BINDIR:-} ]]; then
    bindir=$BALLAST_BINDIR
  else
    log "locating binaries with build-servers.sh (the first build takes a while) ..."
    bindir=$("$here/build-servers.sh" | tail -n 1)
  fi
  for b in etcd etcdctl kube-apiserver kube-controller-manager kube-scheduler kubectl helm versitygw; do
    [[ -x $bindir/$b ]] || die "$bindir/$b is missing (set BALLAST_BINDIR or BALLAST_ASSETS, or run build-servers.sh)"
  done
}

gen_cert() { # name subject [extensions-file-section...]; signed by ca
  local name=$1 subj=$2 ext=$3
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -subj "$subj" \
    -out "$pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$pki/ext.cnf" -extensions "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr"
}

gen_pki() {
  pki="$dir/pki"
  mkdir -p "$pki"
  (
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -keyout "$pki/ca.key" -out "$pki/ca.crt" \
      -subj "/CN=ballast-test-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    cat >"$pki/ext.cnf" <<'EOF'
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
EOF
    gen_cert apiserver "/CN=kube-apiserver" server
    gen_cert admin "/O=system:masters/CN=ballast-admin" client
    gen_cert controller-manager "/CN=system:kube-controller-manager" client
    gen_cert scheduler "/CN=system:kube-scheduler" client
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
    openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  )
}

write_kubeconfig() { # file user
  local user=$2
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ballast
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $dir/pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $dir/pki/$user.crt
    client-key: $dir/pki/$user.key
contexts:
- name: ballast
  context:
    cluster: ballast
    user: $user
    namespace: default
current-context: ballast
EOF
  chmod 600 "$1"
}

write_env() {
  {
    echo "# Ballast local test control plane; source this file."
    printf 'export %s=%q\n' \
      KUBECONFIG "$dir/kubeconfig" \
      BALLAST_CLUSTER_DIR "$dir" \
      BALLAST_BINDIR "$bindir" \
      BALLAST_APISERVER_URL "https://127.0.0.1:$APISERVER_PORT" \
      BALLAST_CA_FILE "$dir/pki/ca.crt" \
      BALLAST_ETCD_ENDPOINT "http://127.0.0.1:$ETCD_PORT" \
      BALLAST_S3_ENDPOINT "http://127.0.0.1:$S3_PORT" \
      BALLAST_S3_BUCKET "$bucket" \
      BALLAST_S3_REGION "$region" \
      AWS_ACCESS_KEY_ID "$S3_ACCESS_KEY" \
      AWS_SECRET_ACCESS_KEY "$S3_SECRET_KEY"
    # shellcheck disable=SC2016
    printf 'case ":$PATH:" in *:%q:*) ;; *) export PATH=%q:"$PATH" ;; esac\n' "$bindir" "$bindir"
  } >"$dir/env"
}

# Port/credential settings shared by every subcommand.
load_settings() {
  [[ -f $dir/run/settings ]] || die "no cluster in $dir; run: $0 up"
  # shellcheck source=/dev/null
  source "$dir/run/settings"
}

create_cluster() {
  local v
  if [[ -d $dir && ! -f $dir/.ballast-cluster ]] && [[ -n $(ls -A "$dir") ]]; then
    die "$dir exists, is not empty and is not a Ballast cluster dir; not touching it"
  fi
  find_bindir
  rm -rf "$dir"
  mkdir -p "$dir"/{run,logs,etcd,s3/data,s3/iam,s3/versioning,apiserver,controller-manager,scheduler}
  : >"$dir/.ballast-cluster"
  taken_ports=""
  for v in ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT SCHEDULER_PORT S3_PORT; do free_port "$v"; done
  S3_ACCESS_KEY="ballast$(openssl rand -hex 6)"
  S3_SECRET_KEY=$(openssl rand -hex 20)
  {
    for v in bindir ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT SCHEDULER_PORT S3_PORT S3_ACCESS_KEY S3_SECRET_KEY; do
      printf '%s=%q\n' "$v" "${!v}"
    done
  } >"$dir/run/settings"
  chmod 600 "$dir/run/settings"
  gen_pki
  write_kubeconfig "$dir/kubeconfig" admin
  write_kubeconfig "$dir/controller-manager.kubeconfig" controller-manager
  write_kubeconfig "$dir/scheduler.kubeconfig" scheduler

  local issuer=https://kubernetes.default.svc.cluster.local
  local etcd_url="http://127.0.0.1:$ETCD_PORT" peer_url="http://127.0.0.1:$ETCD_PEER_PORT"
  record_and_spawn etcd "$bindir/etcd" \
    --name=ballast --data-dir="$dir/etcd" \
    --listen-client-urls="$etcd_url" --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="$peer_url" --initial-advertise-peer-urls="$peer_url" \
    --initial-cluster="ballast=$peer_url" --initial-cluster-state=new \
    --unsafe-no-fsync=true --log-level=warn
  wait_ready etcd

  # --endpoint-reconciler-type=none: Endpoints may not hold loopback addresses,
  # so the default reconciler would fail (and log) every 10s; the "kubernetes"
  # Service still exists, without endpoints.
  record_and_spawn apiserver "$bindir/kube-apiserver" \
    --etcd-servers="$etcd_url" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --cert-dir="$dir/apiserver" \
    --tls-cert-file="$dir/pki/apiserver.crt" --tls-private-key-file="$dir/pki/apiserver.key" \
    --client-ca-file="$dir/pki/ca.crt" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota \
    --service-account-issuer="$issuer" --api-audiences="$issuer" \
    --service-account-key-file="$dir/pki/sa.pub" \
    --service-account-signing-key-file="$dir/pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true --watch-cache=true \
    --endpoint-reconciler-type=none \
    --profiling="$apiserver_profiling" --v=1
  wait_ready apiserver

  record_and_spawn controller-manager "$bindir/kube-controller-manager" \
    --kubeconfig="$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
    --authentication-skip-lookup=true \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$dir/controller-manager" \
    --controllers='*' --use-service-account-credentials=true \
    --service-account-private-key-file="$dir/pki/sa.key" --root-ca-file="$dir/pki/ca.crt" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --leader-elect=false --profiling=false --v=1
  record_and_spawn scheduler "$bindir/kube-scheduler" \
    --kubeconfig="$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
    --authentication-skip-lookup=true \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$dir/scheduler" \
    --leader-elect=false --profiling=false --v=1
  record_and_spawn s3 "$bindir/versitygw" \
    --access="$S3_ACCESS_KEY" --secret="$S3_SECRET_KEY" --region="$region" \
    --port="127.0.0.1:$S3_PORT" --iam-dir="$dir/s3/iam" --quiet \
    posix --versioning-dir="$dir/s3/versioning" "$dir/s3/data"
  wait_ready controller-manager
  wait_ready scheduler
  wait_ready s3
  write_env
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local c state started=0
  if [[ -f $dir/run/settings && -f $dir/.ballast-cluster ]]; then
    load_settings
    # In dependency order: each one ready before the next starts.
    for c in "${components[@]}"; do
      state=$(component_state "$c")
      case $state in
      stopped) spawn "$c"; started=1 ;;
      paused) kill -CONT "$(live_pid "$c")"; log "resumed $c"; started=1 ;;
      esac
      wait_ready "$c"
    done
    write_env
    if ((started)); then log "cluster in $dir is up (restarted what was stopped)"
    else log "cluster in $dir is already up"; fi
  else
    log "creating cluster in $dir"
    create_cluster
    log "cluster is up; use: source $dir/env"
  fi
  cmd_status
}

cmd_down() {
  local c pid f i exe
  if [[ -e $dir && ! -f $dir/.ballast-cluster ]]; then
    die "$dir does not look like a Ballast cluster dir (no .ballast-cluster); not touching it"
  fi
  [[ -d $dir ]] || { log "no cluster in $dir"; return 0; }
  APISERVER_PORT=
  [[ -f $dir/run/settings ]] && load_settings
  # Resume everything first, so nothing waits on a paused peer while stopping.
  for c in "${components[@]}"; do
    pid=$(live_pid "$c")
    [[ -n $pid ]] && kill -CONT "$pid" 2>/dev/null
  done
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    c=${components[i]}
    [[ -f $(pidfile "$c") ]] && stop_component "$c"
  done
  # Leftovers whose pid file was lost: our server binaries whose command line
  # names this state dir. Killed one by one, by pid.
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    exe=
    IFS= read -r -d '' exe 2>/dev/null <"$f" || [[ -n $exe ]] || continue
    case ${exe##*/} in etcd | kube-apiserver | kube-controller-manager | kube-scheduler | versitygw) ;; *) continue ;; esac
    if [[ $(tr '\0' ' ' 2>/dev/null <"$f") == *"$dir/"* ]]; then
      log "killing leftover ${exe##*/} (pid $pid)"
      kill_pid "$pid" "${exe##*/}"
    fi
  done
  rm -rf "$dir"
  log "cluster in $dir is down and its state removed"
}

cmd_status() {
  local c
  if [[ ! -f $dir/run/settings ]]; then echo "no cluster in $dir"; return 0; fi
  load_settings
  for c in "${components[@]}"; do
    printf '%-20s %-8s %s\n' "$c" "$(component_state "$c")" "$(live_pid "$c")"
  done
}

cmd_pause() {
  local pid
  load_settings
  pid=$(live_pid "$1")
  [[ -n $pid ]] || die "$1 is not running"
  kill -STOP "$pid"
  log "paused $1 (pid $pid)"
}

cmd_resume() {
  local pid
  load_settings
  pid=$(live_pid "$1")
  [[ -n $pid ]] || die "$1 is not running"
  kill -CONT "$pid"
  log "resumed $1 (pid $pid)"
}

cmd_start() {
  local c was
  load_settings
  was=$(component_state "$1")
  case $was in
  running) log "$1 is already running" ;;
  paused) die "$1 is paused; use: $0 resume $1" ;;
  stopped) spawn "$1" ;;
  esac
  wait_ready "$1"
  # After an apiserver outage, client-go's watch backoff (up to ~1 min) keeps
  # kube-controller-manager and kube-scheduler idle for a while; restart them
  # so that controllers (DaemonSet pods, service-account tokens, ...) work at once.
  if [[ $1 == apiserver && $was == stopped ]]; then
    for c in controller-manager scheduler; do
      [[ $(component_state "$c") == running ]] || continue
      stop_component "$c"
      spawn "$c"
      wait_ready "$c"
    done
  fi
}

cmd_stop() {
  load_settings
  stop_component "$1"
}

case ${1:-} in
up | down | env | status) [[ $# -eq 1 ]] || { usage >&2; exit 2; } ;;
pause | resume | stop | start) [[ $# -eq 2 ]] || { usage >&2; exit 2; }; valid_component "$2" ;;
-h | --help | help) usage; exit 0 ;;
*) usage >&2; exit 2 ;;
esac

# Serialize commands that change processes (parallel test jobs may all run up).
if [[ $1 != env && $1 != status ]]; then
  mkdir -p "$(dirname "$dir")"
  exec 9>"$dir.lock"
  flock 9
fi

case $1 in
up) cmd_up ;;
down) cmd_down ;;
env) [[ -f $dir/env ]] || die "no cluster in $dir; run: $0 up"; cat "$dir/env" ;;
status) cmd_status ;;
pause) cmd_pause "$2" ;;
resume) cmd_resume "$2" ;;
stop) cmd_stop "$2" ;;
start) cmd_start "$2" ;;
esac
