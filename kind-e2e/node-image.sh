#!/usr/bin/env bash
# Builds (or reuses) the kind node image of the Ballast kind suite, offline:
#
#   ballast-kind-node:<kubernetes version>-<key>
#
# from the binaries of `tests/cluster/build-servers.sh --node` (BINDIR), kind's
# own base-image files (images/base/files of the pinned sigs.k8s.io/kind
# module), Debian's packages (kind-e2e/node/Dockerfile) and the component
# images kubeadm needs, made here from the same binaries and preloaded into the
# node's containerd (kind-e2e/node/):
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, etcd, coredns,
#   pause (static binaries, FROM scratch); kube-proxy (Debian + iptables);
#   the CNI stand-in for kindnetd (busybox + kubectl, kind-e2e/node/cni/).
#
# The image names come from `kubeadm config images list` and from kind's
# containerd configuration (its sandbox image), so no registry is named here.
#
# <key> hashes BINDIR's VERSIONS (the cache keys of every binary), the files
# under kind-e2e/node/ and this script. The image is saved once to
# ${BALLAST_CACHE:-~/.cache/ballast}/images/<image>.tar; a later run loads it
# from there when Docker no longer has it. The last line on stdout is the
# image name; progress goes to stderr.
#
# Usage: node-image.sh BINDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
cache="${BALLAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ballast}/images"

log() { printf 'node-image: %s\n' "$*" >&2; }
die() {
        log "error: $*"
        exit 1
}

[[ $# -eq 1 && -d $1 ]] || die "usage: node-image.sh BINDIR (from tests/cluster/build-servers.sh --node)"
bindir=$(cd "$1" && pwd)
for b in kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy \
        etcd coredns containerd ctr containerd-shim-runc-v2 runc crictl host-local loopback ptp portmap bridge; do
        [[ -x $bindir/$b ]] || die "$bindir/$b is missing (run tests/cluster/build-servers.sh --node)"
done
kversion=$("$bindir/kubelet" --version | awk '{print $2}')
[[ $kversion =~ ^v1\.[0-9]+\.[0-9]+$ ]] || die "kubelet reports '$kversion', not a release version"

key=$({
        cat "$bindir/VERSIONS"
        (cd "$here/node" && find . -type f | LC_ALL=C sort | xargs sha256sum)
        cat "$0"
} | sha256sum | cut -c1-10)
image="ballast-kind-node:$kversion-$key"
tarball="$cache/ballast-kind-node-$kversion-$key.tar"

if docker image inspect "$image" >/dev/null 2>&1; then
        log "reused $image"
        printf '%s\n' "$image"
        exit 0
fi
if [[ -s $tarball ]]; then
        t0=$SECONDS
        docker load -q -i "$tarball" >/dev/null || die "docker load of $tarball failed"
        log "loaded $image from $tarball in $((SECONDS - t0))s"
        printf '%s\n' "$image"
        exit 0
fi

t0=$SECONDS
log "building $image (once; saved to $tarball)"
command -v busybox >/dev/null || [[ -x /bin/busybox ]] || die "busybox is missing: apt-get install busybox-static"
busybox=$(command -v busybox || echo /bin/busybox)
ldd "$busybox" >/dev/null 2>&1 && die "$busybox is dynamically linked: apt-get install busybox-static"

ctx=$(mktemp -d "${TMPDIR:-/tmp}/ballast-node.XXXXXX")
stage="ballast-kind-node-stage:$key"
preload="ballast-kind-preload-$key"
temp_images=()
cleanup() {
        docker rm -f "$preload" >/dev/null 2>&1 || true
        ((${#temp_images[@]} == 0)) || docker rmi -f "${temp_images[@]}" >/dev/null 2>&1 || true
        rm -rf "$ctx"
}
trap cleanup EXIT

# kind's base-image files, from the module the kind binary was built from.
kinddir=$(cd "$top/tests/cluster/tools/kind" && GOWORK=off GOFLAGS=-mod=readonly \
        go mod download -json sigs.k8s.io/kind | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $kinddir/images/base/files ]] || die "kind's images/base/files not found in the module cache ($kinddir)"
mkdir -p "$ctx/node/bin" "$ctx/node/cni" "$ctx/node/manifests"
cp -r "$kinddir/images/base/files" "$ctx/node/base"
chmod -R u+w "$ctx/node/base"
rm -rf "$ctx/node/base/LICENSES"
for b in kubelet kubeadm kubectl containerd ctr containerd-shim-runc-v2 runc crictl; do cp -L "$bindir/$b" "$ctx/node/bin/"; done
for b in host-local loopback ptp portmap bridge; do cp -L "$bindir/$b" "$ctx/node/cni/"; done
cp "$here/node/Dockerfile" "$here/node/entrypoint-pre" "$ctx/node/"
printf '%s' "$kversion" >"$ctx/node/VERSION"

cni_image="ballast.local/cni-standin:$key"
sed "s|image: IMAGE|image: $cni_image|" "$here/node/cni/default-cni.yaml" >"$ctx/node/manifests/default-cni.yaml"

# debian:bookworm (made locally when no registry is reachable) and the network
# docker build reaches apt's mirrors on.
read -r -a netargs < <(bash "$top/tests/images/build-images.sh" base | tail -n1)

build() { # TAG DIR [docker build args...]
        local tag=$1 dir=$2 out
        shift 2
        if ! out=$(docker build --force-rm "${netargs[@]}" "$@" -t "$tag" "$dir" 2>&1); then
                printf '%s\n' "$out" | tail -n 30 >&2
                die "docker build of $tag failed"
        fi
}

log "node stage: Debian packages, kind's base files, the runtime and the kubelet"
build "$stage" "$ctx/node"
temp_images+=("$stage")

# The component images, under the names kubeadm and containerd look for.
mapfile -t wanted < <("$bindir/kubeadm" config images list --kubernetes-version "$kversion" 2>/dev/null)
((${#wanted[@]} > 0)) || die "kubeadm config images list printed nothing"
sandbox=$(sed -n 's/^[[:space:]]*sandbox_image = "\(.*\)"/\1/p' "$ctx/node/base/etc/containerd/config.toml")
[[ -n $sandbox ]] && wanted+=("$sandbox")
gcc -Os -static -DVERSION="$kversion" -o "$ctx/pause" \
        "$(cd "$top/tests/cluster/tools/kubernetes" && GOWORK=off go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c" ||
        die "cannot build pause (gcc and glibc's static library are needed: apt-get install build-essential)"

component_image() { # REF
        local ref=$1 name d
        name=${1##*/}
        name=${name%%:*}
        d="$ctx/img-$name"
        mkdir -p "$d"
        case $name in
        kube-apiserver | kube-controller-manager | kube-scheduler | etcd | coredns)
                cp -L "$bindir/$name" "$d/"
                printf 'FROM scratch\nCOPY %s /usr/local/bin/%s\nENV PATH=/usr/local/bin\nENTRYPOINT ["/usr/local/bin/%s"]\n' \
                        "$name" "$name" "$name" >"$d/Dockerfile"
                [[ $name == coredns ]] && printf 'COPY %s /coredns\nENTRYPOINT ["/coredns"]\n' "$name" >>"$d/Dockerfile"
                ;;
        pause)
                cp "$ctx/pause" "$d/"
                printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$d/Dockerfile"
                ;;
        kube-proxy)
                cp -L "$bindir/kube-proxy" "$d/"
                printf '%s\n' 'FROM debian:bookworm' \
                        'RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables nftables conntrack ipset kmod && rm -rf /var/lib/apt/lists/*' \
                        'COPY kube-proxy /usr/local/bin/kube-proxy' >"$d/Dockerfile"
                ;;
        *) die "kubeadm wants $ref, which this script cannot make" ;;
        esac
        build "$ref" "$d"
        temp_images+=("$ref")
}
images=()
for ref in "${wanted[@]}"; do
        [[ " ${images[*]} " == *" $ref "* ]] && continue
        log "component image $ref"
        component_image "$ref"
        images+=("$ref")
done
mkdir -p "$ctx/cni"
cp "$busybox" "$ctx/cni/busybox"
cp -L "$bindir/kubectl" "$ctx/cni/"
cp "$here/node/cni/Dockerfile" "$here/node/cni/cni-standin.sh" "$ctx/cni/"
log "CNI stand-in image $cni_image"
build "$cni_image" "$ctx/cni"
temp_images+=("$cni_image")
images+=("$cni_image")

# Preload, as kind's node-image builder does: import into containerd's k8s.io
# namespace, pinned, unpacked by the CRI on first use.
log "preloading ${#images[@]} images into the node's containerd"
docker save -o "$ctx/images.tar" "${images[@]}"
docker run -d --name "$preload" --entrypoint=sleep --security-opt seccomp=unconfined "$stage" infinity >/dev/null
docker exec "$preload" sh -c 'containerd >/var/log/containerd-preload.log 2>&1 &'
for _ in $(seq 1 30); do
        docker exec "$preload" ctr version >/dev/null 2>&1 && break
        sleep 1
done
docker exec -i "$preload" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
        --all-platforms --no-unpack --digests - <"$ctx/images.tar" >/dev/null ||
        die "ctr images import failed: $(docker exec "$preload" tail -n 5 /var/log/containerd-preload.log)"
docker exec "$preload" sh -c 'kill $(pidof containerd); while pidof containerd >/dev/null; do sleep 0.2; done; rm -f /var/log/containerd-preload.log'
docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint-pre", "/usr/local/bin/entrypoint", "/sbin/init"]' \
        --change 'CMD []' "$preload" "$image" >/dev/null
log "built $image in $((SECONDS - t0))s ($(($(docker image inspect -f '{{.Size}}' "$image") / 1024 / 1024)) MiB); saving to $tarball"
mkdir -p "$cache"
docker save -o "$tarball.tmp" "$image" && mv "$tarball.tmp" "$tarball"
printf '%s\n' "$image"
