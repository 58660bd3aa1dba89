"""Apache Kafka's classpath from Maven Central, cached per version outside the repository."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_VERSION = "4.1.1"
# The newest 3.x Maven Central serves here (checked 2026-12-03): brokers without KIP-848 by
# default, where the connector runs the classic group protocol.
KAFKA3_VERSION = "3.9.2"
# The slf4j 1.x binding Kafka's distribution ships; the Maven artifact leaves it out, and without
# it the broker logs nothing, so a failed start would have no log to show.
LOG4J_VERSION = "2.24.3"
MARKER_NAME = ".complete"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.inkit-connector</groupId>
  <artifactId>kafka-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j_version}</version>
    </dependency>
  </dependencies>
</project>
"""


class KafkaBrokerError(RuntimeError):
    """The broker could not be fetched, started or stopped; the message says why."""


def cache_root() -> Path:
    """Where jars and detached-broker state live: ``$INKIT_CONNECTOR_CACHE`` or ~/.cache."""
    configured = os.environ.get("INKIT_CONNECTOR_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "inkit-connector"


def ensure_kafka_jars(version: str = DEFAULT_VERSION) -> Path:
    """Return the directory holding Kafka's classpath, running Maven only if it is not cached.

    Safe to call from several processes at once: a file lock serialises the fetch, jars land in a
    temporary directory first, and the marker file is written last, so a directory with a marker
    is always complete.
    """
    home = cache_root() / f"kafka-{version}"
    libs, marker = home / "libs", home / MARKER_NAME
    if marker.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():  # another process fetched while we waited for the lock
            return libs
        staging = Path(tempfile.mkdtemp(prefix="fetch-", dir=home))
        try:
            _run_maven(version, staging)
            shutil.rmtree(libs, ignore_errors=True)  # leftovers of an interrupted rename
            (staging / "libs").rename(libs)
            marker.write_text(f"kafka_2.13 {version}\n")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return libs


def _run_maven(version: str, staging: Path) -> None:
    mvn = require_tool("mvn", "Maven")
    (staging / "pom.xml").write_text(_POM.format(version=version, log4j_version=LOG4J_VERSION))
    command = [mvn, "-q", "-B", "-f", str(staging / "pom.xml"), "dependency:copy-dependencies"]
    command += [f"-DoutputDirectory={staging / 'libs'}", "-DincludeScope=runtime"]
    logger.info("fetching Apache Kafka %s from Maven Central", version)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any((staging / "libs").glob(f"kafka_2.13-{version}.jar")):
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise KafkaBrokerError(f"Maven could not fetch kafka_2.13 {version}: " + " | ".join(tail))


def require_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KafkaBrokerError(f"{what} ({name}) not found on PATH; run scripts/install-kafka.sh")
    return path
