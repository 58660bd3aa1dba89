#!/usr/bin/env bash
# Makes the project's real Kafka broker runnable, idempotently:
#   1. Java and Maven (Debian packages, installed only if missing and only as root);
#   2. the Apache Kafka jars from Maven Central into ${INKIT_CONNECTOR_CACHE:-~/.cache/inkit-connector}.
# Usage: scripts/install-kafka.sh [path/to/python]   (default: .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-.venv/bin/python}"

if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-kafka: java and mvn are needed; as root run:" \
            "apt-get install -y default-jre-headless maven" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        default-jre-headless maven
fi

# A no-op when the cache already holds this version (its marker file exists).
"$PYTHON" -m connector.testing.kafka_broker fetch
# The Kafka 3.x broker the classic-protocol tests run against (tests/reliability/test_kafka3.py).
"$PYTHON" -m connector.testing.kafka_broker fetch --version "$("$PYTHON" -c \
    'from connector.testing.kafka_jars import KAFKA3_VERSION; print(KAFKA3_VERSION)')"
