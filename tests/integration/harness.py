"""End-to-end helpers: produce Identify events to the real broker, run `inkit-connector run` as
a real process, read committed offsets and the simulator's record."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition

from connector.events.encoding import build_encoder
from connector.testing.inkit_simulator import InkitSimulator, RecordedRequest

API_KEY = "test-api-key"


def identify(user: str, seq: int, **traits: Any) -> dict[str, Any]:
    """A Segment Identify with a marker (user, seq) that the simulator's record lets us read."""
    return {
        "type": "identify",
        "userId": user,
        "messageId": f"{user}-{seq}",
        "timestamp": "2026-11-28T12:00:00.000Z",
        "traits": {
            "template_id": "tmpl_test",
            "first_name": "Test",
            "last_name": user,
            "test_user": user,
            "test_seq": seq,
            **traits,
        },
    }


@dataclass(frozen=True)
class Produced:
    user: str
    seq: int
    partition: int
    offset: int


def produce(
    bootstrap: str,
    topic: str,
    events: Iterable[Mapping[str, Any]],
    *,
    fmt: str = "avro",
    raw: Iterable[tuple[bytes | None, bytes | None]] = (),
) -> list[Produced]:
    """Produce events keyed by userId (Segment's partitioning), then raw (key, value) records;
    return where each valid event landed."""
    encoder = build_encoder(fmt)
    # Idempotent: a plain producer's retries of the first batches to a brand-new topic can land
    # after later batches, which would break the per-user order the tests check.
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "enable.idempotence": True}
    )
    landed: list[Produced] = []
    errors: list[str] = []

    def report(marker: tuple[str, int] | None) -> Callable[[Any, Any], None]:
        def cb(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            elif marker is not None:
                landed.append(Produced(marker[0], marker[1], msg.partition(), msg.offset()))

        return cb

    for event in events:
        traits = event.get("traits", {})
        marker = (traits["test_user"], traits["test_seq"]) if "test_seq" in traits else None
        producer.produce(
            topic,
            key=str(event.get("userId")).encode(),
            value=encoder.encode(event),
            on_delivery=report(marker),
        )
        producer.poll(0)
    for key, value in raw:
        producer.produce(topic, key=key, value=value, on_delivery=report(None))
        producer.poll(0)
    producer.flush(30)
    assert not errors, errors
    return landed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ConnectorProcess:
    """`python -m connector run` in its own process, its log in a file."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, name: str = "connector") -> None:
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": str(self.metrics_port),
            "LOG_LEVEL": "INFO",
            **env,
        }
        self.log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> ConnectorProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "run", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url(path), timeout=2)
        except httpx.HTTPError:
            return None

    def wait_ready(self, timeout_s: float = 30) -> None:
        def ready() -> bool:
            self.assert_running()
            response = self.get("/readyz")
            return response is not None and response.status_code == 200

        wait_until(ready, timeout_s, f"connector not ready; log:\n{self.log_tail()}")

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """Sum of a metric's samples (optionally only those with the given labels)."""
        response = self.get("/metrics")
        if response is None:
            return float("nan")
        total = 0.0
        for line in response.text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] != name:
                continue
            if labels and not all(f'{k}="{v}"' in series for k, v in labels.items()):
                continue
            total += float(value)
        return total

    def assert_running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"connector exited ({self.proc.returncode}):\n{self.log_tail()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self, timeout_s: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def connector_env(
    bootstrap: str,
    topic: str,
    dlq_topic: str,
    simulator: InkitSimulator,
    group: str,
    **extra: str,
) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC": topic,
        "KAFKA_DLQ_TOPIC": dlq_topic,
        "KAFKA_GROUP_ID": group,
        "KAFKA_VALUE_FORMAT": "avro",
        "INKIT_API_KEY": API_KEY,
        "INKIT_API_URL": simulator.webhook_url,
        "INKIT_TIMEOUT_SECONDS": "2",
        "DRAIN_TIMEOUT_SECONDS": "10",
        "COMMIT_INTERVAL_SECONDS": "0.2",
        # Short group timeouts so membership changes in tests take seconds, not the defaults.
        "KAFKA_CONFIG_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_CONFIG_HEARTBEAT_INTERVAL_MS": "500",
        **extra,
    }


def wait_until(
    condition: Callable[[], bool], timeout_s: float, message: str | Callable[[], str] = ""
) -> None:
    """Poll ``condition`` until it holds; after ``timeout_s`` fail with ``message`` (a callable,
    such as ``connector.log_tail``, is read at the failure, not when the wait starts)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            detail = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout_s}s. {detail}")
        time.sleep(0.1)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets as the broker has them (-1 when none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "end-offsets-reader"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, timeout_s: float = 10) -> list[Any]:
    """Every record of a topic (the dead-letter topic, say), read from the beginning."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            if records and time.monotonic() - idle_since > 2:
                break
            continue
        if msg.error() is None:
            records.append(msg)
            idle_since = time.monotonic()
    consumer.close()
    return records


@dataclass
class Deliveries:
    """The simulator's record, read as (user, seq) deliveries in arrival order."""

    sequence: list[tuple[str, int]]

    @classmethod
    def of(cls, requests: Iterable[RecordedRequest]) -> Deliveries:
        seq: list[tuple[str, int]] = []
        for request in sorted(requests, key=lambda r: r.seq):
            body = request.body
            fields = body.get("merge_parameters", body)
            if "test_seq" in fields:
                seq.append((str(fields["test_user"]), int(fields["test_seq"])))
        return cls(seq)

    def unique(self) -> set[tuple[str, int]]:
        return set(self.sequence)

    def duplicates(self) -> int:
        return len(self.sequence) - len(self.unique())

    def first_delivery_order_violations(self) -> list[str]:
        """Users whose first deliveries are not in increasing seq order."""
        seen: set[tuple[str, int]] = set()
        last: dict[str, int] = defaultdict(lambda: -1)
        violations: list[str] = []
        for user, seq in self.sequence:
            if (user, seq) in seen:
                continue
            seen.add((user, seq))
            if seq < last[user]:
                violations.append(f"{user}: {seq} after {last[user]}")
            last[user] = seq
        return violations


def dlq_headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in (record.headers() or []) if k.startswith("inkit.")}


def json_line(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
