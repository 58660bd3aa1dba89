"""`inkit-connector redrive` against the real broker and the simulator: dead letters of a wrong
template come back once the template is fixed, exactly once; a second redrive sends nothing; a
redrive killed with SIGKILL resumes without re-sending beyond what was in flight; the filters,
--dry-run and the exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer

from connector.events.encoding import build_encoder
from connector.testing.inkit_simulator import Faults, InkitSimulator
from tests.integration.harness import (
    ConnectorProcess,
    Deliveries,
    committed,
    connector_env,
    dlq_headers,
    end_offsets,
    identify,
    produce,
    wait_until,
)

pytestmark = pytest.mark.integration

REDRIVE_TIMEOUT_S = 90


def _redrive(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "redrive", *args],
        env={**os.environ, "LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
        timeout=REDRIVE_TIMEOUT_S,
        check=False,
    )


def _redrive_all(
    runs: list[tuple[Mapping[str, str], tuple[str, ...]]],
) -> list[subprocess.CompletedProcess[str]]:
    """Several redrives (environment, flags) at once; each needs a consumer group of its own."""
    command = [sys.executable, "-m", "connector", "redrive"]
    started = [
        (
            args,
            subprocess.Popen(
                [*command, *args],
                env={**os.environ, "LOG_LEVEL": "WARNING", **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for env, args in runs
    ]
    done = []
    for args, process in started:
        out, err = process.communicate(timeout=REDRIVE_TIMEOUT_S)
        done.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return done


def _committed_or_none(bootstrap: str, group: str, topic: str) -> dict[int, int] | None:
    """The group's commits, or None while a broker just started is not the coordinator yet
    (NOT_COORDINATOR; seen when this test is the session's first)."""
    try:
        return committed(bootstrap, group, topic, 2)
    except KafkaException:
        return None


def _read(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The first ``count`` records of ``topic`` (all its partitions), or fail after 30 s."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    records: list[Any] = []
    try:
        wait_until(
            lambda: (
                records.extend(m for m in consumer.consume(100, 0.2) if m.error() is None)
                or len(records) >= count
            ),
            30,
            f"{topic}: {len(records)} of {count} records",
        )
    finally:
        consumer.close()
    return records


def _no_template(user: str, seq: int) -> dict[str, Any]:
    """An Identify without a template_id trait: INKIT_TEMPLATE_ID decides its template."""
    event = identify(user, seq)
    del event["traits"]["template_id"]
    return event


def test_wrong_template_dead_letters_come_back_once_and_a_second_redrive_sends_none(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> None:
    topic = topic_factory(partitions=2)
    dlq = topic_factory(partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    # A wrong default template: Inkit refuses it (422), every event without its own template_id
    # is dead-lettered. Two events carry a template Inkit knows, two records are not Avro.
    inkit_simulator.set_faults(Faults(rejected_templates=("tmpl_wrong",)))
    refused = [_no_template(f"user-{n % 4}", n) for n in range(12)]
    fine = [identify("user-ok", 100), identify("user-ok", 101)]
    produce(kafka_bootstrap, topic, refused + fine, raw=[(b"junk", b"\x00not avro")] * 2)
    env = connector_env(
        kafka_bootstrap,
        topic,
        dlq,
        inkit_simulator,
        group,
        INKIT_TEMPLATE_ID="tmpl_wrong",
        BREAKER_MIN_FAILURES="0",
    )
    process = ConnectorProcess(env, tmp_path).start()
    try:
        ends = end_offsets(kafka_bootstrap, topic, 2)
        # A partition nothing was produced to has no commit (and needs none).
        wait_until(
            lambda: (
                _committed_or_none(kafka_bootstrap, group, topic)
                in ({p: end if end else -1001 for p, end in ends.items()}, ends)
            ),
            60,
            f"run did not commit to the end; log:\n{process.log_tail()}",
        )
    finally:
        assert process.stop() == 0
    letters = _read(kafka_bootstrap, dlq, 14)
    reasons = sorted(dlq_headers(r)["inkit.error.reason"] for r in letters)
    assert reasons.count("http_422") == 12, reasons
    assert len(reasons) == 14, reasons
    assert inkit_simulator.stats()["accepted"] == 2

    # The template is fixed in the configuration (--dry-run first: see the filters' test).
    fixed = {**env, "INKIT_TEMPLATE_ID": "tmpl_fixed"}
    first = _redrive(fixed, "--reason", "http_422")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "re-sent: 12 (http_422: 12)" in first.stdout
    assert "not selected (committed past): 2" in first.stdout
    delivered = [r for r in inkit_simulator.requests() if "test_seq" in r.body]
    sent = Deliveries.of(delivered)
    assert sent.unique() == {(f"user-{n % 4}", n) for n in range(12)} | {
        ("user-ok", 100),
        ("user-ok", 101),
    }
    assert sent.duplicates() == 0
    dlq_order = [(r.key(), dlq_headers(r)["inkit.original.offset"]) for r in letters]
    assert sent.first_delivery_order_violations() == [], (sent.sequence, dlq_order)
    redriven = [r for r in delivered if r.body["test_user"] != "user-ok"]
    assert {r.body["template_id"] for r in redriven} == {"tmpl_fixed"}  # the current config

    # Safe to run twice: the same group has nothing left, and a new group (which reads the
    # dead-letter topic from its start) finds every event in the sent-ledger.
    again, fresh = _redrive_all(
        [(fixed, ("--reason", "http_422")), (fixed, ("--group-id", f"{group}.fresh"))]
    )
    assert again.returncode == 0, again.stderr
    assert "re-sent: 0" in again.stdout
    assert "re-sent: 0" in fresh.stdout
    assert "skipped, already sent: 12" in fresh.stdout
    assert inkit_simulator.stats()["accepted"] == 14

    # The two records that are not Avro fail again: exit 3, written back with attempt 1, their
    # origin kept; the copies are past the end the run found, so it did not read them.
    assert fresh.returncode == 3, fresh.stdout + fresh.stderr
    assert "failed again (dead-lettered again): 2" in fresh.stdout
    copies = [
        h for h in map(dlq_headers, _read(kafka_bootstrap, dlq, 16)) if "inkit.redrive.attempt" in h
    ]
    assert [c["inkit.redrive.attempt"] for c in copies] == ["1", "1"]
    originals = {(h["inkit.original.partition"], h["inkit.original.offset"]) for h in copies}
    first_copies = {
        (h["inkit.original.partition"], h["inkit.original.offset"])
        for h in map(dlq_headers, letters)
        if h["inkit.error.reason"] != "http_422"
    }
    assert originals == first_copies
    assert all(c["inkit.original.topic"] == topic for c in copies)
    assert all(c["inkit.consumer.group"] == group for c in copies)


class DeadLetters:
    """A dead-letter topic filled directly, with headers chosen by the test."""

    def __init__(self, bootstrap: str, topic: str, source: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.source = source
        self._encoder = build_encoder("avro")

    def write(self, events: list[dict[str, Any]], offset_base: int = 0, **overrides: Any) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        for n, event in enumerate(events):
            fields = {
                "reason": "http_422",
                "failed_at_ms": int(time.time() * 1000),
                "partition": n % 3,
                "offset": offset_base + n,
                **overrides,
            }
            headers = [
                ("inkit.original.topic", self.source),
                ("inkit.original.partition", str(fields["partition"])),
                ("inkit.original.offset", str(fields["offset"])),
                ("inkit.error.reason", fields["reason"]),
                ("inkit.failed.at", str(fields["failed_at_ms"])),
                ("trace-id", f"t-{n}"),
            ]
            producer.produce(
                self.topic,
                key=str(event["userId"]).encode(),
                value=self._encoder.encode(event),
                headers=[(k, v.encode()) for k, v in headers],
            )
        assert producer.flush(30) == 0


@pytest.fixture
def dead_letters(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> tuple[DeadLetters, str]:
    source = topic_factory(partitions=1)
    return DeadLetters(kafka_bootstrap, topic_factory(partitions=2), source), source


def test_each_filter_and_the_limit_select_what_they_say(
    dead_letters: tuple[DeadLetters, str],
    kafka_bootstrap: str,
    inkit_simulator: InkitSimulator,
) -> None:
    letters, source = dead_letters
    day_ago = int((time.time() - 86400) * 1000)
    letters.write([identify("old", n) for n in range(4)], failed_at_ms=day_ago)
    # Original partitions 0,1,2,0,1,2 and offsets 10-15.
    letters.write([identify("new", n) for n in range(6)], offset_base=10)
    letters.write([identify("late", n) for n in range(2)], offset_base=20, reason="retry_exhausted")
    env = connector_env(kafka_bootstrap, source, letters.topic, inkit_simulator, "g-filters")
    # Each filter alone is unit-tested (tests/unit/delivery/test_selection.py); here each is
    # paired with another so that a flag the command line loses changes the count.
    cases: dict[tuple[str, ...], int] = {
        ("--reason", "http_422", "--since", "2h"): 6,  # without --reason 8, without --since 10
        ("--until", "2h", "--partition", "0"): 2,  # without --until 5, without --partition 4
        ("--offset", "14-15"): 2,
        ("--limit", "5"): 5,
    }
    dry = [("--dry-run", "--group-id", f"dry-{uuid.uuid4().hex[:8]}", *args) for args in cases]
    missing_dlq = {**env, "KAFKA_DLQ_TOPIC": f"missing-{uuid.uuid4().hex}"}
    *results, missing = _redrive_all([*((env, args) for args in dry), (missing_dlq, ())])
    for (args, expected), result in zip(cases.items(), results, strict=True):
        assert result.returncode == 0, result.stderr
        assert f"would send: {expected}" in result.stdout, (args, result.stdout)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    # A dry run commits nothing either.
    for args in dry:
        assert set(committed(kafka_bootstrap, args[2], letters.topic, 2).values()) == {-1001}
    assert inkit_simulator.stats()["total"] == 0

    # --limit for real: two now, the rest (and not those two again) in the next run.
    limited = _redrive(env, "--limit", "2")
    assert limited.returncode == 0, limited.stderr
    assert "re-sent: 2" in limited.stdout, limited.stdout
    rest = _redrive(env)
    assert rest.returncode == 0, rest.stderr
    assert "re-sent: 10" in rest.stdout, rest.stdout
    assert inkit_simulator.stats()["accepted"] == 12


def test_a_redrive_killed_halfway_resumes_and_sends_nothing_twice_beyond_its_in_flight(
    dead_letters: tuple[DeadLetters, str],
    kafka_bootstrap: str,
    inkit_simulator: InkitSimulator,
) -> None:
    letters, source = dead_letters
    count, in_flight = 80, 4
    letters.write([identify(f"user-{n % 10}", n) for n in range(count)])
    inkit_simulator.set_faults(Faults(latency_ms=100))
    env = connector_env(
        kafka_bootstrap,
        source,
        letters.topic,
        inkit_simulator,
        "g-kill",
        INKIT_MAX_IN_FLIGHT=str(in_flight),
        MAX_UNCOMMITTED_RECORDS=str(in_flight),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "redrive"],
        env={**os.environ, "LOG_LEVEL": "WARNING", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: inkit_simulator.stats()["accepted"] >= count // 3, 60, "no progress")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    at_kill = inkit_simulator.stats()["accepted"]
    assert at_kill < count, "the redrive finished before the kill: make it slower"
    resumed = _redrive(env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    sent = Deliveries.of(inkit_simulator.requests())
    assert sent.unique() == {(f"user-{n % 10}", n) for n in range(count)}
    # Only what flew at the kill (Inkit accepted it, the sent-ledger never heard) comes twice.
    assert sent.duplicates() <= in_flight, sent.duplicates()
    assert sent.first_delivery_order_violations() == []
