"""Group churn: three connector processes share a topic while partitions are added to it and
members leave and join gracefully. Nothing may be lost, and first deliveries keep per-user order.

Three variants (see ``VARIANTS``):
- ``auto`` on the session's Kafka 4.x broker: the connector picks KIP-848 (``consumer``); since
  every transition is graceful (SIGTERM: drain, commit, leave), nothing may be sent twice.
- ``kafka3-classic`` on a Kafka 3.x broker, which does not enable KIP-848, so the connector picks
  ``classic``. librdkafka's classic cooperative protocol can hand a partition over while its
  revoke callback still runs and hold the old owner's final commit (RELIABILITY.md, open issue 1),
  so duplicates happen; CI asserts their measured bound instead: at most MAX_UNCOMMITTED_RECORDS
  per graceful stop (what one member may have delivered and not yet committed), nothing lost.
- ``classic`` forced on the 4.x broker (opt-in, --run-slow): the same protocol, reported.
"""

from __future__ import annotations

import itertools
import random
import re
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewPartitions

from connector.testing.inkit_simulator import Faults, InkitSimulator, RecordedRequest
from connector.testing.kafka_jars import DEFAULT_VERSION, KAFKA3_VERSION
from connector.testing.topics import wait_for_topic
from tests.integration.harness import (
    ConnectorProcess,
    Deliveries,
    Produced,
    committed,
    connector_env,
    end_offsets,
    identify,
    produce,
    read_all,
    wait_until,
)
from tests.reliability import Stopwatch, write_figures

pytestmark = pytest.mark.integration

USERS = 200
WAVE = 1000
# librdkafka notices new partitions of a subscribed topic only when it refreshes metadata:
# every topic.metadata.refresh.interval.ms, 300,000 ms by default.
METADATA_REFRESH_MS = 1000
# The connector's cap on what one member has delivered and not yet committed (its default,
# 4 x INKIT_MAX_IN_FLIGHT, set explicitly so the bound below reads from one place).
MAX_UNCOMMITTED = 256

# The connector's default. The harness's 2 s is too short on a busy machine: the simulator, in
# the test's process, can answer after it, and the retry of a request it had already recorded
# counts as a duplicate that no group transition caused.
INKIT_TIMEOUT_S = "10"

# On the classic protocol librdkafka can stop rejoining the group ("incremental assignment
# pending", open issue 1) and the coordinator then waits for it up to the member's rebalance
# timeout, which librdkafka sends as max.poll.interval.ms (rd_kafka_JoinGroupRequest in
# src/rdkafka_request.c; default 300 s: a stall of over three minutes was seen here), before it
# drops the member and completes the rebalance without it. 30 s bounds that stall and stays
# well above the longest the connector goes without polling (a drain, DRAIN_TIMEOUT_SECONDS=10).
CLASSIC_ENV = {"KAFKA_CONFIG_MAX_POLL_INTERVAL_MS": "30000"}

# (broker version, group protocol setting): "auto" lets the connector pick from the brokers.
VARIANTS = [
    pytest.param(DEFAULT_VERSION, "auto", id="auto"),
    pytest.param(DEFAULT_VERSION, "classic", id="classic", marks=pytest.mark.slow),
    pytest.param(KAFKA3_VERSION, "auto", id="kafka3-classic"),
]


class Group:
    """A topic, its dead-letter topic and the group's processes."""

    def __init__(
        self,
        bootstrap: str,
        topic_factory: Callable[..., str],
        simulator: InkitSimulator,
        tmp_path: Path,
        protocol: str,
        **env: str,
    ) -> None:
        self.protocol = protocol
        self.env = env
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.partitions = 3
        self.topic = topic_factory(partitions=self.partitions)
        self.dlq = topic_factory(partitions=1)
        self.group = f"g-{uuid.uuid4().hex[:8]}"
        self.simulator = simulator
        self.tmp_path = tmp_path
        self.produced: list[Produced] = []
        self.processes: list[ConnectorProcess] = []
        self.recorded: list[RecordedRequest] = []
        self.delivered: set[tuple[str, int]] = set()
        self._next_seq = 0
        self._rng = random.Random(7)

    def produce_wave(self, events: int = WAVE) -> None:
        users = [f"user-{i}" for i in range(USERS)]
        batch = [identify(self._rng.choice(users), self._next_seq + n) for n in range(events)]
        self._next_seq += events
        self.produced += produce(self.bootstrap, self.topic, batch)

    def start(self) -> ConnectorProcess:
        env = connector_env(
            self.bootstrap,
            self.topic,
            self.dlq,
            self.simulator,
            self.group,
            KAFKA_CONFIG_TOPIC_METADATA_REFRESH_INTERVAL_MS=str(METADATA_REFRESH_MS),
            MAX_UNCOMMITTED_RECORDS=str(MAX_UNCOMMITTED),
            INKIT_TIMEOUT_SECONDS=INKIT_TIMEOUT_S,
            **({"KAFKA_CONFIG_GROUP_PROTOCOL": self.protocol} if self.protocol != "auto" else {}),
            **self.env,
        )
        process = ConnectorProcess(env, self.tmp_path, name=f"churn-{len(self.processes)}")
        self.processes.append(process.start())
        return process

    def add_partitions(self, total: int) -> None:
        futures = self.admin.create_partitions([NewPartitions(self.topic, total)])
        futures[self.topic].result(timeout=30)
        wait_for_topic(self.admin, self.topic, total)
        self.partitions = total

    def page(self) -> None:
        last = self.recorded[-1].seq if self.recorded else 0
        new = self.simulator.requests(since=last)
        self.recorded += new
        self.delivered |= Deliveries.of(new).unique()

    def delivered_count(self) -> int:
        self.page()
        return len(self.delivered)

    def expected(self) -> set[tuple[str, int]]:
        return {(p.user, p.seq) for p in self.produced}

    def all_delivered(self) -> bool:
        self.page()
        return self.expected() <= self.delivered

    def all_committed(self) -> bool:
        ends = end_offsets(self.bootstrap, self.topic, self.partitions)
        return committed(self.bootstrap, self.group, self.topic, self.partitions) == ends


@pytest.fixture
def group(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
    protocol: str,
    kafka_version: str,
) -> Iterator[Group]:
    env = CLASSIC_ENV if kafka_version == KAFKA3_VERSION else {}
    g = Group(kafka_bootstrap, topic_factory, inkit_simulator, tmp_path, protocol, **env)
    yield g
    for process in g.processes:
        if process.proc is not None and process.proc.poll() is None:
            process.kill()


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("kafka_version", "protocol"), VARIANTS, indirect=["kafka_version"])
def test_partitions_added_and_graceful_member_changes_lose_nothing(
    group: Group, kafka_version: str, request: pytest.FixtureRequest
) -> None:
    clock = Stopwatch()
    group.simulator.set_faults(Faults(latency_ms=10, latency_max_ms=30))
    group.produce_wave()
    members = [group.start() for _ in range(3)]
    wait_until(lambda: group.delivered_count() > 300, 120, members[0].log_tail())

    # Duplicates so far when each graceful stop began: the ones a stop may have caused are
    # those after it (and before the next), which the classic protocol's bound is about.
    at_stop: list[int] = []

    def stop(member: ConnectorProcess, meanwhile: Callable[[], None] | None = None) -> int:
        group.page()
        at_stop.append(Deliveries.of(group.recorded).duplicates())
        if meanwhile is None:
            return member.stop()
        member.signal(signal.SIGTERM)
        meanwhile()
        return member.wait()

    # Partitions 3..5 appear while every member is busy; events now land on six partitions.
    added_at = time.monotonic()
    group.add_partitions(6)
    group.produce_wave()
    new_partition_events = {(p.user, p.seq) for p in group.produced if p.partition >= 3}
    assert new_partition_events, "no event landed on a new partition"

    def picked_up() -> bool:
        group.page()
        return bool(group.delivered & new_partition_events)

    wait_until(picked_up, 60, "the new partitions were never consumed")
    first_pickup_s = round(time.monotonic() - added_at, 2)

    exits: list[int] = []
    # A member leaves gracefully while records fly; a new one takes its place.
    exits.append(stop(members[0]))
    baseline = group.delivered_count()
    # The two left go on. On the classic protocol librdkafka can stall the group here until it
    # rejoins (open issue 1: up to about a minute measured), hence the generous deadline; the
    # time it took is reported.
    left_clock = Stopwatch()
    wait_until(lambda: group.delivered_count() > baseline + 200 or group.all_delivered(), 180)
    after_leave_s = left_clock()
    members[0] = group.start()
    group.produce_wave()
    # Another leaves and, while it drains, partitions grow again (the classic protocol's hard
    # case: a partition count change during a revoke); then it comes back.
    exits.append(stop(members[1], meanwhile=lambda: group.add_partitions(9)))
    members[1] = group.start()
    group.produce_wave()
    wait_until(group.all_delivered, 180, members[2].log_tail())
    wait_until(group.all_committed, 60, members[2].log_tail())
    exits += [stop(m) for m in members]
    # On the classic protocol a stopping member's final commit can be held behind a rebalance
    # until its shutdown watchdog ends the process with exit 1 (open issue 1); what it then
    # leaves uncommitted is what the duplicate bound below covers. Any other exit is a failure.
    held = sum("shutdown exceeded" in p.log_text() for p in group.processes)
    classic = not (group.protocol == "auto" and kafka_version == DEFAULT_VERSION)
    expected_exits = [0] * (len(exits) - held) + [1] * held if classic else [0] * len(exits)
    assert sorted(exits) == expected_exits

    deliveries = Deliveries.of(group.recorded)
    missing = group.expected() - deliveries.unique()
    assert not missing, f"{len(missing)} events never delivered, e.g. {sorted(missing)[:5]}"
    # Per-user order holds per partition: adding partitions moves a user's later events to
    # another partition, which Kafka itself does not order against the earlier ones.
    partition_of = {(p.user, p.seq): p.partition for p in group.produced}
    last: dict[tuple[str, int], int] = defaultdict(lambda: -1)
    violations = []
    first_seen: set[tuple[str, int]] = set()
    for user, seq in deliveries.sequence:
        if (user, seq) in first_seen:
            continue  # a re-delivery: counted below, not an ordering question
        first_seen.add((user, seq))
        key = (user, partition_of[(user, seq)])
        if seq < last[key]:
            violations.append((user, seq))
        last[key] = max(last[key], seq)
    assert violations == []
    assert read_all(group.bootstrap, group.dlq, timeout_s=3) == []
    logs = "".join(p.log_text() for p in group.processes)
    protocols = set(re.findall(r"consumer group protocol: (\w+)", logs))
    # Duplicates per window: before the first stop (three joins and a partition add), then from
    # each graceful stop to the next.
    marks = [0, *at_stop, deliveries.duplicates()]
    per_window = [b - a for a, b in itertools.pairwise(marks)]
    write_figures(
        request,
        f"group-churn-{request.node.callspec.id}",
        {
            "kafka_version": kafka_version,
            "group_protocol": ",".join(sorted(protocols)),
            "events": len(group.produced),
            "partitions": "3 -> 6 -> 9",
            "processes_started": len(group.processes),
            "graceful_stops": len(exits),
            "lost": len(missing),
            "duplicates": deliveries.duplicates(),
            "duplicates_before_the_first_stop": per_window[0],
            "duplicates_per_graceful_stop": per_window[1:],
            "stops_ended_by_the_shutdown_watchdog": held,
            "max_uncommitted_records": MAX_UNCOMMITTED,
            "order_violations_per_partition": len(violations),
            "new_partitions_first_delivery_s": first_pickup_s,
            "first_200_after_a_leave_s": after_leave_s,
            "topic_metadata_refresh_interval_ms": METADATA_REFRESH_MS,
            "rebalance_drains": logs.count("drain (revoke)"),
            "handoffs_waited_for": logs.count("is still draining it"),
            "seconds": clock(),
        },
    )
    if kafka_version == KAFKA3_VERSION:
        assert protocols == {"classic"}, "Kafka 3.x brokers do not enable KIP-848"
    if not classic:
        assert protocols == {"consumer"}, "the broker enables KIP-848: it must be picked"
        assert deliveries.duplicates() == 0, "a graceful transition sent something twice"
    else:
        # Classic: open issue 1's bound, as measured (RELIABILITY.md). Each window holds one
        # group transition (a graceful stop and what follows it; the first, the joins and a
        # partition add), in which what was delivered and not yet committed may come again: at
        # most MAX_UNCOMMITTED_RECORDS.
        assert max(per_window) <= MAX_UNCOMMITTED, per_window
