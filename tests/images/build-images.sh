#!/usr/bin/env bash
# Builds the two Ballast images from operator/Dockerfile and
# nodeagent/Dockerfile, tagged with the version in VERSION:
#
#   ballast-operator:VERSION    ballast-agent:VERSION
#
# Usage: tests/images/build-images.sh [operator] [agent]    (default: both)
#        tests/images/build-images.sh base
#   base: only make sure debian:bookworm exists, then print the network
#   arguments (maybe none) that `docker build` must use to reach apt's mirrors.
#
# The Dockerfiles build FROM debian:bookworm. When that image is missing and
# cannot be pulled (no registry reachable), it is made here instead, under the
# same name, without touching the Dockerfiles: debootstrap --variant=minbase
# into a temporary directory, then `docker import`. The root file system is
# cached as a tarball in ${BALLAST_CACHE:-~/.cache/ballast}/images/, so only
# the first run pays for debootstrap.
#
# Environment:
#   DEBIAN_MIRROR          mirror for debootstrap (default: the first Debian
#                          URI of this machine's apt sources)
#   DEBIAN_SECURITY_MIRROR security mirror written into the image's apt sources
#                          (default: the one in this machine's apt sources)
#   BALLAST_CACHE          cache directory (default ~/.cache/ballast)
#   BALLAST_BASE_PULL      0: don't try `docker pull` for a missing base image
#   BALLAST_BUILD_NETWORK  network for `docker build`: auto (default: bridge if
#                          apt's mirrors are reachable from a container on it,
#                          else host), host, or default
#   BALLAST_IMAGE_TAG      tag instead of the VERSION file's content
#   DOCKER                 docker client (default docker)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
docker=${DOCKER:-docker}
cache="${BALLAST_CACHE:-$HOME/.cache/ballast}/images"
suite=bookworm

log() { printf 'images: %s\n' "$*" >&2; }
die() {
        log "error: $*"
        exit 1
}
now() { date +%s; }

command -v "$docker" >/dev/null || die "'$docker' not found: install Docker to build the images"
"$docker" info >/dev/null 2>&1 || die "the Docker daemon is not reachable ('$docker info' fails)"

version=${BALLAST_IMAGE_TAG:-$(tr -d '[:space:]' <"$repo/VERSION")}
[[ $version =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "'$version' is not a valid image tag"

which=("$@")
[ ${#which[@]} -gt 0 ] || which=(operator agent)
for w in "${which[@]}"; do
        case $w in
        operator | agent | base) ;;
        *) die "unknown image '$w' (operator, agent or base)" ;;
        esac
done

# ---------------------------------------------------------------- base image

# The base image every Dockerfile builds from, read from the Dockerfiles so
# they stay the only place that names it.
base_images() {
        sed -nE 's/^FROM[[:space:]]+([^[:space:]]+).*/\1/Ip' \
                "$repo/operator/Dockerfile" "$repo/nodeagent/Dockerfile" | sort -u
}

# Every URI of this machine's apt sources (deb822 "URIs:" fields and
# one-line "deb" entries; comments ignored), in order.
all_apt_uris() {
        local f
        for f in /etc/apt/sources.list.d/*.sources; do
                [ -r "$f" ] && sed -nE 's/^URIs:[[:space:]]*//p' "$f" | tr ' ' '\n'
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
                [ -r "$f" ] && sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([a-z]+:[^[:space:]]+).*/\2/p' "$f"
        done
        return 0
}

# The Debian mirror: $DEBIAN_MIRROR, else the first URI of this machine's apt
# sources that serves the main archive (not the security one).
debian_mirror() {
        if [ -n "${DEBIAN_MIRROR:-}" ]; then
                printf '%s\n' "$DEBIAN_MIRROR"
                return
        fi
        local u
        for u in $(all_apt_uris); do
                if [[ $u == http* && $u != *security* ]]; then
                        printf '%s\n' "${u%/}"
                        return
                fi
        done
        return 1
}

# The Debian security mirror: $DEBIAN_SECURITY_MIRROR, else the first
# security URI of this machine's apt sources; nothing if there is none.
debian_security_mirror() {
        if [ -n "${DEBIAN_SECURITY_MIRROR:-}" ]; then
                printf '%s\n' "$DEBIAN_SECURITY_MIRROR"
                return
        fi
        local u
        for u in $(all_apt_uris); do
                if [[ $u == http*security* ]]; then
                        printf '%s\n' "${u%/}"
                        return
                fi
        done
}

# Makes $cache/debian-$suite-minbase.tar.gz (once) and imports it as $1.
make_base_image() {
        local image=$1 tarball="$cache/debian-$suite-minbase.tar.gz"
        local t0
        t0=$(now)
        if [ ! -s "$tarball" ]; then
                local mirror sudo=()
                mirror=$(debian_mirror) ||
                        die "no Debian mirror in /etc/apt/sources*; set DEBIAN_MIRROR=URL"
                [ "$(id -u)" -eq 0 ] || sudo=(sudo)
                if ! command -v debootstrap >/dev/null; then
                        log "installing debootstrap"
                        "${sudo[@]}" apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
                                { "${sudo[@]}" apt-get update -qq &&
                                        "${sudo[@]}" apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; } ||
                                die "cannot install debootstrap"
                fi
                mkdir -p "$cache"
                local root
                root=$(mktemp -d "${TMPDIR:-/tmp}/ballast-rootfs.XXXXXX")
                # shellcheck disable=SC2064 # expand $root now
                trap "${sudo[*]} rm -rf '$root'" EXIT
                log "creating $image with debootstrap --variant=minbase $suite from $mirror (once; cached in $tarball)"
                if ! "${sudo[@]}" debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1; then
                        tail -n 20 "$root.log" >&2
                        rm -f "$root.log"
                        die "debootstrap failed (set DEBIAN_MIRROR to another mirror?)"
                fi
                rm -f "$root.log"
                # Like the official image: no package lists or caches, and
                # apt's docker-clean settings so RUN layers stay small.
                "${sudo[@]}" rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
                        "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log "$root"/tmp/*
                # apt sources like the official image's: the release, its
                # updates and, when this machine knows a mirror for it, security.
                local security
                security=$(debian_security_mirror)
                {
                        printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                                "$mirror" "$suite" "$suite"
                        [ -z "$security" ] ||
                                printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                                        "$security" "$suite"
                } | "${sudo[@]}" tee "$root/etc/apt/sources.list.d/debian.sources" >/dev/null
                "${sudo[@]}" rm -f "$root/etc/apt/sources.list"
                printf '%s\n' \
                        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
                        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
                        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' |
                        "${sudo[@]}" tee "$root/etc/apt/apt.conf.d/docker-clean" >/dev/null
                "${sudo[@]}" tar --numeric-owner -C "$root" -czf "$tarball.tmp" . ||
                        die "cannot write $tarball"
                "${sudo[@]}" chown "$(id -u):$(id -g)" "$tarball.tmp"
                mv "$tarball.tmp" "$tarball"
                "${sudo[@]}" rm -rf "$root"
                trap - EXIT
        else
                log "creating $image from the cached $tarball"
        fi
        "$docker" import \
                --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
                --change 'CMD ["bash"]' \
                --message "debootstrap --variant=minbase $suite (tests/images/build-images.sh)" \
                "$tarball" "$image" >/dev/null || die "docker import of $tarball failed"
        log "base image $image ready in $(($(now) - t0))s"
}

ensure_base_image() {
        local image=$1
        if "$docker" image inspect "$image" >/dev/null 2>&1; then
                return
        fi
        if [ "${BALLAST_BASE_PULL:-1}" != 0 ]; then
                log "pulling $image"
                if timeout 300 "$docker" pull -q "$image" >/dev/null 2>&1; then
                        return
                fi
                log "cannot pull $image; making it locally"
        fi
        case $image in
        "debian:$suite") make_base_image "$image" ;;
        *) die "base image $image is missing and only debian:$suite can be made locally" ;;
        esac
}

# Can apt inside `docker build` reach the mirrors the base image's apt
# sources name? Probed with a TCP connect from a container on the default
# bridge network; if that fails, builds use the host's network. Sets netargs.
netargs=()
choose_build_network() {
        local mode=${BALLAST_BUILD_NETWORK:-auto} image=$1
        case $mode in
        host) netargs=(--network=host) ;;
        default) ;;
        auto)
                local probe
                # shellcheck disable=SC2016 # runs in the container
                probe='set -e
                for u in $(grep -hoE "https?://[^ ]+" /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | sort -u); do
                        h=${u#*://}; h=${h%%/*}
                        case $u in https:*) p=443 ;; *) p=80 ;; esac
                        case $h in *:*) p=${h##*:}; h=${h%:*} ;; esac
                        timeout 10 bash -c "exec 3<>/dev/tcp/$h/$p" || { echo "unreachable: $h:$p" >&2; exit 1; }
                done'
                if "$docker" run --rm "$image" bash -c "$probe" >/dev/null 2>&1; then
                        :
                elif "$docker" run --rm --network=host "$image" bash -c "$probe" >/dev/null 2>&1; then
                        log "apt's mirrors are unreachable on the bridge network; building with --network=host"
                        netargs=(--network=host)
                else
                        die "apt's mirrors are unreachable from a container (bridge and host network)"
                fi
                ;;
        *) die "BALLAST_BUILD_NETWORK must be auto, host or default" ;;
        esac
}

mapfile -t bases < <(base_images)
[ ${#bases[@]} -gt 0 ] || die "no FROM line in the Dockerfiles"
for b in "${bases[@]}"; do
        ensure_base_image "$b"
done
choose_build_network "${bases[0]}"
if [ "${which[*]}" = base ]; then
        printf '%s\n' "${netargs[*]}"
        exit 0
fi

# ---------------------------------------------------------------- images

for w in "${which[@]}"; do
        case $w in
        operator) dockerfile=operator/Dockerfile name=ballast-operator ;;
        agent) dockerfile=nodeagent/Dockerfile name=ballast-agent ;;
        esac
        t0=$(now)
        log "building $name:$version from $dockerfile"
        logf=$(mktemp)
        if ! "$docker" build --force-rm "${netargs[@]}" --build-arg "VERSION=$version" \
                -f "$repo/$dockerfile" -t "$name:$version" "$repo" >"$logf" 2>&1; then
                tail -n 40 "$logf" >&2
                rm -f "$logf"
                die "building $name:$version failed"
        fi
        rm -f "$logf"
        size=$("$docker" image inspect -f '{{.Size}}' "$name:$version")
        log "built $name:$version in $(($(now) - t0))s ($((size / 1024 / 1024)) MiB)"
done
