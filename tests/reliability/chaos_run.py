"""The chaos run's parts: the topic and its events, the connector processes, the simulator's
record paged in, and what was true at each kill (tests/reliability/test_chaos.py runs it)."""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from connector.events.encoding import build_encoder
from connector.testing.inkit_simulator import Faults, InkitSimulator, RecordedRequest
from connector.testing.kafka_broker import KafkaBroker
from tests.fixtures.kafka import create_topic
from tests.integration.harness import (
    ConnectorProcess,
    Deliveries,
    committed,
    connector_env,
    end_offsets,
    identify,
    produce,
)
from tests.reliability import covered_offsets, is_covered

CI_EVENTS = 20_000
# AMBIGUOUS_SEND_POLICY=dead-letter in CI: a smaller run (each send also waits for its intent),
# so that the second policy does not double the suite's time; --run-slow runs it at LONG_EVENTS.
CI_DEAD_LETTER_EVENTS = 6_000
LONG_EVENTS = 100_000
PARTITIONS = 4
USERS = 500
MAX_IN_FLIGHT = 64
BAD_PER_10K = 150  # 1.5 % of the stream is bad records, in four kinds
MAPPING_BAD_SEQ = 10_000_000  # seq numbers of the events the mapper refuses
# The fault mix; hangs outlast INKIT_TIMEOUT_SECONDS=1, so they turn into timeouts.
# Each 429 holds back every request for its Retry-After (a shared throttle, on purpose): with
# 5 % of 429s, 0.2 s capped the run near 100 events/s (245 s for the CI size); 0.05 s keeps the
# same behaviour at a pace that fits CI.
CHAOS_FAULTS = Faults(
    latency_ms=5,
    latency_max_ms=50,
    rate_5xx=0.10,
    rate_429=0.05,
    retry_after_s=0.05,
    rate_hang=0.02,
    hang_s=3.0,
    rate_drop=0.01,
)


@dataclass
class Boundary:
    """A kill -9 of the connector or a restart of the broker, and what was true at that moment."""

    kind: str  # "kill" or "broker_restart"
    seq: int  # the simulator's last recorded request when it happened
    delivered: set[tuple[str, int]]
    coverage: dict[int, tuple[int, set[int]]]
    seconds: float  # since the run started
    # Events whose sent record the ledger held then: a delivered event not among them was in
    # flight (sent, its outcome not yet durable) and is all a restart may send again.
    in_ledger: set[tuple[str, int]] = field(default_factory=set)
    beyond_in_flight: list[tuple[str, int]] = field(default_factory=list)
    duration_s: float = 0.0  # broker restarts: how long the broker was away
    duplicates: int = 0
    unexplained: list[tuple[str, int]] = field(default_factory=list)


class ChaosRun:
    """One topic, its dead-letter topic, one group, and the simulator's record paged in."""

    def __init__(
        self, broker: KafkaBroker, simulator: InkitSimulator, tmp_path: Path, policy: str
    ) -> None:
        self.policy = policy
        self.broker = broker
        self.bootstrap = broker.bootstrap_servers
        self.simulator = simulator
        self.tmp_path = tmp_path
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        self.topic = f"chaos-{uuid.uuid4().hex[:8]}"
        self.dlq = f"{self.topic}.dlq"
        create_topic(admin, self.topic, PARTITIONS)
        create_topic(admin, self.dlq, 1)
        self.group = f"g-{uuid.uuid4().hex[:8]}"
        self.valid: dict[tuple[str, int], tuple[int, int]] = {}  # event -> (partition, offset)
        self.bad_mapped: dict[tuple[int, int], str] = {}  # (partition, offset) -> reason
        self.bad_raw: dict[bytes, str] = {}  # key -> reason (offsets known from the DLQ copy)
        self.recorded: list[RecordedRequest] = []
        self.delivered: set[tuple[str, int]] = set()
        self.processes: list[ConnectorProcess] = []

    # -- input ---------------------------------------------------------------------------------
    def produce(self, events: int, rng: random.Random) -> None:
        """``events`` valid Identify events over USERS users, with bad records interleaved:
        address lines the mapper refuses, truncated Avro, trailing bytes and empty values."""
        encoder = build_encoder("avro")
        users = [f"user-{i}" for i in range(USERS)]
        bad_per_kind = max(4, events * BAD_PER_10K // 10_000 // 4)
        chunks = 10
        per_chunk = events // chunks
        bad = 0
        for chunk in range(chunks):
            batch = []
            count = per_chunk if chunk < chunks - 1 else events - per_chunk * (chunks - 1)
            for n in range(chunk * per_chunk, chunk * per_chunk + count):
                batch.append(identify(rng.choice(users), n))
                if n % max(1, events // bad_per_kind) == 0 and bad < bad_per_kind:
                    long_line = "x" * rng.randint(65, 200)
                    batch.append(
                        identify(
                            rng.choice(users),
                            MAPPING_BAD_SEQ + bad,
                            address_line_1=long_line,
                            address_city="Austin",
                        )
                    )
                    bad += 1
            raw: list[tuple[bytes | None, bytes | None]] = []
            for i in range(bad_per_kind // chunks + (1 if chunk < bad_per_kind % chunks else 0)):
                n = chunk * 1000 + i
                good = encoder.encode(identify(rng.choice(users), MAPPING_BAD_SEQ * 2 + n))
                for kind, value in (
                    ("truncated", good[: len(good) // 2]),
                    ("trailing_bytes", good + b"\x00\x01"),
                    ("empty_value", b""),
                ):
                    key = f"bad-{kind}-{n}".encode()
                    raw.append((key, value))
                    self.bad_raw[key] = kind
            for landed in produce(self.bootstrap, self.topic, batch, raw=raw):
                where = (landed.partition, landed.offset)
                if landed.seq >= MAPPING_BAD_SEQ:
                    self.bad_mapped[where] = "address_line_1_too_long"
                else:
                    self.valid[(landed.user, landed.seq)] = where
        assert len(self.valid) == events

    # -- the connector -------------------------------------------------------------------------
    def start_connector(self) -> ConnectorProcess:
        env = connector_env(
            self.bootstrap,
            self.topic,
            self.dlq,
            self.simulator,
            self.group,
            INKIT_TIMEOUT_SECONDS="1",
            COMMIT_INTERVAL_SECONDS="0.1",
            INKIT_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT),
            # What a kill can re-send: finished or in flight and not covered by a landed commit.
            MAX_UNCOMMITTED_RECORDS=str(MAX_IN_FLIGHT),
            LOG_LEVEL="WARNING",  # one ERROR line per dead letter; INFO lines add nothing here
            AMBIGUOUS_SEND_POLICY=self.policy,
        )
        process = ConnectorProcess(env, self.tmp_path, name=f"chaos-{len(self.processes)}")
        self.processes.append(process.start())
        return process

    # -- observation ---------------------------------------------------------------------------
    def page(self) -> int:
        """Read the simulator's new requests; return the last seq seen."""
        last = self.recorded[-1].seq if self.recorded else 0
        new = self.simulator.requests(since=last)
        self.recorded += new
        self.delivered |= Deliveries.of(new).unique()
        return self.recorded[-1].seq if self.recorded else 0

    def snapshot(self, kind: str, seconds: float) -> Boundary:
        seq = self.page()
        coverage = covered_offsets(self.bootstrap, self.group, self.topic, PARTITIONS)
        in_ledger = {_event(key) for key in ledger_sent(self.bootstrap, f"{self.topic}.sent")}
        return Boundary(kind, seq, set(self.delivered), coverage, seconds, in_ledger=in_ledger)

    def in_flight(self, boundary: Boundary) -> set[tuple[str, int]]:
        """Events Inkit accepted before the boundary whose sent record the ledger did not hold:
        the requests in flight then, as far as a restart can tell (their outcome not durable)."""
        return boundary.delivered - boundary.in_ledger

    def boundary_figures(self, b: Boundary) -> dict[str, Any]:
        """What the figures file says about one boundary."""
        entry: dict[str, Any] = {
            "kind": b.kind,
            "at_s": b.seconds,
            "delivered_before": len(b.delivered),
            "delivered_not_committed": len(self.uncommitted(b)),
            "in_flight_at_boundary": len(self.in_flight(b)),
            "duplicates": b.duplicates,
            "in_flight_window": MAX_IN_FLIGHT,
            "within_window": b.duplicates <= MAX_IN_FLIGHT,
            "unexplained": len(b.unexplained),
            "beyond_in_flight": len(b.beyond_in_flight),
        }
        if b.kind == "broker_restart":
            entry["broker_away_s"] = b.duration_s
        return entry

    def unanswered(self) -> list[tuple[str, int]]:
        """Events whose request the simulator read and never answered (drop, hang)."""
        events = []
        for _fault, body in self.simulator.unanswered():
            fields = json.loads(body)
            fields = fields.get("merge_parameters", fields)
            if "test_seq" in fields:
                events.append((str(fields["test_user"]), int(fields["test_seq"])))
        return events

    def uncommitted(self, boundary: Boundary) -> set[tuple[str, int]]:
        """Events delivered before the boundary whose offsets no commit covered yet."""
        return {e for e in boundary.delivered if not is_covered(boundary.coverage, *self.valid[e])}

    def all_committed(self) -> bool:
        ends = end_offsets(self.bootstrap, self.topic, PARTITIONS)
        return committed(self.bootstrap, self.group, self.topic, PARTITIONS) == ends


def _event(identity: bytes) -> tuple[str, int]:
    """The (user, seq) of a ledger key: the event's messageId, ``<user>-<seq>`` (harness)."""
    user, _, seq = identity.decode().rpartition("-")
    return user, int(seq)


def ledger_sent(bootstrap: str, topic: str, timeout_s: float = 30.0) -> set[bytes]:
    """Keys of the sent records in the sent-ledger topic now (intents and tombstones aside),
    read from the beginning of every partition to its end (enable.partition.eof)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"ledger-reader-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return set()  # not created yet: the first process creates it
        partitions = list(found.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        sent: set[bytes] = set()
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                    continue
                key, value = msg.key(), msg.value()
                if key is not None and value and value[:1] == b"{":
                    sent.add(key)
        assert not pending, f"the sent-ledger {topic} was not read to its end"
        return sent
    finally:
        consumer.close()
