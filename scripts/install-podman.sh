#!/usr/bin/env bash
# Installs what building and running the container image needs (Debian packages), idempotently:
#   podman + buildah (build and run), runc (crun refuses this sandbox's hybrid cgroup layout),
#   mmdebstrap (assembles a Python base from Debian when no registry serves python:3.11-slim).
# Nothing happens when all four commands are already on PATH.
set -euo pipefail

need=()
for cmd in podman buildah runc mmdebstrap; do
    command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
if [ "${#need[@]}" -eq 0 ]; then
    echo "podman: already installed ($(podman --version))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: ${need[*]} missing; install them with your package manager" >&2
    echo "       (Debian: apt-get install -y --no-install-recommends podman buildah runc mmdebstrap)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Other installs may hold the dpkg lock at the same moment: apt waits for it rather than failing.
apt_get() { apt-get -o DPkg::Lock::Timeout=300 "$@"; }
apt_get update -qq
# uidmap/slirp4netns/fuse-overlayfs are recommends podman needs for its default storage and
# networking; iptables is what its bridge network (unused here: --network=host) would need.
apt_get install -y -qq --no-install-recommends \
    podman buildah runc mmdebstrap uidmap slirp4netns fuse-overlayfs containers-storage \
    golang-github-containers-common ca-certificates
podman --version
