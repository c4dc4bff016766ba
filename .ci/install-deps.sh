#!/usr/bin/env bash
# Installs the Debian packages Ballast builds and tests with. Idempotent: it
# does nothing (and prints nothing) when everything is present, and uses sudo
# when not run as root.
set -euo pipefail

pkgs=(
        build-essential pkg-config
        libcurl4-openssl-dev libjson-c-dev libyaml-dev libsystemd-dev
        libexpat1-dev libssl-dev libmicrohttpd-dev zlib1g-dev libcmocka-dev
        clang-format shellcheck openssl curl ca-certificates dbus-daemon jq socat
        python3 python3-yaml
        libseccomp-dev busybox-static
)

missing=()
for p in "${pkgs[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
                missing+=("$p")
        fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
                echo "install-deps: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2
                exit 1
        }
        sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet; refresh once if a package
# can't be found.
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
