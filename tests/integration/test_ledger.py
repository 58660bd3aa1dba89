"""No letter twice: the sent-ledger against the real broker and the simulator. After a full run,
a group reset to earliest, a new group id, the whole topic produced again, and partitions added
with everything replayed each reach Inkit with 0 requests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

# NewPartitions: the documented import path, although the stubs declare it only in cimpl.
from confluent_kafka.admin import AdminClient, NewPartitions  # type: ignore[attr-defined]

from connector.kafka.ledger_topic import ledger_topic_state
from connector.testing.inkit_simulator import InkitSimulator
from tests.integration.harness import (
    ConnectorProcess,
    committed,
    connector_env,
    end_offsets,
    identify,
    produce,
    wait_until,
)

pytestmark = pytest.mark.integration


class Replays:
    """One source topic, its events, and connector runs that read it to the end and stop."""

    def __init__(
        self, bootstrap: str, topic_factory: Callable[..., str], sim: InkitSimulator, tmp: Path
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = 3
        self.topic = topic_factory(partitions=self.partitions)
        self.dlq = topic_factory(partitions=1)
        self.sim = sim
        self.tmp = tmp
        self.events = [identify(f"user-{n % 12}", n) for n in range(90)]
        self.runs = 0

    def produce_all(self) -> None:
        produce(self.bootstrap, self.topic, self.events)

    def run_to_end(self, group: str) -> ConnectorProcess:
        """Start a connector in ``group``, wait until it committed the whole topic, stop it."""
        self.runs += 1
        env = connector_env(self.bootstrap, self.topic, self.dlq, self.sim, group)
        process = ConnectorProcess(env, self.tmp, name=f"connector-{self.runs}").start()
        try:

            def done() -> bool:
                ends = end_offsets(self.bootstrap, self.topic, self.partitions)
                got = committed(self.bootstrap, group, self.topic, self.partitions)
                # A partition nothing was produced to has no commit (and needs none).
                return all(got[p] == end for p, end in ends.items() if end > 0)

            try:
                wait_until(done, 90, "not committed to the end")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; log:\n{process.log_tail()}") from None
            skipped = process.metric(
                "inkit_connector_records_total", {"outcome": "skipped", "reason": "already_sent"}
            )
        finally:
            assert process.stop() == 0
        process.skipped = skipped  # type: ignore[attr-defined]
        return process

    def requests(self) -> int:
        return int(self.sim.stats()["total"])


@pytest.fixture
def replays(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> Replays:
    return Replays(kafka_bootstrap, topic_factory, inkit_simulator, tmp_path)


def _reset_to_earliest(bootstrap: str, group: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    offsets = [TopicPartition(topic, p, 0) for p in range(partitions)]
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, offsets)])
    for future in futures.values():
        future.result(timeout=15)


def test_replays_resets_and_new_groups_send_nothing_twice(
    replays: Replays, kafka_bootstrap: str
) -> None:
    r = replays
    r.produce_all()
    group = f"g-{uuid.uuid4().hex[:8]}"
    r.run_to_end(group)
    sent = r.requests()
    assert sent == len(r.events)  # everything once

    # An operator resets the group to earliest, then restarts.
    _reset_to_earliest(kafka_bootstrap, group, r.topic, r.partitions)
    again = r.run_to_end(group)
    assert r.requests() == sent, "a group reset to earliest re-sent letters"
    assert again.skipped == len(r.events)  # type: ignore[attr-defined]

    # A deploy with a new KAFKA_GROUP_ID on the same topic.
    r.run_to_end(f"g-{uuid.uuid4().hex[:8]}")
    assert r.requests() == sent, "a new group id re-sent letters"

    # The producer writes the whole topic a second time (a replayed export).
    r.produce_all()
    r.run_to_end(group)
    assert r.requests() == sent, "the same events at other offsets were sent again"

    # Partitions are added (keys move to other partitions), then everything is replayed.
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_partitions([NewPartitions(r.topic, 6)])[r.topic].result(timeout=15)
    wait_until(
        lambda: len(admin.list_topics(r.topic, timeout=5).topics[r.topic].partitions) == 6, 15
    )
    r.partitions = 6
    r.produce_all()
    r.run_to_end(f"g-{uuid.uuid4().hex[:8]}")
    assert r.requests() == sent, "events replayed after a partition change were sent again"


def test_the_ledger_topic_is_created_compacted_and_a_restart_rebuilds_from_it(
    replays: Replays, kafka_bootstrap: str
) -> None:
    r = replays
    r.produce_all()
    first = r.run_to_end(f"g-{uuid.uuid4().hex[:8]}")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert ledger_topic_state(admin, f"{r.topic}.sent") == "compact"
    assert "sent-ledger" in first.log_text()
    second = r.run_to_end(f"g-{uuid.uuid4().hex[:8]}")
    assert "read in" in second.log_text()
    assert "90 events sent within the last 720 h" in second.log_text()
    assert r.requests() == len(r.events)
