#!/usr/bin/env bash
# Build (or reuse) the pinned binaries of Ballast's local test control plane:
# etcd, etcdctl, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, helm (v3), helm4 and versitygw. With --node, also what the kind
# end-to-end suite (kind-e2e/) puts in its node image: kubelet, kubeadm,
# kube-proxy, containerd, ctr, containerd-shim-runc-v2, runc, crictl, the CNI
# plugins and coredns; and kind itself.
#
# Each component is built from the Go module under tests/cluster/tools/<name>/
# into ${BALLAST_CACHE:-~/.cache/ballast}/bin/<name>-<version>-<key>/, where
# <key> hashes that module's go.mod, go.sum and build flags. A populated
# directory is reused as is. The binaries are then gathered (as symlinks) into
# one directory, printed as the last line on stdout. Progress goes to stderr.
#
# BALLAST_ASSETS=DIR  use the binaries found in DIR (envtest KUBEBUILDER_ASSETS
#                     style) instead; a component is built only when DIR lacks
#                     one of its binaries (then DIR's binaries still win).
#
# Usage: build-servers.sh [--node] [--kubernetes MINOR] [--print-bindir | --prune | --versions | --help]
#   --node          the kind node components too (the bin dir then holds both).
#   --kubernetes MINOR
#                   the Kubernetes binaries of another minor version, from the
#                   module tools/kubernetes-MINOR (the kind suite's oldest
#                   version; the rest stays as pinned here).
#   --print-bindir  print the directory if everything is already built, else
#                   exit 1 without building.
#   --prune         build if needed, then delete cached builds other than the
#                   current ones (except those a running process uses).
#   --versions      print the pinned versions.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools="$here/tools"
cache="${BALLAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ballast}"
go_min=1.26.0

# component | version | binaries it provides
components=(kubernetes etcd versitygw helm3 helm4) # build order: optional helm4 last
# The kind node image's (--node): kubelet shares the kubernetes module.
node_components=(kubelet containerd runc crictl cni-plugins coredns kind)
declare -A version=(
  [kubernetes]=v1.36.3
  [etcd]=v3.6.16
  [helm3]=v3.22.0
  [helm4]=v4.3.1
  [versitygw]=v1.8.0
  [kubelet]=v1.36.3
  [containerd]=v2.3.4
  [runc]=v1.4.3
  [crictl]=v1.36.0
  [cni-plugins]=v1.9.1
  [coredns]=v1.14.2
  [kind]=v0.33.0
)
declare -A provides=(
  [kubernetes]="kube-apiserver kube-controller-manager kube-scheduler kubectl"
  [etcd]="etcd etcdctl"
  [helm3]="helm"
  [helm4]="helm4"
  [versitygw]="versitygw"
  [kubelet]="kubelet kubeadm kube-proxy"
  [containerd]="containerd ctr containerd-shim-runc-v2"
  [runc]="runc"
  [crictl]="crictl"
  [cni-plugins]="host-local loopback ptp portmap bridge"
  [coredns]="coredns"
  [kind]="kind"
)
# The Go module under tools/ a component is built from, when not its name.
declare -A module=([kubelet]=kubernetes)
# Optional components: a failure to build them is reported, not fatal.
declare -A optional=([helm4]=1)
declare -A slow=([kubernetes]=" (10-20 min on 2 cores)" [helm4]=" (~3 min)" [helm3]=" (~2 min)"
  [kubelet]=" (~3 min after kubernetes)" [containerd]=" (~4 min)" [crictl]=" (~2 min)"
  [coredns]=" (~7 min)" [kind]=" (~2 min)")

log() { printf 'build-servers: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# Build time of a module release, for reproducible version strings.
module_time() { # module version
  go list -m -json "$1@$2" 2>/dev/null | sed -n 's/.*"Time": "\([^"]*\)".*/\1/p'
}

ldflags_for() { # component
  local v=${version[$1]} p c f="-s -w" t
  case $1 in
  kubernetes | kubelet)
    local minor=${v#v1.}; minor=${minor%%.*}
    t=$(cd "$(modir "$1")" && module_time k8s.io/kubernetes "$v")
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      f+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      f+=" -X $p.gitCommit=0000000000000000000000000000000000000000"
      f+=" -X $p.gitTreeState=clean -X $p.buildDate=${t:-1970-01-01T00:00:00Z}"
    done ;;
  helm3)
    # Helm's Makefile sets its default Kubernetes capabilities from client-go.
    c=$(cd "$tools/helm3" && go list -m -f '{{.Version}}' k8s.io/client-go)
    c=${c#v0.}; c=${c%%.*}
    f+=" -X helm.sh/helm/v3/internal/version.version=$v"
    f+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      f+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$c"
    done ;;
  helm4)
    f+=" -X helm.sh/helm/v4/internal/version.version=$v"
    f+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean" ;;
  versitygw)
    t=$(cd "$tools/versitygw" && module_time github.com/versity/versitygw "$v")
    f+=" -X main.Version=$v -X main.Build=go-module -X main.BuildTime=${t:-none}" ;;
  containerd)
    f+=" -X github.com/containerd/containerd/v2/version.Version=$v"
    f+=" -X github.com/containerd/containerd/v2/version.Revision=go-module" ;;
  runc) f+=" -X main.version=${v#v} -X main.gitCommit=go-module" ;;
  crictl) f+=" -X sigs.k8s.io/cri-tools/pkg/version.Version=$v" ;;
  cni-plugins) f+=" -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$v" ;;
  esac
  printf '%s\n' "$f"
}

# Cache key: the module's go.mod + go.sum + this script's build recipe.
modir() { printf '%s\n' "$tools/${module[$1]:-$1}"; }

key_for() { # component
  {
    cat "$(modir "$1")/go.mod" "$(modir "$1")/go.sum"
    printf '%s\n' "${version[$1]}" "${provides[$1]}" "$(uname -sm)"
    sed -n '/^ldflags_for()/,/^}/p;/^go_build_component()/,/^}/p' "$0"
  } | sha256sum | cut -c1-10
}

check_go() {
  local v
  if ! command -v go >/dev/null 2>&1; then
    [[ -x /usr/local/go/bin/go ]] && die "go is not on PATH, but /usr/local/go/bin/go exists: run  export PATH=/usr/local/go/bin:\$PATH"
    die "Go >= $go_min is required to build the test control plane and 'go' was not found.
  Fix: install Go >= $go_min from https://go.dev/dl/ (e.g. into /usr/local/go and add /usr/local/go/bin to PATH),
  or point BALLAST_ASSETS at a directory holding prebuilt: etcd etcdctl kube-apiserver kube-controller-manager kube-scheduler kubectl helm versitygw"
  fi
  # An explicit GOTOOLCHAIN (e.g. go1.26.8) lets go fetch that toolchain itself.
  [[ -n ${GOTOOLCHAIN:-} && ${GOTOOLCHAIN:-} != local ]] && return 0
  v=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null) || die "'go env GOVERSION' failed; is $(command -v go) a working Go >= $go_min?"
  v=${v#go}; v=${v%%[-+ ]*}
  if [[ $(printf '%s\n%s\n' "$go_min" "$v" | sort -V | head -1) != "$go_min" ]]; then
    die "Go $v at $(command -v go) is too old: the pinned modules need Go >= $go_min.
  Fix: install Go >= $go_min from https://go.dev/dl/ and put it first on PATH,
  or let your Go (>= 1.21) fetch it from the module proxy: export GOTOOLCHAIN=go1.26.8,
  or point BALLAST_ASSETS at a directory holding prebuilt binaries."
  fi
}

# The go build commands. Its text (and ldflags_for's) is part of the cache key.
go_build_component() { # component outdir
  local c=$1 out=$2 ld
  ld=$(ldflags_for "$c")
  (
    cd "$(modir "$c")"
    export CGO_ENABLED=0 GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=readonly"
    local p
    case $c in
    kubernetes)
      # One invocation: the four commands share most packages.
      go build -trimpath -ldflags "$ld" -o "$out/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl ;;
    etcd)
      go build -trimpath -ldflags "$ld" -o "$out/etcd" go.etcd.io/etcd/server/v3 &&
        go build -trimpath -ldflags "$ld" -o "$out/etcdctl" go.etcd.io/etcd/etcdctl/v3 ;;
    helm3) go build -trimpath -ldflags "$ld" -o "$out/helm" helm.sh/helm/v3/cmd/helm ;;
    helm4) go build -trimpath -ldflags "$ld" -o "$out/helm4" helm.sh/helm/v4/cmd/helm ;;
    versitygw) go build -trimpath -ldflags "$ld" -o "$out/versitygw" github.com/versity/versitygw/cmd/versitygw ;;
    kubelet)
      go build -trimpath -ldflags "$ld" -o "$out/" \
        k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kube-proxy ;;
    containerd)
      # cgo (as upstream builds it); the storage drivers a kind node never uses are left out.
      CGO_ENABLED=1 go build -trimpath -tags "no_aufs no_zfs no_btrfs no_devmapper" -ldflags "$ld" -o "$out/" \
        github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
        github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 ;;
    runc) CGO_ENABLED=1 go build -trimpath -tags "seccomp urfave_cli_no_docs" -ldflags "$ld" -o "$out/runc" github.com/opencontainers/runc ;;
    crictl) go build -trimpath -ldflags "$ld" -o "$out/crictl" sigs.k8s.io/cri-tools/cmd/crictl ;;
    cni-plugins)
      for p in ipam/host-local main/loopback main/ptp meta/portmap main/bridge; do
        go build -trimpath -ldflags "$ld" -o "$out/${p#*/}" "github.com/containernetworking/plugins/plugins/$p" || exit 1
      done ;;
    coredns) go build -trimpath -ldflags "$ld" -o "$out/coredns" github.com/coredns/coredns ;;
    kind) go build -trimpath -ldflags "$ld" -o "$out/kind" sigs.k8s.io/kind ;;
    esac
  )
}

build_component() { # component outdir
  local c=$1 out=$2 v=${version[$1]}
  # (set -e is off here: this runs as an "if" condition.)
  go_build_component "$c" "$out" || return 1
  # Sanity check: the binaries report the pinned version. (No "| grep -q":
  # with pipefail, grep exiting first can fail the pipeline with SIGPIPE.)
  local got
  case $c in
  kubernetes) got=$("$out/kube-apiserver" --version) ;;
  etcd) got=$("$out/etcd" --version) ;;
  helm3) got=$("$out/helm" version --short) ;;
  helm4) got=$("$out/helm4" version --short) ;;
  versitygw) got=$("$out/versitygw" --version) ;;
  kubelet) got=$("$out/kubelet" --version) ;;
  containerd) got=$("$out/containerd" --version) ;;
  runc) got=$("$out/runc" --version) ;;
  crictl) got=$("$out/crictl" --version) ;;
  cni-plugins) got=$(CNI_COMMAND=VERSION "$out/ptp" </dev/null; "$out/ptp" </dev/null 2>&1 || true) ;;
  coredns) got=$("$out/coredns" -version) ;;
  kind) got=$("$out/kind" version) ;;
  esac
  [[ $got == *"${v#v}"* ]] || { log "error: $c binaries report '$got', not $v"; return 1; }
}

# BALLAST_ASSETS provides binary $1?
from_assets() { [[ -n ${BALLAST_ASSETS:-} && -x $BALLAST_ASSETS/$1 && ! -d $BALLAST_ASSETS/$1 ]]; }

# Is any binary of component $1 missing from BALLAST_ASSETS (so it must come
# from the cache)?
needs_cache() {
  local b
  for b in ${provides[$1]}; do from_assets "$b" || return 0; done
  return 1
}

cache_dir() { printf '%s\n' "$cache/bin/$1-${version[$1]}-$(key_for "$1")"; }

mode=build prune=0
while [[ ${1:-} == --node || ${1:-} == --kubernetes ]]; do
  case $1 in
  --node) components+=("${node_components[@]}"); shift ;;
  --kubernetes)
    # Another minor version, from its own module: tools/kubernetes-MINOR.
    [[ ${2:-} =~ ^1\.[0-9]+$ ]] || die "--kubernetes needs a minor version such as 1.30"
    if [[ ${version[kubernetes]} != "v$2."* ]]; then
      [[ -f $tools/kubernetes-$2/go.mod ]] || die "no module pins Kubernetes $2: $tools/kubernetes-$2/go.mod is missing"
      module[kubernetes]=kubernetes-$2 module[kubelet]=kubernetes-$2
      version[kubernetes]=$(sed -n 's/^require k8s.io\/kubernetes \(v[^ ]*\)$/\1/p' "$tools/kubernetes-$2/go.mod")
      version[kubelet]=${version[kubernetes]}
    fi
    shift 2 ;;
  esac
done
case ${1:-} in
'') ;;
--print-bindir) mode=print ;;
--prune) prune=1 ;;
--versions) for c in "${components[@]}"; do printf '%s %s\n' "$c" "${version[$c]}"; done; exit 0 ;;
-h | --help) usage; exit 0 ;;
*) usage >&2; exit 2 ;;
esac

if [[ -n ${BALLAST_ASSETS:-} ]]; then
  [[ -d $BALLAST_ASSETS ]] || die "BALLAST_ASSETS=$BALLAST_ASSETS is not a directory"
  BALLAST_ASSETS=$(cd "$BALLAST_ASSETS" && pwd)
fi

# Go is needed only when something must be built.
need_go=0
for c in "${components[@]}"; do
  if needs_cache "$c" && [[ ! -f $(cache_dir "$c")/.complete ]]; then need_go=1; fi
done
if ((need_go)) && [[ $mode == build ]]; then check_go; fi

mkdir -p "$cache/bin"
if [[ $mode == build ]]; then
  exec 9>"$cache/bin/.lock"
  flock 9 # one builder at a time; the others then reuse its results
fi

declare -A dirs=()
failed=0 built=0
for c in "${components[@]}"; do
  if ! needs_cache "$c"; then
    [[ $mode == build ]] && log "using BALLAST_ASSETS for $c: ${provides[$c]}"
    continue
  fi
  dir=$(cache_dir "$c")
  if [[ -f $dir/.complete ]]; then
    [[ $mode == build ]] && log "reused cache: $c ${version[$c]} ($dir)"
    dirs[$c]=$dir; continue
  fi
  if [[ $mode == print ]]; then
    [[ -n ${optional[$c]:-} ]] && continue
    log "$c ${version[$c]} is not built yet; run $0"; exit 1
  fi
  log "building $c ${version[$c]} into $dir${slow[$c]:-} ..."
  tmp="$dir.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  start=$SECONDS
  if (build_component "$c" "$tmp") >&2; then
    touch "$tmp/.complete"
    rm -rf "$dir"; mv "$tmp" "$dir"
    log "built $c ${version[$c]} in $((SECONDS - start))s"
    dirs[$c]=$dir; built=1
  else
    rm -rf "$tmp"
    if [[ -n ${optional[$c]:-} ]]; then log "warning: optional $c failed to build; continuing without it"; continue; fi
    log "failed to build $c ${version[$c]}"; failed=1
  fi
done
((failed)) && exit 1

# One PATH-able directory with every binary (symlinks), keyed by the targets.
links=$(
  for c in "${components[@]}"; do
    for b in ${provides[$c]}; do
      if from_assets "$b"; then printf '%s %s\n' "$b" "$BALLAST_ASSETS/$b"
      elif [[ -n ${dirs[$c]:-} ]]; then printf '%s %s\n' "$b" "${dirs[$c]}/$b"
      fi
    done
  done
)
setkey=$(printf '%s\n' "$links" | sha256sum | cut -c1-10)
bindir="$cache/bin/ballast-${version[kubernetes]}-$setkey"
if [[ ! -f $bindir/.complete ]]; then
  [[ $mode == print ]] && { log "bin dir not assembled yet; run $0"; exit 1; }
  tmp="$bindir.tmp.$$"; rm -rf "$tmp"; mkdir -p "$tmp"
  while read -r b target; do ln -s "$target" "$tmp/$b"; done <<<"$links"
  {
    for c in "${components[@]}"; do printf '# %s %s\n' "$c" "${version[$c]}"; done
    printf '%s\n' "$links"
  } >"$tmp/VERSIONS"
  touch "$tmp/.complete"
  rm -rf "$bindir"; mv "$tmp" "$bindir"
fi
if [[ $mode == build ]]; then
  if ((built)); then log "done"; else log "nothing to build: every component was reused"; fi
fi

if ((prune)); then
  # Directories running programs were started from (argv[0] or executable).
  in_use=$(
    for p in /proc/[0-9]*; do
      readlink "$p/exe" 2>/dev/null || true
      IFS= read -r -d '' a0 2>/dev/null <"$p/cmdline" && printf '%s\n' "$a0"
    done | sed -n "s|^$cache/bin/\([^/]*\)/.*|\1|p" | sort -u
  )
  keep=" ${bindir##*/} "
  for c in "${!dirs[@]}"; do keep+="${dirs[$c]##*/} "; done
  for n in $in_use; do
    keep+="$n "
    for l in "$cache/bin/$n"/*; do # an in-use bin dir keeps its link targets
      [[ -L $l ]] && t=$(readlink "$l") && keep+="$(basename "$(dirname "$t")") "
    done
  done
  for d in "$cache"/bin/*/; do
    d=${d%/}; n=${d##*/}
    [[ $keep == *" $n "* ]] && continue
    log "pruning $d"
    rm -rf "$d"
  done
  log "kept: $(tr ' ' '\n' <<<"$keep" | sort -u | xargs)"
fi
printf '%s\n' "$bindir"
