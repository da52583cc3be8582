#!/usr/bin/env bash
# Prints the base image to build on (the Dockerfile's PYTHON_IMAGE), making it when it must.
#
#   docker build --build-arg PYTHON_IMAGE="$(docker/base-image.sh)" ...
#
# 1. The official python:3.11-slim-bookworm when it is present or can be pulled.
# 2. Otherwise (no Docker Hub: a sandbox, an air-gapped CI) local/bookworm-python:3.11, a Debian bookworm
#    made with debootstrap (python3 3.11, python3-venv, ca-certificates and this machine's CA bundle, so
#    pip inside a build trusts the same certificates as pip here). Its root filesystem is cached as a
#    tarball, so a new Docker engine imports it in seconds instead of running debootstrap (about 3 min).
#
# OFFICIAL_IMAGE   default python:3.11-slim-bookworm
# LOCAL_IMAGE      default local/bookworm-python:3.11
# CACHE_DIR        default ${XDG_CACHE_HOME:-$HOME/.cache}/pneumonia-zoo
# PULL_TIMEOUT     seconds `docker pull` may take before the local base is used (default 60)
# DEBIAN_MIRROR    default: the first http(s) URI of this machine's apt sources, else deb.debian.org
# EXTRA_PACKAGES   more Debian packages for the local base (comma-separated)
set -euo pipefail

official=${OFFICIAL_IMAGE:-python:3.11-slim-bookworm}
local_image=${LOCAL_IMAGE:-local/bookworm-python:3.11}
cache=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pneumonia-zoo}
say() { echo "base-image.sh: $*" >&2; }

if docker image inspect "$official" >/dev/null 2>&1; then
    echo "$official"
    exit 0
fi
if timeout "${PULL_TIMEOUT:-60}" docker pull --quiet "$official" >/dev/null 2>&1; then
    echo "$official"
    exit 0
fi
say "$official cannot be pulled: using $local_image"
if docker image inspect "$local_image" >/dev/null 2>&1; then
    echo "$local_image"
    exit 0
fi

packages=python3,python3-venv,ca-certificates${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}
tarball="$cache/$(echo "$local_image-$packages" | tr -c 'A-Za-z0-9.\n-' '_').tar"
if [ ! -s "$tarball" ]; then
    if [ "$(id -u)" != 0 ]; then
        say "debootstrap needs root; run as root once, or docker pull $official"
        exit 1
    fi
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    mirror=${DEBIAN_MIRROR:-$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
        /etc/apt/sources.list.d 2>/dev/null | grep -oE 'https?://[^ ]+' | head -n1 || true)}
    mirror=${mirror:-http://deb.debian.org/debian}
    mkdir -p "$cache"
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$root" "$tarball.partial"' EXIT
    say "debootstrap bookworm from $mirror (about 3 minutes, once; cached in $tarball)"
    debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
        tail -n 30 "$root.log" >&2
        rm -f "$root.log"
        exit 1
    }
    rm -f "$root.log"
    # pip in a build must trust what pip trusts here (a TLS-inspecting proxy's CA, for instance).
    if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
        cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    fi
    # What the official image has and a minbase lacks: `python` on PATH is not relied on (the image's
    # venv provides it); apt's caches and the docs are dropped to keep the base small.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
        "$root"/usr/share/man/* "$root"/usr/share/locale/*
    tar -C "$root" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
fi
say "importing $tarball as $local_image"
docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$tarball" "$local_image" >/dev/null
echo "$local_image"
