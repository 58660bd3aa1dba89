"""`inkit-connector run` as a real process, against the real broker and the Inkit simulator:
no loss and per-user order under every fault kind, commits never ahead of deliveries, SIGTERM
drain, kill -9, group sharing, the auth breaker, dead letters, a full in-flight window."""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connector.testing.inkit_simulator import Faults, InkitSimulator, RecordedRequest
from tests.integration.harness import (
    ConnectorProcess,
    Deliveries,
    Produced,
    committed,
    connector_env,
    dlq_headers,
    end_offsets,
    identify,
    produce,
    read_all,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka3]

Setup = Callable[..., "Pipeline"]


class Pipeline:
    """A topic + DLQ topic + group, the events produced to it, and connector processes."""

    def __init__(
        self,
        bootstrap: str,
        topic_factory: Callable[..., str],
        simulator: InkitSimulator,
        tmp_path: Path,
        partitions: int,
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.topic = topic_factory(partitions=partitions)
        self.dlq = topic_factory(partitions=1)
        self.group = f"g-{uuid.uuid4().hex[:8]}"
        self.simulator = simulator
        self.tmp_path = tmp_path
        self.produced: list[Produced] = []
        self.processes: list[ConnectorProcess] = []
        self._recorded: list[RecordedRequest] = []

    def produce(self, users: int, events: int, seed: int = 0, start_seq: int = 0) -> None:
        rng = random.Random(seed)
        names = [f"user-{i}" for i in range(users)]
        batch = [identify(rng.choice(names), start_seq + n) for n in range(events)]
        self.produced += produce(self.bootstrap, self.topic, batch)

    def connector(self, **env: str) -> ConnectorProcess:
        # The connector's default request timeout unless a test sets one: the harness's 2 s is
        # too short on a busy machine, where the simulator (in this process) can answer after it
        # and the retry of a request it had recorded counts as a duplicate nothing else caused.
        env = {"INKIT_TIMEOUT_SECONDS": "10", **env}
        process = ConnectorProcess(
            connector_env(self.bootstrap, self.topic, self.dlq, self.simulator, self.group, **env),
            self.tmp_path,
            name=f"connector-{len(self.processes)}",
        )
        self.processes.append(process)
        return process

    def deliveries(self) -> Deliveries:
        # Page through the record: copying it whole on every poll would starve the simulator,
        # which shares this process's GIL.
        last = self._recorded[-1].seq if self._recorded else 0
        self._recorded += self.simulator.requests(since=last)
        return Deliveries.of(self._recorded)

    def expected(self) -> set[tuple[str, int]]:
        return {(p.user, p.seq) for p in self.produced}

    def all_delivered(self) -> bool:
        return self.expected() <= self.deliveries().unique()

    def all_committed(self) -> bool:
        ends = end_offsets(self.bootstrap, self.topic, self.partitions)
        return committed(self.bootstrap, self.group, self.topic, self.partitions) == ends

    def assert_no_loss_and_in_order(self) -> Deliveries:
        deliveries = self.deliveries()
        missing = self.expected() - deliveries.unique()
        assert not missing, f"{len(missing)} events never delivered, e.g. {sorted(missing)[:5]}"
        assert deliveries.first_delivery_order_violations() == []
        return deliveries


@pytest.fixture
def pipeline(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> Iterator[Callable[..., Pipeline]]:
    made: list[Pipeline] = []

    def make(partitions: int = 4) -> Pipeline:
        p = Pipeline(kafka_bootstrap, topic_factory, inkit_simulator, tmp_path, partitions)
        made.append(p)
        return p

    yield make
    for p in made:
        for process in p.processes:
            if process.proc is not None and process.proc.poll() is None:
                process.kill()


FAULTS = {
    "latency": Faults(latency_ms=5, latency_max_ms=40),
    "rate_429": Faults(rate_429=0.2, retry_after_s=0.2),
    "server_5xx": Faults(rate_5xx=0.2),
    "hang": Faults(rate_hang=0.05, hang_s=3.0),
    "dropped_connection": Faults(rate_drop=0.05),
    "mix": Faults(
        latency_ms=5,
        latency_max_ms=50,
        rate_5xx=0.10,
        rate_429=0.05,
        retry_after_s=0.2,
        rate_hang=0.02,
        hang_s=3.0,
        rate_drop=0.01,
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_no_loss_and_per_user_order_under_each_fault(
    pipeline: Callable[..., Pipeline], fault: str
) -> None:
    p = pipeline(partitions=4)
    p.simulator.set_faults(FAULTS[fault])
    p.produce(users=40, events=400, seed=hash(fault) % 1000)
    connector = p.connector(INKIT_TIMEOUT_SECONDS="1").start()
    wait_until(p.all_delivered, 90, f"not all delivered; log:\n{connector.log_tail()}")
    wait_until(p.all_committed, 30, "offsets not committed to the end")
    assert connector.stop() == 0
    p.assert_no_loss_and_in_order()
    assert read_all(p.bootstrap, p.dlq, timeout_s=3) == []


def test_an_outage_window_is_ridden_out_without_dead_letters(
    pipeline: Callable[..., Pipeline],
) -> None:
    p = pipeline(partitions=2)
    p.produce(users=20, events=200)
    p.simulator.outage(503, 3.0)
    connector = p.connector().start()
    wait_until(p.all_delivered, 60, connector.log_tail())
    wait_until(p.all_committed, 30)
    assert connector.stop() == 0
    p.assert_no_loss_and_in_order()
    assert read_all(p.bootstrap, p.dlq, timeout_s=3) == []


def test_commits_are_never_ahead_of_deliveries(pipeline: Callable[..., Pipeline]) -> None:
    p = pipeline(partitions=3)
    p.simulator.set_faults(Faults(latency_ms=10, latency_max_ms=60, rate_5xx=0.1))
    p.produce(users=30, events=600)
    by_offset = {(e.partition, e.offset): (e.user, e.seq) for e in p.produced}
    connector = p.connector(COMMIT_INTERVAL_SECONDS="0.1").start()
    checks = 0
    while not p.all_delivered():
        connector.assert_running()
        # Read the commits first, then the deliveries: a commit seen must be covered.
        offsets = committed(p.bootstrap, p.group, p.topic, p.partitions)
        delivered = p.deliveries().unique()
        for partition, next_offset in offsets.items():
            ahead = [
                by_offset[(partition, o)]
                for o in range(max(next_offset, 0))
                if by_offset[(partition, o)] not in delivered
            ]
            assert ahead == [], f"partition {partition} committed {next_offset} before {ahead[:3]}"
        checks += 1
        time.sleep(0.2)
    assert checks > 3  # the check ran while the stream was flowing
    wait_until(p.all_committed, 30)
    connector.stop()


def test_sigterm_drains_commits_and_a_restart_sends_nothing_twice(
    pipeline: Callable[..., Pipeline],
) -> None:
    p = pipeline(partitions=4)
    p.simulator.set_faults(Faults(latency_ms=20, latency_max_ms=40))
    p.produce(users=100, events=3000)
    first = p.connector(INKIT_MAX_IN_FLIGHT="16", MAX_BUFFERED_RECORDS="200").start()
    wait_until(lambda: len(p.deliveries().sequence) > 200, 60, first.log_tail())
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    assert "drain (shutdown)" in first.log_text()
    delivered_before = p.deliveries().unique()
    # Everything delivered before the stop is covered by the committed offsets.
    offsets = committed(p.bootstrap, p.group, p.topic, p.partitions)
    covered = {(e.user, e.seq) for e in p.produced if e.offset < offsets[e.partition]}
    assert covered == delivered_before
    assert not p.all_delivered()
    second = p.connector().start()
    wait_until(p.all_delivered, 180, second.log_tail())
    wait_until(p.all_committed, 30)
    assert second.stop() == 0
    deliveries = p.assert_no_loss_and_in_order()
    assert deliveries.duplicates() == 0


def test_kill_9_redelivers_only_what_was_not_committed(pipeline: Callable[..., Pipeline]) -> None:
    p = pipeline(partitions=4)
    p.simulator.set_faults(Faults(latency_ms=20, latency_max_ms=40))
    p.produce(users=100, events=1500)
    first = p.connector(INKIT_MAX_IN_FLIGHT="16").start()
    wait_until(lambda: len(p.deliveries().sequence) > 300, 60, first.log_tail())
    first.kill()
    offsets = committed(p.bootstrap, p.group, p.topic, p.partitions)
    delivered_before = p.deliveries().unique()
    committed_events = {(e.user, e.seq) for e in p.produced if e.offset < offsets[e.partition]}
    assert committed_events <= delivered_before  # nothing committed that was not delivered
    uncommitted_delivered = delivered_before - committed_events
    second = p.connector().start()
    wait_until(p.all_delivered, 90, second.log_tail())
    wait_until(p.all_committed, 30)
    second.stop()
    deliveries = p.assert_no_loss_and_in_order()
    # Only records delivered after the last commit can come again.
    assert deliveries.duplicates() <= len(uncommitted_delivered)


def test_bad_records_go_to_the_dead_letter_topic_while_good_ones_flow(
    pipeline: Callable[..., Pipeline],
) -> None:
    p = pipeline(partitions=2)
    p.produce(users=10, events=100)
    long_street = "x" * 80
    bad = [
        (b"k1", b""),  # empty value
        (b"k2", b"\x00\x00\x00\x00\x01garbage"),  # not bare Avro of our schema
        (b"k3", b"\xff" * 40),
    ]
    p.produced += produce(
        p.bootstrap,
        p.topic,
        # The mapper refuses it before any HTTP call (Inkit's 64-character limit).
        [identify("user-x", 1000, address_line_1=long_street, address_city="Austin")],
    )
    produce(p.bootstrap, p.topic, [], raw=bad)
    connector = p.connector().start()
    expected_good = {(e.user, e.seq) for e in p.produced if e.seq < 1000}
    wait_until(lambda: expected_good <= p.deliveries().unique(), 60, connector.log_tail())
    dead = read_all(p.bootstrap, p.dlq, timeout_s=15)
    wait_until(p.all_committed, 30, connector.log_tail())
    assert connector.metric("inkit_connector_records_total", {"outcome": "dead_lettered"}) == 4
    connector.stop()
    assert len(dead) == 4
    for record in dead:
        headers = dlq_headers(record)
        assert headers["inkit.original.topic"] == p.topic
        assert {
            "inkit.original.partition",
            "inkit.original.offset",
            "inkit.error.class",
            "inkit.error.reason",
            "inkit.original.timestamp",
        } <= headers.keys()
    reasons = sorted(dlq_headers(r)["inkit.error.reason"] for r in dead)
    assert "address_line_1_too_long" in reasons or any("address" in r for r in reasons)
    values = {r.value() for r in dead}
    assert b"\xff" * 40 in values  # the original bytes travel with the copy


def test_a_bad_key_pauses_delivery_and_it_recovers_by_itself(
    pipeline: Callable[..., Pipeline],
) -> None:
    p = pipeline(partitions=2)
    p.simulator.set_api_key("rotated-key")  # the connector's key is refused
    p.produce(users=20, events=200)
    connector = p.connector().start()
    wait_until(
        lambda: connector.metric("inkit_connector_auth_blocked") == 1, 30, connector.log_tail()
    )
    ready = connector.get("/readyz")
    assert ready is not None
    assert ready.status_code == 503
    time.sleep(2)
    assert p.deliveries().sequence == []
    assert connector.metric("inkit_connector_paused_partitions") == 2
    # The lag gauge agrees with the broker: everything produced is still to be delivered.
    wait_until(lambda: connector.metric("inkit_connector_consumer_lag_records") == 200, 15)
    p.simulator.set_api_key("test-api-key")  # the key is accepted again
    wait_until(p.all_delivered, 60, connector.log_tail())
    wait_until(lambda: connector.metric("inkit_connector_auth_blocked") == 0, 10)
    wait_until(p.all_committed, 30)
    wait_until(lambda: connector.metric("inkit_connector_consumer_lag_records") == 0, 15)
    connector.stop()
    p.assert_no_loss_and_in_order()
    assert read_all(p.bootstrap, p.dlq, timeout_s=3) == []
    assert connector.log_text().count("refused the API key") == 1


def test_one_partition_with_many_users_keeps_the_window_full(
    pipeline: Callable[..., Pipeline],
) -> None:
    window = 32
    p = pipeline(partitions=1)
    p.simulator.set_faults(Faults(latency_ms=100))
    p.produce(users=500, events=1500)
    connector = p.connector(INKIT_MAX_IN_FLIGHT=str(window)).start()
    # The in-flight gauge, sampled while more than two windows of events were still to come
    # (before the stream's tail, where fewer are left than the window holds).
    samples: list[float] = []

    def sample() -> bool:
        in_flight = connector.metric("inkit_connector_requests_in_flight")
        delivered = len(p.deliveries().unique())
        if delivered > 0 and len(p.produced) - delivered > 2 * window:
            samples.append(in_flight)
        return delivered == len(p.produced)

    wait_until(sample, 120, connector.log_tail())
    connector.stop()
    p.assert_no_loss_and_in_order()
    assert max(samples) == window
    # Requests in flight on average, measured directly rather than as throughput x latency
    # (the same quantity by Little's law, but a busy machine stretches the latency and not the
    # window): one partition's order keeps no more than one request per user in flight, and
    # with 500 users the window, not the partition, sets the pace.
    assert len(samples) >= 5, samples
    assert sum(samples) / len(samples) > 0.6 * window, samples


def test_two_then_three_processes_share_the_topic_and_graceful_moves_send_nothing_twice(
    pipeline: Callable[..., Pipeline],
) -> None:
    p = pipeline(partitions=6)
    p.simulator.set_faults(Faults(latency_ms=10, latency_max_ms=30))
    p.produce(users=200, events=1500)
    a = p.connector().start()
    b = p.connector().start()
    wait_until(lambda: len(p.deliveries().sequence) > 300, 60, a.log_tail())
    c = p.connector().start()  # a third member joins: partitions move while records fly
    wait_until(lambda: len(p.deliveries().sequence) > 800, 60, c.log_tail())
    assert a.stop() == 0  # a graceful leave: its partitions move again
    p.produce(users=200, events=500, seed=9, start_seq=1500)
    wait_until(p.all_delivered, 90, b.log_tail())
    wait_until(p.all_committed, 30)
    for process in (b, c):
        assert process.stop() == 0
    deliveries = p.assert_no_loss_and_in_order()
    assert deliveries.duplicates() == 0
