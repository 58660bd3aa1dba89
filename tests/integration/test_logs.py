"""Logs an operator can rely on: JSON lines with LOG_FORMAT=json, one line per lifecycle event
and per dead-lettered record, librdkafka's own logs in the same stream."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from connector.testing.inkit_simulator import InkitSimulator
from tests.integration.harness import (
    ConnectorProcess,
    connector_env,
    identify,
    produce,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_json_lines_cover_the_lifecycle(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> None:
    topic, dlq = topic_factory(partitions=2), topic_factory()
    produce(
        kafka_bootstrap,
        topic,
        [identify(f"u{i}", i) for i in range(20)],
        raw=[(b"k", b"\x01not avro")],
    )
    env = connector_env(
        kafka_bootstrap,
        topic,
        dlq,
        inkit_simulator,
        f"g-{uuid.uuid4().hex[:8]}",
        LOG_FORMAT="json",
        LOG_LEVEL="DEBUG",
        KAFKA_CONFIG_DEBUG="cgrp",
    )
    connector = ConnectorProcess(env, tmp_path).start()
    wait_until(lambda: len(inkit_simulator.requests()) == 20, 60, connector.log_tail())
    wait_until(lambda: "dead-lettering" in connector.log_text(), 30, connector.log_tail())
    inkit_simulator.set_api_key("revoked")
    produce(kafka_bootstrap, topic, [identify("u-late", 99)])
    wait_until(lambda: "refused the API key" in connector.log_text(), 30, connector.log_tail())
    inkit_simulator.set_api_key("test-api-key")
    wait_until(lambda: "accepts the API key again" in connector.log_text(), 60)
    connector.signal(signal.SIGTERM)
    assert connector.wait(30) == 0

    entries = [json.loads(line) for line in connector.log_text().splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "msg"} <= entry.keys() for entry in entries)
    messages = [entry["msg"] for entry in entries]

    def seen(text: str) -> bool:
        return any(text in message for message in messages)

    for lifecycle in (
        "starting",
        "partitions assigned",
        "refused the API key",
        "accepts the API key again",
        "received SIGTERM",
        "drain (shutdown)",
        "partitions revoked",
        "stopped",
    ):
        assert seen(lifecycle), lifecycle
    dead = [e for e in entries if e["msg"].startswith("dead-lettering")]
    assert len(dead) == 1
    assert dead[0]["level"] == "error"
    assert "invalid_avro" in dead[0]["msg"] or "truncated" in dead[0]["msg"]
    assert any(e["logger"] == "connector.librdkafka" for e in entries)  # librdkafka, same stream
    assert not any(e["logger"] == "httpx" for e in entries)  # no per-request URL lines
