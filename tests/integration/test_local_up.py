"""`make local-up` / `local-down` as a user meets them: the printed `export` lines, pasted, are
enough for `produce examples/events.jsonl` and `check` to work against the local stand-ins
(registry and simulator started in the background, the topic and its dead-letter topic created).
The test points `up` at the session broker (`--kafka-bootstrap`) rather than starting a second
JVM; `make kafka-up` itself is covered by test_kafka_broker.py."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import free_port
from tests.integration.test_cli import cli

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "events.jsonl"


def local(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector.testing.local", *args],
        env={**os.environ, "INKIT_CONNECTOR_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_local_up_prints_exports_that_work_and_local_down_stops_everything(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    cache, topic = tmp_path / "cache", f"local-{uuid.uuid4().hex[:8]}"
    sim_port, registry_port, state_port = free_port(), free_port(), free_port()
    args = ["--kafka-port", str(state_port)]
    up = local(
        "up",
        *args,
        "--kafka-bootstrap",
        kafka_bootstrap,
        "--simulator-port",
        str(sim_port),
        "--registry-port",
        str(registry_port),
        "--topic",
        topic,
        "--partitions",
        "1",
        cache=cache,
    )
    try:
        assert up.returncode == 0, up.stderr
        env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in up.stdout.splitlines()
            if line.startswith("export ")
        )
        assert env["INKIT_API_KEY"] == "test-api-key"  # the simulator's key, ready to paste
        assert env["KAFKA_DLQ_TOPIC"] == f"{topic}.dlq"

        produced = cli("produce", str(EXAMPLES), env=env)
        assert produced.returncode == 0, produced.stdout + produced.stderr
        assert "produced 5 record(s)" in produced.stdout
        checked = cli("check", env=env)  # Kafka, both topics, registry, simulator, the records
        assert checked.returncode == 0, checked.stdout
        assert "ok   records: 5 of the latest 5 decode as confluent-avro" in checked.stdout
    finally:
        down = local("down", *args, cache=cache)
    assert down.returncode == 0, down.stderr
    assert "stopped simulator" in down.stdout
    assert "stopped registry" in down.stdout
    for port in (sim_port, registry_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert not list((cache / "run").glob("local-*.json"))
