"""Issue #13 on the project's real broker: the dead-letter scan of a newly assigned partition runs
off the consume loop. Here the dead-letter topic cannot be read at all (the scanner's cluster
does not answer): the loop keeps turning (its heartbeat is what /healthz reports), the partition
waits visibly (holder "dlq_scan"), and once the scan is given up the partition is read anyway.
Before, each attempt blocked the assign callback, and with it the whole loop, for its timeout."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from connector.delivery import scan_gate
from connector.delivery.processor import Processor
from connector.inkit.client import InkitClient
from connector.inkit.retry import Backoff
from connector.inkit.sender import Sender
from connector.kafka.dlq import DeadLetterQueue
from connector.kafka.dlq_recovery import DeadLetterScanner
from connector.observability.metrics import Metrics
from tests.fakes import JsonDecoder, SimpleMapper
from tests.integration.harness import committed, free_port, read_all, wait_until

pytestmark = pytest.mark.integration

SCAN_TIMEOUT_S = 3.0  # each attempt: list_topics against a cluster that does not answer
# A loop turn takes milliseconds; a scan inside the callback stood still for SCAN_TIMEOUT_S.
MAX_BEAT_GAP_S = 1.5


def _event(user: str, seq: int) -> bytes:
    body = {"type": "identify", "userId": user, "traits": {"template_id": "t", "seq": seq}}
    return json.dumps(body).encode()


def _previous_owner_committed_one(bootstrap: str, topic: str, group: str) -> None:
    """Offset 0 delivered and committed, with a "since": the next owner scans from there."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"u0", value=_event("u0", 0))
    producer.produce(topic, key=b"u1", value=b"")  # undecodable: a dead letter
    for seq in range(2, 6):
        producer.produce(topic, key=f"u{seq}".encode(), value=_event(f"u{seq}", seq))
    assert producer.flush(30) == 0
    previous = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        since = f"since:{int(time.time() * 1000)}"
        previous.commit(offsets=[TopicPartition(topic, 0, 1, metadata=since)], asynchronous=False)
    finally:
        previous.close()


def _holder(metrics: Metrics) -> str | None:
    for metric in metrics.oldest_unfinished_age.collect():
        for sample in metric.samples:
            return str(sample.labels["holder"])
    return None


def test_an_unreadable_dead_letter_topic_holds_its_partition_not_the_loop(
    kafka_bootstrap: str, topic_factory: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan_gate, "DLQ_SCAN_RETRY_S", 0.5)
    monkeypatch.setattr(scan_gate, "DLQ_SCAN_PATIENCE_S", 2 * SCAN_TIMEOUT_S)
    source, dlq = topic_factory(partitions=1), topic_factory(partitions=1)
    group = f"scan-gate-{uuid.uuid4().hex}"
    _previous_owner_committed_one(kafka_bootstrap, source, group)
    metrics = Metrics(CollectorRegistry())
    delivered: list[int] = []

    async def inkit(request: httpx.Request) -> httpx.Response:
        delivered.append(json.loads(request.content)["seq"])
        return httpx.Response(202)

    sender = Sender(
        lambda: InkitClient(httpx.MockTransport(inkit), metrics),
        metrics,
        retry_max_s=10.0,
        backoff=Backoff(base_s=0.01, max_s=0.05),
    )
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens: every read of the topic times out
    scanner = DeadLetterScanner(
        lambda: Consumer(
            {"bootstrap.servers": nowhere, "group.id": f"{group}.dlq-scan", "log_level": 2}
        ),
        dlq,
        group,
        timeout_s=SCAN_TIMEOUT_S,
    )
    processor_ref: list[Processor] = []
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "on_commit": lambda err, tps: processor_ref[0].on_commit(err, tps),
        }
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    processor = Processor(
        consumer=consumer,
        decoder=JsonDecoder(),
        mapper=SimpleMapper(),
        sender=sender,
        dlq=DeadLetterQueue(producer, dlq, metrics, group),
        metrics=metrics,
        topic=source,
        max_in_flight=8,
        max_buffered=100,
        drain_timeout_s=5.0,
        commit_interval_s=0.2,
        scanner=scanner,
    )
    processor_ref.append(processor)
    sender.start()
    processor.subscribe()
    loop = threading.Thread(target=processor.run, daemon=True)
    loop.start()
    gaps: list[float] = []
    holders: set[str | None] = set()
    try:
        wait_until(lambda: metrics.rebalances.labels("assigned")._value.get() == 1, 30)
        # The scan's attempts and the patience after them: the loop turns all along.
        deadline = time.monotonic() + 2 * SCAN_TIMEOUT_S
        while time.monotonic() < deadline:
            gaps.append(time.monotonic() - processor.heartbeat)
            holders.add(_holder(metrics))
            assert delivered == [], "nothing of the partition before the scan's verdict"
            time.sleep(0.05)
        wait_until(lambda: sorted(delivered) == [2, 3, 4, 5], 30, "read once given up")
        offset = metrics.committed_offset.labels(source, "0")
        wait_until(lambda: offset._value.get() == 6, 30, "its commit lands past the dead letter")
    finally:
        processor.request_stop()
        loop.join(30)
        sender.stop()
        consumer.close()
        scanner.close()
    assert max(gaps) < MAX_BEAT_GAP_S, f"the loop stood still for {max(gaps):.1f}s"
    assert "dlq_scan" in holders
    assert metrics.dead_letter_scans.labels("failed")._value.get() >= 2
    # Given up: the copy is written (at least once), never lost.
    copies = [
        dict(m.headers() or [])["inkit.original.offset"] for m in read_all(kafka_bootstrap, dlq)
    ]
    assert copies == [b"1"]
    assert committed(kafka_bootstrap, group, source, 1) == {0: 6}
