"""A Kafka 3.x broker (KAFKA3_VERSION, the newest 3.x Maven Central serves), where the connector
runs the classic group protocol because the brokers do not enable KIP-848.

In CI: delivery, the dead-letter path and commits end to end, and a member leaving gracefully
while another keeps going, with no partition count change: nothing lost, nothing sent twice.
Opt-in (--run-slow): the churn measurement of RELIABILITY.md's open issue 1. Each round adds
partitions and, at the same moment, stops one member gracefully and starts another; the run
reports the duplicates per graceful stop and the longest stall (the longest time in which
nothing was delivered while events were waiting)."""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from connector.testing.inkit_simulator import Faults, InkitSimulator
from connector.testing.kafka_broker import KafkaBroker
from connector.testing.kafka_jars import KAFKA3_VERSION
from tests.fixtures.kafka import TopicFactory, create_topic
from tests.integration.harness import (
    ConnectorProcess,
    Deliveries,
    committed,
    connector_env,
    dlq_headers,
    end_offsets,
    identify,
    produce,
    read_all,
    wait_until,
)
from tests.reliability import Stopwatch, write_figures
from tests.reliability.secure_clients import cli
from tests.reliability.test_group_churn import Group

pytestmark = pytest.mark.integration

EVENTS = 600
PARTITIONS = 4
CHURN_ROUNDS = 6
COMMIT_WAIT_S = 180.0


@pytest.fixture
def kafka3(kafka3_broker: KafkaBroker) -> KafkaBroker:
    """The session's Kafka 3.x broker (tests/fixtures/kafka.py), which the delivery suite and
    the group-churn test share."""
    return kafka3_broker


@pytest.fixture
def kafka3_topics(kafka3: KafkaBroker) -> tuple[str, str]:
    admin = AdminClient(kafka3.client_config())
    topic = f"k3-{uuid.uuid4().hex[:8]}"
    create_topic(admin, topic, PARTITIONS)
    create_topic(admin, f"{topic}.dlq", 1)
    return topic, f"{topic}.dlq"


def test_classic_protocol_delivers_dead_letters_and_hands_over_gracefully(
    kafka3: KafkaBroker,
    kafka3_topics: tuple[str, str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    topic, dlq = kafka3_topics
    group = f"g-{uuid.uuid4().hex[:8]}"
    bootstrap = kafka3.bootstrap_servers
    # The connector's default request timeout: with the harness's 2 s, a busy machine's late
    # simulator answers are retried and counted as duplicates no handover caused.
    env = connector_env(bootstrap, topic, dlq, inkit_simulator, group, INKIT_TIMEOUT_SECONDS="10")
    checked = cli(["check"], env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok   group protocol: classic" in checked.stdout

    inkit_simulator.set_faults(Faults(latency_ms=5, latency_max_ms=20))
    half = EVENTS // 2
    produced = produce(
        bootstrap,
        topic,
        [identify(f"user-{n % 40}", n) for n in range(half)],
        raw=[(b"poison", b"\x00not avro")],
    )
    clock = Stopwatch()
    first = ConnectorProcess(env, tmp_path, name="k3-a").start()
    second = ConnectorProcess(env, tmp_path, name="k3-b").start()
    members = [first, second]
    try:
        wait_until(
            lambda: len(Deliveries.of(inkit_simulator.requests()).unique()) > half // 3,
            60,
            first.log_tail(),
        )
        produced += produce(
            bootstrap, topic, [identify(f"user-{n % 40}", n) for n in range(half, EVENTS)]
        )
        assert first.stop() == 0  # graceful: drain, commit, leave; `second` takes over
        expected = {(p.user, p.seq) for p in produced}
        wait_until(
            lambda: expected <= Deliveries.of(inkit_simulator.requests()).unique(),
            90,
            second.log_tail(),
        )
        wait_until(
            lambda: (
                committed(bootstrap, group, topic, PARTITIONS)
                == end_offsets(bootstrap, topic, PARTITIONS)
            ),
            60,
            second.log_tail(),
        )
        assert second.stop() == 0
    finally:
        for member in members:
            if member.proc is not None and member.proc.poll() is None:
                member.kill()
    logs = first.log_text() + second.log_text()
    assert set(re.findall(r"consumer group protocol: (\w+)", logs)) == {"classic"}
    deliveries = Deliveries.of(inkit_simulator.requests())
    assert deliveries.first_delivery_order_violations() == []
    dead = read_all(bootstrap, dlq, timeout_s=20)
    assert [dlq_headers(r)["inkit.error.reason"] for r in dead] == ["invalid_avro"]
    write_figures(
        request,
        f"kafka3-classic-delivery-{KAFKA3_VERSION}",
        {"events": EVENTS, "duplicates": deliveries.duplicates(), "seconds": clock()},
    )
    assert deliveries.duplicates() == 0, "a graceful handover sent something twice"


@pytest.fixture
def kafka3_topic_factory(kafka3: KafkaBroker) -> TopicFactory:
    admin = AdminClient(kafka3.client_config())

    def create(partitions: int = 1, name: str | None = None) -> str:
        topic = name or f"k3-{uuid.uuid4().hex}"
        create_topic(admin, topic, partitions)
        return topic

    return create


def longest_gap_s(arrivals: list[float], start: float, end: float) -> float:
    """The longest time between ``start``, successive arrivals and ``end``."""
    points = [start, *sorted(a for a in arrivals if start <= a <= end), end]
    return max(b - a for a, b in itertools.pairwise(points))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_classic_churn_bound_on_kafka3(
    kafka3: KafkaBroker,
    kafka3_topic_factory: TopicFactory,
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    group = Group(kafka3.bootstrap_servers, kafka3_topic_factory, inkit_simulator, tmp_path, "auto")
    inkit_simulator.set_faults(Faults(latency_ms=10, latency_max_ms=30))
    rounds: list[dict[str, float | int]] = []
    try:
        group.produce_wave()
        members = [group.start() for _ in range(3)]
        wait_until(lambda: group.delivered_count() > 300, 90, members[0].log_tail())
        for n in range(CHURN_ROUNDS):
            before = Deliveries.of(group.recorded).duplicates()
            started = time.time()
            group.produce_wave()
            group.add_partitions(group.partitions + 2)  # partitions appear...
            leaving = members[n % 3]
            stop_clock = Stopwatch()
            exit_code = leaving.stop(timeout_s=120)  # ...while a member stops gracefully
            stop_s = stop_clock()
            members[n % 3] = group.start()
            wait_until(group.all_delivered, 300, members[(n + 1) % 3].log_tail())
            finished = time.time()
            arrivals = [r.arrival for r in group.recorded]
            rounds.append(
                {
                    "round": n,
                    "exit_code": exit_code,
                    "stop_seconds": round(stop_s, 2),
                    "duplicates": Deliveries.of(group.recorded).duplicates() - before,
                    "longest_stall_s": round(longest_gap_s(arrivals, started, finished), 2),
                }
            )
            print(json.dumps(rounds[-1]), flush=True)
        # A last wave, so the partitions the last round added hold records too (an empty
        # partition has no commit to compare with its end offset of 0).
        group.produce_wave()
        wait_until(group.all_delivered, 300, members[0].log_tail())
        # The stall of open issue 1 shows here too: the group may not commit to the end while
        # a member waits to rejoin. Measured, not asserted: delivery is what the user sees.
        commit_clock = Stopwatch()
        try:
            wait_until(group.all_committed, COMMIT_WAIT_S)
            committed_after_s: float | None = round(commit_clock(), 2)
        except AssertionError:
            committed_after_s = None
        exits = [m.stop(timeout_s=120) for m in members]
    finally:
        for process in group.processes:
            if process.proc is not None and process.proc.poll() is None:
                process.kill()
    deliveries = Deliveries.of(group.recorded)
    missing = group.expected() - deliveries.unique()
    figures = {
        "kafka_version": KAFKA3_VERSION,
        "rounds": rounds,
        "events": len(group.produced),
        "lost": len(missing),
        "duplicates_total": deliveries.duplicates(),
        "max_duplicates_per_graceful_stop": max(int(r["duplicates"]) for r in rounds),
        "longest_stall_s": max(float(r["longest_stall_s"]) for r in rounds),
        "final_exit_codes": exits,
        "committed_to_the_end_after_s": committed_after_s,
        "commit_wait_limit_s": COMMIT_WAIT_S,
    }
    print(json.dumps(figures, indent=2))
    write_figures(request, f"kafka3-classic-churn-{KAFKA3_VERSION}", figures)
    assert not missing, f"{len(missing)} events never delivered"
