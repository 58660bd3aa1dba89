#!/usr/bin/env bash
# Builds the connector image with podman from the project's Dockerfile (`make image`).
#
# Base: PYTHON_IMAGE when given; else the Dockerfile's pinned official base when it is present or
# can be pulled; else a Python base assembled from Debian bookworm packages with mmdebstrap
# (python3 3.11, the same interpreter line), cached as a tar under ~/.cache/inkit-connector/image
# and imported once into podman's store. It says which base it used.
# Prints the image name, its size and the base; writes the CycloneDX SBOM of the image's Python
# packages to dist/inkit-connector-<version>.cdx.json.
#
# Environment: IMAGE (default localhost/inkit-connector:<version>), PYTHON_IMAGE, PODMAN (default:
# podman with the runc runtime and cgroupfs: crun and systemd cgroups fail in sandboxes like
# these machines; docs/container.md), CACHE_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' connector/__init__.py)"
IMAGE="${IMAGE:-localhost/inkit-connector:${VERSION}}"
PODMAN="${PODMAN:-podman --runtime runc --cgroup-manager=cgroupfs}"
CACHE_DIR="${CACHE_DIR:-${HOME}/.cache/inkit-connector/image}"
PINNED_BASE="$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)"
DEBIAN_BASE="localhost/inkit-connector-base:python3.11-bookworm"
# The rlimits podman would copy from this process are refused in the sandbox: set them explicitly.
ULIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

debian_base() {
    # Rebuilt when this recipe changes: the recipe's hash names the cached tar.
    local packages="python3,python3-venv,python-is-python3,ca-certificates,passwd"
    local key
    key="$(printf '%s' "bookworm ${packages} nodoc" | sha256sum | cut -c1-12)"
    local tar="${CACHE_DIR}/python-bookworm-${key}.tar"
    if ${PODMAN} image exists "${DEBIAN_BASE}" \
        && [ "$(${PODMAN} image inspect --format '{{index .Labels "recipe"}}' "${DEBIAN_BASE}" 2>/dev/null)" = "${key}" ]; then
        return
    fi
    mkdir -p "${CACHE_DIR}"
    # One assembly at a time (two builds at once wait for the first one's tar).
    exec 9>"${CACHE_DIR}/.lock"
    flock 9
    if [ ! -s "${tar}" ]; then
        echo "assembling a Python base from Debian bookworm packages (mmdebstrap, once): ${tar}" >&2
        local part="${tar%.tar}.part-$$.tar"  # mmdebstrap picks the format from the suffix
        # Documentation, man pages and locales are not installed: nobody reads them in a container.
        mmdebstrap --quiet --variant=apt --include="${packages}" \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            bookworm "${part}"
        mv "${part}" "${tar}"
    fi
    ${PODMAN} import --change "LABEL recipe=${key}" --change 'CMD ["python3"]' \
        "${tar}" "${DEBIAN_BASE}" >/dev/null
    flock --unlock 9
}

if [ -n "${PYTHON_IMAGE:-}" ]; then
    base="${PYTHON_IMAGE}"
    why="given by PYTHON_IMAGE"
elif ${PODMAN} image exists "${PINNED_BASE}" || ${PODMAN} pull --quiet "${PINNED_BASE}" >/dev/null 2>&1; then
    base="${PINNED_BASE}"
    why="the Dockerfile's pinned official base"
else
    debian_base
    base="${DEBIAN_BASE}"
    why="built from Debian bookworm packages: ${PINNED_BASE} could not be pulled"
fi
echo "base: ${base} (${why})"

# pip inside the build reaches PyPI through the host's network, its CA bundle and pip.conf (an
# egress proxy with its own CA, on these machines); none of them ends up in a layer.
mounts=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
if [ -f /etc/pip.conf ]; then
    mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
fi
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    revision="${revision}-dirty"
fi

start=${SECONDS}
${PODMAN} build --format docker --network=host "${ULIMITS[@]}" "${mounts[@]}" \
    --build-arg PYTHON_IMAGE="${base}" \
    --build-arg VERSION="${VERSION}" \
    --build-arg REVISION="${revision}" \
    --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --build-arg SOURCE="${SOURCE:-}" \
    --tag "${IMAGE}" . >&2

mkdir -p dist
sbom="dist/inkit-connector-${VERSION}.cdx.json"
container="$(${PODMAN} create --no-healthcheck "${IMAGE}")"
${PODMAN} cp "${container}:/usr/share/doc/inkit-connector/inkit-connector.cdx.json" "${sbom}"
${PODMAN} rm "${container}" >/dev/null

size="$(${PODMAN} image inspect --format '{{.Size}}' "${IMAGE}")"
echo "image: ${IMAGE}"
echo "size: ${size} bytes ($((size / 1000000)) MB)"
echo "sbom: ${sbom}"
echo "built in $((SECONDS - start)) s"
