"""The sent-ledger's rules in the consume loop (an in-memory consumer and producer): an event Inkit
accepted is never sent again, and a delivery counts as finished (and its offset committable) only
once its ledger record is acknowledged. The real broker proves replays, resets and new groups in
tests/integration/test_ledger.py."""

from __future__ import annotations

import json
import time

import httpx

from connector.kafka.ledger import LedgerIndex, SentLedger, hash64, identity_of
from connector.models import SegmentMessage
from connector.observability.metrics import Metrics
from tests.fakes import FakeConsumer, FakeProducer
from tests.unit.delivery.test_processor import Harness, wait_for


def identify(user: str, seq: int, message_id: str | None) -> bytes:
    body: dict[str, object] = {
        "type": "identify",
        "userId": user,
        "traits": {"template_id": "t", "seq": seq},
    }
    if message_id is not None:
        body["messageId"] = message_id
    return json.dumps(body).encode()


def ledger_for(producer: FakeProducer, metrics: Metrics, window_s: float = 3600.0) -> SentLedger:
    return SentLedger(
        producer=producer,
        consumer_factory=lambda: None,
        topic="t.sent",
        window_s=window_s,
        metrics=metrics,
        group_id="g",
    )


def test_identity_is_the_message_id_or_a_stable_hash_of_the_event() -> None:
    assert identity_of(SegmentMessage("identify", user_id="u", message_id="m-1")) == "m-1"
    a = SegmentMessage("identify", user_id="u", traits={"a": 1, "b": 2})
    b = SegmentMessage("identify", user_id="u", traits={"b": 2, "a": 1})
    c = SegmentMessage("identify", user_id="u", traits={"a": 1, "b": 3})
    assert identity_of(a) == identity_of(b)
    assert identity_of(a) != identity_of(c)
    assert identity_of(a).startswith("sha256:")


def test_index_finds_what_was_loaded_and_added_across_merges() -> None:
    index = LedgerIndex()
    index.load({hash64("old"): 100})
    for i in range(3):
        index.add(hash64(f"new{i}"), 200 + i)
    assert index.sent_at(hash64("old")) == 100
    assert index.sent_at(hash64("new2")) == 202
    index.merge()
    index.add(hash64("old"), 300)  # sent again later: the newest time wins
    assert index.sent_at(hash64("old")) == 300
    assert index.sent_at(hash64("new0")) == 200
    assert index.sent_at(hash64("never")) is None
    assert len(index) == 5  # one of them counted twice until the next merge
    index.merge()
    assert len(index) == 4


def test_an_event_sent_before_is_skipped_as_already_sent() -> None:
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"u1", identify("u1", 0, "m-0"))
    consumer.append(0, b"u1", identify("u1", 1, "m-1"))
    consumer.append(0, b"u1", identify("u1", 2, "m-0"))  # the same event, produced again
    consumer.append(0, b"u2", identify("u2", 3, None))
    consumer.append(0, b"u2", identify("u2", 3, None))  # no messageId: same content, same event
    sent: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(int(json.loads(request.content)["seq"]))
        return httpx.Response(202)

    h = Harness(consumer, handler)
    producer = h.producer  # the dead-letter queue's producer writes the ledger too, as in run
    h.processor._ledger = ledger_for(producer, h.metrics)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 5)
    assert sorted(sent) == [0, 1, 3]
    keys = [r["key"] for r in producer.produced]
    assert len(keys) == 3
    assert {b"m-0", b"m-1"} < set(keys)
    assert next(k for k in keys if k.startswith(b"sha256:"))
    skipped = h.metrics.records.labels("skipped", "already_sent")._value.get()
    assert skipped == 2


def test_an_offset_is_not_committed_before_its_ledger_record_lands() -> None:
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(3):
        consumer.append(0, b"u", identify("u", seq, f"m-{seq}"))

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202)

    h = Harness(consumer, handler)
    producer = h.producer
    producer.fail_next = 2  # the ledger cannot be written at first
    ledger = ledger_for(producer, h.metrics)
    h.processor._ledger = ledger
    with h.running():
        failed = h.metrics.ledger_writes.labels("failed")
        wait_for(lambda: failed._value.get() == 2)
        # Delivered, but their ledger records are retried in a second: nothing is committed.
        assert consumer.committed_offsets.get(0, 0) == 0
        wait_for(lambda: consumer.committed_offsets.get(0) == 3, timeout_s=15)
        assert not ledger.failing
    assert sorted(r["key"] for r in producer.produced) == [b"m-0", b"m-1", b"m-2"]
    assert h.metrics.ledger_writes.labels("failed")._value.get() == 2


def test_events_older_than_the_age_guard_are_skipped() -> None:
    consumer = FakeConsumer("t", partitions=1)
    old = consumer.append(0, b"u", identify("u", 0, "m-0"))
    old._timestamp_ms = int((time.time() - 7200) * 1000)
    fresh = consumer.append(0, b"u", identify("u", 1, "m-1"))
    fresh._timestamp_ms = int(time.time() * 1000)
    sent: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(int(json.loads(request.content)["seq"]))
        return httpx.Response(202)

    h = Harness(consumer, handler, max_event_age_s=3600.0)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 2)
    assert sent == [1]
    assert h.metrics.records.labels("skipped", "too_old")._value.get() == 1


def test_deliveries_waiting_for_the_ledger_count_against_the_uncommitted_cap() -> None:
    # The chaos run found it: with the ledger unwritable (a broker restart), deliveries whose
    # ledger record was not acknowledged were outside the cap, and a kill then re-sent 906.
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(60):
        consumer.append(0, f"u{seq}".encode(), identify(f"u{seq}", seq, f"m-{seq}"))
    sent: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(int(json.loads(request.content)["seq"]))
        return httpx.Response(202)

    h = Harness(consumer, handler, max_uncommitted=8)
    h.producer.fail_next = 10**6  # the ledger cannot be written at all
    h.processor._ledger = ledger_for(h.producer, h.metrics)
    failed = h.metrics.ledger_writes.labels("failed")
    with h.running():
        # Several retry rounds (one a second) have passed: the loop had time to send more.
        wait_for(lambda: failed._value.get() >= 3 * 8, timeout_s=20)
        assert len(sent) <= 8 + 1  # the cap, plus the partition's head (issue #13)
        assert consumer.committed_offsets.get(0, 0) == 0
